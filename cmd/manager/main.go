// Command manager runs the edgeunit controllers and webhooks.
package main

import (
	"flag"
	"os"
	"runtime/debug"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/edgeunit/edgeunit/controllers"
)

// defaultGCPercent is the manager's GOGC. Its heap is mostly the informer
// caches, which live as long as the process: with Go's default of 100 the
// heap grows to twice that before a collection. At 10,000 nodes (test/bench/
// edgeunit) 50 takes the peak RSS from about 180 MiB to about 133 MiB for
// little more CPU.
const defaultGCPercent = 50

func main() {
	var o controllers.Options
	var qps float64
	var gcPercent int
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	flag.BoolVar(&o.EnableWebhooks, "enable-webhooks", true, "Serve the admission webhooks.")
	flag.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port of the webhook server.")
	flag.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding tls.crt and tls.key for the webhook server.")
	flag.BoolVar(&o.ProvisionWebhookCert, "provision-webhook-cert", true, "Keep the webhook serving certificate in a Secret and inject its CA (turn off under OLM or cert-manager).")
	flag.StringVar(&o.Namespace, "namespace", envOr("POD_NAMESPACE", controllers.DefaultNamespace), "Namespace the manager runs in and keeps its children in (default $POD_NAMESPACE).")
	flag.StringVar(&o.NodeAPIServerURL, "node-apiserver-url", "", "kube-apiserver's URL as edge nodes reach it (default: each node's kubelet kubeconfig server).")
	flag.StringVar(&o.Image, "image", controllers.DefaultImage, "Default image of the edge hub, tunnel agent and tunnel server.")
	flag.BoolVar(&o.LeaderElection, "leader-elect", false, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (in-cluster: the pod's).")
	flag.Float64Var(&qps, "kube-api-qps", controllers.DefaultQPS, "Queries per second to kube-apiserver.")
	flag.IntVar(&o.Burst, "kube-api-burst", controllers.DefaultBurst, "Burst of queries to kube-apiserver.")
	flag.IntVar(&o.Concurrency, "concurrency", controllers.DefaultConcurrency, "Workers per controller.")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "", "Address to serve net/http/pprof on, for profiling; empty disables it.")
	flag.IntVar(&gcPercent, "gc-percent", defaultGCPercent, "Go garbage collection target percentage, as GOGC (which wins when set): lower keeps the manager's peak memory down for a little more CPU.")
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	o.QPS = float32(qps)

	logger := zap.New(zap.UseFlagOptions(&zopts))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	log := ctrl.Log.WithName("setup")
	if gcPercent < 1 {
		log.Error(nil, "--gc-percent must be at least 1 (GOGC=off turns collection off)", "gc-percent", gcPercent)
		os.Exit(2)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}

	ctx := ctrl.SetupSignalHandler()
	mgr, err := controllers.NewManager(ctx, ctrl.GetConfigOrDie(), o)
	if err != nil {
		log.Error(err, "Setting up the manager")
		os.Exit(1)
	}
	log.Info("Starting manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Running the manager")
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
