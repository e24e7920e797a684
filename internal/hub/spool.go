package hub

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
)

// Response bodies on their way to the recorder are held in pooled
// fixed-size chunks rather than one growing buffer: no doubling copies, no
// per-request allocation of big buffers, and the memory goes back to the
// pool once the recorder is done with it.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errOverBudget stops spooling a body the recorder has no room for.
var errOverBudget = errors.New("edge-hub: recording budget exhausted")

// spool collects a body (as the apiserver sent it, possibly gzip-encoded)
// while it streams to the client, with a running CRC-32C of those bytes.
// Its chunks are charged to a shared byte budget until released.
type spool struct {
	chunks   []*[chunkSize]byte
	n        int
	crc      uint32
	gzip     bool
	budget   *atomic.Int64
	limit    int64
	reserved int64
}

func newSpool(budget *atomic.Int64, limit int64, gzipped bool) *spool {
	return &spool{budget: budget, limit: limit, gzip: gzipped}
}

// Write appends p, taking chunks from the pool and charging the budget.
func (s *spool) Write(p []byte) (int, error) {
	s.crc = crc32.Update(s.crc, castagnoli, p)
	written := 0
	for len(p) > 0 {
		off := s.n % chunkSize
		if off == 0 && s.n/chunkSize == len(s.chunks) {
			if s.budget != nil {
				if s.budget.Add(chunkSize) > s.limit {
					s.budget.Add(-chunkSize)
					return written, errOverBudget
				}
				s.reserved += chunkSize
			}
			s.chunks = append(s.chunks, chunkPool.Get().(*[chunkSize]byte))
		}
		c := copy(s.chunks[len(s.chunks)-1][off:], p)
		s.n += c
		written += c
		p = p[c:]
	}
	return written, nil
}

// charge puts the bytes held, and those written from now on, on budget;
// false (and nothing charged) when it has no room for them.
func (s *spool) charge(budget *atomic.Int64, limit int64) bool {
	held := int64(len(s.chunks)) * chunkSize
	if budget.Add(held) > limit {
		budget.Add(-held)
		return false
	}
	s.budget, s.limit, s.reserved = budget, limit, held
	return true
}

// Len is the number of bytes held.
func (s *spool) Len() int { return s.n }

// release returns the chunks to the pool and the bytes to the budget.
func (s *spool) release() {
	if s == nil {
		return
	}
	for i, c := range s.chunks {
		chunkPool.Put(c)
		s.chunks[i] = nil
	}
	s.chunks, s.n = nil, 0
	if s.budget != nil && s.reserved > 0 {
		s.budget.Add(-s.reserved)
		s.reserved = 0
	}
}

// writeTo writes the held bytes, as sent, to w.
func (s *spool) writeTo(w io.Writer) error {
	rest := s.n
	for _, c := range s.chunks {
		k := min(rest, chunkSize)
		if _, err := w.Write(c[:k]); err != nil {
			return err
		}
		rest -= k
	}
	return nil
}

// reader reads the held bytes (as sent: possibly gzip-encoded).
func (s *spool) reader() io.Reader { return &spoolReader{s: s} }

type spoolReader struct {
	s   *spool
	off int
}

func (r *spoolReader) Read(p []byte) (int, error) {
	if r.off >= r.s.n {
		return 0, io.EOF
	}
	c := r.s.chunks[r.off/chunkSize]
	end := min(chunkSize, r.s.n-(r.off/chunkSize)*chunkSize)
	k := copy(p, c[r.off%chunkSize:end])
	r.off += k
	return k, nil
}

// bytesTo copies the held bytes, as sent, into dst[:0] (grown as needed).
func (s *spool) bytesTo(dst []byte) []byte {
	if cap(dst) < s.n {
		dst = make([]byte, 0, s.n)
	}
	dst = dst[:0]
	rest := s.n
	for _, c := range s.chunks {
		k := min(rest, chunkSize)
		dst = append(dst, c[:k]...)
		rest -= k
	}
	return dst
}

// gzipSize is the uncompressed size a gzip trailer announces (mod 4 GiB),
// a capacity hint for decoding.
func (s *spool) gzipSize() int {
	if s.n < 18 {
		return 0
	}
	var tail [4]byte
	for i := range 4 {
		off := s.n - 4 + i
		tail[i] = s.chunks[off/chunkSize][off%chunkSize]
	}
	return int(binary.LittleEndian.Uint32(tail[:]))
}

// decoded returns the body's identity bytes in dst[:0]: decompressed when it
// was sent gzip-encoded. zr is reused between calls (may be nil).
func (s *spool) decoded(dst []byte, zr **gzip.Reader, max int) ([]byte, error) {
	if !s.gzip {
		return s.bytesTo(dst), nil
	}
	var err error
	if *zr == nil {
		*zr, err = gzip.NewReader(s.reader())
	} else {
		err = (*zr).Reset(s.reader())
	}
	if err != nil {
		return dst[:0], err
	}
	hint := s.gzipSize()
	if hint <= 0 || hint > max {
		hint = 4 * s.n
	}
	if cap(dst) < hint {
		dst = make([]byte, 0, hint+512)
	}
	dst = dst[:0]
	for {
		if len(dst) == cap(dst) {
			if len(dst) >= max {
				return dst[:0], errors.New("edge-hub: decoded body too large to record")
			}
			dst = append(dst, 0)[:len(dst)]
		}
		k, err := (*zr).Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+k]
		if errors.Is(err, io.EOF) {
			return dst, nil
		}
		if err != nil {
			return dst[:0], err
		}
	}
}
