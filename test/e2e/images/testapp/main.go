// Command testapp is the e2e testbed's workload. `testapp serve` logs a
// line naming its pod and answers HTTP on --listen with the pod's name;
// `testapp echo words...` prints its words (for kubectl exec);
// `testapp get URL [USER-AGENT]` prints what an HTTP GET of URL answers (the testbed runs
// it inside a node's network namespace). A serving testapp also answers
// /fetch?url=URL with what a GET of URL from inside its pod answers: a
// client pod the specs drive from outside it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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
