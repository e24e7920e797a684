package benchutil

import (
	"maps"
	"strings"
	"testing"
)

func TestCounts(t *testing.T) {
	type tally map[string]int
	before := tally{"get 200": 3, "patch 200": 1, "list 200": 2}
	after := tally{"get 200": 5, "patch 200": 1, "put 409": 2}
	d := SubCounts(after, before)
	if want := (tally{"get 200": 2, "put 409": 2}); !maps.Equal(d, want) {
		t.Errorf("SubCounts = %v, want %v", d, want)
	}
	if got := SumCounts(d, nil); got != 4 {
		t.Errorf("SumCounts(nil) = %d, want 4", got)
	}
	if got := SumCounts(d, func(k string) bool { return strings.HasSuffix(k, " 409") }); got != 2 {
		t.Errorf("SumCounts(409s) = %d, want 2", got)
	}
	if got, want := FormatCounts(d, "%s: %d"), "get 200: 2, put 409: 2"; got != want {
		t.Errorf("FormatCounts = %q, want %q", got, want)
	}
	if got, want := FormatCounts(map[string]float64{"b": 2, "a": 1.4}, "%s %.0f"), "a 1, b 2"; got != want {
		t.Errorf("FormatCounts = %q, want %q", got, want)
	}
	if got := FormatCounts(tally{}, "%s: %d"); got != "none" {
		t.Errorf("FormatCounts(empty) = %q, want none", got)
	}
}
