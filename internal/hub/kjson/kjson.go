// Package kjson reads the few parts of Kubernetes JSON documents the hub needs
// (list items, object keys, watch events) by scanning the bytes in place. It
// never builds a generic tree, so a 10,000-pod list costs one linear scan and
// no per-field allocations.
package kjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// List is a Kubernetes list document split into its parts. Items alias the
// input buffer.
type List struct {
	Kind            string
	APIVersion      string
	ResourceVersion string
	Continue        string
	Items           [][]byte
	// ItemsStart and ItemsEnd delimit the items array (brackets included).
	ItemsStart, ItemsEnd int
}

// Meta is the identity of one object.
type Meta struct {
	Kind, APIVersion          string
	Namespace, Name           string
	ResourceVersion           string
	Labels, Annotations       map[string]string
	initialEventsEndAnnotated bool
}

// InitialEventsEnd reports whether a BOOKMARK object carries the
// k8s.io/initial-events-end annotation.
func (m Meta) InitialEventsEnd() bool { return m.initialEventsEndAnnotated }

// Key is namespace/name (or name for cluster-scoped objects).
func (m Meta) Key() string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

var errSyntax = errors.New("kjson: malformed JSON")

// ParseList splits a list document.
func ParseList(b []byte) (List, error) {
	var l List
	found := false
	err := eachField(b, 0, func(key []byte, vs, ve int) error {
		switch string(key) {
		case "kind":
			l.Kind = str(b[vs:ve])
		case "apiVersion":
			l.APIVersion = str(b[vs:ve])
		case "metadata":
			return eachField(b, vs, func(k []byte, s, e int) error {
				switch string(k) {
				case "resourceVersion":
					l.ResourceVersion = str(b[s:e])
				case "continue":
					l.Continue = str(b[s:e])
				}
				return nil
			})
		case "items":
			found = true
			l.ItemsStart, l.ItemsEnd = vs, ve
			if b[vs] == 'n' { // null
				return nil
			}
			return eachElem(b, vs, func(s, e int) error {
				l.Items = append(l.Items, b[s:e])
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return List{}, err
	}
	if !found {
		return List{}, fmt.Errorf("kjson: document of kind %q has no items", l.Kind)
	}
	return l, nil
}

// ObjectMeta extracts an object's kind and metadata; labels and annotations
// only when withMaps is set.
func ObjectMeta(b []byte, withMaps bool) (Meta, error) {
	var m Meta
	err := eachField(b, 0, func(key []byte, vs, ve int) error {
		switch string(key) {
		case "kind":
			m.Kind = str(b[vs:ve])
		case "apiVersion":
			m.APIVersion = str(b[vs:ve])
		case "metadata":
			return eachField(b, vs, func(k []byte, s, e int) error {
				switch string(k) {
				case "name":
					m.Name = str(b[s:e])
				case "namespace":
					m.Namespace = str(b[s:e])
				case "resourceVersion":
					m.ResourceVersion = str(b[s:e])
				case "labels":
					if withMaps {
						m.Labels = strMap(b[s:e])
					}
				case "annotations":
					mp := strMap(b[s:e])
					m.initialEventsEndAnnotated = mp["k8s.io/initial-events-end"] == "true"
					if withMaps {
						m.Annotations = mp
					}
				}
				return nil
			})
		}
		return nil
	})
	return m, err
}

// Event is one watch event; Object aliases the input.
type Event struct {
	Type   string
	Object []byte
}

// ParseEvent splits a watch event.
func ParseEvent(b []byte) (Event, error) {
	var ev Event
	err := eachField(b, 0, func(key []byte, vs, ve int) error {
		switch string(key) {
		case "type":
			ev.Type = str(b[vs:ve])
		case "object":
			ev.Object = b[vs:ve]
		}
		return nil
	})
	if err == nil && (ev.Type == "" || ev.Object == nil) {
		err = fmt.Errorf("kjson: watch event without type or object")
	}
	return ev, err
}

// WithTypeMeta returns obj with kind and apiVersion as its first fields when
// it has none (list items omit them).
func WithTypeMeta(obj []byte, kind, apiVersion string) []byte {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return obj
	}
	m, err := ObjectMeta(obj, false)
	if err != nil || m.Kind != "" {
		return obj
	}
	k, _ := json.Marshal(kind)
	v, _ := json.Marshal(apiVersion)
	out := make([]byte, 0, len(obj)+len(k)+len(v)+28)
	out = append(out, `{"kind":`...)
	out = append(out, k...)
	out = append(out, `,"apiVersion":`...)
	out = append(out, v...)
	rest := obj[i+1:]
	j := skipWS(rest, 0)
	if j < len(rest) && rest[j] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

func strMap(b []byte) map[string]string {
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	m := map[string]string{}
	_ = eachField(b, 0, func(k []byte, s, e int) error {
		m[keyStr(k)] = str(b[s:e])
		return nil
	})
	return m
}

// keyStr decodes an object key as eachField hands it (quotes stripped).
func keyStr(k []byte) string {
	for _, c := range k {
		if c == '\\' {
			return str(append(append([]byte{'"'}, k...), '"'))
		}
	}
	return string(k)
}

// str decodes a JSON string token (quotes included); other tokens yield "".
func str(tok []byte) string {
	if len(tok) < 2 || tok[0] != '"' {
		return ""
	}
	inner := tok[1 : len(tok)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if json.Unmarshal(tok, &s) != nil {
				return ""
			}
			return s
		}
	}
	return string(inner)
}

// eachField calls fn for every member of the object starting at b[i] with the
// raw key (unquoted, escapes kept) and the value's bounds.
func eachField(b []byte, i int, fn func(key []byte, vs, ve int) error) error {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return errSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errSyntax
		}
		ke, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return errSyntax
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return err
		}
		if err := fn(key, vs, ve); err != nil {
			return err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return errSyntax
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax
		}
		i = skipWS(b, i+1)
	}
}

// eachElem calls fn for every element of the array starting at b[i].
func eachElem(b []byte, i int, fn func(s, e int) error) error {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '[' {
		return errSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		e, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(i, e); err != nil {
			return err
		}
		i = skipWS(b, e)
		if i >= len(b) {
			return errSyntax
		}
		if b[i] == ']' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax
		}
		i = skipWS(b, i+1)
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, errSyntax
		}
		q := j + k
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

// skipValue returns the end of the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				break
			}
			j++
		}
		if j == i {
			return 0, errSyntax
		}
		return j, nil
	}
}
