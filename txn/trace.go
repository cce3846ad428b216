package txn

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"switchboard/parser"
	"switchboard/transport"
)

// A debug trace follows one Call-ID, or every call from one source
// address, through the core: each message received and sent for it, and
// each route run, is logged at Info level with its call_id, method (or
// status), addresses and first line. It is off unless started
// (StartTrace, the management command trace.start) and stops by itself
// at its deadline or after its line budget, so that it cannot be left
// on. Off, it costs the message path one atomic load and a nil check
// (TestTraceOffAllocatesNothing).

// TraceFilter says what a trace follows.
type TraceFilter struct {
	// CallID follows one call; Src every call whose requests come from
	// that address (responses and requests sent for those calls follow
	// their Call-ID). One of the two.
	CallID string
	Src    netip.Addr
	// Until is when the trace stops (ms on the core's clock).
	Until int64
	// MaxLines stops the trace after that many lines.
	MaxLines int64
}

// maxTracedCalls bounds the Call-IDs a source trace follows: a source
// sending a flood of new calls cannot grow the set.
const maxTracedCalls = 1024

type tracer struct {
	f     TraceFilter
	log   *slog.Logger
	lines atomic.Int64

	mu    sync.Mutex
	calls map[string]struct{} // Call-IDs seen from f.Src
}

// ErrBadTrace is returned for a filter without a Call-ID or source, or
// with both.
var ErrBadTrace = errors.New("txn: a trace follows a Call-ID or a source address, one of the two")

// StartTrace starts a trace, replacing the one running.
func (c *Core) StartTrace(f TraceFilter) error {
	if (f.CallID == "") == !f.Src.IsValid() {
		return ErrBadTrace
	}
	f.Src = f.Src.Unmap()
	t := &tracer{f: f, log: c.cfg.Logger.With("trace", true)}
	if f.Src.IsValid() {
		t.calls = map[string]struct{}{}
	}
	c.trace.Store(t)
	t.log.Info("trace: started", "call_id", f.CallID, "src", addrOrEmpty(f.Src), "until_ms", f.Until, "max_lines", f.MaxLines)
	return nil
}

// StopTrace stops the trace; it reports whether one ran and its lines.
func (c *Core) StopTrace() (bool, int64) {
	t := c.trace.Swap(nil)
	if t == nil {
		return false, 0
	}
	t.log.Info("trace: stopped", "lines", t.lines.Load())
	return true, t.lines.Load()
}

// TraceStatus returns the running trace's filter and lines so far.
func (c *Core) TraceStatus() (f TraceFilter, lines int64, on bool) {
	t := c.trace.Load()
	if t == nil {
		return TraceFilter{}, 0, false
	}
	return t.f, t.lines.Load(), true
}

func addrOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// live reports whether t may log another line, ending it (once) when its
// deadline or its line budget is reached.
func (c *Core) traceLive(t *tracer) bool {
	if c.clock.Now() >= t.f.Until || t.lines.Add(1) > t.f.MaxLines {
		if c.trace.CompareAndSwap(t, nil) {
			t.log.Info("trace: ended", "lines", t.lines.Load()-1, "reason", "deadline or max_lines reached")
		}
		return false
	}
	return true
}

