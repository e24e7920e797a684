// Package store is the hub's durable cache: a bbolt file holding recorded API
// responses, per-client object collections and the journal of writes made
// while the cloud link was down.
//
// Crash safety comes from bbolt: every change is one copy-on-write
// transaction whose meta page is written last and checksummed, so a kill -9
// leaves either the old or the new state, never a mix. On top of that every
// value carries a CRC-32C of its payload, so bit rot or a tampered file is
// detected when the file is opened (and again when a value is read): such a
// file is renamed aside (quarantined) and a fresh one is created, and a bad
// value is never served.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	bolt "go.etcd.io/bbolt"
)

// Schema identifies the layout; a file with another schema is rebuilt.
const Schema = "edgeunit-hub/v1"

var (
	bucketMeta        = []byte("meta")
	bucketCollections = []byte("collections")
	bucketResponses   = []byte("responses")
	bucketJournal     = []byte("journal")
	bucketJournalIdx  = []byte("journal-index")
	keySchema         = []byte("schema")
	keyCollectionMeta = []byte("\x00meta")

	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// ErrCorrupt reports a value whose checksum does not match.
var ErrCorrupt = errors.New("store: checksum mismatch")

// KeepQuarantined is how many quarantined files are kept for inspection.
const KeepQuarantined = 3

// Store is an open cache file.
type Store struct {
	db   *bolt.DB
	path string
}

// OpenResult tells what Open found.
type OpenResult struct {
	// Quarantined is the path the previous file was moved to, if it was bad.
	Quarantined string
	// Reason says why it was quarantined.
	Reason string
	// Verified is how many values were checked.
	Verified int
}

// Open opens (or creates) the store at path, verifying the whole file first.
// A file that fails verification is quarantined and replaced by an empty one.
// A file locked by another process is an error, not corruption.
func Open(path string, lockTimeout time.Duration, log logr.Logger) (*Store, OpenResult, error) {
	var res OpenResult
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, res, fmt.Errorf("creating store directory: %w", err)
	}
	marker := path + ".verifying"
	reason := ""
	if _, err := os.Stat(marker); err == nil {
		// The previous verification never finished: it crashed on this file.
		reason = "previous verification did not complete"
	}
	if reason == "" {
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			return nil, res, fmt.Errorf("writing verification marker: %w", err)
		}
		db, n, err := openVerified(path, lockTimeout)
		if errors.Is(err, errLocked) {
			_ = os.Remove(marker)
			return nil, res, err
		}
		res.Verified = n
		if err == nil {
			_ = os.Remove(marker)
			return &Store{db: db, path: path}, res, nil
		}
		reason = err.Error()
	}
	q, err := quarantine(path)
	if err != nil {
		return nil, res, err
	}
	_ = os.Remove(marker)
	res.Quarantined, res.Reason = q, reason
	log.Info("Store failed verification, quarantined it and starting empty", "path", path, "quarantinedAs", q, "reason", reason)
	db, _, err := openVerified(path, lockTimeout)
	if err != nil {
		return nil, res, fmt.Errorf("creating fresh store after quarantine: %w", err)
	}
	return &Store{db: db, path: path}, res, nil
}

var errLocked = errors.New("store: file is locked by another process")

func openVerified(path string, lockTimeout time.Duration) (db *bolt.DB, n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fmt.Errorf("store: panic while opening: %v", p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, 0, fmt.Errorf("%w: %s", errLocked, path)
		}
		return nil, 0, fmt.Errorf("opening bbolt file: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		if mb == nil {
			if tx.Bucket(bucketCollections) != nil || tx.Bucket(bucketResponses) != nil || tx.Bucket(bucketJournal) != nil {
				return errors.New("data buckets without a schema record")
			}
			for _, name := range [][]byte{bucketMeta, bucketCollections, bucketResponses, bucketJournal, bucketJournalIdx} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, encode([]byte(Schema)))
		}
		return nil
	})
	if err == nil {
		n, err = verify(db)
	}
	if err != nil {
		_ = db.Close()
		return nil, n, err
	}
	return db, n, nil
}

