package hub_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// BenchmarkInCluster measures what a pod using InClusterConfig pays for
// going through its node's hub: a ConfigMap GET with the pod's token, from
// inside the node's network namespace, through the hub's in-cluster TLS
// listener against straight to kube-apiserver over the node's link (the
// baseline, measured in the same run, alternating), and the same GET with
// the apiserver gone, from the hub's cache.
func BenchmarkInCluster(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nsn := netnstest.New(b, "eu-icb")
	link := nsn.Link(b)
	cp := hubtest.StartControlPlaneWith(b, hubtest.ControlPlaneOptions{BindAddress: link.HostIP})
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("incluster-bench")))
	go hubtest.SignKubeletServing(ctx, b, admin, cp.CA)

	readerToken := hubtest.SeedInClusterReader(ctx, b, admin)("reader")

	addr := net.JoinHostPort("169.254.31.1", strconv.Itoa(hubtest.FreePort(b)))
	hubtest.StartHubWith(b, cp, cp.URL(), "edge-1", hubtest.HubOptions{
		NetNS: nsn.Name, AdminHost: link.NSIP, Args: []string{"--v=0", "--listen-in-cluster=" + addr},
	})
	// What InClusterConfig builds, from inside the node: the pod's token
	// and the cluster CA, to the apiserver or to the hub's address.
	client := func(host string) kubernetes.Interface {
		return must(kubernetes.NewForConfig(&rest.Config{Host: host, BearerToken: readerToken, QPS: -1,
			TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile}, Dial: nsn.DialContext}))
	}
	direct, through := client(cp.URL()), client("https://"+addr)
	get := func(c kubernetes.Interface) func() error {
		return func() error {
			cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{})
			if err == nil && cm.Data["k"] != "from the cloud" {
				err = fmt.Errorf("configmap %v", cm.Data)
			}
			return err
		}
	}
	if err := hubtest.WaitFor(time.Minute, 200*time.Millisecond, get(through)); err != nil {
		b.Fatalf("the in-cluster listener does not serve: %v", err)
	}

	var rows []row
	report := func(r row) {
		rows = append(rows, r)
		b.ReportMetric(r.value, r.unit)
	}
	b.ResetTimer()
	d, h := must3(pair(20, 1000, false, get(direct), get(through)))
	ratioRows(report, "in-cluster GET", d, h)

	cp.KillAPIServer()
	if err := hubtest.WaitFor(30*time.Second, 100*time.Millisecond, get(through)); err != nil {
		b.Fatalf("offline, the hub does not answer the pod: %v", err)
	}
	offline, _ := must3(pair(20, 1000, false, get(through), func() error { return nil }))
	report(row{"in-cluster GET offline p50", "incluster-offline-p50-ms", ms(offline.pct(0.5)), "", "from the hub's cache"})
	report(row{"in-cluster GET offline p99", "incluster-offline-p99-ms", ms(offline.pct(0.99)), "", ""})
	report(row{"offline / online direct p50", "incluster-offline-over-direct", ms(offline.pct(0.5)) / ms(d.pct(0.5)), "<= 1.0", verdict(ms(offline.pct(0.5))/ms(d.pct(0.5)), 1.0)})
	b.StopTimer()

	fmt.Printf("\n%-48s %10s   %-10s %s\n", "edge-hub in-cluster benchmark", "value", "target", "note")
	for _, r := range rows {
		fmt.Printf("%-48s %10.2f   %-10s %s\n", r.name, r.value, r.target, r.note)
	}
}
