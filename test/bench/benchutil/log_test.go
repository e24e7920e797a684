package benchutil

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/go-logr/logr"
)

func TestLogSink(t *testing.T) {
	var infos, errs []string
	log := logr.New(LogSink{
		MaxLevel: 1,
		OnInfo: func(name string, level int, msg string, kv []any) {
			infos = append(infos, fmt.Sprintf("%s V(%d) %s %v", name, level, msg, kv))
		},
		OnError: func(name string, err error, msg string, kv []any) {
			errs = append(errs, fmt.Sprintf("%s %s: %v %v", name, msg, err, kv))
		},
	})
	l := log.WithName("mgr").WithValues("controller", "c").WithName("r")
	l.Info("zero", "k", "v")
	l.V(1).Info("one")
	l.V(2).Info("two")
	l.Error(errors.New("boom"), "failed", "k", 1)
	log.Info("root")
	if want := []string{"mgr/r V(0) zero [controller c k v]", "mgr/r V(1) one [controller c]", " V(0) root []"}; !slices.Equal(infos, want) {
		t.Errorf("info messages %q, want %q", infos, want)
	}
	if want := []string{"mgr/r failed: boom [controller c k 1]"}; !slices.Equal(errs, want) {
		t.Errorf("error messages %q, want %q", errs, want)
	}
	if (LogSink{MaxLevel: 2}).Enabled(0) {
		t.Error("a sink without OnInfo is enabled")
	}
}
