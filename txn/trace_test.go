package txn

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/transport"
)

// TestTraceOffAllocatesNothing: with no trace, and with a trace of
// another call, a record-routed call costs the core no allocation: the
// trace's check is an atomic load (TestNoAllocs covers the core as it
// was before traces).
func TestTraceOffAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	c := newSignedCall(l)
	mustZero(t, "record-routed call, trace off", func() {
		c.run()
		l.h.clock.Advance(200 * time.Millisecond)
	})
	l.h.core.StartTrace(TraceFilter{CallID: "not-this-call@x", Until: 1 << 62, MaxLines: 1 << 40})
	mustZero(t, "record-routed call, a trace of another Call-ID", func() {
		c.run()
		l.h.clock.Advance(200 * time.Millisecond)
	})
}

// BenchmarkTrace is the core absorbing a retransmitted INVITE (parse,
// transaction match, the tap's and the trace's checks, the 100 sent
// again) with no trace (trace=off) and with a trace of another Call-ID
// (trace=other: the Call-ID compared on the way in and out). Compare
// with benchstat -col /trace.
func BenchmarkTrace(b *testing.B) {
	for _, mode := range []string{"off", "other"} {
		b.Run("trace="+mode, func(b *testing.B) {
			l := newLoop(b, func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
			if mode == "other" {
				l.h.core.StartTrace(TraceFilter{CallID: "not-this-call@x", Until: 1 << 62, MaxLines: 1 << 40})
			}
			inv := []byte(fixCL(invite("z9hG4bKbench", "bench@x")))
			l.deliver(uacAddr, transport.UDP, inv)
			p := transport.Packet{Data: inv, Src: uacAddr, Listener: l.h.udp, Proto: transport.UDP}
			b.ReportAllocs()
			for b.Loop() {
				l.h.core.HandleMessage(&p)
			}
		})
	}
}

func traceHarness(t *testing.T) (*harness, *bytes.Buffer) {
	var out bytes.Buffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&out, nil))
	})
	return h, &out
}

// TestTraceOneCallID: the lines of a trace are the traced call's
// messages in and out and its routes, with call_id, method or status,
// addresses; another call logs nothing. The trace ends at its deadline.
func TestTraceOneCallID(t *testing.T) {
	h, out := traceHarness(t)
	h.rt.request = func(r *Request) { r.Reply(486, "Busy Here") }
	now := h.core.clock.Now()
	if err := h.core.StartTrace(TraceFilter{CallID: "traced@x", Until: now + 5000, MaxLines: 100}); err != nil {
		t.Fatal(err)
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKt1", "other@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	if strings.Contains(out.String(), "other@x") {
		t.Fatalf("another call traced:\n%s", out)
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKt2", "traced@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	log := out.String()
	for _, want := range []string{
		`msg="trace: received" trace=true call_id=traced@x method=MESSAGE first_line="MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0" src=127.0.0.1:5070 proto=UDP`,
		`msg="trace: route" trace=true call_id=traced@x method=MESSAGE src=127.0.0.1:5070 route=request`,
		`msg="trace: sent" trace=true call_id=traced@x first_line="SIP/2.0 486 Busy Here" dst=127.0.0.1:5070`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no line %s in\n%s", want, log)
		}
	}
	if f, n, on := h.core.TraceStatus(); !on || f.CallID != "traced@x" || n != 3 {
		t.Errorf("status: %+v %d %v", f, n, on)
	}
	h.advance(6 * time.Second)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKt3", "traced@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	if _, _, on := h.core.TraceStatus(); on || !strings.Contains(out.String(), "trace: ended") || strings.Contains(out.String(), "z9hG4bKt3") {
		t.Fatalf("trace past its deadline:\n%s", out)
	}
}

// TestTraceOneSource: a source trace follows the calls of requests from
// that address, with their responses from elsewhere, and stops at its
// line budget.
func TestTraceOneSource(t *testing.T) {
	h, out := traceHarness(t)
	h.rt.request = func(r *Request) { r.Reply(404, "") }
	other := netip.MustParseAddrPort("127.0.0.9:5060")
	h.core.StartTrace(TraceFilter{Src: uacAddr.Addr(), Until: 1 << 62, MaxLines: 6})
	h.in(other, request("OPTIONS", "z9hG4bKs1", "from-other@x", "sip:bob@127.0.0.1:5080", ""))
	h.in(uacAddr, request("OPTIONS", "z9hG4bKs2", "from-uac@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	log := out.String()
	if strings.Contains(log, "from-other@x") || strings.Count(log, "call_id=from-uac@x") != 3 {
		t.Fatalf("source trace:\n%s", log)
	}
	for i := range 5 {
		h.in(uacAddr, request("OPTIONS", "z9hG4bKs3"+string(rune('a'+i)), "more@x", "sip:bob@127.0.0.1:5080", ""))
		h.snd.take()
	}
	if _, _, on := h.core.TraceStatus(); on || strings.Count(out.String(), "msg=\"trace: ") != 6+2 { // started, 6 lines, ended
		t.Fatalf("line budget:\n%s", out)
	}
	if err := h.core.StartTrace(TraceFilter{}); err != ErrBadTrace {
		t.Fatalf("empty filter: %v", err)
	}
}

// TestPerCallLogFields: the core's per-call lines carry call_id, method,
// src and route.
func TestPerCallLogFields(t *testing.T) {
	h, out := traceHarness(t)
	h.rt.request = func(r *Request) {} // does nothing: 500 and a warning
	h.in(uacAddr, request("MESSAGE", "z9hG4bKf1", "fields@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	want := `msg="txn: route did nothing with the request; answering 500" call_id=fields@x method=MESSAGE src=127.0.0.1:5070 route=request`
	if !strings.Contains(out.String(), want) {
		t.Fatalf("no %s in\n%s", want, out)
	}
}

func TestRawCallID(t *testing.T) {
	for in, want := range map[string]string{
		"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n":      "abc@h",
		"BYE sip:x SIP/2.0\r\ni: short@h \r\nCSeq: 1 BYE\r\n\r\n": "short@h",
		"BYE sip:x SIP/2.0\r\ncall-id  :  sp@h\r\n\r\n":           "sp@h",
		"BYE sip:x SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body@h\r\n":  "",
	} {
		if got := string(rawCallID([]byte(in))); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
