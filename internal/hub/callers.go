package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// Client names of in-cluster callers are "<component>|<user>": the
// component (identify, by User-Agent) picks filters and metrics labels,
// the user keys the cache.
const callerSep = "|"

// callerClient names an in-cluster caller. The user is escaped, so that
// no user name can spell another's cache keys; an empty user (a token the
// hub could not put a name to) is served but never cached.
func callerClient(component, user string) string {
	return component + callerSep + url.QueryEscape(user)
}

// callerQueryKeys are the query parameters of a caller's cacheable read:
// any other parameter would give one more cache entry per value.
var callerQueryKeys = map[string]bool{
	"labelSelector": true, "fieldSelector": true, "resourceVersion": true, "resourceVersionMatch": true,
	"timeout": true, "timeoutSeconds": true, "limit": true, "continue": true,
	"watch": true, "allowWatchBookmarks": true, "sendInitialEvents": true,
}

// callerCacheable bounds what a caller's reads may add to the store: reads
// of resources with the usual parameters, and discovery (/version, /api,
// /apis and each group version) without any. A pod cannot grow the cache
// with made-up paths or parameters: unknown resources answer 404, which is
// never recorded.
func callerCacheable(client string, ri reqInfo, r *http.Request) bool {
	_, user, _ := strings.Cut(client, callerSep)
	if user == "" {
		return false
	}
	if !ri.isResource() {
		return r.URL.RawQuery == "" && (ri.prefix != "" || r.URL.Path == "/version" || r.URL.Path == "/api" || r.URL.Path == "/apis")
	}
	for k := range ri.query {
		if !callerQueryKeys[k] {
			return false
		}
	}
	return true
}

// componentOf is the component part of a client name.
func componentOf(client string) string {
	c, _, _ := strings.Cut(client, callerSep)
	return c
}

// isCaller says whether client is an in-cluster caller.
func isCaller(client string) bool { return strings.Contains(client, callerSep) }

// statusError is an answer the hub gives instead of serving a request.
type statusError struct {
	code        int
	reason, msg string
}

func (e *statusError) Error() string { return e.msg }

// bearerToken is the request's bearer token.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// callers maps bearer tokens to the users the apiserver says they are.
//
// A token is looked up online once with a SelfSubjectReview (any
// authenticated user may create one) and remembered, in memory and in the
// store, by its SHA-256 (never the token itself), until the expiry its JWT
// claims (the apiserver verified the token, so its claims hold). Offline, a
// remembered token is its user; a token never seen online is refused: the
// hub cannot verify it, and serving a cached answer to an unverified token
// would hand one pod's secrets to another.
//
// The kubelet's TokenRequests through the hub teach it tokens too (learn):
// a token the kubelet gets while online is known before any pod uses it,
// so a rotation just before the link is cut does not lock the pod out.
//
// Where SelfSubjectReview is not allowed, a token the hub has not learned
// is served online as itself and never cached. A token the apiserver
// refuses (401) is forgotten.
type callers struct {
	h     *Hub
	mu    sync.Mutex
	known map[string]callerRecord // hex SHA-256 -> record
}

type callerRecord struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires,omitzero"`
}

func newCallers(h *Hub) *callers { return &callers{h: h, known: map[string]callerRecord{}} }

// tokenSum is what the hub keeps of a token: its SHA-256, in hex.
func tokenSum(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

func callerStoreKey(sum string) string { return ClientHub + " caller " + sum }

// maxCallers bounds the tokens remembered in memory; the store keeps all.
const maxCallers = 10000

func (c *callers) identify(ctx context.Context, token string) (string, error) {
	sum := tokenSum(token)
	now := time.Now()
	rec, ok := c.lookup(sum)
	if ok && !rec.Expires.IsZero() && !now.Before(rec.Expires) {
		c.forget(token)
		return "", &statusError{http.StatusUnauthorized, "Unauthorized", "edge-hub: the token has expired"}
	}
	if ok {
		return rec.User, nil
	}
	if !c.h.link.Online() {
		return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable",
			"edge-hub: the cloud link is down and this token was never used online, so it cannot be verified"}
	}
	user, err := c.review(ctx, token, sum)
	if err != nil || user == "" {
		return "", err
	}
	c.remember(sum, callerRecord{User: user, Expires: tokenExpiry(token)})
	return user, nil
}

