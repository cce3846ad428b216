package dialog

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/rediscfg"
	"switchboard/modules/internal/redistest"
	"switchboard/modules/internal/routetest"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// redisServer is a real redis-server (modules/internal/redistest).
type redisServer = redistest.Server

func startRedis(t *testing.T) *redisServer { return redistest.Start(t) }

// events records what a node's subscribers were told of ended dialogs.
type events struct {
	mu    sync.Mutex
	ended []Event // copies: CallID, From... as strings in the slices below
	ids   []string
}

func (ev *events) add(e *Event) {
	if e.Kind != EventEnded {
		return
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	c := *e
	c.CallID, c.FromTag, c.ToTag, c.From, c.To, c.Phrase = clone(e.CallID), clone(e.FromTag), clone(e.ToTag), clone(e.From), clone(e.To), clone(e.Phrase)
	c.Values = nil
	ev.ended = append(ev.ended, c)
	ev.ids = append(ev.ids, string(e.CallID))
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (ev *events) list() []Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]Event(nil), ev.ended...)
}

// sharedNode is a dialog module sharing its dialogs on a redis-server,
// in a harness of its own on a manual clock that starts at the wall
// clock's time (Redis expires keys on the wall clock).
type sharedNode struct {
	*env
	name string
	ev   *events
}

func shareSettings(rs *redisServer, node string) *Settings {
	s := DefaultSettings()
	s.Sharing = SharingRedis
	s.Redis = rediscfg.Default()
	s.Redis.Addr, s.Redis.Node = rs.Addr(), node
	s.Redis.Timeout, s.Redis.DialTimeout = 300*time.Millisecond, 300*time.Millisecond
	s.TakeoverDelay = time.Second
	s.DefaultTimeout = time.Minute
	return s
}

func newSharedNode(t *testing.T, rs *redisServer, node string, now int64, mod func(*Settings)) *sharedNode {
	t.Helper()
	s := shareSettings(rs, node)
	if mod != nil {
		mod(s)
	}
	ev := &events{}
	e := newEnvWith(t, s, envOptions{clock: shards.NewManualClock(now), secret: testSecret, subscribe: ev.add})
	return &sharedNode{env: e, name: node, ev: ev}
}

// on returns the call as a party that sends its requests to node n
// (another node than the one that set it up).
func (c *call) on(n *sharedNode) *call {
	cc := *c
	cc.e = n.env
	return &cc
}

// answered sets up a call through n: INVITE, 180, 200, ACK from the
// caller, and waits until n wrote it to Redis.
func (n *sharedNode) answered(t *testing.T, callID string) *call {
	t.Helper()
	before := n.counter("switchboard_dialog_redis_writes_total")
	c := n.invite(callID)
	c.respond(0, 180, "btag-"+callID)
	c.respond(0, 200, "btag-"+callID)
	c.inDialog("ACK", true, "btag-"+callID, 10)
	n.waitCounter(t, "switchboard_dialog_redis_writes_total", 1, func(v uint64) bool { return v > before })
	return c
}

// counter reads one of the node's counters by name.
func (n *sharedNode) counter(name string) uint64 {
	var v uint64
	n.set.WritePrometheus(&lineWriter{fn: func(line string) {
		if k, val, ok := strings.Cut(line, " "); ok && k == name {
			f, _ := strconv.ParseFloat(val, 64)
			v = uint64(f)
		}
	}})
	return v
}

