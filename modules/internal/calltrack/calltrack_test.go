package calltrack

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// lease counts its releases; a lease released twice fails the test.
type lease struct {
	name     string
	released *atomic.Int32
}

func (l lease) Release() { l.released.Add(1) }

type env struct {
	t       *testing.T
	h       *routetest.Harness
	clock   *shards.Clock
	tbl     *Table[lease]
	set     *metrics.Set
	timeout atomic.Int64
}

func newEnv(t *testing.T, maxCalls int, failOver bool) *env {
	e := &env{t: t, clock: shards.NewManualClock(1_000_000), set: metrics.NewSet()}
	e.h = routetest.New(t, e.clock)
	e.timeout.Store(60_000)
	var err error
	e.tbl, err = New[lease](Config{Clock: e.clock, Shards: 1, MaxCalls: maxCalls, Timeout: &e.timeout,
		FailOver: failOver, Metrics: e.set, Prefix: "test_calls"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tbl.Close)
	return e
}

// in runs fn in the route of msg.
func (e *env) in(msg string, fn func(c *routing.Ctx)) {
	e.t.Helper()
	e.h.InRoute(e.t, "192.0.2.10:5060", msg, fn)
}

func (e *env) track(msg string, l lease) (ok bool) {
	e.t.Helper()
	e.in(msg, func(c *routing.Ctx) { ok = e.tbl.Track(c, l) })
	return ok
}

func (e *env) counter(name string) uint64 {
	return e.set.GetOrCreateCounter(name).Get()
}

// inDialog is msg's dialog with another method and CSeq, a To tag and a
// new branch: a BYE or re-INVITE of the call (or a forgery with its
// Call-ID and From tag).
func inDialog(msg, method, cseq, branch string) string {
	lines := strings.Split(msg, "\r\n")
	lines[0] = method + strings.TrimPrefix(lines[0], strings.Fields(lines[0])[0])
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Via:"):
			lines[i] = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK." + branch + ";rport"
		case strings.HasPrefix(l, "To:"):
			lines[i] = l + ";tag=b1"
		case strings.HasPrefix(l, "CSeq:"):
			lines[i] = "CSeq: " + cseq + " " + method
		}
	}
	return strings.Join(lines, "\r\n")
}

func TestTrackAndEndOnBye(t *testing.T) {
	e := newEnv(t, 10, false)
	var n atomic.Int32
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	if !e.track(inv, lease{"a", &n}) || e.tbl.Len() != 1 {
		t.Fatalf("not tracked: %d", e.tbl.Len())
	}
	// An INVITE with its Call-ID and From tag (a re-INVITE, or a forgery)
	// is not tracked again.
	var m atomic.Int32
	if e.track(inDialog(inv, "INVITE", "2", "again"), lease{"b", &m}) || e.tbl.Len() != 1 {
		t.Fatal("tracked twice")
	}
	// Another method ends nothing; the BYE ends the call once.
	e.in(inDialog(inv, "INFO", "3", "info"), e.tbl.CallEnded)
	if n.Load() != 0 {
		t.Fatal("released by an INFO")
	}
	e.in(inDialog(inv, "BYE", "4", "bye"), e.tbl.CallEnded)
	e.in(inDialog(inv, "BYE", "5", "bye2"), e.tbl.CallEnded) // a second BYE, or a forgery
	if n.Load() != 1 || m.Load() != 0 || e.tbl.Len() != 0 {
		t.Fatalf("released %d (other lease %d), %d tracked", n.Load(), m.Load(), e.tbl.Len())
	}
}

// withHeader is msg with the value of its header name replaced.
func withHeader(msg, name, value string) string {
	lines := strings.Split(msg, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, name+":") {
			lines[i] = name + ": " + value
		}
	}
	return strings.Join(lines, "\r\n")
}

// fromCallee is msg (in the dialog) sent by the callee: From and To
// swapped, so that the call's From tag is in the To.
func fromCallee(msg string) string {
	lines := strings.Split(msg, "\r\n")
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l, "From:"); ok {
			lines[i] = "To:" + v
		} else if v, ok := strings.CutPrefix(l, "To:"); ok {
			lines[i] = "From:" + v
		}
	}
	return strings.Join(lines, "\r\n")
}