// learn remembers a token the apiserver issued to user (a TokenRequest's
// answer).
func (c *callers) learn(token, user string) {
	c.remember(tokenSum(token), callerRecord{User: user, Expires: tokenExpiry(token)})
}

// forget drops a token the apiserver refused.
func (c *callers) forget(token string) {
	sum := tokenSum(token)
	c.mu.Lock()
	delete(c.known, sum)
	c.mu.Unlock()
	if err := c.h.store.DropResponse(callerStoreKey(sum)); err != nil {
		c.h.log.Error(err, "Forgetting a refused in-cluster token failed")
	}
}

func (c *callers) lookup(sum string) (callerRecord, bool) {
	c.mu.Lock()
	rec, ok := c.known[sum]
	c.mu.Unlock()
	if ok {
		return rec, true
	}
	resp, found, err := c.h.store.GetResponse(callerStoreKey(sum))
	if err != nil || !found || json.Unmarshal(resp.Body, &rec) != nil || rec.User == "" {
		return callerRecord{}, false
	}
	c.keep(sum, rec)
	return rec, true
}

func (c *callers) keep(sum string, rec callerRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.known) >= maxCallers {
		clear(c.known) // reloaded from the store on demand
	}
	c.known[sum] = rec
}

func (c *callers) remember(sum string, rec callerRecord) {
	c.keep(sum, rec)
	body, _ := json.Marshal(rec)
	if err := c.h.store.PutResponse(callerStoreKey(sum), store.Response{ContentType: "application/json", Body: body, Recorded: time.Now()}); err != nil {
		c.h.log.Error(err, "Recording an in-cluster caller failed; it will not be served offline after a restart", "user", rec.User)
	}
}

// review asks the apiserver who the token is.
func (c *callers) review(ctx context.Context, token, sum string) (string, error) {
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	online, epoch, _, _ := c.h.link.state()
	if !online {
		return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the cloud link is down; the token cannot be verified"}
	}
	lctx, cancel := context.WithCancel(withCallerToken(ctx, token))
	defer cancel()
	stop := context.AfterFunc(epoch, cancel)
	defer stop()
	req := c.h.up.request(lctx, http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", "", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "edge-hub/incluster")
	resp, err := c.h.up.roundTrip(req)
	if err != nil {
		if ctx.Err() == nil {
			c.h.link.markOffline("token review failed: " + err.Error())
		}
		return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the apiserver could not be reached to verify the token"}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := readBody(resp.Body, 1<<20)
	if err != nil {
		return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: reading the token review: " + err.Error()}
	}
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
		var ssr struct {
			Status struct {
				UserInfo struct {
					Username string `json:"username"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(raw, &ssr); err != nil || ssr.Status.UserInfo.Username == "" {
			return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the token review named no user"}
		}
		return ssr.Status.UserInfo.Username, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return "", &statusError{http.StatusUnauthorized, "Unauthorized", "Unauthorized"}
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound:
		// Reviews not allowed or not served: served online as itself,
		// never cached (no user to key its answers by).
		return "", nil
	default:
		return "", &statusError{http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge-hub: the token review failed with HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))}
	}
}

// tokenExpiry is the exp claim of a JWT, zero for other tokens.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(claims.Exp, 0)
}

// learnFromTokenRequest remembers the token of a TokenRequest the apiserver
// answered through the hub (the kubelet's, for its pods' projected
// tokens): the apiserver issued it to that service account, so it is that
// user. The answer is read whole (it is small) and put back for the client.
func (c *callers) learnFromTokenRequest(resp *http.Response) {
	req := resp.Request
	if req == nil || req.Method != http.MethodPost || resp.StatusCode != http.StatusCreated {
		return
	}
	ri := parseRequest(req)
	if ri.prefix != "api" || ri.resource != "serviceaccounts" || ri.sub != "token" || ri.namespace == "" || ri.name == "" {
		return
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		return
	}
	body, err := readBody(resp.Body, 1<<20)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return
	}
	tr := &authenticationv1.TokenRequest{}
	switch mediaType(resp.Header.Get("Content-Type")) {
	case mediaProtobuf:
		if _, _, err := pbCodec.Decode(body, nil, tr); err != nil {
			return
		}
	default:
		if err := json.Unmarshal(body, tr); err != nil {
			return
		}
	}
	if tr.Status.Token != "" {
		c.learn(tr.Status.Token, "system:serviceaccount:"+ri.namespace+":"+ri.name)
	}
}
