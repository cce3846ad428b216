package dialog

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
)

// claimAgain is a go-redis hook on a node's client that makes the next
// pipeline of claims in one mode run twice in Redis, as the network can
// make it: with again, the pipeline is sent a second time and its
// answers are the second run's (go-redis sends a whole pipeline again
// after a read timeout or a broken connection, MaxRetries 1); without,
// Redis ran it but its answer is lost (the pipeline fails with a
// timeout, and the node sends the claims again later). after, when set,
// runs before the lost answer is reported.
type claimAgain struct {
	mode  string
	again bool
	after func()
	armed atomic.Bool
	fired atomic.Bool
}

var errAnswerLost = &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout (the test lost the answer)")}

func (h *claimAgain) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *claimAgain) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *claimAgain) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil || !h.claims(cmds) || !h.armed.CompareAndSwap(true, false) {
			return err
		}
		defer h.fired.Store(true)
		if h.again {
			return next(ctx, cmds)
		}
		if h.after != nil {
			h.after()
		}
		for _, c := range cmds {
			c.SetErr(errAnswerLost)
		}
		return errAnswerLost
	}
}

// claims reports whether cmds hold a claim in h's mode.
func (h *claimAgain) claims(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		a := c.Args()
		if len(a) > 5 && a[0] == "evalsha" && a[1] == claimScript.Hash() && a[5] == h.mode {
			return true
		}
	}
	return false
}

func (n *sharedNode) hook(h *claimAgain) {
	h.armed.Store(true)
	n.d.share.c.AddHook(h)
}

func byes(n *sharedNode) int {
	k := 0
	for _, s := range n.Take() {
		if strings.HasPrefix(s.Data, "BYE ") {
			k++
		}
	}
	return k
}

// TestShareClaimSentAgain: a claim that Redis runs twice (the second run
// is the same claim sent again) is still won by the node whose first run
// won it: the call ends exactly once, with its BYEs and one record.
// Before claims carried a token, the second run answered "lost" to the
// node itself, which dropped the call: no BYE, no record, and for a
// takeover nobody ended the call.
func TestShareClaimSentAgain(t *testing.T) {
	// dialog.end on the call's own node; go-redis sends the pipeline
	// again.
	t.Run("own", func(t *testing.T) {
		rs := startRedis(t)
		now := time.Now().UnixMilli()
		a := newSharedNode(t, rs, "a", now, nil)
		h := &claimAgain{mode: claimOwn, again: true}
		a.hook(h)
		a.answered(t, "again-own-x")
		a.Take()
		if _, err := a.d.End(a.d.List("", 0)[0].ID); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "A ended the call", func() bool { return len(a.ev.list()) == 1 })
		if !h.fired.Load() {
			t.Fatal("the claim was not sent twice")
		}
		a.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
		if w, l := a.counter(`switchboard_dialog_redis_claims_total{result="won"}`), a.counter(`switchboard_dialog_redis_claims_total{result="lost"}`); w != 1 || l != 0 {
			t.Fatalf("claims won %d lost %d", w, l)
		}
	})
	// The callee's BYE through B for A's call; B's pipeline ran in Redis
	// but its answer was lost: B sends the claim again once Redis
	// answers.
	t.Run("bye elsewhere, answer lost", func(t *testing.T) {
		rs := startRedis(t)
		now := time.Now().UnixMilli()
		a := newSharedNode(t, rs, "a", now, nil)
		b := newSharedNode(t, rs, "b", now, nil)
		h := &claimAgain{mode: claimEnd}
		b.hook(h)
		c := a.answered(t, "again-bye-x")
		c.on(b).inDialog("INFO", false, "btag-again-bye-x", 2)
		waitUntil(t, "B's copy", func() bool { return b.d.remote.Load() == 1 })
		c.on(b).inDialog("BYE", false, "btag-again-bye-x", 3)
		waitUntil(t, "B ended the call", func() bool { return len(b.ev.list()) == 1 })
		waitUntil(t, "A dropped it", func() bool { return a.d.tbl.Len() == 0 })
		if !h.fired.Load() || b.counter("switchboard_dialog_redis_outages_total") != 1 {
			t.Fatalf("the answer was not lost (fired %v, outages %d)", h.fired.Load(), b.counter("switchboard_dialog_redis_outages_total"))
		}
		if len(a.ev.list()) != 0 || b.ev.list()[0].Reason != ReasonBye {
			t.Fatalf("ends: A %v B %v", a.ev.list(), b.ev.list())
		}
	})
	// A dies; B's scan claims the call, Redis gives it to B, the answer
	// is lost, and meanwhile C's scan (which lost to B) removes the call
	// from the deadlines: B's next scan sends its claim again anyway and
	// ends the call, once, with a BYE each way. In the same case sent
	// again at once by go-redis, B ends it too.
	for _, again := range []bool{false, true} {
		name := "takeover, answer lost"
		if again {
			name = "takeover, sent again"
		}
		t.Run(name, func(t *testing.T) {
			rs := startRedis(t)
			now := time.Now().UnixMilli()
			short := func(s *Settings) { s.DefaultTimeout = 2 * time.Second }
			a := newSharedNode(t, rs, "a", now, short)
			b := newSharedNode(t, rs, "b", now, short)
			cn := newSharedNode(t, rs, "c", now, short)
			rc := rs.Client()
			h := &claimAgain{mode: claimTake, again: again}
			if !again {
				h.after = func() {
					// C, whose claim loses to B's, drops the index entry.
					cn.clock.Advance(3500 * time.Millisecond)
					// B's goroutine: no Fatal here.
					for end := time.Now().Add(10 * time.Second); rc.ZCard(context.Background(), "switchboard:dlg:deadlines").Val() != 0; time.Sleep(5 * time.Millisecond) {
						if time.Now().After(end) {
							t.Error("C's scan did not remove the deadline within 10 s")
							return
						}
					}
				}
			}
			b.hook(h)
			a.answered(t, "again-take-x")
			a.d.share.kill()
			b.clock.Advance(3500 * time.Millisecond)
			waitUntil(t, "B ended the call", func() bool { return len(b.ev.list()) == 1 })
			if !h.fired.Load() {
				t.Fatal("the claim was not run twice")
			}
			b.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
			cn.clock.Advance(3500 * time.Millisecond)
			time.Sleep(1500 * time.Millisecond) // C's next scans end nothing
			if len(cn.ev.list()) != 0 || len(b.ev.list()) != 1 || byes(cn) != 0 {
				t.Fatalf("ends: B %d C %d", len(b.ev.list()), len(cn.ev.list()))
			}
			if got := b.counter("switchboard_dialog_redis_takeovers_total"); got != 1 {
				t.Fatalf("B's takeovers %d", got)
			}
			if len(b.d.share.taking) != 0 {
				t.Fatalf("claims left to send again: %v", b.d.share.taking)
			}
		})
	}
}