// verify walks every value checking its checksum, then runs bbolt's own
// page-level consistency check.
func verify(db *bolt.DB) (int, error) {
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		if mb == nil {
			return errors.New("meta bucket missing")
		}
		schema, err := decode(mb.Get(keySchema))
		if err != nil {
			return fmt.Errorf("schema record: %w", err)
		}
		if string(schema) != Schema {
			return fmt.Errorf("schema %q, want %q", schema, Schema)
		}
		for _, name := range [][]byte{bucketCollections, bucketResponses, bucketJournal, bucketJournalIdx} {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
			c, err := verifyBucket(b, string(name))
			n += c
			if err != nil {
				return err
			}
		}
		for err := range tx.Check() {
			return fmt.Errorf("bbolt consistency check: %w", err)
		}
		return nil
	})
	return n, err
}

func verifyBucket(b *bolt.Bucket, path string) (int, error) {
	n := 0
	err := b.ForEach(func(k, v []byte) error {
		if v == nil {
			nb := b.Bucket(k)
			if nb == nil {
				return fmt.Errorf("%s/%q: not a value nor a bucket", path, k)
			}
			c, err := verifyBucket(nb, path+"/"+string(k))
			n += c
			return err
		}
		n++
		if _, err := decode(v); err != nil {
			return fmt.Errorf("%s/%q: %w", path, k, err)
		}
		return nil
	})
	return n, err
}

func quarantine(path string) (string, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	q := fmt.Sprintf("%s.corrupt-%d", path, time.Now().UnixNano())
	if err := os.Rename(path, q); err != nil {
		return "", fmt.Errorf("quarantining %s: %w", path, err)
	}
	old, _ := filepath.Glob(path + ".corrupt-*")
	sort.Strings(old)
	for len(old) > KeepQuarantined {
		_ = os.Remove(old[0])
		old = old[1:]
	}
	return q, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// SizeBytes is the file's size.
func (s *Store) SizeBytes() int64 {
	var n int64
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// encode frames payload as CRC-32C (big endian) followed by the payload.
func encode(payload []byte) []byte {
	out := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(out, crc32.Checksum(payload, castagnoli))
	copy(out[4:], payload)
	return out
}

// decode checks a framed value and returns its payload (aliasing v).
func decode(v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, ErrCorrupt
	}
	if binary.BigEndian.Uint32(v) != crc32.Checksum(v[4:], castagnoli) {
		return nil, ErrCorrupt
	}
	return v[4:], nil
}

// ItemsHash is the checksum the hub keeps of a collection's list items, to
// skip rewriting a collection when a new LIST returned the same objects.
func ItemsHash(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// CollectionMeta describes a recorded collection (a LIST or WATCH target).
type CollectionMeta struct {
	Kind            string    `json:"kind"`
	APIVersion      string    `json:"apiVersion"`
	ResourceVersion string    `json:"resourceVersion"`
	ItemsHash       uint32    `json:"itemsHash,omitempty"`
	Updated         time.Time `json:"updated"`
	Items           int       `json:"items"`
}

// Item is one object of a collection.
type Item struct {
	Key   string
	Value []byte
}

// ReplaceCollection replaces the collection at key with items, in one
// transaction.
func (s *Store) ReplaceCollection(key string, meta CollectionMeta, items []Item) error {
	meta.Items = len(items)
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketCollections)
		if root.Bucket([]byte(key)) != nil {
			if err := root.DeleteBucket([]byte(key)); err != nil {
				return err
			}
		}
		b, err := root.CreateBucket([]byte(key))
		if err != nil {
			return err
		}
		b.FillPercent = 0.9
		for _, it := range items {
			if err := b.Put([]byte(it.Key), encode(it.Value)); err != nil {
				return err
			}
		}
		return putMeta(b, meta)
	})
}

