package benchutil

import (
	"io"
	"net/http"
	"strings"
)

// Verbs of a Request.
const (
	VerbGet    = "get"
	VerbList   = "list"
	VerbWatch  = "watch"
	VerbPost   = "post"
	VerbPut    = "put"
	VerbPatch  = "patch"
	VerbDelete = "delete"
)

// Request is an API request, parsed from its method and path. Paths are
// /api/v1/... or /apis/<group>/<version>/..., then optionally
// namespaces/<ns>/, then <resource>[/<name>[/<subresource>]]; anything else
// (discovery, /version, /openapi) has no resource.
type Request struct {
	Method, Path string
	// WatchParam is the request's watch query parameter.
	WatchParam string
	Verb       string
	Write      bool
	Group      string
	Resource   string
	Name       string
	Sub        string
}

// ParseRequest parses an API request.
func ParseRequest(method, path, watch string) Request {
	r := Request{Method: method, Path: path, WatchParam: watch}
	switch method {
	case http.MethodPost:
		r.Verb, r.Write = VerbPost, true
	case http.MethodPut:
		r.Verb, r.Write = VerbPut, true
	case http.MethodPatch:
		r.Verb, r.Write = VerbPatch, true
	case http.MethodDelete:
		r.Verb, r.Write = VerbDelete, true
	}

	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		r.Group, segs = segs[1], segs[3:]
	default:
		segs = nil
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:]
	}
	if len(segs) > 0 {
		r.Resource = segs[0]
	}
	if len(segs) > 1 {
		r.Name = segs[1]
	}
	if len(segs) > 2 {
		r.Sub = segs[2]
	}
	if !r.Write {
		switch {
		case watch == "true" || watch == "1":
			r.Verb = VerbWatch
		case r.Resource != "" && r.Name == "":
			r.Verb = VerbList
		default:
			r.Verb = VerbGet
		}
	}
	return r
}

// Observer sees every request a wrapped transport sent: parsed, with the
// response's status code (0 when the round trip failed), the round trip's
// error and, for requests other than GET, the body sent.
type Observer func(r Request, status int, err error, body []byte)

// RoundTripperFunc is an http.RoundTripper.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// WrapTransport returns a rest.Config.WrapTransport that reports each
// request to obs after its round trip.
func WrapTransport(obs Observer) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
			var body []byte
			if req.Method != http.MethodGet && req.GetBody != nil {
				if rd, err := req.GetBody(); err == nil {
					body, _ = io.ReadAll(rd)
					_ = rd.Close()
				}
			}
			resp, err := next.RoundTrip(req)
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			obs(ParseRequest(req.Method, req.URL.Path, req.URL.Query().Get("watch")), status, err, body)
			return resp, err
		})
	}
}