func (n *sharedNode) waitCounter(t *testing.T, name string, _ uint64, ok func(uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(n.counter(name)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %d", n.name, name, n.counter(name))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type lineWriter struct {
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShareByeOnAnotherNode: a call set up through node A whose callee
// hangs up through node B. B relays the BYE at once (before Redis
// answered anything), reads the dialog from Redis, wins its claim and
// tells its subscribers once, with A's start and answer and the BYE's
// time; A drops its dialog without an event; the hash is marked ended by
// B and out of the deadlines.
func TestShareByeOnAnotherNode(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	a.clock.Advance(1500 * time.Millisecond)
	startAt := a.clock.Now()
	c := a.invite("share-bye-x")
	c.respond(0, 180, "btag-share-bye-x")
	a.clock.Advance(700 * time.Millisecond)
	answerAt := a.clock.Now()
	c.respond(0, 200, "btag-share-bye-x")
	c.inDialog("ACK", true, "btag-share-bye-x", 10)
	a.waitCounter(t, "switchboard_dialog_redis_writes_total", 1, func(v uint64) bool { return v == 1 })

	b.clock.Advance(3 * time.Second)
	byeAt := b.clock.Now()
	sent := c.on(b).inDialog("BYE", false, "btag-share-bye-x", 1)
	if len(sent) != 1 || !strings.HasPrefix(sent[0].Data, "BYE sip:alice@") || sent[0].Dst.String() != "10.0.0.9:5060" {
		t.Fatalf("B did not relay the callee's BYE to the caller: %v", sent)
	}
	waitUntil(t, "B's end event", func() bool { return len(b.ev.list()) == 1 })
	waitUntil(t, "A dropped its dialog", func() bool { return a.d.tbl.Len() == 0 })
	time.Sleep(50 * time.Millisecond)
	if n := len(a.ev.list()); n != 0 {
		t.Fatalf("A told its subscribers of %d ends, want none (B ended the call)", n)
	}
	ev := b.ev.list()[0]
	if string(ev.CallID) != "share-bye-x" || ev.Reason != ReasonBye || ev.By != Callee || ev.Start != startAt || ev.Answer != answerAt ||
		ev.End != byeAt || ev.Code != 200 || ev.Caller.String() != callerAddr || !strings.Contains(string(ev.From), "alice") {
		t.Fatalf("B's end event: %+v (start %d answer %d bye %d)", ev, startAt, answerAt, byeAt)
	}
	if got := b.counter(`switchboard_dialog_redis_claims_total{result="won"}`); got != 1 {
		t.Fatalf("B's claims won: %d", got)
	}
	if a.ended(ReasonBye) != 0 || b.ended(ReasonBye) != 1 || a.d.confirmed.Load() != 0 || b.d.remote.Load() != 0 {
		t.Fatalf("ended by bye A %d B %d; A confirmed %d, B remote %d", a.ended(ReasonBye), b.ended(ReasonBye), a.d.confirmed.Load(), b.d.remote.Load())
	}
	rc := rs.Client()
	ctx := context.Background()
	keys, _ := rc.Keys(ctx, "switchboard:dlg:{*").Result()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	h, _ := rc.HGetAll(ctx, keys[0]).Result()
	if h["ended"] != "b" || h["owner"] != "a" || h["d"] != "" {
		t.Fatalf("the ended dialog's hash: %v", h)
	}
	if ttl, _ := rc.PTTL(ctx, keys[0]).Result(); ttl <= 0 || ttl > endedKeep {
		t.Fatalf("the ended hash's TTL: %v", ttl)
	}
	if n, _ := rc.ZCard(ctx, "switchboard:dlg:deadlines").Result(); n != 0 {
		t.Fatalf("%d deadlines left", n)
	}
	// The BYE's retransmission, or a late second BYE, ends nothing more.
	c.on(b).inDialog("BYE", false, "btag-share-bye-x", 2)
	time.Sleep(100 * time.Millisecond)
	if len(b.ev.list())+len(a.ev.list()) != 1 {
		t.Fatal("a second BYE made a second end")
	}
}

// TestShareWSSCaller: the call of a WebSocket caller over TLS, set up
// through node A, ends by the callee's BYE through node B: B reads the
// row A wrote (its first hop towards the caller "wss:..."), takes it and
// ends the call once. The store's checks refused a wss hop, so B took
// the row for a forged one: the BYE was relayed and ended nothing, and
// the call was billed until A's timeout.
func TestShareWSSCaller(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	c := a.inviteOver("share-wss", transport.WSS)
	c.respond(0, 200, "btag-wss")
	a.waitCounter(t, "switchboard_dialog_redis_writes_total", 1, func(v uint64) bool { return v == 1 })
	c.on(b).inDialog("BYE", false, "btag-wss", 1)
	waitUntil(t, "B's end event", func() bool { return len(b.ev.list()) == 1 })
	waitUntil(t, "A dropped its dialog", func() bool { return a.d.tbl.Len() == 0 })
	if ev := b.ev.list()[0]; ev.Reason != ReasonBye || ev.By != Callee || ev.Caller.String() != callerAddr {
		t.Fatalf("B's end event: %+v", ev)
	}
	if n := b.counter(`switchboard_dialog_redis_reads_total{result="missing"}`); n != 0 || len(a.ev.list()) != 0 {
		t.Fatalf("B took the row for a forged one %d times; A told of %d ends", n, len(a.ev.list()))
	}
}

// TestShareInDialogOnAnotherNode: a re-INVITE of the callee through B
// puts a copy of the dialog on B (listed as remote, not counted as B's
// call); its CSeq reaches Redis, so that A's BYEs at the timeout carry a
// CSeq above it towards the caller.
func TestShareInDialogOnAnotherNode(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, func(s *Settings) { s.DefaultTimeout = 10 * time.Second })
	b := newSharedNode(t, rs, "b", now, func(s *Settings) { s.DefaultTimeout = 10 * time.Second })
	c := a.answered(t, "share-cseq-x")
	c.on(b).inDialog("INVITE", false, "btag-share-cseq-x", 7)
	waitUntil(t, "B's copy", func() bool { return b.d.remote.Load() == 1 })
	if l := b.d.List("", 0); len(l) != 1 || !l[0].Remote || l[0].State != "confirmed" {
		t.Fatalf("B's listing: %+v", l)
	}
	if b.d.confirmed.Load() != 0 {
		t.Fatal("B counts A's call as its own")
	}
	b.waitCounter(t, "switchboard_dialog_redis_writes_total", 1, func(v uint64) bool { return v >= 1 })
	rc := rs.Client()
	waitUntil(t, "the callee's CSeq in Redis", func() bool {
		keys, _ := rc.Keys(context.Background(), "switchboard:dlg:{*").Result()
		return len(keys) == 1 && rc.HGet(context.Background(), keys[0], "ce").Val() == "7"
	})
	// A's timeout: A claims, wins, and its BYE to the caller is above
	// the callee's 7, which only B saw.
	a.clock.Advance(10 * time.Second)
	sent := a.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
	for _, s := range sent {
		if s.Dst.String() == callerAddr && header(s.Data, "CSeq") != "8 BYE" {
			t.Fatalf("A's BYE to the caller: CSeq %q, want 8 BYE", header(s.Data, "CSeq"))
		}
	}
	waitUntil(t, "B dropped its copy", func() bool { return b.d.tbl.Len() == 0 })
	if len(a.ev.list()) != 1 || len(b.ev.list()) != 0 || a.ev.list()[0].Reason != ReasonTimeout {
		t.Fatalf("ends: A %v, B %v", a.ev.list(), b.ev.list())
	}
}

// TestShareRaceEnds: node A and node B both hold 20 calls (B's copies
// read from Redis) and both end every one of them at once (dialog.end on
// each node, concurrently): every call is ended exactly once, by one
// node or the other, with one record and two BYEs; the other node drops
// its dialog quietly.
func TestShareRaceEnds(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	const calls = 20
	var ids []string
	for i := 0; i < calls; i++ {
		id := "race-" + strconv.Itoa(i) + "-x"
		c := a.answered(t, id)
		c.on(b).inDialog("INFO", true, "btag-"+id, 11)
		ids = append(ids, id)
	}
	waitUntil(t, "B's copies", func() bool { return b.d.remote.Load() == calls })
	var dids []string
	for _, inf := range a.d.List("", 0) {
		dids = append(dids, inf.ID)
	}
	a.Take()
	b.Take()
	var wg sync.WaitGroup
	for _, n := range []*sharedNode{a, b} {
		wg.Add(1)
		go func(n *sharedNode) {
			defer wg.Done()
			for _, id := range dids {
				n.d.End(id)
			}
		}(n)
	}
	wg.Wait()
	waitUntil(t, "every call ended once", func() bool { return len(a.ev.list())+len(b.ev.list()) == calls })
	waitUntil(t, "both tables empty", func() bool { return a.d.tbl.Len() == 0 && b.d.tbl.Len() == 0 })
	time.Sleep(100 * time.Millisecond)
	seen := map[string]int{}
	for _, ev := range append(a.ev.list(), b.ev.list()...) {
		seen[string(ev.CallID)]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("call %s ended %d times", id, seen[id])
		}
	}
	byes := 0
	for _, n := range []*sharedNode{a, b} {
		for _, s := range n.Take() {
			if strings.HasPrefix(s.Data, "BYE ") {
				byes++
			}
		}
	}
	won := a.counter(`switchboard_dialog_redis_claims_total{result="won"}`) + b.counter(`switchboard_dialog_redis_claims_total{result="won"}`)
	lost := a.counter(`switchboard_dialog_redis_claims_total{result="lost"}`) + b.counter(`switchboard_dialog_redis_claims_total{result="lost"}`)
	t.Logf("A ended %d, B ended %d; claims won %d, lost %d", len(a.ev.list()), len(b.ev.list()), won, lost)
	if byes != 2*calls || won != calls || lost > calls {
		t.Fatalf("BYEs sent %d (want %d), claims won %d lost %d", byes, 2*calls, won, lost)
	}
}

// TestShareTakeover: node A sets up a call with a 2 s timeout and dies
// (its sharing stops without a word, its timer never fires). Nodes B and
// C, which never saw the call, find it in the deadlines once its timeout
// and the takeover delay (1 s) have passed; exactly one of them ends it:
// a BYE to each side built from the row A wrote (targets, routes, tags,
// CSeq), and one end event with A's times.
func TestShareTakeover(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	short := func(s *Settings) { s.DefaultTimeout = 2 * time.Second }
	a := newSharedNode(t, rs, "a", now, short)
	b := newSharedNode(t, rs, "b", now, short)
	cn := newSharedNode(t, rs, "c", now, short)
	a.answered(t, "takeover-x")
	a.d.share.kill()
	// 1.9 s after the deadline (2 s) and the delay (1 s): not yet.
	for _, n := range []*sharedNode{b, cn} {
		n.clock.Advance(2900 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // more than a scan interval
	if len(b.ev.list())+len(cn.ev.list()) != 0 {
		t.Fatal("the call was taken over before its timeout and the delay passed")
	}
	for _, n := range []*sharedNode{b, cn} {
		n.clock.Advance(200 * time.Millisecond)
	}
	waitUntil(t, "a survivor ended the call", func() bool { return len(b.ev.list())+len(cn.ev.list()) == 1 })
	time.Sleep(1500 * time.Millisecond) // the other's next scan ends nothing
	if n := len(b.ev.list()) + len(cn.ev.list()); n != 1 {
		t.Fatalf("%d ends", n)
	}
	winner := b
	if len(cn.ev.list()) == 1 {
		winner = cn
	}
	ev := winner.ev.list()[0]
	if ev.Reason != ReasonTimeout || ev.By != Proxy || ev.Start != now || string(ev.CallID) != "takeover-x" {
		t.Fatalf("end event: %+v", ev)
	}
	sent := winner.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
	var toCaller, toCallee string
	for _, s := range sent {
		switch s.Dst.String() {
		case callerAddr:
			toCaller = s.Data
		case calleeAddr:
			toCallee = s.Data
		}
	}
	if !strings.HasPrefix(toCaller, "BYE sip:alice@"+callerAddr+" ") || header(toCaller, "Route") != "<sip:10.0.0.9;lr;caller-side>" ||
		!strings.Contains(header(toCaller, "From"), "tag=btag-takeover-x") || header(toCaller, "CSeq") != "1 BYE" {
		t.Fatalf("BYE to the caller:\n%s", toCaller)
	}
	if !strings.HasPrefix(toCallee, "BYE sip:bob@"+calleeAddr+";transport=udp ") || header(toCallee, "Route") != "<sip:10.0.0.7;lr;callee-side>" ||
		!strings.Contains(header(toCallee, "To"), "tag=btag-takeover-x") || header(toCallee, "CSeq") != "11 BYE" {
		t.Fatalf("BYE to the callee:\n%s", toCallee)
	}
	if got := winner.counter("switchboard_dialog_redis_takeovers_total"); got != 1 {
		t.Fatalf("takeovers %d", got)
	}
	if n, _ := rs.Client().ZCard(context.Background(), "switchboard:dlg:deadlines").Result(); n != 0 {
		t.Fatalf("%d deadlines left", n)
	}
}

// kill stops the sharing as a crash would: no write, no claim, no word.
func (sh *sharer) kill() {
	sh.cancel()
	if sh.ps != nil {
		sh.ps.Close()
	}
	sh.wg.Wait()
	sh.c.Close()
	sh.d.share = nil // the rest of the module no longer uses Redis
}

// TestShareRedisDown: with Redis stopped the calls go on. A call set up
// through A and hung up there: the BYE is relayed at once; A reports the
// outage (metric, /readyz reason); a request of it through B is relayed
// and its read dropped (counted); the end waits for Redis for the local
// wait (300 ms here), then A ends the call alone: one record. Redis back:
// A reports it, a new call's dialog is written, read by B, ended once.
func TestShareRedisDown(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	a.d.share.localWait = 300 * time.Millisecond
	c := a.answered(t, "down-x")
	rs.Stop()
	// B: relayed, the read dropped.
	if sent := c.on(b).inDialog("INFO", false, "btag-down-x", 3); len(sent) != 1 || !strings.HasPrefix(sent[0].Data, "INFO ") {
		t.Fatalf("B did not relay the INFO: %v", sent)
	}
	start := time.Now()
	sent := c.inDialog("BYE", true, "btag-down-x", 11)
	if took := time.Since(start); took > 100*time.Millisecond || len(sent) != 1 || !strings.HasPrefix(sent[0].Data, "BYE ") {
		t.Fatalf("the BYE through A with Redis down: %v, took %v", sent, took)
	}
	time.Sleep(500 * time.Millisecond)
	if len(a.ev.list()) != 0 {
		t.Fatal("A ended the call before the local wait (on its clock) passed")
	}
	a.clock.Advance(400 * time.Millisecond)
	waitUntil(t, "A ended the call without Redis", func() bool { return len(a.ev.list()) == 1 })
	if a.counter("switchboard_dialog_redis_up") != 0 || a.counter("switchboard_dialog_redis_local_ends_total") != 1 ||
		a.counter("switchboard_dialog_redis_outages_total") != 1 {
		t.Fatalf("A: up %d, local ends %d, outages %d", a.counter("switchboard_dialog_redis_up"),
			a.counter("switchboard_dialog_redis_local_ends_total"), a.counter("switchboard_dialog_redis_outages_total"))
	}
	b.waitCounter(t, `switchboard_dialog_redis_reads_total{result="dropped"}`, 1, func(v uint64) bool { return v >= 1 })
	if b.d.tbl.Len() != 0 {
		t.Fatal("B holds a dialog it could not read")
	}
	rs.Start()
	a.waitCounter(t, "switchboard_dialog_redis_up", 1, func(v uint64) bool { return v == 1 })
	b.waitCounter(t, "switchboard_dialog_redis_up", 1, func(v uint64) bool { return v == 1 })
	// The call A ended alone is marked ended in Redis once it is back: no
	// survivor takes it over at its deadline.
	rc := rs.Client()
	waitUntil(t, "the call ended during the outage marked ended", func() bool {
		keys, _ := rc.Keys(context.Background(), "switchboard:dlg:{*").Result()
		n, _ := rc.ZCard(context.Background(), "switchboard:dlg:deadlines").Result()
		return len(keys) == 1 && rc.HGet(context.Background(), keys[0], "ended").Val() == "a" && n == 0
	})
	c2 := a.answered(t, "after-x")
	c2.on(b).inDialog("BYE", false, "btag-after-x", 1)
	waitUntil(t, "B ended the second call", func() bool { return len(b.ev.list()) == 1 })
	waitUntil(t, "A dropped it", func() bool { return a.d.tbl.Len() == 0 })
	if len(a.ev.list()) != 1 {
		t.Fatalf("A's ends: %d", len(a.ev.list()))
	}
}

// TestShareForgedRow: a request's verified id names a hash whose row is
// another call's (written into Redis by hand: what a collision, or
// someone with access to Redis, could give). B does not take it: no
// copy, no end, counted as missing; the request is relayed anyway.
func TestShareForgedRow(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	c := a.answered(t, "victim-x")
	rc := rs.Client()
	ctx := context.Background()
	keys, _ := rc.Keys(ctx, "switchboard:dlg:{*").Result()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	var row store.Dialog
	if err := json.Unmarshal([]byte(rc.HGet(ctx, keys[0], "d").Val()), &row); err != nil {
		t.Fatal(err)
	}
	row.CallID = "other-x"
	js, _ := json.Marshal(&row)
	rc.HSet(ctx, keys[0], "d", string(js))
	if sent := c.on(b).inDialog("BYE", false, "btag-victim-x", 1); len(sent) != 1 {
		t.Fatalf("B did not relay the BYE: %v", sent)
	}
	b.waitCounter(t, `switchboard_dialog_redis_reads_total{result="missing"}`, 1, func(v uint64) bool { return v == 1 })
	time.Sleep(50 * time.Millisecond)
	if b.d.tbl.Len() != 0 || len(b.ev.list()) != 0 || a.d.tbl.Len() != 1 {
		t.Fatalf("B holds %d, ended %d; A holds %d", b.d.tbl.Len(), len(b.ev.list()), a.d.tbl.Len())
	}
}

// TestShareSettingsChecked: bad sharing keys are errors naming the key.
func TestShareSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		mod func(*Settings)
		key string
	}{
		{func(s *Settings) { s.Sharing = "memcached" }, "sharing"},
		{func(s *Settings) { s.TakeoverDelay = 0 }, "takeover_delay"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr = SharingRedis, "nohost" }, "redis.addr"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr, s.Redis.Prefix = SharingRedis, "127.0.0.1:6379", "a b" }, "redis.prefix"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr, s.Redis.Node = SharingRedis, "127.0.0.1:6379", "x|y" }, "redis.node"},
	} {
		s := DefaultSettings()
		tc.mod(s)
		err := checkSettings(s)
		var ke *modules.KeyError
		if err == nil || !asKeyError(err, &ke) || ke.Key != tc.key {
			t.Errorf("want an error on %s, got %v", tc.key, err)
		}
	}
	// No address and no registrar to borrow one from: an error at New.
	s := DefaultSettings()
	s.Sharing = SharingRedis
	_, err := modules.Build(modules.Services{Clock: shards.NewManualClock(1), Metrics: metrics.NewSet(), Shards: 4}, map[string]any{"dialog": s}, "dialog")
	if err == nil || !strings.Contains(err.Error(), "redis.addr") {
		t.Fatalf("sharing without an address: %v", err)
	}
}