// TouchCollection records a new resourceVersion for an unchanged collection.
func (s *Store) TouchCollection(key, rv string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCollections).Bucket([]byte(key))
		if b == nil {
			return nil
		}
		m, err := getMeta(b)
		if err != nil {
			return err
		}
		m.ResourceVersion, m.Updated = rv, time.Now()
		return putMeta(b, m)
	})
}

func putMeta(b *bolt.Bucket, m CollectionMeta) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(keyCollectionMeta, encode(raw))
}

func getMeta(b *bolt.Bucket) (CollectionMeta, error) {
	var m CollectionMeta
	p, err := decode(b.Get(keyCollectionMeta))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(p, &m)
}

// Change is one watch event applied to a collection.
type Change struct {
	Delete bool
	Key    string
	Value  []byte
	// RV is the object's resourceVersion as a number (0: unknown). A change
	// not newer than the collection's resourceVersion is already reflected
	// (a LIST recorded after it was queued) and is skipped.
	RV uint64
}

// ParseRV reads a resourceVersion as a number; 0 when it is not one.
func ParseRV(rv string) uint64 {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ApplyChanges applies watch events to several collections in one
// transaction. kind/apiVersion seed a collection that does not exist yet.
// A collection's items hash is cleared: its content no longer matches any
// LIST response.
func (s *Store) ApplyChanges(batches []ChangeBatch) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketCollections)
		for _, cb := range batches {
			b, err := root.CreateBucketIfNotExists([]byte(cb.Collection))
			if err != nil {
				return err
			}
			m := CollectionMeta{Kind: cb.Kind, APIVersion: cb.APIVersion}
			if b.Get(keyCollectionMeta) != nil {
				if m, err = getMeta(b); err != nil {
					return err
				}
			}
			cur := ParseRV(m.ResourceVersion)
			for _, c := range cb.Changes {
				if c.RV != 0 && cur != 0 && c.RV <= cur {
					continue
				}
				if c.Delete {
					if b.Get([]byte(c.Key)) != nil {
						m.Items--
					}
					if err := b.Delete([]byte(c.Key)); err != nil {
						return err
					}
					continue
				}
				if b.Get([]byte(c.Key)) == nil {
					m.Items++
				}
				if err := b.Put([]byte(c.Key), encode(c.Value)); err != nil {
					return err
				}
			}
			if rv := ParseRV(cb.ResourceVersion); cb.ResourceVersion != "" && (rv == 0 || cur == 0 || rv > cur) {
				m.ResourceVersion = cb.ResourceVersion
			}
			if len(cb.Changes) > 0 {
				m.ItemsHash = 0
			}
			m.Updated = time.Now()
			if err := putMeta(b, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// ChangeBatch is a run of changes to one collection.
type ChangeBatch struct {
	Collection      string
	Kind            string
	APIVersion      string
	ResourceVersion string
	Changes         []Change
}

// Collection reads a collection: fn gets its meta and an iterator over its
// items (values verified, valid only inside fn). found is false when the
// collection was never recorded.
func (s *Store) Collection(key string, fn func(m CollectionMeta, each func(yield func(k string, v []byte) error) error) error) (found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCollections).Bucket([]byte(key))
		if b == nil || b.Get(keyCollectionMeta) == nil {
			return nil
		}
		found = true
		m, err := getMeta(b)
		if err != nil {
			return fmt.Errorf("collection %q meta: %w", key, err)
		}
		return fn(m, func(yield func(string, []byte) error) error {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if bytes.Equal(k, keyCollectionMeta) || v == nil {
					continue
				}
				p, err := decode(v)
				if err != nil {
					return fmt.Errorf("collection %q item %q: %w", key, k, err)
				}
				if err := yield(string(k), p); err != nil {
					return err
				}
			}
			return nil
		})
	})
	return found, err
}

// CollectionMetaOf returns a collection's meta.
func (s *Store) CollectionMetaOf(key string) (m CollectionMeta, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCollections).Bucket([]byte(key))
		if b == nil || b.Get(keyCollectionMeta) == nil {
			return nil
		}
		found = true
		m, err = getMeta(b)
		return err
	})
	return m, found, err
}

