package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"switchboard/mgmt"
	"switchboard/txn"
)

// Bounds of a debug trace (trace.start): it always ends by itself.
const (
	defaultTraceFor   = 10 * time.Minute
	maxTraceFor       = 24 * time.Hour
	defaultTraceLines = 10000
	maxTraceLines     = 1000000
)

// registerTraceCommands adds the debug trace and log level commands:
// trace.start, trace.stop, trace.status and log.level (OpenSIPS MI
// log_level; the trace has no OpenSIPS equivalent beyond sip_trace).
func (s *server) registerTraceCommands() {
	s.mgmt.Register("trace.start", mgmt.Command{
		Help: `log every message and route of one call or one source through the core: {"call_id":"abc@host"} or {"src":"192.0.2.1"}, with "duration" (default 10m) and "max_lines" (default 10000); replaces a running trace`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				CallID   string `json:"call_id"`
				Src      string `json:"src"`
				Duration string `json:"duration"`
				MaxLines int64  `json:"max_lines"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			f, err := traceFilter(a.CallID, a.Src, a.Duration, a.MaxLines, s.clock.Now())
			if err != nil {
				return nil, err
			}
			if err := s.core.StartTrace(f); err != nil {
				return nil, &mgmt.ArgError{Msg: err.Error()}
			}
			return traceInfo(f, 0, true), nil
		},
	})
	s.mgmt.Register("trace.stop", mgmt.Command{
		Help: "stop the debug trace",
		Run: func(context.Context, json.RawMessage) (any, error) {
			on, n := s.core.StopTrace()
			if !on {
				return nil, fmt.Errorf("no trace is running: %w", mgmt.ErrNotFound)
			}
			return map[string]any{"stopped": true, "lines": n}, nil
		},
	})
	s.mgmt.Register("trace.status", mgmt.Command{
		Help:     "the debug trace running, if any: what it follows, until when, lines logged",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			f, n, on := s.core.TraceStatus()
			return traceInfo(f, n, on), nil
		},
	})
	s.mgmt.Register("log.level", mgmt.Command{
		Help: `the log level; {"level":"debug"} sets it until the next reload or restart (debug, info, warn, error)`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				Level string `json:"level"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.Level != "" {
				var l slog.Level
				if err := l.UnmarshalText([]byte(strings.ToUpper(a.Level))); err != nil {
					return nil, &mgmt.ArgError{Msg: fmt.Sprintf("level: %q: want debug, info, warn or error", a.Level)}
				}
				s.level.Set(l)
				s.log.Info("log level set by the management API", "level", strings.ToLower(l.String()))
			}
			return map[string]string{"level": strings.ToLower(s.level.Level().String())}, nil
		},
	})
}

// traceFilter checks trace.start's arguments.
func traceFilter(callID, src, duration string, maxLines int64, now int64) (txn.TraceFilter, error) {
	var f txn.TraceFilter
	switch {
	case callID != "" && src != "":
		return f, &mgmt.ArgError{Msg: "give call_id or src, not both"}
	case callID != "":
		if len(callID) > 256 {
			return f, &mgmt.ArgError{Msg: "call_id: longer than 256 bytes"}
		}
		f.CallID = callID
	case src != "":
		a, err := netip.ParseAddr(src)
		if err != nil {
			return f, &mgmt.ArgError{Msg: fmt.Sprintf("src: %q is not an IP address", src)}
		}
		f.Src = a
	default:
		return f, &mgmt.ArgError{Msg: `give call_id ("abc@host") or src ("192.0.2.1")`}
	}
	d := defaultTraceFor
	if duration != "" {
		var err error
		if d, err = time.ParseDuration(duration); err != nil || d <= 0 || d > maxTraceFor {
			return f, &mgmt.ArgError{Msg: fmt.Sprintf("duration: %q: want a duration up to %s (\"10m\")", duration, maxTraceFor)}
		}
	}
	if maxLines == 0 {
		maxLines = defaultTraceLines
	}
	if maxLines < 0 || maxLines > maxTraceLines {
		return f, &mgmt.ArgError{Msg: fmt.Sprintf("max_lines: between 1 and %d", maxTraceLines)}
	}
	f.Until, f.MaxLines = now+d.Milliseconds(), maxLines
	return f, nil
}

func traceInfo(f txn.TraceFilter, lines int64, on bool) map[string]any {
	if !on {
		return map[string]any{"on": false}
	}
	out := map[string]any{"on": true, "until": time.UnixMilli(f.Until).UTC().Format(time.RFC3339), "lines": lines, "max_lines": f.MaxLines}
	if f.CallID != "" {
		out["call_id"] = f.CallID
	} else {
		out["src"] = f.Src.String()
	}
	return out
}
