package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRunning(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !Running(os.Getpid(), filepath.Base(self)) {
		t.Errorf("this test binary (%s) is not seen running", filepath.Base(self))
	}
	if Running(os.Getpid(), "some-other-binary") {
		t.Error("this process is seen running some-other-binary")
	}
}
