package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// Client names of in-cluster callers are "<component>|<user>": the
// component (identify, by User-Agent) picks filters and metrics labels,
// the user keys the cache.
const callerSep = "|"

func callerClient(component, user string) string { return component + callerSep + user }

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
// Where SelfSubjectReview is not allowed, a token is its own user: its
// answers are cached for that token only.
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
	if err != nil {
		return "", err
	}
	rec = callerRecord{User: user, Expires: tokenExpiry(token)}
	c.remember(sum, rec)
	return user, nil
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
		// Reviews not allowed or not served: the token is its own user.
		return "token:" + sum, nil
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
