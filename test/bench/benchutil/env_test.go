package benchutil

import (
	"slices"
	"testing"
)

func TestTeardown(t *testing.T) {
	var order []string
	td := &Teardown{tb: t, stopEnv: func() error { order = append(order, "env"); return nil }}
	td.Add(func() { order = append(order, "first") })
	td.Add(func() { order = append(order, "second") })
	td.Run()
	td.Run()
	if want := []string{"second", "first", "env"}; !slices.Equal(order, want) {
		t.Errorf("teardown ran %v, want %v", order, want)
	}
}
