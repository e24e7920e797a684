package benchutil

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Number is what a count is.
type Number interface{ ~int | ~int64 | ~float64 }

// SubCounts returns the counts of a less those of b, by key, leaving out
// the keys whose difference is 0: what happened between two snapshots of
// cumulative counters. Keys only b has are left out.
func SubCounts[M ~map[string]N, N Number](a, b M) M {
	out := M{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// SumCounts adds the counts whose key keep accepts; a nil keep accepts
// every key.
func SumCounts[M ~map[string]N, N Number](m M, keep func(key string) bool) N {
	var n N
	for k, v := range m {
		if keep == nil || keep(k) {
			n += v
		}
	}
	return n
}

// FormatCounts lists the counts in the order of their keys, each formatted
// by entry from its key and count ("%s: %d"), separated by ", "; "none"
// when there are none.
func FormatCounts[M ~map[string]N, N Number](m M, entry string) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf(entry, k, m[k]))
	}
	return strings.Join(parts, ", ")
}
