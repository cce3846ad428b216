package txn

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// A branch request over TCP is accepted by the transport (queued while the
// connection opens) and reported lost later, when the connect fails.

const tcpURI = "sip:bob@127.0.0.1:5080;transport=tcp"

func tcpInvite(branch, callID string) string {
	return strings.Replace(invite(branch, callID), "INVITE sip:bob@127.0.0.1:5080 SIP/2.0", "INVITE "+tcpURI+" SIP/2.0", 1)
}

func ackFor(inv string) string {
	ack := strings.Replace(strings.Replace(inv, "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1)
	return strings.Replace(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=x", 1)
}

// A single-branch INVITE whose connection cannot be opened: the branch
// ends with 503 at once, the failure route sees it, and the caller gets
// 500 (§16.7 step 6), as when Send itself fails; timers A, B and C are
// stopped. A second report of the same message changes nothing.
func TestAsyncSendFailureInvite(t *testing.T) {
	h := newHarness(t, nil)
	var seen []int
	h.rt.failure = func(r *Request, best *parser.Message) { seen = append(seen, best.StatusCode()) }
	inv := tcpInvite("z9hG4bKaf1", "af1@x")
	h.in(uacAddr, inv)
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE "+tcpURI+" SIP/2.0")
	fwd := msgs[1]
	if fwd.tag == (transport.Tag{}) || msgs[0].tag != (transport.Tag{}) {
		t.Fatalf("tags: INVITE over TCP %v, 100 over UDP %v", fwd.tag, msgs[0].tag)
	}
	errs := h.core.Stats().SendErrors
	h.snd.lost(fwd, syscall.ECONNREFUSED)
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	if len(seen) != 1 || seen[0] != 503 {
		t.Fatalf("failure route saw %v, want [503]", seen)
	}
	if got := h.core.Stats().SendErrors; got != errs+1 {
		t.Fatalf("send errors %d -> %d", errs, got)
	}
	h.snd.lost(fwd, syscall.ECONNREFUSED)
	h.only(h.snd.take())
	h.in(uacAddr, ackFor(inv))
	h.advance(4 * time.Minute) // past timers B, C and I
	h.only(h.snd.take())
	if len(seen) != 1 {
		t.Fatalf("failure route ran again: %v", seen)
	}
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
}

// Non-INVITE: 500 at once instead of 408 after timer F.
func TestAsyncSendFailureNonInvite(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKaf2", "af2@x", tcpURI, ""))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE "+tcpURI+" SIP/2.0")
	h.snd.lost(msgs[0], syscall.ETIMEDOUT)
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	h.advance(40 * time.Second)
	h.only(h.snd.take())
}

// The failure route can retry elsewhere after the asynchronous 503, as
// after any 503 (serial forking to a backup).
func TestAsyncSendFailureSerialRetry(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.failure = func(r *Request, best *parser.Message) {
		if best.StatusCode() == 503 {
			r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
			if err := r.Relay(); err != nil {
				t.Errorf("relay from the failure route: %v", err)
			}
		}
	}
	h.in(uacAddr, tcpInvite("z9hG4bKaf3", "af3@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE "+tcpURI+" SIP/2.0")
	h.snd.lost(msgs[1], syscall.ECONNREFUSED)
	msgs = h.snd.take()
	h.only(msgs, toUA2+"INVITE sip:carol@127.0.0.1:5090 SIP/2.0")
	h.in(uas2Addr, respond(msgs[0].data, 200, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// With two parallel branches the asynchronous 503 is aggregated like any
// other final response: nothing goes upstream until the other branch
// ends, and its 486 beats the 503.
func TestAsyncSendFailureFork(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, tcpInvite("z9hG4bKaf4", "af4@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE "+tcpURI+" SIP/2.0", toUA2+"INVITE sip:carol@127.0.0.1:5090 SIP/2.0")
	h.snd.lost(msgs[1], syscall.ECONNREFUSED)
	h.only(h.snd.take())
	h.in(uas2Addr, respond(msgs[2].data, 486, "c"))
	h.only(h.snd.take(), toUA2+"ACK sip:carol@127.0.0.1:5090 SIP/2.0", toUAC+"SIP/2.0 486 Busy Here")
}

// Reports that no longer match are ignored: a branch that already got its
// final response, a destination the branch no longer has, a transaction
// that ended, a tag that is not a branch tag.
func TestAsyncSendFailureStale(t *testing.T) {
	h := newHarness(t, nil)
	inv := tcpInvite("z9hG4bKaf5", "af5@x")
	h.in(uacAddr, inv)
	msgs := h.snd.take()
	fwd := msgs[1]

	other := fwd
	other.dst = uas2Addr
	h.snd.lost(other, syscall.ECONNREFUSED)
	h.only(h.snd.take())
	h.snd.lost(sentMsg{l: fwd.l, dst: fwd.dst, tag: transport.Tag{fwd.tag[0], 1}}, syscall.ECONNREFUSED)
	h.only(h.snd.take())

	h.in(uasAddr, respond(fwd.data, 180, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
	h.in(uasAddr, respond(fwd.data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.snd.lost(fwd, syscall.ECONNRESET)
	h.only(h.snd.take())

	h.advance(time.Minute) // the transaction ends (timer L)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
	h.snd.lost(fwd, syscall.ECONNRESET)
	h.only(h.snd.take())
}

func TestBranchTagRoundTrip(t *testing.T) {
	for _, c := range []struct {
		si  int
		h   uint64
		id  uint32
		idx int
	}{{0, 0, 0, 0}, {1023, ^uint64(0), ^uint32(0), 15}, {5, 0x1234, 77, 3}} {
		tag := branchTag(c.si, c.h, c.id, c.idx)
		if tag == (transport.Tag{}) {
			t.Fatalf("%+v: zero tag", c)
		}
		si, h, id, idx, ok := parseBranchTag(tag)
		if !ok || si != c.si || h != c.h || id != c.id || idx != c.idx {
			t.Fatalf("%+v: parsed %d %x %d %d %v", c, si, h, id, idx, ok)
		}
	}
	if _, _, _, _, ok := parseBranchTag(transport.Tag{1, 2}); ok {
		t.Fatal("a tag without the marker bit parsed")
	}
}
