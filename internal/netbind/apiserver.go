package netbind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// apiClient is the few requests netbind makes: read the unit, watch it,
// read and patch this node's metadata. Plain requests keep the hub free of
// generated clients for one kind.
type apiClient struct {
	base  *url.URL
	http  *http.Client
	watch *http.Client // no overall timeout
	ua    string
}

// UserAgent is netbind's User-Agent. The hub knows it: it never answers
// netbind from its cache, since netbind keeps its own durable copy and an
// older cached answer would roll that copy back.
const UserAgent = "edge-hub-netbind"

func newAPIClient(cfg *rest.Config) (*apiClient, error) {
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = UserAgent
	}
	base, _, err := rest.DefaultServerUrlFor(c)
	if err != nil {
		return nil, fmt.Errorf("netbind: apiserver address: %w", err)
	}
	// Watches last until the server ends them: a caller's Timeout bounds
	// the other requests only.
	wc := rest.CopyConfig(c)
	wc.Timeout = 0
	watchClient, err := rest.HTTPClientFor(wc)
	if err != nil {
		return nil, fmt.Errorf("netbind: apiserver client: %w", err)
	}
	if c.Timeout == 0 {
		c.Timeout = defaultRequestTimeout
	}
	httpClient, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("netbind: apiserver client: %w", err)
	}
	return &apiClient{base: base, http: httpClient, watch: watchClient, ua: c.UserAgent}, nil
}

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("the apiserver answered %d: %s", e.code, strings.TrimSpace(e.body))
}

func isStatus(err error, code int) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == code
}

func (c *apiClient) do(ctx context.Context, hc *http.Client, method, path string, q url.Values, contentType string, body []byte, accept string) (*http.Response, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return nil, &statusError{code: resp.StatusCode, body: string(b)}
	}
	return resp, nil
}

func unitPath(name string) string {
	return "/apis/" + edgev1.GroupVersion.Group + "/" + edgev1.GroupVersion.Version + "/edgeunits" + nameSuffix(name)
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return "/" + url.PathEscape(name)
}

// getUnit reads the EdgeUnit.
func (c *apiClient) getUnit(ctx context.Context, name string) (*edgev1.EdgeUnit, error) {
	resp, err := c.do(ctx, c.http, http.MethodGet, unitPath(name), nil, "", nil, "application/json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var u edgev1.EdgeUnit
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return nil, fmt.Errorf("decoding EdgeUnit %s: %w", name, err)
	}
	return &u, nil
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watchUnit streams events about the EdgeUnit from rv until the stream
// ends; each event goes to fn.
func (c *apiClient) watchUnit(ctx context.Context, name, rv string, timeoutSeconds int, fn func(typ string, u *edgev1.EdgeUnit) error) error {
	q := url.Values{
		"watch":               {"1"},
		"fieldSelector":       {"metadata.name=" + name},
		"resourceVersion":     {rv},
		"timeoutSeconds":      {fmt.Sprint(timeoutSeconds)},
		"allowWatchBookmarks": {"true"},
	}
	resp, err := c.do(ctx, c.watch, http.MethodGet, unitPath(""), q, "", nil, "application/json")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("watching EdgeUnit %s: %w", name, err)
		}
		switch ev.Type {
		case "ERROR":
			return fmt.Errorf("watching EdgeUnit %s: %s", name, ev.Object)
		case "BOOKMARK":
			continue
		}
		var u edgev1.EdgeUnit
		if err := json.Unmarshal(ev.Object, &u); err != nil {
			return fmt.Errorf("decoding a watch event of EdgeUnit %s: %w", name, err)
		}
		if err := fn(ev.Type, &u); err != nil {
			return err
		}
	}
}

// nodeMeta is the part of a Node netbind reads.
type nodeMeta struct {
	Metadata struct {
		ResourceVersion string            `json:"resourceVersion"`
		Annotations     map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// getNodeMeta reads the node's metadata only, which is much smaller than
// the Node with its image list.
func (c *apiClient) getNodeMeta(ctx context.Context, node string) (*nodeMeta, error) {
	resp, err := c.do(ctx, c.http, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(node), nil, "", nil,
		"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var m nodeMeta
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding Node %s: %w", node, err)
	}
	return &m, nil
}

// patchNode sends a JSON merge patch.
func (c *apiClient) patchNode(ctx context.Context, node string, patch []byte) error {
	resp, err := c.do(ctx, c.http, http.MethodPatch, "/api/v1/nodes/"+url.PathEscape(node), nil, "application/merge-patch+json", patch, "application/json")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}
