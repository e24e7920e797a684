package netbind

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Bindings are this node's entry of its EdgeUnit's status.bindings.
type Bindings struct {
	// Unit and Node say whose bindings these are: a copy written for
	// another node or unit (a moved node) is not used.
	Unit string `json:"unit"`
	Node string `json:"node"`
	// VTEPMAC is the MAC bound to the node's VXLAN device ("" = none).
	VTEPMAC string `json:"vtepMAC,omitempty"`
	VTEPIP  string `json:"vtepIP,omitempty"`
	// Pods maps "namespace/name" to the bound IP.
	Pods map[string]string `json:"pods,omitempty"`
	// ResourceVersion of the EdgeUnit they were read from.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Synced is when they were last confirmed by the apiserver.
	Synced time.Time `json:"synced,omitzero"`
	// AnnotationPending is set while the node's flannel annotation has
	// not been confirmed to carry VTEPMAC: it survives a restart, so a
	// node rebooted offline still fixes the annotation on reconnect.
	AnnotationPending bool `json:"annotationPending,omitempty"`
}

// Equal compares the binding data (not the bookkeeping fields).
func (b Bindings) Equal(o Bindings) bool {
	return b.Unit == o.Unit && b.Node == o.Node && b.VTEPMAC == o.VTEPMAC && b.VTEPIP == o.VTEPIP && maps.Equal(b.Pods, o.Pods)
}

// stateFile is the on-disk form: the payload and its checksum, so a torn
// or corrupted file is recognised rather than trusted.
type stateFile struct {
	Version  int             `json:"version"`
	SHA256   string          `json:"sha256"`
	Bindings json.RawMessage `json:"bindings"`
}

const stateVersion = 1

// Store is the durable copy of the bindings: readers get the current value
// from memory; every change is written to disk atomically before it is
// visible.
type Store struct {
	path string

	mu      sync.RWMutex
	cur     Bindings
	changed chan struct{} // closed and replaced on every change
}

// OpenStore loads path. A missing file is an empty copy; a corrupt one is
// renamed aside (path.corrupt) and reported, and the copy starts empty.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, changed: make(chan struct{})}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading bindings %s: %w", path, err)
	}
	b, perr := decodeState(raw)
	if perr != nil {
		_ = os.Rename(path, path+".corrupt")
		return s, fmt.Errorf("bindings %s are corrupt, moved aside: %w", path, perr)
	}
	s.cur = b
	return s, nil
}

func decodeState(raw []byte) (Bindings, error) {
	var f stateFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return Bindings{}, err
	}
	if f.Version != stateVersion {
		return Bindings{}, fmt.Errorf("unknown version %d", f.Version)
	}
	sum := sha256.Sum256(f.Bindings)
	if hex.EncodeToString(sum[:]) != f.SHA256 {
		return Bindings{}, errors.New("checksum mismatch")
	}
	var b Bindings
	if err := json.Unmarshal(f.Bindings, &b); err != nil {
		return Bindings{}, err
	}
	return b, nil
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Get returns the current bindings. The Pods map must not be modified.
func (s *Store) Get() Bindings {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

// Changed is closed at the next change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Update applies fn to a copy of the bindings and, when anything changed,
// writes the result durably and publishes it.
func (s *Store) Update(fn func(*Bindings)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cur
	next.Pods = maps.Clone(s.cur.Pods)
	fn(&next)
	if next.Equal(s.cur) && next.ResourceVersion == s.cur.ResourceVersion && next.AnnotationPending == s.cur.AnnotationPending && next.Synced.Equal(s.cur.Synced) {
		return nil
	}
	if err := s.write(next); err != nil {
		return err
	}
	s.cur = next
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// write replaces the file atomically: temp file, fsync, rename, fsync of
// the directory, so a crash leaves either the old or the new copy.
func (s *Store) write(b Bindings) error {
	payload, err := json.Marshal(b)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(payload)
	raw, err := json.Marshal(stateFile{Version: stateVersion, SHA256: hex.EncodeToString(sum[:]), Bindings: payload})
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing bindings: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing bindings: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(raw); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing bindings: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing bindings: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing bindings: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("writing bindings: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
