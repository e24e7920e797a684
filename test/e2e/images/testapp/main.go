// Command testapp is the e2e testbed's workload. `testapp serve` logs a
// line naming its pod and answers HTTP on --listen with the pod's name;
// `testapp echo words...` prints its words (for kubectl exec);
// `testapp get URL [USER-AGENT]` prints what an HTTP GET of URL answers (the testbed runs
// it inside a node's network namespace). A serving testapp also answers
// /fetch?url=URL with what a GET of URL from inside its pod answers: a
// client pod the specs drive from outside it; and
// /configmap?namespace=NS&name=NAME&key=KEY with the apiserver address and
// the ConfigMap's value, read with client-go's InClusterConfig as any
// in-cluster client reads.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "echo" {
		fmt.Println(strings.Join(os.Args[2:], " "))
		return
	}
	if (len(os.Args) == 3 || len(os.Args) == 4) && os.Args[1] == "get" {
		ua := ""
		if len(os.Args) == 4 {
			ua = os.Args[3]
		}
		if err := get(os.Args[2], ua); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "Address to serve HTTP on.")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	_ = fs.Parse(args)
	pod := os.Getenv("POD_NAME")
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "testapp %s\n", pod)
	})
	http.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		body, err := fetch(r.URL.Query().Get("url"), "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = w.Write(body)
	})
	http.HandleFunc("/configmap", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		host, value, err := readConfigMap(r.Context(), q.Get("namespace"), q.Get("name"), q.Get("key"))
		if err != nil {
			http.Error(w, fmt.Sprintf("host=%s: %v", host, err), http.StatusBadGateway)
			return
		}
		_, _ = fmt.Fprintf(w, "host=%s value=%s\n", host, value)
	})
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	}()
	log.Printf("testapp serving pod=%s on %s", pod, *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func get(url, userAgent string) error {
	b, err := fetch(url, userAgent)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

func fetch(url, userAgent string) ([]byte, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

var (
	clientOnce sync.Once
	clientset  *kubernetes.Clientset
	clientHost string
	clientErr  error
)

// readConfigMap reads a ConfigMap's key with one client built from
// InClusterConfig (KUBERNETES_SERVICE_HOST/PORT, the pod's token and CA).
func readConfigMap(ctx context.Context, namespace, name, key string) (host, value string, err error) {
	clientOnce.Do(func() {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			clientErr = err
			return
		}
		cfg.Timeout = 5 * time.Second
		clientHost = cfg.Host
		clientset, clientErr = kubernetes.NewForConfig(cfg)
	})
	if clientErr != nil {
		return clientHost, "", clientErr
	}
	cm, err := clientset.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return clientHost, "", err
	}
	v, ok := cm.Data[key]
	if !ok {
		return clientHost, "", fmt.Errorf("configmap %s/%s has no key %q", namespace, name, key)
	}
	return clientHost, v, nil
}
