package txn

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// Tests of the transaction state machines and timers, on a manual clock
// with the default T1 = 500 ms, T2 = 4 s, T4 = 5 s.

func request(method, branch, callID, ruri string, extra string) string {
	return method + ` ` + ruri + ` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=` + branch + `
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: ` + callID + `
CSeq: 1 ` + method + `
` + extra + `
`
}

// only returns the messages sent to dst, failing when their first lines
// differ from want.
func (h *harness) only(msgs []sentMsg, want ...string) {
	h.t.Helper()
	got := firstLines(msgs)
	if len(got) != len(want) {
		h.t.Fatalf("sent %d messages, want %d:\n%s", len(got), len(want), describe(msgs))
	}
	for i := range want {
		if got[i] != want[i] {
			h.t.Fatalf("message %d: %q, want %q\nall:\n%s", i, got[i], want[i], describe(msgs))
		}
	}
}

const (
	toUAC = "127.0.0.1:5070 "
	toUAS = "127.0.0.1:5080 "
	toUA2 = "127.0.0.1:5090 "
)

func TestNonInviteTimerE(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKm1", "m1@x", "sip:bob@127.0.0.1:5080", ""))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	fwd := msgs[0].data
	// Timer E: T1, 2·T1, 4·T1, then T2. When the UAC's own timer E
	// reached T2 (3.5 s), the request still unanswered gets a 100 (RFC 4320
	// §4.1), sent with the retransmission due then.
	for _, step := range []time.Duration{500, 1000, 2000, 4000, 4000} {
		h.advance((step - 1) * time.Millisecond)
		if n := len(h.snd.take()); n != 0 {
			t.Fatalf("retransmitted early (step %v)", step)
		}
		h.advance(time.Millisecond)
		if step == 2000 {
			h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying", toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
			continue
		}
		h.only(h.snd.take(), toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	}
	// A provisional: E continues at T2. A 180 to a non-INVITE request is
	// not relayed (RFC 4320 §4.1: only 100).
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.only(h.snd.take())
	h.advance(4000 * time.Millisecond)
	h.only(h.snd.take(), toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	// Final: forwarded, no more retransmissions; the server answers
	// retransmissions with it.
	h.in(uasAddr, respond(fwd, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.in(uacAddr, request("MESSAGE", "z9hG4bKm1", "m1@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(5 * time.Second) // timer K
	h.only(h.snd.take())
	h.advance(32 * time.Second) // timer J
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions after J", n)
	}
}

// TestNonInviteTimerF: timer F ends the branch and the failure route sees
// the timeout as a 408, but no 408 goes upstream (RFC 4320 §4.2): the
// UAC's own timer F has fired too. Retransmissions are absorbed until the
// transaction ends.
func TestNonInviteTimerF(t *testing.T) {
	h := newHarness(t, nil)
	var failed []int
	h.rt.failure = func(r *Request, best *parser.Message) { failed = append(failed, best.StatusCode()) }
	req := request("OPTIONS", "z9hG4bKo1", "o1@x", "sip:bob@127.0.0.1:5080", "")
	h.in(uacAddr, req)
	h.snd.take()
	h.advance(32*time.Second - time.Millisecond)
	h.snd.take() // retransmissions, and the 100 at 3.5 s
	h.advance(time.Millisecond)
	h.only(h.snd.take())
	if len(failed) != 1 || failed[0] != 408 {
		t.Fatalf("failure route saw %v", failed)
	}
	h.in(uacAddr, req) // a late retransmission: absorbed, not relayed again
	h.only(h.snd.take())
	h.advance(DefaultWait)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions after timer J", n)
	}

	// An INVITE still gets its 408 after timer B.
	h.in(uacAddr, invite("z9hG4bKo2", "o2@x"))
	h.snd.take()
	h.advance(32 * time.Second)
	msgs := firstLines(h.snd.take())
	if !contains(msgs, toUAC+"SIP/2.0 408 Request Timeout") {
		t.Fatalf("INVITE after timer B: %v", msgs)
	}
}

func TestInviteTimersAB(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, invite("z9hG4bKi1", "i1@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
	// Timer A doubles without a cap: 0.5, 1, 2, 4, 8, 16 s after the previous.
	at := []int{500, 1500, 3500, 7500, 15500, 31500}
	prev := 0
	for _, ms := range at {
		h.advance(time.Duration(ms-prev) * time.Millisecond)
		prev = ms
		h.only(h.snd.take(), toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
	}
	// Timer B at 64·T1 = 32 s: 408 upstream, no failure route configured.
	h.advance(time.Duration(32000-prev) * time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 408 Request Timeout")
	// Timer G retransmits the 408 until the ACK.
	h.advance(500 * time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 408 Request Timeout")
	h.in(uacAddr, strings.Replace(strings.Replace(invite("z9hG4bKi1", "i1@x"), "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1))
	h.advance(10 * time.Second)
	h.only(h.snd.take()) // ACK absorbed, G stopped
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left after timer I", n)
	}
}

func TestInviteProvisionalStopsA(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TimerC = 10 * time.Second })
	h.in(uacAddr, invite("z9hG4bKi2", "i2@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 100, ""))
	h.only(h.snd.take()) // 100 is not forwarded
	h.advance(9 * time.Second)
	h.only(h.snd.take()) // no retransmission after a provisional
	// Timer C (10 s) from the INVITE: no 101-199 reset it; the branch had
	// only a 100, so CANCEL goes out and 408 comes back.
	h.advance(time.Second)
	h.only(h.snd.take(), toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 408 Request Timeout")
}

func TestTimerCResetByRinging(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TimerC = 10 * time.Second })
	h.in(uacAddr, invite("z9hG4bKc1", "c1@x"))
	fwd := h.snd.take()[1].data
	h.advance(5 * time.Second)
	h.snd.take()
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
	h.advance(9999 * time.Millisecond)
	h.only(h.snd.take())
	h.advance(time.Millisecond)
	msgs := h.snd.take()
	h.only(msgs, toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 408 Request Timeout")
	cancel := msgs[0].data
	if topBranch(cancel) != topBranch(fwd) || header(cancel, "CSeq") != "1 CANCEL" || len(headers(cancel, "Via")) != 1 {
		t.Fatalf("CANCEL:\n%s", cancel)
	}
	// The CANCEL is retransmitted until answered, the 408 (timer G) until
	// the ACK.
	h.advance(500 * time.Millisecond)
	h.only(h.snd.take(), toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 408 Request Timeout")
	h.in(uacAddr, strings.Replace(strings.Replace(strings.Replace(invite("z9hG4bKc1", "c1@x"), "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=x", 1))
	h.in(uasAddr, respond(cancel, 200, "b"))
	h.advance(2 * time.Second)
	h.only(h.snd.take())
	// The late 487 is ACKed hop by hop, not forwarded.
	h.in(uasAddr, respond(fwd, 487, "b"))
	msgs = h.snd.take()
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0")
	if topBranch(msgs[0].data) != topBranch(fwd) || !strings.Contains(header(msgs[0].data, "To"), "tag=b") {
		t.Fatalf("ACK:\n%s", msgs[0].data)
	}
}

func TestInviteNon2xx(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, invite("z9hG4bKn1", "n1@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 486, "b"))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 486 Busy Here")
	if vias := headers(msgs[1].data, "Via"); len(vias) != 1 {
		t.Fatalf("486 upstream has Vias %q", vias)
	}
	// UAS retransmits the 486 (our ACK lost): ACK again, nothing upstream.
	h.in(uasAddr, respond(fwd, 486, "b"))
	h.only(h.snd.take(), toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0")
	// Timer G: 0.5, 1, 2, 4, 4 s ... (capped at T2)
	prev := 0
	for _, ms := range []int{500, 1500, 3500, 7500, 11500} {
		h.advance(time.Duration(ms-prev) * time.Millisecond)
		prev = ms
		h.only(h.snd.take(), toUAC+"SIP/2.0 486 Busy Here")
	}
	// retransmitted INVITE: the 486 again
	h.in(uacAddr, invite("z9hG4bKn1", "n1@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 486 Busy Here")
	// No ACK: timer H at 32 s ends the server transaction.
	h.advance(time.Duration(32000-prev) * time.Millisecond)
	h.snd.take()
	h.advance(10 * time.Second)
	h.only(h.snd.take())
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left after H and D", n)
	}
}

func TestCancelRinging(t *testing.T) {
	h := newHarness(t, nil)
	inv := invite("z9hG4bKx1", "x1@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.snd.take()
	cancel := strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1)
	h.in(uacAddr, cancel)
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 200 OK", toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0")
	if header(msgs[0].data, "CSeq") != "1 CANCEL" {
		t.Fatalf("200 is not for the CANCEL:\n%s", msgs[0].data)
	}
	// retransmitted CANCEL: 200 again, no second CANCEL downstream
	h.in(uacAddr, cancel)
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.in(uasAddr, respond(msgs[1].data, 200, "b"))
	h.in(uasAddr, respond(fwd, 487, "b"))
	h.only(h.snd.take(), toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 487 Request Terminated")
	// CANCEL without a transaction: 481
	h.in(uacAddr, strings.Replace(cancel, "x1@x", "other@x", 1))
	h.only(h.snd.take(), toUAC+"SIP/2.0 481 Call/Transaction Does Not Exist")
}

func TestCancelBeforeProvisional(t *testing.T) {
	h := newHarness(t, nil)
	inv := invite("z9hG4bKx2", "x2@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uacAddr, strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK") // §9.1: no CANCEL before a provisional
	h.in(uasAddr, respond(fwd, 100, ""))
	h.only(h.snd.take(), toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0")
}

func TestCancelBeforeRelay(t *testing.T) {
	h := newHarness(t, nil)
	var held *Request
	h.rt.request = func(r *Request) { held = r.Suspend() }
	inv := invite("z9hG4bKx3", "x3@x")
	h.in(uacAddr, inv)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.in(uacAddr, strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK", toUAC+"SIP/2.0 487 Request Terminated")
	if err := held.Relay(); err != ErrFinal {
		t.Fatalf("relay after the 487: %v", err)
	}
}

func TestForkBestResponse(t *testing.T) {
	cases := []struct {
		codes []int
		want  string
	}{
		{[]int{404, 486}, "SIP/2.0 404 Not Found"},
		{[]int{486, 401}, "SIP/2.0 401 Unauthorized"},
		{[]int{503, 408}, "SIP/2.0 500 Server Internal Error"}, // not 408 to a non-INVITE (RFC 4320 §4.2)
		{[]int{503, 503}, "SIP/2.0 500 Server Internal Error"},
		{[]int{302, 404}, "SIP/2.0 302 Moved Temporarily"},
		{[]int{500, 404}, "SIP/2.0 404 Not Found"},
	}
	for _, tc := range cases {
		h := newHarness(t, nil)
		h.rt.request = func(r *Request) {
			r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
			r.Relay()
		}
		h.in(uacAddr, request("MESSAGE", "z9hG4bKf", "f@x", "sip:bob@127.0.0.1:5080", ""))
		msgs := h.snd.take()
		h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"MESSAGE sip:carol@127.0.0.1:5090 SIP/2.0")
		if topBranch(msgs[0].data) == topBranch(msgs[1].data) {
			t.Fatal("two branches with one branch id")
		}
		h.in(uasAddr, respond(msgs[0].data, tc.codes[0], "b"))
		h.only(h.snd.take())
		h.in(uas2Addr, respond(msgs[1].data, tc.codes[1], "c"))
		h.only(h.snd.take(), toUAC+tc.want)
	}
}

func TestChallengesMerged(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKa", "a@x", "sip:bob@127.0.0.1:5080", ""))
	msgs := h.snd.take()
	r1 := strings.Replace(respond(msgs[0].data, 401, "b"), "Content-Length: 0", "WWW-Authenticate: Digest realm=\"a\", nonce=\"1\"\r\nContent-Length: 0", 1)
	r2 := strings.Replace(respond(msgs[1].data, 407, "c"), "Content-Length: 0", "Proxy-Authenticate: Digest realm=\"b\", nonce=\"2\"\r\nContent-Length: 0", 1)
	h.in(uasAddr, r1)
	h.in(uas2Addr, r2)
	out := h.snd.take()
	h.only(out, toUAC+"SIP/2.0 401 Unauthorized")
	if w, p := headers(out[0].data, "WWW-Authenticate"), headers(out[0].data, "Proxy-Authenticate"); len(w) != 1 || len(p) != 1 || !strings.Contains(p[0], `realm="b"`) {
		t.Fatalf("challenges not merged:\n%s", out[0].data)
	}
}

func TestFork2xxCancelsOthers(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKp", "p@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"INVITE sip:carol@127.0.0.1:5090 SIP/2.0")
	h.in(uasAddr, respond(msgs[1].data, 180, "b"))
	h.in(uas2Addr, respond(msgs[2].data, 180, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing", toUAC+"SIP/2.0 180 Ringing")
	h.in(uas2Addr, respond(msgs[2].data, 200, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK", toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0")
	// A 2xx from the other branch too (it answered before the CANCEL): forwarded as well.
	h.in(uasAddr, respond(msgs[1].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

func TestFork6xx(t *testing.T) {
	h := newHarness(t, nil)
	failures := 0
	h.rt.failure = func(r *Request, best *parser.Message) { failures++ }
	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bK6", "6@x"))
	msgs := h.snd.take()
	h.in(uas2Addr, respond(msgs[2].data, 180, "c"))
	h.snd.take()
	h.in(uasAddr, respond(msgs[1].data, 603, "b"))
	h.only(h.snd.take(), toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"CANCEL sip:carol@127.0.0.1:5090 SIP/2.0")
	h.in(uas2Addr, respond(msgs[2].data, 487, "c"))
	h.only(h.snd.take(), toUA2+"ACK sip:carol@127.0.0.1:5090 SIP/2.0", toUAC+"SIP/2.0 603 Decline")
	if failures != 0 {
		t.Fatal("failure route ran after a 6xx")
	}
}

func TestSerialFromFailure(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.SetSerial(true)
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.SetFlag(3)
		r.Relay()
	}
	var seen []int
	h.rt.failure = func(r *Request, best *parser.Message) {
		seen = append(seen, best.StatusCode())
		if !r.IsFlagSet(3) {
			t.Error("flag lost")
		}
		if err := r.Relay(); err != nil {
			t.Errorf("serial relay: %v", err)
		}
	}
	h.in(uacAddr, invite("z9hG4bKs", "s@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
	h.in(uasAddr, respond(msgs[1].data, 503, "b"))
	msgs = h.snd.take()
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"INVITE sip:carol@127.0.0.1:5090 SIP/2.0")
	h.in(uas2Addr, respond(msgs[1].data, 200, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	if len(seen) != 1 || seen[0] != 503 {
		t.Fatalf("failure route saw %v", seen)
	}
}

func TestMaxForwards(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, strings.Replace(invite("z9hG4bKmf", "mf@x"), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	h.only(h.snd.take(), toUAC+"SIP/2.0 483 Too Many Hops")
	h.in(uacAddr, strings.Replace(invite("z9hG4bKmf2", "mf2@x"), "Max-Forwards: 70\n", "", 1))
	msgs := h.snd.take()
	if header(msgs[1].data, "Max-Forwards") != "70" {
		t.Fatalf("absent Max-Forwards not set to 70:\n%s", msgs[1].data)
	}
}

func TestLoopAndSpiral(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, invite("z9hG4bKl", "l@x"))
	fwd := h.snd.take()[1].data
	// The relayed request comes back to us unchanged: a loop.
	back := strings.Replace(fwd, "Via: SIP/2.0/UDP 127.0.0.1:5060", "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKhop\r\nVia: SIP/2.0/UDP 127.0.0.1:5060", 1)
	h.in(uasAddr, back)
	h.only(h.snd.take(), toUAS+"SIP/2.0 482 Loop Detected")
	// Same, with the Request-URI changed on the way: a spiral, relayed.
	spiral := strings.Replace(back, "INVITE sip:bob@127.0.0.1:5080", "INVITE sip:bob@127.0.0.1:5090", 1)
	h.in(uasAddr, spiral)
	h.only(h.snd.take(), toUAS+"SIP/2.0 100 Trying", toUA2+"INVITE sip:bob@127.0.0.1:5090 SIP/2.0")
}

// TestPassedThrough: a spiral's second pass carries our Via with the
// branch the first pass relayed it on, below another proxy's Via or at
// the top when we sent it to ourselves; PassedThrough names the first
// pass's transaction for it. Another INVITE that only reuses the Call-ID
// and From tag is not a second pass, nor is one carrying a Via of ours
// with a branch the first pass never sent, nor one with our Via and the
// first pass's branch but another CSeq (the callee copying the Vias it
// received into an INVITE of its own), nor the first pass itself.
func TestPassedThrough(t *testing.T) {
	h := newHarness(t, nil)
	var first Ref
	var got []bool
	h.rt.request = func(r *Request) {
		if first == (Ref{}) {
			first = r.Ref()
		}
		got = append(got, r.PassedThrough(first))
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKpt", "pt@x"))
	fwd := h.snd.take()[1].data
	ours := header(fwd, "Via")
	// Through another proxy, the Request-URI changed on the way.
	spiral := strings.Replace(strings.Replace(fwd, "Via: SIP/2.0/UDP 127.0.0.1:5060",
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKhop\r\nVia: SIP/2.0/UDP 127.0.0.1:5060", 1),
		"INVITE sip:bob@127.0.0.1:5080", "INVITE sip:bob@127.0.0.1:5090", 1)
	h.in(uasAddr, spiral)
	// Sent to ourselves: our Via on top.
	h.in(proxyAddr, strings.Replace(fwd, "INVITE sip:bob@127.0.0.1:5080", "INVITE sip:carol@127.0.0.1:5090", 1))
	// The caller's second INVITE with the Call-ID and From tag of the first.
	h.in(uacAddr, strings.Replace(invite("z9hG4bKpt2", "pt@x"), "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1))
	// A Via of ours with a branch the first pass did not send.
	forged := strings.Replace(ours, topBranch(fwd), topBranch(fwd)[:len(topBranch(fwd))-2]+"70", 1)
	h.in(uacAddr, strings.NewReplacer("Max-Forwards: 70", "Via: "+forged+"\nMax-Forwards: 70", "CSeq: 1 INVITE", "CSeq: 3 INVITE").Replace(invite("z9hG4bKpt3", "pt@x")))
	// The first pass's Vias, ours with its branch, copied under another
	// Via by the callee (who has them) into an INVITE with another CSeq.
	h.in(uasAddr, strings.NewReplacer("Via: SIP/2.0/UDP 127.0.0.1:5060", "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKcopy\r\nVia: SIP/2.0/UDP 127.0.0.1:5060",
		"CSeq: 1 INVITE", "CSeq: 4 INVITE").Replace(fwd))
	if want := "false true true false false false"; fmt.Sprint(got) != "["+want+"]" {
		t.Fatalf("PassedThrough: %v, want [%s] (first pass, spiral through a proxy, spiral to ourselves, second call, forged Via, copied Via with another CSeq)", got, want)
	}
}

func TestViaReceivedRport(t *testing.T) {
	h := newHarness(t, nil)
	msg := strings.Replace(invite("z9hG4bKr", "r@x"), "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr", "Via: SIP/2.0/UDP uac.example.com:5070;branch=z9hG4bKr;rport", 1)
	src := netip.MustParseAddrPort("127.0.0.2:40000")
	h.in(src, msg)
	msgs := h.snd.take()
	if msgs[0].dst != src {
		t.Fatalf("100 sent to %v, want the source (rport)", msgs[0].dst)
	}
	vias := headers(msgs[1].data, "Via")
	if len(vias) != 2 || vias[1] != "SIP/2.0/UDP uac.example.com:5070;branch=z9hG4bKr;rport=40000;received=127.0.0.2" {
		t.Fatalf("vias %q", vias)
	}
}

func TestDoubleRecordRoute(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) { r.RecordRoute(); r.Relay() }
	h.in(uacAddr, strings.Replace(invite("z9hG4bKrr", "rr@x"), "sip:bob@127.0.0.1:5080", "sip:bob@127.0.0.1:5080;transport=tcp", 1))
	msgs := h.snd.take()
	if msgs[1].l.Proto != transport.TCP {
		t.Fatalf("sent over %v", msgs[1].l.Proto)
	}
	rr := headers(msgs[1].data, "Record-Route")
	sig := h.sig("rr@x", "a1")
	if len(rr) != 2 || rr[0] != "<sip:127.0.0.1:5060;transport=tcp;lr;sig="+sig+">" || rr[1] != "<sip:127.0.0.1:5060;lr;sig="+sig+">" {
		t.Fatalf("Record-Route %q", rr)
	}
	if v := headers(msgs[1].data, "Via"); !strings.HasPrefix(v[0], "SIP/2.0/TCP ") {
		t.Fatalf("Via %q", v)
	}
}

func TestLooseRouting(t *testing.T) {
	h := newHarness(t, nil)
	var loose bool
	h.rt.request = func(r *Request) { loose = r.LooseRoute(); r.Relay() }
	sig := h.sig("b@x", "a1")
	bye := request("BYE", "z9hG4bKb1", "b@x", "sip:bob@127.0.0.1:5090",
		"Route: <sip:127.0.0.1:5060;transport=tcp;lr;sig="+sig+">, <sip:127.0.0.1:5060;lr;sig="+sig+">\nRoute: <sip:127.0.0.1:5080;lr>")
	h.in(uacAddr, bye)
	msgs := h.snd.take()
	h.only(msgs, toUAS+"BYE sip:bob@127.0.0.1:5090 SIP/2.0")
	if !loose || headers(msgs[0].data, "Route")[0] != "<sip:127.0.0.1:5080;lr>" || len(headers(msgs[0].data, "Route")) != 1 {
		t.Fatalf("loose=%v routes %q", loose, headers(msgs[0].data, "Route"))
	}
	// no Route: false, next hop from the R-URI
	h.in(uacAddr, request("BYE", "z9hG4bKb2", "b2@x", "sip:bob@127.0.0.1:5090", ""))
	h.only(h.snd.take(), toUA2+"BYE sip:bob@127.0.0.1:5090 SIP/2.0")
	if loose {
		t.Fatal("LooseRoute true without Route")
	}
}

// TestRouteKinds: what the Route set of a request says, for each shape an
// attacker or a phone may send. Only a Record-Route value we signed for
// the request's own dialog lets LooseRoute return true.
func TestRouteKinds(t *testing.T) {
	h := newHarness(t, nil)
	var kind RouteKind
	var loose bool
	h.rt.request = func(r *Request) {
		kind, loose = r.RouteKind(), r.LooseRoute()
		r.Reply(200, "")
	}
	own := "sip:127.0.0.1:5060;lr"
	sig := h.sig("k@x", "a1")
	toSig := h.sig("k@x", "b1") // signed for the callee's tag: its requests have the tags swapped
	cases := []struct {
		name, callID, ruri, route string
		want                      RouteKind
	}{
		{"no Route", "k@x", "sip:bob@127.0.0.1:5090", "", RouteNone},
		{"outbound proxy preload", "k@x", "sip:bob@127.0.0.1", "<" + own + ">", RouteLocal},
		{"outbound proxy preload by name, twice", "k@x", "sip:bob@127.0.0.1", "<sip:127.0.0.1;lr>, <sip:127.0.0.1:5060;lr;transport=udp>", RouteLocal},
		{"signed for this dialog", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=" + sig + ">", RouteDialog},
		{"signed for the other party's tag", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=" + toSig + ">", RouteDialog},
		{"preload then signed", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ">, <" + own + ";sig=" + sig + ">, <sip:127.0.0.1:5080;lr>", RouteDialog},
		{"signed for another Call-ID", "other@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=" + sig + ">", RouteForged},
		{"made-up signature", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=0123456789abcdef>", RouteForged},
		{"short signature", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=" + sig[:8] + ">", RouteForged},
		{"unsigned route through us to elsewhere", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ">, <sip:127.0.0.1:25099;lr>", RouteForged},
		{"good and forged", "k@x", "sip:bob@127.0.0.1:5090", "<" + own + ";sig=" + sig + ">, <" + own + ";sig=0123456789abcdef>", RouteForged},
		{"preloaded to another proxy", "k@x", "sip:bob@127.0.0.1", "<sip:127.0.0.1:25099;lr>", RouteForeign},
		{"strict router, signed R-URI", "k@x", "sip:127.0.0.1:5060;sig=" + sig, "<sip:bob@127.0.0.1:5090>", RouteDialog},
		{"strict router, forged R-URI", "k@x", "sip:127.0.0.1:5060;sig=0123456789abcdef", "<sip:bob@127.0.0.1:5090>", RouteForged},
		{"our address as R-URI, Route elsewhere", "k@x", "sip:127.0.0.1:5060", "<sip:bob@127.0.0.1:5090>", RouteForeign},
	}
	for i, c := range cases {
		msg := request("MESSAGE", "z9hG4bKk"+itoa(i), c.callID, c.ruri, "To: <sip:bob@127.0.0.1>;tag=b1")
		msg = strings.Replace(msg, "To: <sip:bob@127.0.0.1>\n", "", 1)
		if c.route != "" {
			msg = strings.Replace(msg, "Max-Forwards: 70\n", "Max-Forwards: 70\nRoute: "+c.route+"\n", 1)
		}
		h.in(uacAddr, msg)
		h.snd.take()
		if kind != c.want || loose != (c.want == RouteDialog) {
			t.Errorf("%s: kind %v loose %v, want %v", c.name, kind, loose, c.want)
		}
	}
}

// TestSignedRecordRouteRoundTrip: the callee's BYE along the Record-Route
// the core signed is loose-routed; the same Route on a request of another
// call is not.
func TestSignedRecordRouteRoundTrip(t *testing.T) {
	h := newHarness(t, nil)
	recordRouted(h)
	h.in(uacAddr, invite("z9hG4bKrt1", "rt@x"))
	msgs := h.snd.take()
	fwd := msgs[len(msgs)-1].data
	rr := header(fwd, "Record-Route")
	// The callee's BYE carries the recorded route; its From tag is the To
	// tag of the dialog and its To tag the caller's From tag.
	bye := "BYE sip:alice@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbye1\nMax-Forwards: 70\n" +
		"Route: " + rr + "\nFrom: <sip:bob@127.0.0.1>;tag=b1\nTo: <sip:alice@127.0.0.1>;tag=a1\nCall-ID: rt@x\nCSeq: 1 BYE\n\n"
	h.in(uasAddr, bye)
	h.only(h.snd.take(), toUAC+"BYE sip:alice@127.0.0.1:5070 SIP/2.0")
	// The same Route on a request of another call is refused, and nothing
	// goes to the Request-URI the attacker chose.
	forged := strings.Replace(strings.Replace(bye, "rt@x", "other@x", 1), "z9hG4bKbye1", "z9hG4bKbye2", 1)
	forged = strings.Replace(forged, "sip:alice@127.0.0.1:5070", "sip:+19005551234@127.0.0.1:25099", 1)
	h.in(uasAddr, forged)
	h.only(h.snd.take(), "127.0.0.1:5080 SIP/2.0 403 Forbidden Route")
}

func TestStrictRouter(t *testing.T) {
	h := newHarness(t, nil)
	// The previous hop was a strict router: the R-URI is our Record-Route
	// value and the real target is the last Route.
	bye := request("BYE", "z9hG4bKst", "st@x", "sip:127.0.0.1:5060;lr;sig="+h.sig("st@x", "a1"),
		"Route: <sip:127.0.0.1:5080;lr>\nRoute: <sip:bob@127.0.0.1:5090>")
	h.in(uacAddr, bye)
	msgs := h.snd.take()
	h.only(msgs, toUAS+"BYE sip:bob@127.0.0.1:5090 SIP/2.0")
	if r := headers(msgs[0].data, "Route"); len(r) != 1 || r[0] != "<sip:127.0.0.1:5080;lr>" {
		t.Fatalf("routes %q", r)
	}
}

func TestAllowListAndTransportError(t *testing.T) {
	h := newHarness(t, nil)
	var seen []int
	h.rt.failure = func(r *Request, best *parser.Message) { seen = append(seen, best.StatusCode()) }
	h.in(uacAddr, request("MESSAGE", "z9hG4bKal", "al@x", "sip:bob@192.0.2.10:5060", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	if len(seen) != 1 || seen[0] != 503 {
		t.Fatalf("failure route saw %v, want [503]", seen)
	}
	h.snd.fail = map[netip.AddrPort]error{uasAddr: transport.ErrWouldBlock}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKal2", "al2@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	if len(seen) != 2 || seen[1] != 503 {
		t.Fatalf("failure route saw %v", seen)
	}
}

func TestMalformedAndNoAction(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, strings.Replace(invite("z9hG4bKbad", "bad@x"), "CSeq: 1 INVITE", "CSeq: one INVITE", 1))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 400 Bad Request - Malformed Header CSeq")
	h.in(uasAddr, "SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
	h.only(h.snd.take())
	h.rt.request = func(r *Request) {}
	h.in(uacAddr, request("OPTIONS", "z9hG4bKnone", "none@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
}

func TestTableFull(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxTransactions = 4 }) // 1 per shard
	var got []string
	for i := 0; i < 40 && len(got) == 0; i++ {
		h.in(uacAddr, request("OPTIONS", "z9hG4bKfull"+itoa(i), "full"+itoa(i)+"@x", "sip:bob@127.0.0.1:5080", ""))
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, "SIP/2.0 503") {
				got = append(got, m.data)
			}
		}
	}
	if len(got) == 0 || header(got[0], "Retry-After") != "5" {
		t.Fatalf("no 503 with Retry-After: %q", got)
	}
	if h.core.Stats().Full == 0 {
		t.Fatal("not counted")
	}
}

func TestRFC2543Matching(t *testing.T) {
	h := newHarness(t, nil)
	inv := invite("old1", "old@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uacAddr, inv)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.in(uasAddr, respond(fwd, 404, "b"))
	h.only(h.snd.take(), toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 404 Not Found")
	ack := strings.Replace(strings.Replace(strings.Replace(inv, "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b", 1)
	h.in(uacAddr, ack)
	h.only(h.snd.take()) // absorbed by the transaction
}

func TestStatelessForward(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) { r.Forward() }
	msg := request("OPTIONS", "z9hG4bKsl", "sl@x", "sip:bob@127.0.0.1:5080", "")
	h.in(uacAddr, msg)
	a := h.snd.take()
	h.in(uacAddr, msg)
	b := h.snd.take()
	h.only(a, toUAS+"OPTIONS sip:bob@127.0.0.1:5080 SIP/2.0")
	if topBranch(a[0].data) != topBranch(b[0].data) {
		t.Fatalf("retransmission got another branch: %s vs %s", topBranch(a[0].data), topBranch(b[0].data))
	}
	// its response has no transaction: forwarded per the next Via
	h.in(uasAddr, respond(a[0].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	// a response whose top Via is not ours is dropped
	h.in(uasAddr, respond(msg, 200, "b"))
	h.only(h.snd.take())
}

func TestACKFor2xxRoutedStatelessly(t *testing.T) {
	h := newHarness(t, nil)
	ack := request("ACK", "z9hG4bKack2", "a2@x", "sip:bob@127.0.0.1:5080", "Route: <sip:127.0.0.1:5060;lr>")
	ack = strings.Replace(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b", 1)
	h.in(uacAddr, ack)
	msgs := h.snd.take()
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0")
	if len(headers(msgs[0].data, "Route")) != 0 || len(headers(msgs[0].data, "Via")) != 2 {
		t.Fatalf("ACK:\n%s", msgs[0].data)
	}
}

func TestReplyHookDropsProvisional(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool { return m.StatusCode() != 183 }
	h.in(uacAddr, invite("z9hG4bKrh", "rh@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 183, "b"))
	h.only(h.snd.take())
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
}

func TestBranchHookEdits(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.branch = func(r *Request, b *Branch) {
		b.Editor().AddHeader("X-Branch", []byte{'0' + byte(b.Index())})
		if b.Index() == 1 {
			b.SetDestination(transport.UDP, uasAddr)
		}
	}
	h.rt.request = func(r *Request) {
		r.Editor().AddHeader("X-Route", []byte("yes"))
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKbh", "bh@x", "sip:bob@127.0.0.1:5080", ""))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0", toUAS+"MESSAGE sip:carol@127.0.0.1:5090 SIP/2.0")
	for i, m := range msgs {
		if header(m.data, "X-Route") != "yes" || header(m.data, "X-Branch") != string(rune('0'+i)) {
			t.Fatalf("branch %d:\n%s", i, m.data)
		}
	}
}

func TestSuspendResume(t *testing.T) {
	h := newHarness(t, nil)
	done := make(chan error)
	h.rt.request = func(r *Request) {
		r.Editor().AddHeader("X-Before", []byte("1"))
		held := r.Suspend()
		go func() {
			held.Editor().AddHeader("X-After", []byte("2"))
			done <- held.Relay()
		}()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKsu", "su@x", "sip:bob@127.0.0.1:5080", ""))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	if header(msgs[0].data, "X-Before") != "1" || header(msgs[0].data, "X-After") != "2" {
		t.Fatalf("edits lost:\n%s", msgs[0].data)
	}
}

func TestReliableTransportTimers(t *testing.T) {
	h := newHarness(t, nil)
	h.inProto(uacAddr, transport.TCP, request("MESSAGE", "z9hG4bKtcp", "tcp@x", "sip:bob@127.0.0.1:5080;transport=tcp", ""))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080;transport=tcp SIP/2.0")
	h.advance(10 * time.Second)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying") // no timer E on TCP; the 100 of RFC 4320 §4.1
	h.in(uasAddr, respond(msgs[0].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(time.Millisecond)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions: J and K are zero on TCP", n)
	}
}

func TestSuspendedRouteTimesOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TimerC = 32 * time.Second })
	h.rt.request = func(r *Request) { r.Suspend() }
	// A non-INVITE request: the 100 of RFC 4320 §4.1 when the UAC's timer E
	// reached T2, and no 408 at the deadline (§4.2).
	h.in(uacAddr, request("MESSAGE", "z9hG4bKst1", "st1@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take())
	h.advance(3500 * time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.advance(32 * time.Second)
	h.only(h.snd.take())
	// An INVITE: 408 after timer C.
	h.in(uacAddr, invite("z9hG4bKst2", "st2@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.advance(32 * time.Second)
	h.only(h.snd.take(), toUAC+"SIP/2.0 408 Request Timeout")
	h.in(uacAddr, strings.Replace(strings.Replace(strings.Replace(invite("z9hG4bKst2", "st2@x"), "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=x", 1))
	h.advance(64 * time.Second)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
}

func TestAcceptedAbsorbsRetransmissions(t *testing.T) {
	for _, wait := range []time.Duration{0, 32 * time.Second} {
		h := newHarness(t, func(c *Config) { c.Wait = wait })
		if wait == 0 {
			wait = DefaultWait
		}
		inv := invite("z9hG4bKacc", "acc@x")
		h.in(uacAddr, inv)
		fwd := h.snd.take()[1].data
		h.in(uasAddr, respond(fwd, 200, "b"))
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		h.in(uacAddr, inv) // RFC 6026: absorbed in Accepted, not relayed again
		h.only(h.snd.take())
		h.advance(wait - time.Millisecond)
		h.in(uacAddr, inv) // timer L still running: absorbed
		h.only(h.snd.take())
		h.in(uasAddr, respond(fwd, 200, "b")) // timer M still running: forwarded by the branch
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		if n := h.core.Stats().Stateless; n != 0 {
			t.Fatalf("wait %v: %d responses forwarded statelessly before L and M", wait, n)
		}
		h.advance(time.Millisecond) // L and M fire
		if n := h.core.Stats().Transactions; n != 0 {
			t.Fatalf("wait %v: %d transactions left after L and M", wait, n)
		}
		h.in(uasAddr, respond(fwd, 200, "b")) // no transaction: forwarded statelessly per Via
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		if n := h.core.Stats().Stateless; n != 1 {
			t.Fatalf("wait %v: %d responses forwarded statelessly after L and M, want 1", wait, n)
		}
	}
}

func TestNonInviteWait(t *testing.T) {
	for _, wait := range []time.Duration{0, 32 * time.Second} {
		h := newHarness(t, func(c *Config) { c.Wait = wait })
		if wait == 0 {
			wait = DefaultWait
		}
		req := request("MESSAGE", "z9hG4bKnw", "nw@x", "sip:bob@127.0.0.1:5080", "")
		h.in(uacAddr, req)
		fwd := h.snd.take()[0].data
		h.in(uasAddr, respond(fwd, 200, "b"))
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		h.advance(wait - time.Millisecond)
		h.in(uacAddr, req) // timer J running: answered from the transaction
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		h.advance(time.Millisecond)
		if n := h.core.Stats().Transactions; n != 0 {
			t.Fatalf("wait %v: %d transactions after timer J", wait, n)
		}
		h.in(uacAddr, req) // later: a new transaction, relayed again
		h.only(h.snd.take(), toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	}
}

func TestOversizedBranch(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, invite("z9hG4bK"+strings.Repeat("x", 1100), "long@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 400 Bad Request - Transaction Key Too Long")
}

func TestIPv6(t *testing.T) {
	h := newHarness(t, nil)
	v6 := &transport.Listener{Index: 2, Proto: transport.UDP, Local: netip.MustParseAddrPort("[::1]:5060"), AdvertisedHost: "[::1]", AdvertisedPort: 5060}
	h.snd.ls = append(h.snd.ls, v6)
	uac6 := netip.MustParseAddrPort("[::1]:5070")
	msg := strings.Replace(request("MESSAGE", "z9hG4bK6v", "v6@x", "sip:bob@[::1]:5080", ""), "Via: SIP/2.0/UDP 127.0.0.1:5070", "Via: SIP/2.0/UDP [::1]:5070;rport", 1)
	p := transport.Packet{Data: []byte(fixCL(msg)), Src: uac6, Listener: v6, Proto: transport.UDP}
	h.core.HandleMessage(&p)
	msgs := h.snd.take()
	h.only(msgs, "[::1]:5080 MESSAGE sip:bob@[::1]:5080 SIP/2.0")
	vias := headers(msgs[0].data, "Via")
	if !strings.HasPrefix(vias[0], "SIP/2.0/UDP [::1]:5060;branch=") || vias[1] != "SIP/2.0/UDP [::1]:5070;rport=5070;branch=z9hG4bK6v;received=::1" {
		t.Fatalf("vias %q", vias)
	}
	h.in(netip.MustParseAddrPort("[::1]:5080"), respond(msgs[0].data, 200, "b"))
	h.only(h.snd.take(), "[::1]:5070 SIP/2.0 200 OK")
}

func TestStrictNextHop(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKsn", "sn@x", "sip:bob@127.0.0.1:5090",
		"Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5080>, <sip:192.0.2.9;lr>"))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:127.0.0.1:5080 SIP/2.0")
	if r := headers(msgs[0].data, "Route"); len(r) != 1 || r[0] != "<sip:192.0.2.9;lr>, <sip:bob@127.0.0.1:5090>" {
		t.Fatalf("routes %q", r)
	}
}

func TestRelayTwice(t *testing.T) {
	h := newHarness(t, nil)
	var errs []error
	h.rt.request = func(r *Request) {
		errs = append(errs, r.Relay(), r.Relay())
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		errs = append(errs, r.Relay())
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKtw", "tw@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"MESSAGE sip:carol@127.0.0.1:5090 SIP/2.0")
	if errs[0] != nil || errs[1] != ErrRelayed || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
}

func TestMemoryCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBytes = 64 << 10 }) // 16 KB per shard: two transactions
	full := 0
	for i := 0; i < 40; i++ {
		h.in(uacAddr, invite("z9hG4bKcap"+itoa(i), "cap"+itoa(i)+"@x"))
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, "SIP/2.0 503") && header(m.data, "Retry-After") == "5" {
				full++
			}
		}
	}
	st := h.core.Stats()
	if full == 0 || st.Bytes > 64<<10 || st.Transactions == 0 {
		t.Fatalf("503s %d, stats %+v", full, st)
	}
}

type localRouter struct {
	funcRouter
	seen []string
}

func (l *localRouter) Local(r *Request, b *Branch, method parser.Method, req []byte) {
	line, _, _ := strings.Cut(string(req), "\r\n")
	l.seen = append(l.seen, itoa(b.Index())+" "+method.String()+" "+line)
}

func TestLocalRoute(t *testing.T) {
	lr := &localRouter{}
	h := newHarness(t, func(c *Config) { c.Router = lr })
	inv := invite("z9hG4bKlr", "lr@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.in(uacAddr, strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1))
	h.in(uasAddr, respond(fwd, 487, "b"))
	want := []string{"0 CANCEL CANCEL sip:bob@127.0.0.1:5080 SIP/2.0", "0 ACK ACK sip:bob@127.0.0.1:5080 SIP/2.0"}
	if strings.Join(lr.seen, "|") != strings.Join(want, "|") {
		t.Fatalf("local route saw %q", lr.seen)
	}
}

func TestRouterPanicIsContained(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) { panic("route bug") }
	h.in(uacAddr, request("OPTIONS", "z9hG4bKpan", "pan@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	h.rt.request = nil
	h.rt.failure = func(r *Request, best *parser.Message) { panic("failure route bug") }
	h.in(uacAddr, request("OPTIONS", "z9hG4bKpan2", "pan2@x", "sip:bob@127.0.0.1:5080", ""))
	fwd := h.snd.take()[0].data
	h.in(uasAddr, respond(fwd, 404, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 404 Not Found")
	// the shard is not left locked
	h.in(uacAddr, request("OPTIONS", "z9hG4bKpan3", "pan@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAS+"OPTIONS sip:bob@127.0.0.1:5080 SIP/2.0")
}

// TestForkMaxBranches forks to MaxBranches destinations (the first branch
// inside the transaction, the others pooled), refuses one more, answers
// from the last branch, and checks the accounted bytes go back to the baseline
// when the transaction ends, twice so the second call reuses the pool.
func TestForkMaxBranches(t *testing.T) {
	h := newHarness(t, nil)
	var addErr error
	h.rt.request = func(r *Request) {
		for i := 1; i < MaxBranches; i++ {
			if err := r.AddBranch([]byte("sip:u" + strconv.Itoa(i) + "@127.0.0.1:" + strconv.Itoa(6000+i))); err != nil {
				t.Fatalf("branch %d: %v", i, err)
			}
		}
		addErr = r.AddBranch([]byte("sip:extra@127.0.0.1:7000"))
		r.Relay()
	}
	base := h.core.Stats().Bytes // the shards' indexes
	for call := 0; call < 2; call++ {
		id := "mb" + strconv.Itoa(call) + "@x"
		h.in(uacAddr, request("MESSAGE", "z9hG4bKmb"+strconv.Itoa(call), id, "sip:bob@127.0.0.1:5080", ""))
		if addErr != ErrTooManyBranches {
			t.Fatalf("branch %d: %v, want ErrTooManyBranches", MaxBranches+1, addErr)
		}
		msgs := h.snd.take()
		if len(msgs) != MaxBranches {
			t.Fatalf("%d requests sent, want %d", len(msgs), MaxBranches)
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			b := topBranch(m.data)
			if seen[b] {
				t.Fatalf("branch id %s used twice", b)
			}
			seen[b] = true
		}
		if got, one := h.core.Stats().Bytes-base, h.core.Table().EntrySize(); got < one+int64((MaxBranches-1)*branchSize) {
			t.Fatalf("accounted %d bytes, want at least the entry (%d) and %d pooled branches", got, one, MaxBranches-1)
		}
		last := msgs[MaxBranches-1]
		h.in(last.dst, respond(last.data, 200, "z"))
		h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
		for _, m := range msgs[:MaxBranches-1] {
			h.in(m.dst, respond(m.data, 404, "n"))
		}
		h.only(h.snd.take())
		h.advance(DefaultWait + 32*time.Second)
		if st := h.core.Stats(); st.Transactions != 0 || st.Bytes != base {
			t.Fatalf("call %d: %d transactions, %d bytes accounted, want %d", call, st.Transactions, st.Bytes, base)
		}
	}
}

// TestWarningsRateLimited checks per-request warnings are bounded per
// second and the dropped ones are counted in the next line let through.
func TestWarningsRateLimited(t *testing.T) {
	var out bytes.Buffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&out, nil))
	})
	h.rt.request = func(r *Request) {} // does nothing: 500 and a warning
	send := func(i int) {
		id := "w" + strconv.Itoa(i) + "@x"
		h.in(uacAddr, request("MESSAGE", "z9hG4bKw"+strconv.Itoa(i), id, "sip:bob@127.0.0.1:5080", ""))
		h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	}
	for i := 0; i < 25; i++ {
		send(i)
	}
	if n := strings.Count(out.String(), "route did nothing"); n != warnPerSecond {
		t.Fatalf("%d warnings in one second, want %d:\n%s", n, warnPerSecond, out.String())
	}
	h.advance(time.Second)
	out.Reset()
	send(99)
	if !strings.Contains(out.String(), "suppressed=15") {
		t.Fatalf("the next warning does not count the 15 suppressed:\n%s", out.String())
	}
}

// TestFirstResponseTimeout checks Config.FR replaces timers B and F, and
// that a route's SetTimeouts overrides both it and timer C per request.
func TestFirstResponseTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FR = 2 * time.Second })
	var failed []int
	h.rt.failure = func(r *Request, best *parser.Message) { failed = append(failed, best.StatusCode()) }
	h.in(uacAddr, request("OPTIONS", "z9hG4bKfr1", "fr1@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	h.advance(2*time.Second - time.Millisecond)
	h.snd.take() // retransmissions only
	if len(failed) != 0 {
		t.Fatalf("timer F before Config.FR: %v", failed)
	}
	h.advance(time.Millisecond)
	h.only(h.snd.take()) // no 408 to a non-INVITE (RFC 4320 §4.2)
	if len(failed) != 1 || failed[0] != 408 {
		t.Fatalf("failure route saw %v at Config.FR", failed)
	}

	// Per request: 700 ms for a first response, then 1.5 s after ringing.
	h.rt.request = func(r *Request) {
		r.SetTimeouts(700*time.Millisecond, 1500*time.Millisecond)
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKfr2", "fr2@x"))
	fwd := h.snd.take()[1].data
	h.advance(699 * time.Millisecond)
	h.snd.take()
	h.advance(time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 408 Request Timeout")
	// The ACK stops timer G's retransmissions of that 408.
	h.in(uacAddr, strings.Replace(strings.Replace(strings.Replace(invite("z9hG4bKfr2", "fr2@x"), "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=x", 1))
	h.only(h.snd.take())

	h.in(uacAddr, invite("z9hG4bKfr3", "fr3@x"))
	fwd = h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
	h.advance(1499 * time.Millisecond)
	h.snd.take()
	h.advance(time.Millisecond)
	h.only(h.snd.take(), toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 408 Request Timeout")
}

// TestTryingOnlyWhenWaiting: an INVITE the route refuses at once gets its
// final response alone (no 100 ahead of it: a spoofed INVITE gets one
// packet back); one it relays or suspends gets 100 Trying first.
func TestTryingOnlyWhenWaiting(t *testing.T) {
	h := newHarness(t, nil)
	var held *Request
	h.rt.request = func(r *Request) {
		switch r.Msg.CallID()[0] {
		case 'r':
			r.ReplyStateless(404, "Not Found", nil)
		case 's':
			held = r.Suspend()
		default:
			r.Relay()
		}
	}
	h.in(uacAddr, invite("z9hG4bKt1", "refused@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 404 Not Found")
	h.in(uacAddr, invite("z9hG4bKt2", "suspended@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	// A retransmission while the route waits gets the 100 again.
	h.in(uacAddr, invite("z9hG4bKt2", "suspended@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	held.Resume(func(r *Request) { r.ReplyStateless(403, "Forbidden", nil) })
	h.only(h.snd.take(), toUAC+"SIP/2.0 403 Forbidden")
	h.in(uacAddr, invite("z9hG4bKt3", "xrelayed@x"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
}
