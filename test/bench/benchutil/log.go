package benchutil

import (
	"slices"

	"github.com/go-logr/logr"
)

// LogSink is a logr.LogSink that hands each message to a function, with
// the logger's name (its WithName parts joined by "/") and its key-value
// pairs (those of WithValues, then the message's own). Set it with
// ctrl.SetLogger(logr.New(LogSink{...})) to see what a manager logs.
type LogSink struct {
	// OnInfo receives the messages of V-levels up to MaxLevel; nil drops
	// every info message.
	OnInfo   func(name string, level int, msg string, kv []any)
	MaxLevel int
	// OnError receives every error message; nil drops them.
	OnError func(name string, err error, msg string, kv []any)

	name   string
	values []any
}

// Init does nothing.
func (LogSink) Init(logr.RuntimeInfo) {}

// Enabled reports whether OnInfo receives messages of level.
func (s LogSink) Enabled(level int) bool { return s.OnInfo != nil && level <= s.MaxLevel }

// Info passes an info message to OnInfo.
func (s LogSink) Info(level int, msg string, kv ...any) {
	if s.OnInfo != nil {
		s.OnInfo(s.name, level, msg, append(slices.Clip(s.values), kv...))
	}
}

// Error passes an error message to OnError.
func (s LogSink) Error(err error, msg string, kv ...any) {
	if s.OnError != nil {
		s.OnError(s.name, err, msg, append(slices.Clip(s.values), kv...))
	}
}

// WithValues returns the sink with kv added to its key-value pairs.
func (s LogSink) WithValues(kv ...any) logr.LogSink {
	s.values = append(slices.Clip(s.values), kv...)
	return s
}

// WithName returns the sink with name appended to its name.
func (s LogSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "/" + name
	}
	s.name = name
	return s
}
