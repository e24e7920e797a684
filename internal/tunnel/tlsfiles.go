package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// keyPairFiles serves a certificate and key from files, reloading them when
// they change so rotated certificates are used without a restart.
type keyPairFiles struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

func newKeyPairFiles(certFile, keyFile string) (*keyPairFiles, error) {
	k := &keyPairFiles{certFile: certFile, keyFile: keyFile}
	if _, err := k.get(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPairFiles) get() (*tls.Certificate, error) {
	ci, err := os.Stat(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	ki, err := os.Stat(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && ci.ModTime().Equal(k.certMod) && ki.ModTime().Equal(k.keyMod) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			// Half-written rotation: keep serving the old pair.
			return k.cert, nil
		}
		return nil, fmt.Errorf("loading key pair %s, %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.certMod, k.keyMod = &cert, ci.ModTime(), ki.ModTime()
	return k.cert, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("no PEM certificate in CA bundle %s", file)
	}
	return pool, nil
}

// ServerTLS builds a TLS 1.3 serving config from files: the serving pair
// (reloaded on change) and, when clientCAFile is set, required and verified
// client certificates.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a serving certificate and key are required")
	}
	kp, err := newKeyPairFiles(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"http/1.1"},
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS builds the agent's TLS config from files: its client pair
// (reloaded on change) and the CA that signed the servers.
func ClientTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("a client certificate, key and server CA are required")
	}
	kp, err := newKeyPairFiles(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return ClientTLSWith(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }, caFile, serverName)
}

// ClientTLSWith builds the agent's TLS config around a client certificate
// source (a CSR requester's GetClientCertificate, say) and the CA file
// that signed the servers.
func ClientTLSWith(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), caFile, serverName string) (*tls.Config, error) {
	if getCert == nil || caFile == "" {
		return nil, errors.New("a client certificate source and a server CA are required")
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		ServerName:           serverName,
		GetClientCertificate: getCert,
	}, nil
}
