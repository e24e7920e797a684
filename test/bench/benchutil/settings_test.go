package benchutil

import (
	"testing"
	"time"
)

func TestSettings(t *testing.T) {
	t.Setenv("BENCHUTIL_TEST_INT", "42")
	t.Setenv("BENCHUTIL_TEST_DURATION", "1m30s")
	t.Setenv("BENCHUTIL_TEST_BAD", "x")
	if got := EnvInt("BENCHUTIL_TEST_INT", 7); got != 42 {
		t.Errorf("EnvInt = %d, want 42", got)
	}
	if got := EnvInt("BENCHUTIL_TEST_BAD", 7); got != 7 {
		t.Errorf("EnvInt(bad) = %d, want the default 7", got)
	}
	if got := EnvDuration("BENCHUTIL_TEST_DURATION", time.Second); got != 90*time.Second {
		t.Errorf("EnvDuration = %v, want 1m30s", got)
	}
	if got := EnvDuration("BENCHUTIL_TEST_UNSET", time.Second); got != time.Second {
		t.Errorf("EnvDuration(unset) = %v, want the default 1s", got)
	}
}