// A call is a dialog, Call-ID and From tag: INVITEs that share a Call-ID
// with other From tags are calls of their own, each ended by its own BYE
// from either side. (A caller who sent every call with one Call-ID had
// them all counted as one, and the first BYE ended the count.)
func TestCallsOfOneCallIDTrackedApart(t *testing.T) {
	e := newEnv(t, 10, false)
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	var n [3]atomic.Int32
	var calls [3]string
	var txs [3]txn.Ref
	for i := range calls {
		calls[i] = withHeader(inDialog(inv, "INVITE", "1", fmt.Sprint("dlg", i)), "To", "<sip:bob@example.com>")
		calls[i] = withHeader(calls[i], "From", fmt.Sprintf("<sip:alice@example.com>;tag=dialog-%d", i))
		ok := false
		e.in(calls[i], func(c *routing.Ctx) {
			ok, txs[i] = e.tbl.Track(c, lease{"", &n[i]}), c.R.Ref()
		})
		if !ok {
			t.Fatalf("call %d on the Call-ID not tracked", i)
		}
	}
	if e.tbl.Len() != 3 {
		t.Fatalf("%d tracked, want 3", e.tbl.Len())
	}
	// The caller hangs up the second call, the callee the third; a BYE
	// with the first call's Call-ID and a From tag of no call ends nothing.
	e.in(inDialog(calls[1], "BYE", "2", "bye1"), e.tbl.CallEnded)
	e.in(fromCallee(inDialog(calls[2], "BYE", "1", "bye2")), e.tbl.CallEnded)
	e.in(withHeader(inDialog(calls[0], "BYE", "2", "bye0"), "From", "<sip:alice@example.com>;tag=dialog-9"), e.tbl.CallEnded)
	if n[0].Load() != 0 || n[1].Load() != 1 || n[2].Load() != 1 || e.tbl.Len() != 1 {
		t.Fatalf("released %d, %d, %d; %d tracked", n[0].Load(), n[1].Load(), n[2].Load(), e.tbl.Len())
	}
	// The failure of an INVITE of another dialog does not end it, even
	// one with its transaction's branch and CSeq.
	var callID []byte
	other := withHeader(inDialog(calls[0], "INVITE", "1", "other"), "To", "<sip:bob@example.com>")
	e.in(withHeader(other, "From", "<sip:alice@example.com>;tag=dialog-other"), func(c *routing.Ctx) {
		callID = append(callID, c.CallID()...)
		e.tbl.CallFailed(c)
	})
	if e.tbl.End(callID, []byte("dialog-other"), txs[0]) || n[0].Load() != 0 {
		t.Fatal("another dialog's failure ended the call")
	}
	e.in(fromCallee(inDialog(calls[0], "BYE", "1", "bye0b")), e.tbl.CallEnded)
	if n[0].Load() != 1 || e.tbl.Len() != 0 {
		t.Fatalf("the callee's BYE: released %d, %d tracked", n[0].Load(), e.tbl.Len())
	}
}

// The key is a fixed-size hash: a Call-ID longer than the shards' key
// limit (1024 bytes) is tracked like any other (it was not tracked, nor
// counted as untracked: the call went on uncounted).
func TestLongCallIDTracked(t *testing.T) {
	e := newEnv(t, 10, false)
	var n atomic.Int32
	inv := withHeader(routetest.Request("INVITE", "sip:bob@example.com", ""), "Call-ID", strings.Repeat("x", 2000)+"@phone")
	if !e.track(inv, lease{"", &n}) || e.tbl.Len() != 1 {
		t.Fatalf("a 2000-byte Call-ID not tracked: %d", e.tbl.Len())
	}
	e.in(inDialog(inv, "BYE", "2", "bye"), e.tbl.CallEnded)
	if n.Load() != 1 || e.tbl.Len() != 0 {
		t.Fatalf("its BYE: released %d, %d tracked", n.Load(), e.tbl.Len())
	}
}

func TestOnlyTheTrackedTransactionFails(t *testing.T) {
	e := newEnv(t, 10, true)
	var n atomic.Int32
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	var callID, tag []byte
	var tx txn.Ref
	e.in(inv, func(c *routing.Ctx) {
		e.tbl.Track(c, lease{"a", &n})
		callID, tag, tx = append(callID, c.CallID()...), append(tag, c.FTag()...), c.R.Ref()
	})
	// An INVITE with the call's Call-ID and From tag but another branch
	// and CSeq (a re-INVITE, or a forgery) is another transaction: neither
	// tracked in the call's place nor able to release it.
	other := inDialog(inv, "INVITE", "7", "other")
	var m atomic.Int32
	e.in(other, func(c *routing.Ctx) {
		if e.tbl.Track(c, lease{"b", &m}) {
			t.Fatal("another transaction's lease replaced the call's")
		}
		e.tbl.CallFailed(c)
	})
	if n.Load() != 0 || e.tbl.Len() != 1 {
		t.Fatal("another transaction's failure released the call")
	}
	// The failure route of the tracked INVITE.
	if !e.tbl.End(callID, tag, tx) || n.Load() != 1 || e.tbl.Len() != 0 {
		t.Fatalf("the INVITE's failure: released %d, %d tracked", n.Load(), e.tbl.Len())
	}
}

