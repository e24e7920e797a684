package hub

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
)

func TestSpoolRoundTripsAndCharges(t *testing.T) {
	data := make([]byte, 3*chunkSize+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	var budget atomic.Int64
	sp := newSpool(nil, 0, false)
	_, _ = sp.Write(data[:1000])
	if !sp.charge(&budget, 10*chunkSize) || budget.Load() != chunkSize {
		t.Fatalf("charge: budget %d", budget.Load())
	}
	for off := 1000; off < len(data); off += 777 {
		if _, err := sp.Write(data[off:min(off+777, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if sp.Len() != len(data) || budget.Load() != 4*chunkSize {
		t.Fatalf("len %d budget %d", sp.Len(), budget.Load())
	}
	if sp.crc != crc32.Checksum(data, castagnoli) {
		t.Fatal("crc differs")
	}
	if got := sp.bytesTo(nil); !bytes.Equal(got, data) {
		t.Fatal("bytesTo differs")
	}
	if got, _ := io.ReadAll(sp.reader()); !bytes.Equal(got, data) {
		t.Fatal("reader differs")
	}
	sp.release()
	if budget.Load() != 0 {
		t.Fatalf("budget after release %d", budget.Load())
	}

	// Over budget: the write fails and nothing stays charged after release.
	small := newSpool(&budget, 2*chunkSize, false)
	if _, err := small.Write(data); err != errOverBudget {
		t.Fatalf("over budget write: %v", err)
	}
	small.release()
	if budget.Load() != 0 {
		t.Fatalf("budget after failed spool %d", budget.Load())
	}
}

func TestSpoolDecodesGzip(t *testing.T) {
	var plain bytes.Buffer
	for i := range 20000 {
		plain.WriteString(`{"metadata":{"name":"pod-` + string(rune('a'+i%26)) + `"}},`)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(plain.Bytes())
	_ = zw.Close()
	sp := newSpool(nil, 0, true)
	_, _ = sp.Write(gz.Bytes())
	if sp.gzipSize() != plain.Len() {
		t.Fatalf("gzip size hint %d, want %d", sp.gzipSize(), plain.Len())
	}
	var zr *gzip.Reader
	for range 2 { // the reader is reused
		got, err := sp.decoded(nil, &zr, 1<<30)
		if err != nil || !bytes.Equal(got, plain.Bytes()) {
			t.Fatalf("decoded %d bytes, err %v", len(got), err)
		}
	}
	if _, err := sp.decoded(nil, &zr, 1000); err == nil {
		t.Fatal("decoding beyond the bound accepted")
	}
}

func TestAcceptsGzip(t *testing.T) {
	tests := map[string]bool{"gzip": true, "gzip, deflate": true, "deflate, gzip;q=0.5": true, "gzip;q=0": false, "identity": false, "": false}
	for v, want := range tests {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if v != "" {
			r.Header.Set("Accept-Encoding", v)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}
