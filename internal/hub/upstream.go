package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// upstream is the apiserver as the node sees it.
type upstream struct {
	base  *url.URL
	token string
	// rt multiplexes over HTTP/2; h1 carries protocol upgrades (exec,
	// attach, port-forward), which HTTP/2 cannot. Both present the node's
	// client certificate.
	rt, h1 *http.Transport
	// callerRT and callerH1 carry in-cluster clients' requests with their
	// own bearer tokens: no client certificate, which kube-apiserver would
	// authenticate first.
	callerRT, callerH1 *http.Transport
}

// callerKey carries an in-cluster client's bearer token in a request's
// context: the hub forwards that request as the client, not as the node.
type callerKey struct{}

func withCallerToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, callerKey{}, token)
}

func callerToken(ctx context.Context) string {
	t, _ := ctx.Value(callerKey{}).(string)
	return t
}

// kubeconfig is the subset of a kubeconfig file the hub reads.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate     string `json:"client-certificate"`
			ClientCertificateData string `json:"client-certificate-data"`
			ClientKey             string `json:"client-key"`
			ClientKeyData         string `json:"client-key-data"`
			Token                 string `json:"token"`
			TokenFile             string `json:"tokenFile"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

type credentials struct {
	server                 string
	caPEM, certPEM, keyPEM []byte
	// certFile and keyFile name the files certPEM and keyPEM came from,
	// when they did: they are read again when they change.
	certFile, keyFile string
	token             string
	insecure          bool
}

func loadCredentials(cfg Config) (credentials, error) {
	var c credentials
	if cfg.Kubeconfig != "" {
		var err error
		if c, err = readKubeconfig(cfg.Kubeconfig); err != nil {
			return c, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	read := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return b, nil
	}
	var err error
	if cfg.Server != "" {
		c.server = cfg.Server
	} else if cfg.isOwnListener(c.server) {
		// The kubelet's kubeconfig points at this hub (node conversion):
		// the apiserver is the one it pointed at before.
		if cfg.OriginalKubeconfig == "" {
			return c, fmt.Errorf("kubeconfig %s points at this hub (%s) and no server or originalKubeconfig is set", cfg.Kubeconfig, c.server)
		}
		orig, err := readKubeconfig(cfg.OriginalKubeconfig)
		if err != nil {
			return c, fmt.Errorf("original kubeconfig %s: %w", cfg.OriginalKubeconfig, err)
		}
		c.server = orig.server
	}
	if cfg.isOwnListener(c.server) {
		return c, fmt.Errorf("the apiserver address %s is this hub's own listener", c.server)
	}
	if cfg.CAFile != "" {
		if c.caPEM, err = read(cfg.CAFile); err != nil {
			return c, err
		}
	}
	if cfg.CertFile != "" {
		if c.certPEM, err = read(cfg.CertFile); err != nil {
			return c, err
		}
		if c.keyPEM, err = read(cfg.KeyFile); err != nil {
			return c, err
		}
		c.certFile, c.keyFile = cfg.CertFile, cfg.KeyFile
	}
	if cfg.TokenFile != "" {
		b, err := read(cfg.TokenFile)
		if err != nil {
			return c, err
		}
		c.token = strings.TrimSpace(string(b))
	}
	if c.server == "" {
		return c, errors.New("no apiserver address")
	}
	return c, nil
}

func readKubeconfig(path string) (credentials, error) {
	var c credentials
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return c, fmt.Errorf("parsing: %w", err)
	}
	ctxName := kc.CurrentContext
	if ctxName == "" && len(kc.Contexts) == 1 {
		ctxName = kc.Contexts[0].Name
	}
	var clusterName, userName string
	for _, x := range kc.Contexts {
		if x.Name == ctxName {
			clusterName, userName = x.Context.Cluster, x.Context.User
		}
	}
	if clusterName == "" {
		return c, fmt.Errorf("context %q not found", ctxName)
	}
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(dir, p)
		}
		return p
	}
	file := func(data, p string) ([]byte, error) {
		if data != "" {
			return base64.StdEncoding.DecodeString(data)
		}
		if p == "" {
			return nil, nil
		}
		return os.ReadFile(abs(p))
	}
	found := false
	for _, cl := range kc.Clusters {
		if cl.Name != clusterName {
			continue
		}
		found = true
		c.server, c.insecure = cl.Cluster.Server, cl.Cluster.InsecureSkipTLSVerify
		if c.caPEM, err = file(cl.Cluster.CertificateAuthorityData, cl.Cluster.CertificateAuthority); err != nil {
			return c, fmt.Errorf("cluster %q CA: %w", clusterName, err)
		}
	}
	if !found {
		return c, fmt.Errorf("cluster %q not found", clusterName)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		if c.certPEM, err = file(u.User.ClientCertificateData, u.User.ClientCertificate); err != nil {
			return c, fmt.Errorf("user %q certificate: %w", userName, err)
		}
		if c.keyPEM, err = file(u.User.ClientKeyData, u.User.ClientKey); err != nil {
			return c, fmt.Errorf("user %q key: %w", userName, err)
		}
		if u.User.ClientCertificateData == "" && u.User.ClientKeyData == "" {
			c.certFile, c.keyFile = abs(u.User.ClientCertificate), abs(u.User.ClientKey)
		}
		c.token = u.User.Token
		if u.User.TokenFile != "" {
			b, err := file("", u.User.TokenFile)
			if err != nil {
				return c, fmt.Errorf("user %q token: %w", userName, err)
			}
			c.token = strings.TrimSpace(string(b))
		}
	}
	return c, nil
}

func newUpstream(cfg Config) (*upstream, error) {
	creds, err := loadCredentials(cfg)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(creds.server)
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("invalid apiserver URL %q", creds.server)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: creds.insecure} //nolint:gosec // only when the kubeconfig asks for it
	if len(creds.caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(creds.caPEM) {
			return nil, errors.New("apiserver CA: no certificate found")
		}
		tlsCfg.RootCAs = pool
	}
	if len(creds.certPEM) > 0 {
		pair, err := tls.X509KeyPair(creds.certPEM, creds.keyPEM)
		if err != nil {
			return nil, fmt.Errorf("node client certificate: %w", err)
		}
		if creds.certFile != "" {
			cc := &clientCert{certFile: creds.certFile, keyFile: creds.keyFile, pair: &pair, stamp: certStamp(creds.certFile, creds.keyFile)}
			tlsCfg.GetClientCertificate = cc.get
		} else {
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout.Duration, KeepAlive: 15 * time.Second}
	mk := func(h2 bool, tlsCfg *tls.Config) *http.Transport {
		t := &http.Transport{
			DialContext:           dialer.DialContext,
			TLSClientConfig:       tlsCfg.Clone(),
			TLSHandshakeTimeout:   cfg.DialTimeout.Duration,
			MaxIdleConns:          200,
			MaxIdleConnsPerHost:   100,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     h2,
			ExpectContinueTimeout: time.Second,
		}
		if !h2 {
			t.TLSClientConfig.NextProtos = []string{"http/1.1"}
			t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		return t
	}
	anon := tlsCfg.Clone()
	anon.Certificates, anon.GetClientCertificate = nil, nil
	return &upstream{base: base, token: creds.token, rt: mk(true, tlsCfg), h1: mk(false, tlsCfg),
		callerRT: mk(true, anon), callerH1: mk(false, anon)}, nil
}

// roundTrip sends a request built by request (or rewritten by authorize)
// with the credentials it carries: an in-cluster client's token without
// the node's certificate, or the node's.
func (u *upstream) roundTrip(req *http.Request) (*http.Response, error) {
	upgrade := req.Header.Get("Upgrade") != ""
	switch caller := callerToken(req.Context()) != ""; {
	case caller && upgrade:
		return u.callerH1.RoundTrip(req)
	case caller:
		return u.callerRT.RoundTrip(req)
	case upgrade:
		return u.h1.RoundTrip(req)
	default:
		return u.rt.RoundTrip(req)
	}
}

// request builds an upstream request for path?query carrying the node's
// credentials, or the in-cluster client's when ctx carries its token.
func (u *upstream) request(ctx context.Context, method, path, rawQuery string, body []byte) *http.Request {
	target := *u.base
	target.Path = strings.TrimSuffix(u.base.Path, "/") + path
	target.RawQuery = rawQuery
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, target.String(), rd)
	u.authorize(req)
	return req
}

func (u *upstream) authorize(req *http.Request) {
	req.Header.Del("Authorization")
	if t := callerToken(req.Context()); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	} else if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
}

// isLinkError tells a failure to reach the apiserver (refused, reset,
// timed out, cut mid-response) from a client that went away.
func isLinkError(ctxErr error, err error) bool {
	if err == nil || ctxErr != nil {
		return false
	}
	return !errors.Is(err, context.Canceled)
}

// clientCert serves the node's client certificate from its files and reads
// them again when they change: the kubelet rotates the certificate its
// kubeconfig names (kubeadm's kubelet-client-current.pem, a link to the
// latest), and the hub proxies with it for as long as it runs. A new pair
// is used from the next TLS handshake on; a pair that does not load (caught
// mid-rotation) leaves the last good one in use.
type clientCert struct {
	certFile, keyFile string

	mu    sync.Mutex
	stamp string
	pair  *tls.Certificate
}

func (c *clientCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	stamp := certStamp(c.certFile, c.keyFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	if stamp == c.stamp {
		return c.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return c.pair, nil
	}
	c.stamp, c.pair = stamp, &pair
	return c.pair, nil
}

// certStamp changes when either file (or a link's target) changes.
func certStamp(files ...string) string {
	var b strings.Builder
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d.%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}