func TestFailOverReplacesTheLease(t *testing.T) {
	e := newEnv(t, 10, true)
	var first, second atomic.Int32
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	// The route sends the INVITE to one destination, then (its failure
	// route, the same transaction) to another.
	e.in(inv, func(c *routing.Ctx) {
		e.tbl.Track(c, lease{"a", &first})
		if !e.tbl.Track(c, lease{"b", &second}) || first.Load() != 1 || e.tbl.Len() != 1 {
			t.Fatalf("fail-over: first released %d, %d tracked", first.Load(), e.tbl.Len())
		}
	})
	e.in(inDialog(inv, "BYE", "2", "bye"), e.tbl.CallEnded)
	if first.Load() != 1 || second.Load() != 1 {
		t.Fatalf("after the BYE: %d, %d releases", first.Load(), second.Load())
	}
}

func TestBoundedAndCounted(t *testing.T) {
	e := newEnv(t, 3, false)
	var n atomic.Int32
	for i := 0; i < 5; i++ {
		ok := e.track(routetest.Request("INVITE", "sip:bob@example.com", ""), lease{"x", &n})
		if ok != (i < 3) {
			t.Fatalf("call %d: tracked %v", i, ok)
		}
	}
	if e.tbl.Len() != 3 || e.counter("test_calls_untracked_total") != 2 {
		t.Fatalf("%d tracked, %d untracked", e.tbl.Len(), e.counter("test_calls_untracked_total"))
	}
}

func TestSweepReleasesTimedOut(t *testing.T) {
	e := newEnv(t, 10, false)
	var old, young atomic.Int32
	e.track(routetest.Request("INVITE", "sip:bob@example.com", ""), lease{"old", &old})
	e.clock.Advance(30 * time.Second)
	e.timeout.Store(10_000) // a reload: calls tracked from now on get the new timeout
	e.track(routetest.Request("INVITE", "sip:bob@example.com", ""), lease{"young", &young})
	e.tbl.Sweep(e.clock.Now() + 9_999)
	if old.Load() != 0 || young.Load() != 0 {
		t.Fatal("released before the deadline")
	}
	e.tbl.Sweep(e.clock.Now() + 10_000)
	if young.Load() != 1 || old.Load() != 0 || e.tbl.Len() != 1 {
		t.Fatalf("young %d, old %d, %d tracked", young.Load(), old.Load(), e.tbl.Len())
	}
	e.tbl.Sweep(e.clock.Now() + 30_000)
	if old.Load() != 1 || e.tbl.Len() != 0 || e.counter("test_calls_timed_out_total") != 2 {
		t.Fatalf("old %d, %d tracked, %d timed out", old.Load(), e.tbl.Len(), e.counter("test_calls_timed_out_total"))
	}
}

func TestTrackAndEndAllocateNothing(t *testing.T) {
	e := newEnv(t, 10, true)
	var n atomic.Int32
	l := lease{"a", &n}
	caller := []byte("alice@example.com")
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	e.in(inv, func(c *routing.Ctx) {
		e.tbl.Track(c, l) // the shard's first entry may grow its table
		e.tbl.CallFailed(c)
		allocs := testing.AllocsPerRun(100, func() {
			e.tbl.Claim(c, l, caller)
			e.tbl.InUse(c, caller)
			e.tbl.CallFailed(c)
		})
		if allocs != 0 {
			t.Errorf("%v allocations per tracked and released call", allocs)
		}
		allocs = testing.AllocsPerRun(100, func() {
			e.tbl.Claim(c, l, caller)
			e.tbl.Bind(c, 7)
			e.tbl.EndDialog(c.CallID(), c.FTag(), 7)
		})
		if allocs != 0 {
			t.Errorf("%v allocations per call bound to its dialog and released by its end", allocs)
		}
	})
	if n.Load() != 203 {
		t.Fatalf("%d releases, want 203", n.Load())
	}
}