// inCollection says whether collection key k is path p or p with
// selectors.
func inCollection(k []byte, p string) bool {
	return string(k) == p || (len(k) > len(p) && k[len(p)] == '?' && string(k[:len(p)]) == p)
}

// FindItem looks for objKey in the collections at paths (any selectors), returning a copy of the first value found.
func (s *Store) FindItem(prefixes []string, objKey string) (kind, apiVersion string, value []byte, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCollections).Cursor()
		for _, p := range prefixes {
			for k, v := c.Seek([]byte(p)); k != nil && strings.HasPrefix(string(k), p); k, v = c.Next() {
				if v != nil || !inCollection(k, p) {
					continue
				}
				b := tx.Bucket(bucketCollections).Bucket(k)
				raw := b.Get([]byte(objKey))
				if raw == nil {
					continue
				}
				payload, err := decode(raw)
				if err != nil {
					return fmt.Errorf("collection %q item %q: %w", k, objKey, err)
				}
				m, err := getMeta(b)
				if err != nil {
					return err
				}
				value = append([]byte(nil), payload...)
				kind, apiVersion = m.Kind, m.APIVersion
				return nil
			}
		}
		return nil
	})
	return kind, apiVersion, value, err
}

// UpdateItem replaces objKey in every collection under prefixes that
// already holds it (a local write made offline), and returns how many.
func (s *Store) UpdateItem(prefixes []string, objKey string, value []byte) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = updateItem(tx, prefixes, objKey, value)
		return err
	})
	return n, err
}

func updateItem(tx *bolt.Tx, prefixes []string, objKey string, value []byte) (int, error) {
	n := 0
	root := tx.Bucket(bucketCollections)
	var keys [][]byte
	c := root.Cursor()
	for _, p := range prefixes {
		for k, v := c.Seek([]byte(p)); k != nil && strings.HasPrefix(string(k), p); k, v = c.Next() {
			if v == nil && inCollection(k, p) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
	}
	for _, k := range keys {
		b := root.Bucket(k)
		if b.Get([]byte(objKey)) == nil {
			continue
		}
		m, err := getMeta(b)
		if err != nil {
			continue // corrupt: dropped when next read, never served
		}
		if err := b.Put([]byte(objKey), encode(value)); err != nil {
			return n, err
		}
		m.ItemsHash = 0
		if err := putMeta(b, m); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DropCollection removes a collection (after a checksum failure).
func (s *Store) DropCollection(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketCollections).DeleteBucket([]byte(key))
		if errors.Is(err, bolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// Response is a recorded answer to a GET of one object or a non-resource
// path.
type Response struct {
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	Recorded    time.Time `json:"recorded"`
}

// PutResponse records a response.
func (s *Store) PutResponse(key string, r Response) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketResponses).Put([]byte(key), encode(raw))
	})
}

// ResponseWrite is one response for PutResponses.
type ResponseWrite struct {
	Key      string
	Response Response
	// Prefixes/ObjKey: also replace the object in those collections that
	// hold it (see UpdateItem).
	Prefixes []string
	ObjKey   string
	// SkipSame leaves a stored response with the same content type and
	// body as it is.
	SkipSame bool
}

// errNothingWritten rolls back a transaction that changed nothing, which
// then costs no disk write.
var errNothingWritten = errors.New("store: nothing written")

// PutResponses records several responses in one transaction (in order) and
// returns how many it wrote.
func (s *Store) PutResponses(ws []ResponseWrite) (written int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResponses)
		for _, w := range ws {
			raw, err := json.Marshal(w.Response)
			if err != nil {
				return err
			}
			if w.SkipSame && sameResponse(b.Get([]byte(w.Key)), raw) {
				continue
			}
			if err := b.Put([]byte(w.Key), encode(raw)); err != nil {
				return err
			}
			written++
			if w.ObjKey != "" {
				if _, err := updateItem(tx, w.Prefixes, w.ObjKey, w.Response.Body); err != nil {
					return err
				}
			}
		}
		if written == 0 {
			return errNothingWritten
		}
		return nil
	})
	if errors.Is(err, errNothingWritten) {
		err = nil
	}
	if err != nil {
		written = 0
	}
	return written, err
}

