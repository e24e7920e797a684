package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func open(t *testing.T, path string) (*Store, OpenResult) {
	t.Helper()
	s, res, err := Open(path, time.Second, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return s, res
}

func items(t *testing.T, s *Store, key string) map[string]string {
	t.Helper()
	out := map[string]string{}
	found, err := s.Collection(key, func(m CollectionMeta, each func(func(string, []byte) error) error) error {
		out["@rv"] = m.ResourceVersion
		return each(func(k string, v []byte) error { out[k] = string(v); return nil })
	})
	if err != nil || !found {
		t.Fatalf("collection %q: found=%v err=%v", key, found, err)
	}
	return out
}

func TestCollectionsAndWatchEvents(t *testing.T) {
	s, _ := open(t, filepath.Join(t.TempDir(), "c.db"))
	defer s.Close()
	const key = "kubelet /api/v1/pods"
	if err := s.ReplaceCollection(key, CollectionMeta{Kind: "PodList", APIVersion: "v1", ResourceVersion: "10"},
		[]Item{{"ns/a", []byte(`{"a":1}`)}, {"ns/b", []byte(`{"b":1}`)}}); err != nil {
		t.Fatal(err)
	}
	err := s.ApplyChanges([]ChangeBatch{{Collection: key, ResourceVersion: "12", Changes: []Change{
		{Key: "ns/a", Value: []byte(`{"a":2}`), RV: 11},
		{Key: "ns/b", Delete: true, RV: 12},
		{Key: "ns/c", Value: []byte(`{"old":true}`), RV: 9}, // older than the list: already reflected
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got := items(t, s, key)
	want := map[string]string{"@rv": "12", "ns/a": `{"a":2}`}
	if len(got) != len(want) || got["ns/a"] != want["ns/a"] || got["@rv"] != "12" {
		t.Fatalf("got %v want %v", got, want)
	}
	kind, _, v, err := s.FindItem([]string{"kubelet /api/v1/pods"}, "ns/a")
	if err != nil || kind != "PodList" || string(v) != `{"a":2}` {
		t.Fatalf("FindItem: %s %s %v", kind, v, err)
	}
	if _, _, v, _ := s.FindItem([]string{"kubelet /api/v1/pod"}, "ns/a"); v != nil {
		t.Fatal("FindItem matched a collection by a path prefix")
	}
}

func TestJournalOrderAndSupersede(t *testing.T) {
	s, _ := open(t, filepath.Join(t.TempDir(), "j.db"))
	defer s.Close()
	add := func(method, path, sup string) {
		t.Helper()
		if _, err := s.Append(Entry{Method: method, Path: path, Supersedes: sup, Body: []byte(path)}, 3); err != nil {
			t.Fatal(err)
		}
	}
	add("PUT", "/lease", "PUT /lease")
	add("PATCH", "/node/status", "")
	add("PUT", "/lease", "PUT /lease") // replaces the first
	if d := s.JournalDepth(); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}
	add("PATCH", "/pod/status", "")
	if _, err := s.Append(Entry{Method: "PATCH", Path: "/x"}, 3); !errors.Is(err, ErrJournalFull) {
		t.Fatalf("want ErrJournalFull, got %v", err)
	}
	var order []string
	for {
		e, ok, err := s.First()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		order = append(order, e.Method+" "+e.Path)
		if err := s.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := order; len(got) != 3 || got[0] != "PATCH /node/status" || got[1] != "PUT /lease" || got[2] != "PATCH /pod/status" {
		t.Fatalf("replay order %v", got)
	}
}

func TestCorruptValueIsQuarantined(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, _ := open(t, path)
	marker := bytes.Repeat([]byte("MARKER"), 20)
	if err := s.ReplaceCollection("k /api/v1/pods", CollectionMeta{Kind: "PodList"}, []Item{{"ns/a", marker}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	raw, _ := os.ReadFile(path)
	i := bytes.Index(raw, marker)
	if i < 0 {
		t.Fatal("value not found in file")
	}
	raw[i+5] ^= 0xff // bit rot inside a value
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s, res := open(t, path)
	defer s.Close()
	if res.Quarantined == "" || res.Reason == "" {
		t.Fatalf("corrupt value not detected: %+v", res)
	}
	if _, err := os.Stat(res.Quarantined); err != nil {
		t.Fatalf("quarantined file missing: %v", err)
	}
	if found, _ := s.Collection("k /api/v1/pods", func(CollectionMeta, func(func(string, []byte) error) error) error { return nil }); found {
		t.Fatal("corrupt data still served after quarantine")
	}
}

func TestGarbageFileIsQuarantined(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, _ := open(t, path)
	_ = s.PutResponse("k /version", Response{Body: []byte("v")})
	_ = s.Close()
	raw, _ := os.ReadFile(path)
	for i := 0; i < 8192 && i < len(raw); i++ { // both meta pages
		raw[i] = byte(i * 7)
	}
	_ = os.WriteFile(path, raw, 0o600)
	s, res := open(t, path)
	defer s.Close()
	if res.Quarantined == "" {
		t.Fatal("garbage file not quarantined")
	}
	if _, found, _ := s.GetResponse("k /version"); found {
		t.Fatal("data survived from a garbage file")
	}
}

func TestInterruptedVerificationQuarantines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, _ := open(t, path)
	_ = s.Close()
	_ = os.WriteFile(path+".verifying", nil, 0o600) // as if verification had crashed
	s, res := open(t, path)
	defer s.Close()
	if res.Quarantined == "" {
		t.Fatal("a file whose verification crashed was not quarantined")
	}
}

func TestLockedFileIsAnErrorNotCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, _ := open(t, path)
	defer s.Close()
	_, res, err := Open(path, 100*time.Millisecond, logr.Discard())
	if err == nil || res.Quarantined != "" {
		t.Fatalf("second open: err=%v res=%+v; want a lock error and no quarantine", err, res)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("locked file quarantined: %v", m)
	}
}

func TestPutResponsesSkipsSameBody(t *testing.T) {
	s, _, err := Open(filepath.Join(t.TempDir(), "c.db"), time.Second, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	r := Response{ContentType: "application/json", Body: []byte(`{"a":1}`), Recorded: time.Now()}
	if n, err := s.PutResponses([]ResponseWrite{{Key: "k", Response: r, SkipSame: true}}); err != nil || n != 1 {
		t.Fatalf("first write: %d %v", n, err)
	}
	r.Recorded = r.Recorded.Add(time.Minute)
	if n, err := s.PutResponses([]ResponseWrite{{Key: "k", Response: r, SkipSame: true}}); err != nil || n != 0 {
		t.Fatalf("same body: %d %v, want skipped", n, err)
	}
	r.Body = []byte(`{"a":2}`)
	if n, err := s.PutResponses([]ResponseWrite{{Key: "k", Response: r, SkipSame: true}, {Key: "k2", Response: r}}); err != nil || n != 2 {
		t.Fatalf("changed body: %d %v", n, err)
	}
	got, found, err := s.GetResponse("k")
	if err != nil || !found || string(got.Body) != `{"a":2}` {
		t.Fatalf("stored %q %v %v", got.Body, found, err)
	}
}