// TestClaimInUse: an initial INVITE with the Call-ID and From tag of a
// call in progress, another transaction (a merged request with the same
// CSeq, or another CSeq), is InUse: not tracked, counted, and reported by
// InUse for the route's 482; its failure ends nothing. The tracked
// INVITE itself is not InUse. Once the call ended they start a call
// again.
func TestClaimInUse(t *testing.T) {
	e := newEnv(t, 10, false)
	var n, m atomic.Int32
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	e.in(inv, func(c *routing.Ctx) {
		if got := e.tbl.Claim(c, lease{"a", &n}, nil); got != Tracked || e.tbl.InUse(c, nil) {
			t.Fatalf("the first INVITE: %v, in use %v", got, e.tbl.InUse(c, nil))
		}
		if got := e.tbl.Claim(c, lease{"a", &n}, nil); got != NotTracked {
			t.Fatalf("its transaction again: %v", got)
		}
	})
	for i, cseq := range []string{"1", "2"} {
		again := withHeader(inDialog(inv, "INVITE", cseq, fmt.Sprint("again", i)), "To", "<sip:carol@example.com>")
		e.in(again, func(c *routing.Ctx) {
			if got := e.tbl.Claim(c, lease{"b", &m}, nil); got != InUse || !e.tbl.InUse(c, nil) {
				t.Fatalf("CSeq %s: %v, in use %v; want InUse", cseq, got, e.tbl.InUse(c, nil))
			}
			e.tbl.CallFailed(c)
		})
	}
	if n.Load() != 0 || m.Load() != 0 || e.tbl.Len() != 1 || e.counter("test_calls_in_use_total") != 2 {
		t.Fatalf("released %d, %d; %d tracked, %d in use", n.Load(), m.Load(), e.tbl.Len(), e.counter("test_calls_in_use_total"))
	}
	e.in(inDialog(inv, "BYE", "3", "bye"), e.tbl.CallEnded)
	next := withHeader(inDialog(inv, "INVITE", "4", "next"), "To", "<sip:bob@example.com>")
	e.in(next, func(c *routing.Ctx) {
		if e.tbl.InUse(c, nil) || e.tbl.Claim(c, lease{"c", &m}, nil) != Tracked {
			t.Fatal("not tracked once the call ended")
		}
	})
	if n.Load() != 1 || e.tbl.Len() != 1 {
		t.Fatalf("released %d, %d tracked", n.Load(), e.tbl.Len())
	}
}

// TestCopiedBranchAndCSeqIsAnotherTransaction: an INVITE with the call's
// Call-ID, From tag, branch and CSeq but another sent-by is another
// transaction (RFC 3261 §17.2.3). It was taken for the call's own: with
// FailOver its lease replaced the call's (released at once), without it
// it went on uncounted, and either way its failure released the call.
// It is InUse, and its failure ends nothing.
func TestCopiedBranchAndCSeqIsAnotherTransaction(t *testing.T) {
	for _, failOver := range []bool{false, true} {
		e := newEnv(t, 10, failOver)
		var n, m atomic.Int32
		inv := routetest.Request("INVITE", "sip:bob@example.com", "")
		if !e.track(inv, lease{"a", &n}) {
			t.Fatal("not tracked")
		}
		copied := strings.Replace(inv, "127.0.0.1:5070;", "127.0.0.1:5071;", 1)
		e.in(copied, func(c *routing.Ctx) {
			if got := e.tbl.Claim(c, lease{"b", &m}, nil); got != InUse || !e.tbl.InUse(c, nil) {
				t.Errorf("fail-over %v: %v, in use %v; want InUse", failOver, got, e.tbl.InUse(c, nil))
			}
			e.tbl.CallFailed(c)
		})
		if n.Load() != 0 || e.tbl.Len() != 1 {
			t.Fatalf("fail-over %v: the call released %d times, %d tracked; want 0, 1", failOver, n.Load(), e.tbl.Len())
		}
	}
}