// TestShareMisroutedByeOnAnotherNode: the caller's BYE with the call's
// Route addressed to herself lands on node B, which does not hold the
// call: relayed at once as before, but once B read the dialog from Redis
// the copy does not end, since the BYE did not go to the callee
// (switchboard_dialog_misrouted_total): no end event on either node, A
// keeps the call. Her BYE to the callee through B then ends it once.
func TestShareMisroutedByeOnAnotherNode(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	c := a.invite("share-misrouted-x")
	c.respond(0, 200, "btag-share-misrouted-x")
	c.inDialog("ACK", true, "btag-share-misrouted-x", 10)
	a.waitCounter(t, "switchboard_dialog_redis_writes_total", 1, func(v uint64) bool { return v == 1 })

	c.on(b).inDialogTo("BYE", true, "btag-share-misrouted-x", 11, "sip:alice@"+callerAddr, nil, "")
	b.waitCounter(t, "switchboard_dialog_misrouted_total", 1, func(v uint64) bool { return v == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := len(a.ev.list()) + len(b.ev.list()); n != 0 || a.d.confirmed.Load() != 1 {
		t.Fatalf("after the misrouted BYE: %d end events, A holds %d calls", n, a.d.confirmed.Load())
	}
	c.on(b).inDialog("BYE", true, "btag-share-misrouted-x", 12)
	waitUntil(t, "B's end event", func() bool { return len(b.ev.list()) == 1 })
	waitUntil(t, "A dropped its dialog", func() bool { return a.d.tbl.Len() == 0 })
	if ev := b.ev.list()[0]; ev.Reason != ReasonBye || ev.By != Caller {
		t.Fatalf("B's end event: %+v", ev)
	}
}

// TestShareByeFromElsewhere: the callee's side BYE of a call set up
// through A, landing on B from another address than the callee's (the
// caller posing as the callee, addressed to herself): B relays it, reads
// the dialog, ends it, and sends the proxy's own BYE to the callee, as
// the node that holds a dialog does (TestByeFromElsewhere).
func TestShareByeFromElsewhere(t *testing.T) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	a := newSharedNode(t, rs, "a", now, nil)
	b := newSharedNode(t, rs, "b", now, nil)
	c := a.answered(t, "share-elsewhere-x")
	forged := c.on(b)
	forged.src = "127.0.0.7:5070"
	sent := forged.inDialog("BYE", false, "btag-share-elsewhere-x", 1)
	waitUntil(t, "B's end event", func() bool { return len(b.ev.list()) == 1 })
	if len(sent) < 2 {
		sent = append(sent, b.waitSent(t, 2-len(sent))...)
	}
	toCaller, toCallee := 0, 0
	for _, m := range sent {
		switch {
		case strings.HasPrefix(m.Data, "BYE sip:alice@"):
			toCaller++
		case strings.HasPrefix(m.Data, "BYE sip:bob@") && m.Dst.String() == calleeAddr:
			toCallee++
		}
	}
	if toCaller != 1 || toCallee != 1 {
		t.Fatalf("B sent %d BYEs to the caller (the one relayed) and %d to the callee (its own), want 1 and 1: %v", toCaller, toCallee, sent)
	}
}
