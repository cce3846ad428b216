package txn

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

func options(to string) []byte {
	return []byte(fixCL("OPTIONS sip:" + to + " SIP/2.0\nMax-Forwards: 70\nFrom: <sip:probe@127.0.0.1>;tag=p1\nTo: <sip:" + to + ">\nCall-ID: probe-" + to + "\nCSeq: 1 OPTIONS\n\n"))
}

type localResult struct {
	mu     sync.Mutex
	code   int
	status string
	calls  int
	done   chan struct{}
}

func newLocalResult() *localResult { return &localResult{done: make(chan struct{})} }

func (r *localResult) cb(code int, resp *parser.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.calls = code, r.calls+1
	if resp != nil {
		r.status = string(resp.Reason())
	}
	if r.calls == 1 {
		close(r.done)
	}
}

func (r *localResult) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("SendLocal never reported")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code
}

// TestSendLocalAnswered: the core adds its Via with a local branch, a
// provisional does not end the request, the final one is reported once,
// and a retransmitted final is ignored.
func TestSendLocalAnswered(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.T1 = 50 * time.Millisecond })
	res := newLocalResult()
	if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: options("127.0.0.1:5080")}, res.cb); err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	h.only(msgs, toUAS+"OPTIONS sip:127.0.0.1:5080 SIP/2.0")
	sent := msgs[0].data
	if v := headers(sent, "Via"); len(v) != 1 || !strings.HasPrefix(v[0], "SIP/2.0/UDP 127.0.0.1:5060;branch="+string(h.core.prefix[:])+"L") {
		t.Fatalf("Via %q", v)
	}
	h.in(uasAddr, respond(sent, 100, ""))
	select {
	case <-res.done:
		t.Fatal("a provisional ended the request")
	case <-time.After(20 * time.Millisecond):
	}
	h.in(uasAddr, respond(sent, 200, "u1"))
	if code := res.wait(t); code != 200 || res.status != "OK" {
		t.Fatalf("reported %d %q", code, res.status)
	}
	h.in(uasAddr, respond(sent, 200, "u1"))
	time.Sleep(20 * time.Millisecond)
	if res.calls != 1 {
		t.Fatalf("reported %d times", res.calls)
	}
	if got := h.snd.take(); len(got) != 0 {
		t.Fatalf("the response was forwarded: %s", describe(got))
	}
}

// TestSendLocalTimesOut: over UDP the request is retransmitted (timer E)
// and, with no answer, reported as 408 after 64·T1.
func TestSendLocalTimesOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.T1 = 10 * time.Millisecond; c.T2 = 40 * time.Millisecond })
	res := newLocalResult()
	start := time.Now()
	if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: options("127.0.0.1:5080")}, res.cb); err != nil {
		t.Fatal(err)
	}
	if code := res.wait(t); code != 408 {
		t.Fatalf("code %d", code)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("gave up after %s, want 64·T1", d)
	}
	if n := len(h.snd.take()); n < 10 {
		t.Fatalf("sent %d times, want retransmissions up to T2", n)
	}
}

// TestSendLocalRefused: an INVITE, a destination outside the allow-list
// and a send error.
func TestSendLocalRefused(t *testing.T) {
	h := newHarness(t, nil)
	inv := []byte(fixCL(invite("z9hG4bKx", "x@x")))
	if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: inv}, func(int, *parser.Message) {}); err != ErrLocalMethod {
		t.Errorf("INVITE: %v", err)
	}
	outside := netip.MustParseAddrPort("192.0.2.1:5060")
	if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: outside, Message: options("192.0.2.1")}, func(int, *parser.Message) {}); err != ErrNotAllowed {
		t.Errorf("outside the allow-list: %v", err)
	}
	h.snd.fail = map[netip.AddrPort]error{uasAddr: transport.ErrConnLimit}
	res := newLocalResult()
	if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: options("127.0.0.1:5080")}, res.cb); err != nil {
		t.Fatal(err)
	}
	if code := res.wait(t); code != 503 {
		t.Errorf("send error: %d", code)
	}
}

// TestSetAllowOutboundNarrows: a reload that narrows outbound.allow
// (SetAllowOutbound) applies to the next send, and one that widens it
// too; the list given at New is not kept aside.
func TestSetAllowOutboundNarrows(t *testing.T) {
	h := newHarness(t, nil)
	send := func() error {
		return h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: options("127.0.0.1:5080")}, func(int, *parser.Message) {})
	}
	if err := send(); err != nil {
		t.Fatalf("inside the allow-list: %v", err)
	}
	h.snd.take()
	h.core.SetAllowOutbound([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	if err := send(); err != ErrNotAllowed {
		t.Fatalf("after narrowing to 192.0.2.0/24, a send to %s: %v", uasAddr, err)
	}
	if h.core.Allowed(uasAddr.Addr()) || !h.core.Allowed(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("Allowed does not answer from the new list")
	}
	if n := len(h.snd.take()); n != 0 {
		t.Fatalf("%d messages sent outside the new list", n)
	}
	h.core.SetAllowOutbound(nil) // empty: anywhere
	if err := send(); err != nil {
		t.Fatalf("after emptying the list: %v", err)
	}
}
