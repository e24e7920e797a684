package hub

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// The kubelet and kube-proxy send protobuf bodies by default and accept
// protobuf or JSON answers. The hub asks the apiserver for JSON and caches
// and journals JSON, so a protobuf body of a write it answers offline is
// turned into JSON at the door, and an answer goes out as JSON unless the
// client does not take JSON.
const (
	mediaJSON     = "application/json"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// codecScheme knows the kinds the hub answers writes for (Lease, Node, Pod),
// metav1.Status, and TokenRequest (whose answers teach it in-cluster
// callers' tokens); client-go's full scheme would link every API group into
// the node binary for nothing.
var (
	codecScheme = runtime.NewScheme()
	pbCodec     *protobuf.Serializer
	jsonCodec   *json.Serializer
)

func init() {
	utilruntime.Must(corev1.AddToScheme(codecScheme))
	utilruntime.Must(coordinationv1.AddToScheme(codecScheme))
	utilruntime.Must(authenticationv1.AddToScheme(codecScheme))
	pbCodec = protobuf.NewSerializer(codecScheme, codecScheme)
	jsonCodec = json.NewSerializerWithOptions(json.DefaultMetaFactory, codecScheme, codecScheme, json.SerializerOptions{})
}

// mediaType is a Content-Type or Accept entry without its parameters.
func mediaType(v string) string {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		mt, _, _ = strings.Cut(v, ";")
	}
	return strings.ToLower(strings.TrimSpace(mt))
}

// objectJSON returns a PUT or POST body as JSON, the form the hub caches
// and journals.
func objectJSON(contentType string, body []byte) ([]byte, error) {
	switch mediaType(contentType) {
	case "", mediaJSON:
		return body, nil
	case mediaProtobuf:
		return convert(pbCodec, jsonCodec, body)
	}
	return nil, fmt.Errorf("%q bodies are not supported offline", contentType)
}

// convert decodes body with from and encodes the object with to.
func convert(from runtime.Decoder, to runtime.Encoder, body []byte) ([]byte, error) {
	obj, gvk, err := from.Decode(body, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding the body: %w", err)
	}
	// Decoders leave TypeMeta empty; the encoded object must carry it.
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	var buf bytes.Buffer
	if err := to.Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", gvk.Kind, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// answerType picks the media type of an answer the hub holds as JSON: JSON
// when the client takes it (an empty Accept takes anything), else protobuf
// when it takes that, else "".
func answerType(accept string) string {
	if strings.TrimSpace(accept) == "" {
		return mediaJSON
	}
	pb := false
	for entry := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(entry))
		if err != nil || params["q"] == "0" || params["as"] != "" {
			continue
		}
		switch mt {
		case mediaJSON, "application/*", "*/*":
			return mediaJSON
		case mediaProtobuf:
			pb = true
		}
	}
	if pb {
		return mediaProtobuf
	}
	return ""
}

// acceptsJSON says whether a client takes the JSON the hub reads and caches.
func acceptsJSON(accept string) bool { return answerType(accept) == mediaJSON }

// encodeAnswer encodes a JSON object as media type mt.
func encodeAnswer(mt string, body []byte) ([]byte, error) {
	if mt == mediaJSON {
		return body, nil
	}
	return convert(jsonCodec, pbCodec, body)
}

// writeObject answers with a JSON object (or Status) in a media type the
// client takes.
func writeObject(w http.ResponseWriter, accept string, code int, body []byte) {
	mt := answerType(accept)
	out, err := encodeAnswer(mt, body)
	if mt == "" || err != nil {
		writeStatus(w, http.StatusNotAcceptable, "NotAcceptable",
			fmt.Sprintf("edge-hub: this answer can be sent as %s or %s only, not as %q", mediaJSON, mediaProtobuf, accept))
		return
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Del("Content-Encoding")
	w.WriteHeader(code)
	_, _ = w.Write(out)
}
