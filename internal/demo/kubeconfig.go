package demo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ContextName names the cluster, user and context in the kubeconfig.
const ContextName = "edgeunit-demo"

// writeKubeconfig provisions an admin user (system:masters) with its own
// client certificate and writes a kubeconfig for it, readable only by the
// user.
func (d *Demo) writeKubeconfig() error {
	user, err := d.env.AddUser(envtest.User{Name: "edgeunit-demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("provisioning the admin user: %w", err)
	}
	raw, err := kubeconfigFor(user.Config())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(d.Kubeconfig), 0o700); err != nil {
		return fmt.Errorf("creating the kubeconfig's directory (pass --kubeconfig-out): %w", err)
	}
	// Write and rename, so a kubectl reading the file never sees half of it.
	tmp, err := os.CreateTemp(filepath.Dir(d.Kubeconfig), ".kubeconfig-*")
	if err != nil {
		return fmt.Errorf("writing the kubeconfig (pass --kubeconfig-out): %w", err)
	}
	_, werr := tmp.Write(raw)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	if err := os.Rename(tmp.Name(), d.Kubeconfig); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	d.kubeconfig = raw
	return nil
}

// kubeconfigFor renders a rest config as a kubeconfig with one context.
func kubeconfigFor(cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[ContextName] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[ContextName] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts[ContextName] = &clientcmdapi.Context{Cluster: ContextName, AuthInfo: ContextName}
	kc.CurrentContext = ContextName
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("encoding the kubeconfig: %w", err)
	}
	return raw, nil
}

// removeKubeconfig removes the kubeconfig unless another demo has since
// written its own there.
func (d *Demo) removeKubeconfig() error {
	if d.kubeconfig == nil {
		return nil
	}
	cur, err := os.ReadFile(d.Kubeconfig)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, d.kubeconfig) {
		return nil
	}
	return os.Remove(d.Kubeconfig)
}