// TestSpiralIsTheCallersOnly: a request that passed through the INVITE
// of a call in progress (a Via of ours with the branch it was relayed on)
// is its spiral, not tracked again, only when it has the call's caller.
// The call's callee has that Via in the INVITE it received: copied into
// INVITEs of his own (another caller) they were taken for the call's
// spiral and went on uncounted; they are InUse, and end nothing. A
// module that gives no caller (nil) has every spiral taken for one.
func TestSpiralIsTheCallersOnly(t *testing.T) {
	for _, tc := range []struct {
		tracked, spiral string
		want            Tracking
	}{
		{"alice", "alice", NotTracked},
		{"alice", "bob", InUse},
		{"alice", "", InUse},
		{"", "", NotTracked},
	} {
		e := newEnv(t, 10, false)
		var n, m atomic.Int32
		caller := func(s string) []byte {
			if s == "" {
				return nil
			}
			return []byte(s)
		}
		e.h.Route = func(c *routing.Ctx) {
			if got := e.tbl.Claim(c, lease{"a", &n}, caller(tc.tracked)); got != Tracked {
				t.Fatalf("the call's INVITE: %v", got)
			}
			c.SetDestination(transport.UDP, netip.MustParseAddrPort("127.0.0.1:5090"))
			if err := c.Relay(); err != nil {
				t.Fatal(err)
			}
		}
		e.h.Receive("127.0.0.1:5070", routetest.Request("INVITE", "sip:bob@example.com", ""))
		var relayed string
		for _, s := range e.h.Take() {
			if strings.HasPrefix(s.Data, "INVITE ") {
				relayed = s.Data
			}
		}
		if relayed == "" {
			t.Fatal("the INVITE was not relayed")
		}
		// Back from the next hop, to another URI, with its Via on top.
		back := strings.NewReplacer("INVITE sip:bob@", "INVITE sip:carol@",
			"\r\nVia: ", "\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK.back\r\nVia: ").Replace(relayed)
		e.in(back, func(c *routing.Ctx) {
			got := e.tbl.Claim(c, lease{"b", &m}, caller(tc.spiral))
			if got != tc.want || e.tbl.InUse(c, caller(tc.spiral)) != (tc.want == InUse) {
				t.Errorf("call of %q, its INVITE back as %q's: %v, in use %v; want %v",
					tc.tracked, tc.spiral, got, e.tbl.InUse(c, caller(tc.spiral)), tc.want)
			}
			e.tbl.CallFailed(c)
		})
		if n.Load() != 0 || m.Load() != 0 || e.tbl.Len() != 1 {
			t.Fatalf("call of %q, back as %q's: released %d, %d; %d tracked; want 0, 0, 1",
				tc.tracked, tc.spiral, n.Load(), m.Load(), e.tbl.Len())
		}
	}
}

// TestBoundCallEndsWithItsDialog: a call bound to its dialog (Bind) is
// released by that dialog's end (EndDialog), once, whatever ended it:
// not by a BYE (CallEnded), which the table cannot tell from one sent
// elsewhere or on another call's signed Route with the same Call-ID and
// the call's From tag; not by the end of another dialog with its Call-ID
// and From tag (an INVITE the module did not count, given a dialog of
// its own). Only the transaction that was tracked binds it; its failure
// still releases it.
func TestBoundCallEndsWithItsDialog(t *testing.T) {
	e := newEnv(t, 10, false)
	var n atomic.Int32
	inv := routetest.Request("INVITE", "sip:bob@example.com", "")
	var callID, tag []byte
	var tx txn.Ref
	e.in(inv, func(c *routing.Ctx) {
		if !e.tbl.Track(c, lease{"a", &n}) || e.tbl.Bind(c, 0) || !e.tbl.Bind(c, 41) {
			t.Fatal("not tracked and bound")
		}
		callID, tag, tx = append(callID, c.CallID()...), append(tag, c.FTag()...), c.R.Ref()
	})
	// Another transaction with its Call-ID and From tag binds nothing.
	e.in(inDialog(inv, "INVITE", "7", "other"), func(c *routing.Ctx) {
		if e.tbl.Bind(c, 42) {
			t.Fatal("another transaction bound the call")
		}
	})
	e.in(inDialog(inv, "BYE", "4", "bye"), e.tbl.CallEnded)
	e.in(fromCallee(inDialog(inv, "BYE", "1", "bye2")), e.tbl.CallEnded)
	if e.tbl.EndDialog(callID, tag, 42) || e.tbl.EndDialog(callID, tag, 0) || e.tbl.EndDialog(callID, []byte("other"), 41) {
		t.Fatal("ended by another dialog")
	}
	if n.Load() != 0 || e.tbl.Len() != 1 {
		t.Fatalf("released %d by BYEs or another dialog's end, %d tracked", n.Load(), e.tbl.Len())
	}
	if !e.tbl.EndDialog(callID, tag, 41) || e.tbl.EndDialog(callID, tag, 41) || n.Load() != 1 || e.tbl.Len() != 0 {
		t.Fatalf("its dialog's end, twice: released %d, %d tracked", n.Load(), e.tbl.Len())
	}
	// Bound, it still ends with its INVITE's failure; its dialog's end
	// after that releases nothing.
	var m atomic.Int32
	inv = routetest.Request("INVITE", "sip:bob@example.com", "")
	e.in(inv, func(c *routing.Ctx) {
		e.tbl.Track(c, lease{"b", &m})
		e.tbl.Bind(c, 43)
		callID, tag, tx = append(callID[:0], c.CallID()...), append(tag[:0], c.FTag()...), c.R.Ref()
	})
	if !e.tbl.End(callID, tag, tx) || e.tbl.EndDialog(callID, tag, 43) || m.Load() != 1 {
		t.Fatalf("the INVITE's failure, then its dialog's end: released %d", m.Load())
	}
}
