package suite

import (
	"context"
	"sync"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/testenv"
)

// Warnings keeps the warnings (admission webhooks', deprecations) that a
// client made by WarningClient receives.
type Warnings struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeaderWithContext records one warning.
func (w *Warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// Take returns and forgets the warnings seen so far.
func (w *Warnings) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

// WarningClient is an admin client of c that records the warnings it
// receives.
func WarningClient(c *testenv.Cluster) (client.Client, *Warnings) {
	w := &Warnings{}
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandlerWithContext = w
	k, err := client.New(cfg, client.Options{Scheme: c.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return k, w
}