// TestShareGoneNotPublished: Redis lost a call's hash (restarted empty,
// evicted). The callee's BYE through B, which holds a copy, finds no
// hash: B drops its copy but does not tell the other nodes, so A keeps
// its live call and ends it itself at its timeout: a BYE each way, one
// record. Before, B published the end of a claim it had not won, and A
// dropped the call without a record.
func TestShareGoneNotPublished(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	ten := func(s *Settings) { s.DefaultTimeout = 10 * time.Second }
	a := newSharedNode(t, rs, "a", now, ten)
	b := newSharedNode(t, rs, "b", now, ten)
	c := a.answered(t, "gone-x")
	c.on(b).inDialog("INFO", false, "btag-gone-x", 2)
	waitUntil(t, "B's copy", func() bool { return b.d.remote.Load() == 1 })
	sentinel := a.answered(t, "sentinel-x")
	_ = sentinel
	rc := rs.Client()
	ctx := context.Background()
	var key, sentinelMember string
	for _, inf := range a.d.List("", 0) {
		id, _ := parseID([]byte(inf.ID))
		m := member(id, shards.SumString(inf.CallID))
		if inf.CallID == "gone-x" {
			key = "switchboard:dlg:{" + m + "}"
		} else {
			sentinelMember = m
		}
	}
	if n, _ := rc.Del(ctx, key).Result(); n != 1 {
		t.Fatalf("the hash %s was not there", key)
	}
	if sent := c.on(b).inDialog("BYE", false, "btag-gone-x", 3); len(sent) != 1 {
		t.Fatalf("B did not relay the BYE: %v", sent)
	}
	waitUntil(t, "B dropped its copy", func() bool { return b.d.tbl.Len() == 0 })
	// Messages reach A in the order Redis ran them: once A dropped the
	// sentinel call, it has read anything B published.
	rc.Publish(ctx, "switchboard:dlg", "x|"+sentinelMember)
	waitUntil(t, "A read the sentinel message", func() bool { return a.d.tbl.Len() <= 1 })
	if l := a.d.List("", 0); len(l) != 1 || l[0].CallID != "gone-x" {
		t.Fatalf("A dropped its live call on B's claim of a missing hash: %+v", l)
	}
	a.Take()
	a.clock.Advance(10 * time.Second)
	waitUntil(t, "A ended the call at its timeout", func() bool { return len(a.ev.list()) == 1 })
	a.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
	if len(b.ev.list()) != 0 || a.ev.list()[0].Reason != ReasonTimeout {
		t.Fatalf("ends: A %v B %v", a.ev.list(), b.ev.list())
	}
}