// follows reports whether a message of callID from src belongs to the
// trace; a request from the traced source adds its Call-ID.
func (t *tracer) follows(callID []byte, src netip.Addr, request bool) bool {
	if t.f.CallID != "" {
		return string(callID) == t.f.CallID
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.calls[string(callID)]; ok {
		return true
	}
	if request && src.Unmap() == t.f.Src && len(callID) > 0 {
		if len(t.calls) < maxTracedCalls {
			t.calls[string(callID)] = struct{}{}
		}
		return true
	}
	return false
}

// traceIn logs a message received, when the trace follows it.
func (c *Core) traceIn(t *tracer, p *transport.Packet, m *parser.Message, err error) {
	if err != nil {
		if t.f.Src.IsValid() && p.Src.Addr().Unmap() == t.f.Src && c.traceLive(t) {
			t.log.Info("trace: received malformed", "src", p.Src.String(), "proto", p.Proto.String(), "bytes", len(p.Data), "err", err.Error())
		}
		return
	}
	if !t.follows(m.CallID(), p.Src.Addr(), m.IsRequest()) || !c.traceLive(t) {
		return
	}
	t.log.Info("trace: received", append(msgFields(m, p.Data), "src", p.Src.String(), "proto", p.Proto.String(), "bytes", len(p.Data))...)
}

// traceOut logs a message sent, when the trace follows its Call-ID.
func (c *Core) traceOut(t *tracer, dst netip.AddrPort, data []byte) {
	callID := rawCallID(data)
	if !t.follows(callID, netip.Addr{}, false) || !c.traceLive(t) {
		return
	}
	t.log.Info("trace: sent", "call_id", string(callID), "first_line", string(firstLine(data)), "dst", dst.String(), "bytes", len(data))
}

// traceRoute logs a route about to run for r.
func (c *Core) traceRoute(route string, r *Request) {
	t := c.trace.Load()
	if t == nil || r == nil || r.Msg == nil {
		return
	}
	if !t.follows(r.Msg.CallID(), netip.Addr{}, false) || !c.traceLive(t) {
		return
	}
	t.log.Info("trace: route", CallFields(r.Msg, r.Src, route)...)
}

// msgFields are the fields of m for a log line: call_id and method, or
// call_id, status and cseq method for a response.
func msgFields(m *parser.Message, data []byte) []any {
	if m.IsRequest() {
		return []any{"call_id", string(m.CallID()), "method", string(m.MethodBytes()), "first_line", string(firstLine(data))}
	}
	return []any{"call_id", string(m.CallID()), "status", m.StatusCode(), "method", string(m.CSeq().MethodRaw), "first_line", string(firstLine(data))}
}

// CallFields are the structured fields of a per-call log line: call_id,
// method, src and route (the route kind or name that was running). Error
// paths only: the values are boxed.
func CallFields(m *parser.Message, src netip.AddrPort, route string) []any {
	f := make([]any, 0, 8)
	if m != nil {
		f = append(f, "call_id", string(m.CallID()), "method", string(m.MethodBytes()))
	}
	if src.IsValid() {
		f = append(f, "src", src.String())
	} else {
		f = append(f, "src", "")
	}
	return append(f, "route", route)
}

func firstLine(data []byte) []byte {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	data = bytes.TrimRight(data, "\r")
	if len(data) > 200 {
		data = data[:200]
	}
	return data
}

// rawCallID finds the Call-ID (or i) header in an outgoing message
// without parsing it: the core wrote it, so it is well formed.
func rawCallID(data []byte) []byte {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
		if len(data) == 0 || data[0] == '\r' {
			return nil // end of the headers
		}
		var v []byte
		switch {
		case len(data) > 8 && bytes.EqualFold(data[:8], []byte("call-id:")):
			v = data[8:]
		case len(data) > 2 && (data[0] == 'i' || data[0] == 'I') && data[1] == ':':
			v = data[2:]
		case len(data) > 8 && bytes.EqualFold(data[:7], []byte("call-id")) && (data[7] == ' ' || data[7] == '\t'):
			if j := bytes.IndexByte(data, ':'); j > 0 {
				v = data[j+1:]
			}
		default:
			continue
		}
		if j := bytes.IndexByte(v, '\n'); j >= 0 {
			v = v[:j]
		}
		return bytes.TrimSpace(v)
	}
	return nil
}

// firstWord is a request's method from its bytes.
func firstWord(data []byte) []byte {
	if i := bytes.IndexByte(data, ' '); i > 0 && i < 32 {
		return data[:i]
	}
	return nil
}
