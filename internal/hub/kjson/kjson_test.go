package kjson

import (
	"encoding/json"
	"testing"
)

func TestParseListAndMeta(t *testing.T) {
	doc := []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"c1"},"items":[` +
		`{"metadata":{"name":"a","namespace":"ns","resourceVersion":"7","labels":{"x":"y","esc":"a\"b"},"annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"n":[1,{"s":"}]"}]}},` +
		` {"metadata":{"name":"b"}} ]}`)
	l, err := ParseList(doc)
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != "PodList" || l.APIVersion != "v1" || l.ResourceVersion != "42" || l.Continue != "c1" || len(l.Items) != 2 {
		t.Fatalf("list %+v", l)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(doc[l.ItemsStart:l.ItemsEnd], &items); err != nil || len(items) != 2 {
		t.Fatalf("items bounds wrong: %v", err)
	}
	m, err := ObjectMeta(l.Items[0], true)
	if err != nil {
		t.Fatal(err)
	}
	if m.Key() != "ns/a" || m.ResourceVersion != "7" || m.Labels["x"] != "y" || m.Labels["esc"] != `a"b` || !m.InitialEventsEnd() {
		t.Fatalf("meta %+v", m)
	}
	if m2, _ := ObjectMeta(l.Items[1], false); m2.Key() != "b" {
		t.Fatalf("cluster-scoped key %q", m2.Key())
	}
}

func TestParseListRejectsMalformed(t *testing.T) {
	tests := map[string]string{
		"truncated":  `{"kind":"PodList","items":[{"metadata":{"name":"a"}}`,
		"no items":   `{"kind":"Pod","metadata":{}}`,
		"not object": `[1,2]`,
		"bad string": `{"kind":"PodList,"items":[]}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseList([]byte(doc)); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestParseEvent(t *testing.T) {
	ev, err := ParseEvent([]byte(`{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"p"}}}`))
	if err != nil || ev.Type != "MODIFIED" || string(ev.Object) != `{"kind":"Pod","metadata":{"name":"p"}}` {
		t.Fatalf("%+v %v", ev, err)
	}
	if _, err := ParseEvent([]byte(`{"type":"ADDED"}`)); err == nil {
		t.Fatal("event without object accepted")
	}
}

func TestWithTypeMeta(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"adds":  {`{"metadata":{"name":"p"}}`, `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`},
		"keeps": {`{"kind":"Node","metadata":{}}`, `{"kind":"Node","metadata":{}}`},
		"empty": {`{}`, `{"kind":"Pod","apiVersion":"v1"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := string(WithTypeMeta([]byte(tc.in), "Pod", "v1")); got != tc.want {
				t.Fatalf("got %s want %s", got, tc.want)
			}
		})
	}
}

func TestSkipStringEscapes(t *testing.T) {
	tests := map[string]int{
		`"plain"x`:       7,
		`"a\"b"x`:        6,
		`"a\\"x`:         5,
		`"a\\\"b"x`:      8,
		`"\\\\"x`:        6,
		`"}\"{\\" , "x"`: 8,
	}
	for in, want := range tests {
		got, err := skipString([]byte(in), 0)
		if err != nil || got != want {
			t.Errorf("%s: got %d %v, want %d", in, got, err, want)
		}
	}
	if _, err := skipString([]byte(`"abc\"`), 0); err == nil {
		t.Error("unterminated string accepted")
	}
}
