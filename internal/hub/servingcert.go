package hub

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeunit/edgeunit/internal/certs"
)

const (
	servingCALifetime   = 10 * 365 * 24 * time.Hour
	servingCertLifetime = 365 * 24 * time.Hour
)

// ensureServingCert returns a loopback serving certificate under
// dataDir/pki, issuing one (and its CA, ca.crt, for clients to trust) when
// missing or due for renewal.
func ensureServingCert(dataDir string, now time.Time) (certFile, keyFile string, err error) {
	dir := filepath.Join(dataDir, "pki")
	certFile, keyFile = filepath.Join(dir, "hub-serving.crt"), filepath.Join(dir, "hub-serving.key")
	if pemData, err := os.ReadFile(certFile); err == nil && !certs.NeedsRenewal(pemData, now) {
		if _, err := os.Stat(keyFile); err == nil {
			return certFile, keyFile, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating %s: %w", dir, err)
	}
	ca, caPair, err := certs.NewCA("edge-hub-serving-ca", servingCALifetime, now)
	if err != nil {
		return "", "", err
	}
	pair, err := ca.Issue(certs.Request{
		CommonName: "edge-hub",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Lifetime:   servingCertLifetime,
		Server:     true,
	}, now)
	if err != nil {
		return "", "", err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{filepath.Join(dir, "ca.crt"), caPair.CertPEM}, {keyFile, pair.KeyPEM}, {certFile, pair.CertPEM}} {
		if err := writeFileAtomic(f.path, f.data); err != nil {
			return "", "", err
		}
	}
	return certFile, keyFile, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
