package benchutil

import (
	"os"
	"strconv"
	"time"
)

// EnvInt returns the environment variable name as an integer, or def when
// it is unset or not an integer.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// EnvDuration returns the environment variable name as a duration
// ("30s"), or def when it is unset or not a duration.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