// TestShareCopyKeepsOwnersDeadline: B holds a copy of A's call; A's route
// extends the call (SetTimeout, 60 s) after B read it; a request through
// B then changes the copy's CSeq. B writes only the CSeq: the hash keeps
// A's row (its profiles) and A's deadline, so B's copy, whose timer is at
// the deadline it read, does not take the call over before the new
// deadline; A ends it then. Before, B wrote back its row (no profiles)
// and the old deadline, and ended the live call 50 s early.
func TestShareCopyKeepsOwnersDeadline(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	mod := func(s *Settings) {
		s.DefaultTimeout = 10 * time.Second
		s.Profiles = []ProfileSettings{{Name: "inbound"}}
	}
	a := newSharedNode(t, rs, "a", now, mod)
	b := newSharedNode(t, rs, "b", now, mod)
	a.beforeRelay = func(c *routing.Ctx) bool { return a.d.SetProfile(c, "inbound", nil) }
	c := a.answered(t, "extend-x")
	c.on(b).inDialog("INFO", false, "btag-extend-x", 2)
	waitUntil(t, "B's copy", func() bool { return b.d.remote.Load() == 1 })
	rc := rs.Client()
	ctx := context.Background()
	keys, _ := rc.Keys(ctx, "switchboard:dlg:{*").Result()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	key := keys[0]
	oldDeadline := rc.HGet(ctx, key, "deadline").Val()
	// A extends the call on a re-INVITE of the caller through A
	// (MatchDialog gives SetTimeout the dialog of an INVITE or UPDATE).
	a.afterMatch = func(c *routing.Ctx) {
		if !a.d.SetTimeout(c, time.Minute) {
			t.Error("SetTimeout found no dialog")
		}
	}
	c.inDialog("INVITE", true, "btag-extend-x", 11)
	waitUntil(t, "A's new deadline in Redis", func() bool { return rc.HGet(ctx, key, "deadline").Val() != oldDeadline })
	newDeadline := rc.HGet(ctx, key, "deadline").Val()
	// The callee's next request through B: its CSeq reaches Redis.
	c.on(b).inDialog("INFO", false, "btag-extend-x", 3)
	waitUntil(t, "the callee's CSeq in Redis", func() bool { return rc.HGet(ctx, key, "ce").Val() == "3" })
	h := rc.HGetAll(ctx, key).Val()
	if h["deadline"] != newDeadline || !strings.Contains(h["d"], `"inbound"`) {
		t.Fatalf("the copy's write changed the owner's row or deadline (%s, want %s): %v", h["deadline"], newDeadline, h)
	}
	if s := rc.ZScore(ctx, "switchboard:dlg:deadlines", strings.TrimSuffix(strings.TrimPrefix(key, "switchboard:dlg:{"), "}")).Val(); strconvI(s) != newDeadline {
		t.Fatalf("the index has %v, want %s", s, newDeadline)
	}
	// Past the old deadline and the delay: B's claim is early, and its
	// copy waits for the new deadline.
	b.clock.Advance(12 * time.Second)
	waitUntil(t, "B's copy at the new deadline", func() bool {
		l := b.d.List("", 0)
		return len(l) == 1 && l[0].Remaining > 40
	})
	if len(a.ev.list())+len(b.ev.list()) != 0 || a.d.tbl.Len() != 1 {
		t.Fatalf("the call ended before its new deadline: A %v B %v", a.ev.list(), b.ev.list())
	}
	a.Take()
	a.clock.Advance(time.Minute)
	waitUntil(t, "A ended the call at the new deadline", func() bool { return len(a.ev.list()) == 1 })
	a.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
	waitUntil(t, "B dropped its copy", func() bool { return b.d.tbl.Len() == 0 })
	if len(b.ev.list()) != 0 || a.ev.list()[0].Reason != ReasonTimeout {
		t.Fatalf("ends: A %v B %v", a.ev.list(), b.ev.list())
	}
}

func strconvI(f float64) string { return strconv.FormatInt(int64(f), 10) }