// sameResponse compares a stored response with raw, r's encoding, up to
// the recording time: same content type and body.
func sameResponse(stored, raw []byte) bool {
	if stored == nil {
		return false
	}
	p, err := decode(stored)
	if err != nil {
		return false
	}
	i := bytes.LastIndex(raw, []byte(`,"recorded":`))
	return i > 0 && len(p) > i && bytes.Equal(p[:i+len(`,"recorded":`)], raw[:i+len(`,"recorded":`)])
}

// GetResponse reads a recorded response.
func (s *Store) GetResponse(key string) (r Response, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketResponses).Get([]byte(key))
		if v == nil {
			return nil
		}
		p, err := decode(v)
		if err != nil {
			return fmt.Errorf("response %q: %w", key, err)
		}
		found = true
		return json.Unmarshal(p, &r)
	})
	return r, found, err
}

// DropResponse removes a recorded response.
func (s *Store) DropResponse(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketResponses).Delete([]byte(key)) })
}

// Entry is a journaled write.
type Entry struct {
	Seq         uint64    `json:"seq"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	RawQuery    string    `json:"rawQuery,omitempty"`
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	Client      string    `json:"client"`
	UserAgent   string    `json:"userAgent,omitempty"`
	Time        time.Time `json:"time"`
	// Supersedes, when set, names the object a full replacement (PUT)
	// writes: appending it drops any earlier entry with the same value,
	// whose content it replaces.
	Supersedes string `json:"supersedes,omitempty"`
}

// ErrJournalFull is returned when the journal holds max entries.
var ErrJournalFull = errors.New("store: journal full")

// Append journals e durably, dropping an earlier entry it supersedes, and
// returns the journal depth.
func (s *Store) Append(e Entry, max int) (int, error) {
	depth := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		j, idx := tx.Bucket(bucketJournal), tx.Bucket(bucketJournalIdx)
		if e.Supersedes != "" {
			if v := idx.Get([]byte(e.Supersedes)); v != nil {
				p, err := decode(v)
				if err != nil {
					return fmt.Errorf("journal index: %w", err)
				}
				if err := j.Delete(p); err != nil {
					return err
				}
			}
		}
		if max > 0 && countKeys(j) >= max {
			return ErrJournalFull
		}
		seq, err := j.NextSequence()
		if err != nil {
			return err
		}
		e.Seq = seq
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		k := seqKey(seq)
		if err := j.Put(k, encode(raw)); err != nil {
			return err
		}
		if e.Supersedes != "" {
			if err := idx.Put([]byte(e.Supersedes), encode(k)); err != nil {
				return err
			}
		}
		depth = countKeys(j)
		return nil
	})
	return depth, err
}

// First returns the oldest journal entry.
func (s *Store) First() (e Entry, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketJournal).Cursor().First()
		if k == nil {
			return nil
		}
		p, err := decode(v)
		if err != nil {
			return fmt.Errorf("journal entry %x: %w", k, err)
		}
		ok = true
		return json.Unmarshal(p, &e)
	})
	return e, ok, err
}

// Remove deletes a replayed entry.
func (s *Store) Remove(e Entry) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		k := seqKey(e.Seq)
		if e.Supersedes != "" {
			idx := tx.Bucket(bucketJournalIdx)
			if v := idx.Get([]byte(e.Supersedes)); v != nil {
				if p, err := decode(v); err != nil || bytes.Equal(p, k) {
					if err := idx.Delete([]byte(e.Supersedes)); err != nil {
						return err
					}
				}
			}
		}
		return tx.Bucket(bucketJournal).Delete(k)
	})
}

// JournalDepth is the number of journaled writes.
func (s *Store) JournalDepth() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error { n = countKeys(tx.Bucket(bucketJournal)); return nil })
	return n
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
