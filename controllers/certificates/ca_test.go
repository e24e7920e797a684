package certificates_test

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/certs"
)

var _ = Describe("EnsureCA", func() {
	// Two managers starting together, each with its own client and the
	// manager's RBAC, race to create the CA: both must end up with the
	// Secret's CA, which is written once and never again.
	It("creates the CA exactly once with two concurrent creators", func(ctx SpecContext) {
		admin, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		for round := range 5 {
			By(fmt.Sprintf("racing in a fresh namespace, round %d", round+1))
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ca-race-"}}
			Expect(k8s.Create(ctx, ns)).To(Succeed())
			grantManager(ctx, ns.Name)

			list, err := admin.CoreV1().Secrets(ns.Name).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			w, err := admin.CoreV1().Secrets(ns.Name).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			Expect(err).NotTo(HaveOccurred())

			replicas := []client.Client{managerClient(), managerClient()}
			got := make([]*certs.CA, len(replicas))
			errs := make([]error, len(replicas))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, c := range replicas {
				wg.Go(func() {
					<-start
					got[i], errs[i] = certificates.EnsureCA(ctx, c, ns.Name, time.Now())
				})
			}
			close(start)
			wg.Wait()
			Expect(errs).To(HaveEach(Not(HaveOccurred())))
			Expect(got[0].Cert.Equal(got[1].Cert)).To(BeTrue(), "the replicas hold different CAs")

			stored := &corev1.Secret{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: certificates.CASecret}, stored)).To(Succeed())
			storedCA, err := certs.LoadCA(certs.KeyPair{CertPEM: stored.Data[corev1.TLSCertKey], KeyPEM: stored.Data[corev1.TLSPrivateKeyKey]})
			Expect(err).NotTo(HaveOccurred())
			Expect(storedCA.Cert.Equal(got[0].Cert)).To(BeTrue(), "the Secret holds another CA than the replicas")

			By("calling it again: the Secret is read, not written")
			again, err := certificates.EnsureCA(ctx, replicas[1], ns.Name, time.Now())
			Expect(err).NotTo(HaveOccurred())
			Expect(again.Cert.Equal(got[0].Cert)).To(BeTrue())
			after := &corev1.Secret{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(stored), after)).To(Succeed())
			Expect(after.ResourceVersion).To(Equal(stored.ResourceVersion))

			By("watching the namespace's Secrets: one ADDED, no MODIFIED")
			Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "sentinel"}})).To(Succeed())
			Expect(secretEventsUntil(w, "sentinel")).To(Equal([]string{"ADDED " + certificates.CASecret}))
		}
	})

	It("never overwrites an unusable CA Secret", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ca-broken-"}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		grantManager(ctx, ns.Name)
		broken := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: certificates.CASecret},
			Data:       map[string][]byte{corev1.TLSCertKey: []byte("garbage"), corev1.TLSPrivateKeyKey: []byte("garbage")},
		}
		Expect(k8s.Create(ctx, broken)).To(Succeed())
		_, err := certificates.EnsureCA(ctx, managerClient(), ns.Name, time.Now())
		Expect(err).To(MatchError(ContainSubstring("is unusable")))
		after := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(broken), after)).To(Succeed())
		Expect(after.ResourceVersion).To(Equal(broken.ResourceVersion))
	})
})

// managerClient is a new uncached client acting as the manager, as each
// replica would have.
func managerClient() client.Client {
	c, err := client.New(managerCf, client.Options{Scheme: clientgoscheme.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// secretEventsUntil collects "TYPE name" of Secret events until the sentinel
// Secret is added; a watch delivers events in order, so nothing written
// before the sentinel can arrive later.
func secretEventsUntil(w watch.Interface, sentinel string) []string {
	defer w.Stop()
	var events []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			Expect(ok).To(BeTrue(), "watch closed early")
			s, isSecret := ev.Object.(*corev1.Secret)
			Expect(isSecret).To(BeTrue(), "unexpected watch event %v", ev)
			if s.Name == sentinel {
				return events
			}
			events = append(events, string(ev.Type)+" "+s.Name)
		case <-timeout:
			Fail("the sentinel Secret never showed up in the watch")
		}
	}
}
