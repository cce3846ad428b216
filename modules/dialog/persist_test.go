package dialog

import (
	"context"
	"database/sql"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/fieldtext"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// persistSettings are the settings of the persistence tests: a writer
// that never ticks on its own (the tests flush), one profile with values.
func persistSettings() *Settings {
	s := DefaultSettings()
	s.DefaultTimeout = time.Minute
	s.WriteInterval = 10 * time.Minute
	s.Profiles = []ProfileSettings{{Name: "caller", WithValue: true, Value: "from_user", Limit: 5}}
	return s
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// stored returns the stored dialogs by Call-ID.
func stored(t *testing.T, st *store.Store) map[string]store.Dialog {
	t.Helper()
	ds, err := st.ListDialogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Dialog{}
	for _, d := range ds {
		out[d.CallID] = d
	}
	return out
}

// TestPersistRestart: dialogs written behind the calls survive a restart
// of the module on the same store. Before: call A is answered, re-INVITEd
// (CSeq 11, a new caller target) and gets a request of the callee; B is
// answered and hung up; C only rings; D has a 2 s timeout; E is answered.
// The store holds A, D and E as they are (not B, not C). The module stops
// (writing what changed), the server is down 5 s (D's timeout passes),
// and a new module on a new core (the same Record-Route key) loads them:
// listed and counted again, D ended at the first tick with a BYE each
// way, A's BYE from the callee, on the Route of the first run, matched
// and relayed, E ended by its timeout, at the minute after its answer.
func TestPersistRestart(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the module's Stop (cleanups run last first)
	e1 := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret, subscribe: func(*Event) {}})
	profiles := func(c *routing.Ctx) bool {
		ok, _ := e1.d.ApplyProfiles(c)
		return ok && e1.d.SetValue(c, "account", []byte("acme & co")) && e1.d.SetFlag(c, 1<<3|1<<31)
	}
	e1.beforeRelay = profiles
	a := e1.invite("persist-a")
	a.respond(0, 180, "ta")
	a.respond(0, 200, "ta")
	a.inDialog("ACK", true, "ta", 10)
	reinvite := a.inDialog("INVITE", true, "ta", 11)
	if len(reinvite) == 0 {
		t.Fatal("re-INVITE not relayed")
	}
	a.inDialog("INFO", false, "ta", 4)
	b := e1.invite("persist-b")
	b.respond(0, 200, "tb")
	b.inDialog("BYE", true, "tb", 11)
	c := e1.invite("persist-c")
	c.respond(0, 180, "tc")
	e1.beforeRelay = func(cx *routing.Ctx) bool { return e1.d.SetTimeout(cx, 2*time.Second) && profiles(cx) }
	d := e1.invite("persist-d")
	d.respond(0, 200, "td")
	e1.beforeRelay = profiles
	ee := e1.invite("persist-e")
	ee.respond(0, 200, "te")
	answerE := e1.clock.Now()
	e1.wantCount(t, 0, 1, 3)
	// A row copies its text once, and has one slice of profiles and one
	// of values: three allocations whatever its number of fields.
	if n := rowAllocs(e1.d, "persist-a"); n != 3 && !raceEnabled {
		t.Errorf("a row took %v allocations, want 3", n)
	}

	e1.d.flush()
	rows := stored(t, st)
	if len(rows) != 3 || rows["persist-a"].ID == 0 || rows["persist-d"].ID == 0 || rows["persist-e"].ID == 0 {
		t.Fatalf("stored %v, want A, D and E", rows)
	}
	ra := rows["persist-a"]
	if ra.CallerCSeq != 11 || ra.CalleeCSeq != 4 || ra.ToTag != "ta" || ra.FromTag != "atag-persist-a" ||
		ra.FromURI != "sip:alice@example.com" || ra.ToHdr != "<sip:bob@example.com>" ||
		ra.CallerHop != "udp:"+callerAddr || ra.CalleeHop != "udp:"+calleeAddr ||
		ra.CallerRouteSet != "<sip:10.0.0.9;lr;caller-side>" || ra.CalleeRouteSet != "<sip:10.0.0.7;lr;callee-side>" ||
		ra.CalleeContact != "sip:bob@"+calleeAddr+";transport=udp" ||
		len(ra.Profiles) != 1 || ra.Profiles[0] != (store.DialogProfile{Name: "caller", Value: "alice"}) ||
		ra.Timeout != ra.AnswerTime+60_000 || ra.State != store.DialogConfirmed ||
		ra.Code != 200 || ra.Phrase != "OK" || ra.Flags != 1<<3|1<<31 ||
		len(ra.Values) != 1 || ra.Values[0] != (store.DialogValue{Name: "account", Value: "acme & co"}) {
		t.Fatalf("stored A: %+v", ra)
	}
	if rd := rows["persist-d"]; rd.Timeout != rd.AnswerTime+2000 {
		t.Fatalf("stored D's timeout %d, answered %d: want 2 s after", rd.Timeout, rd.AnswerTime)
	}
	if w := e1.d.store.writes.Get(); w != 3 {
		t.Fatalf("store writes %d, want 3 (A, D, E: B ended before the flush)", w)
	}

	// A change after the flush, written when the module stops.
	a.inDialog("INFO", true, "ta", 12)
	e1.mods.Stop()
	if got := stored(t, st)["persist-a"].CallerCSeq; got != 12 {
		t.Fatalf("A's caller CSeq %d after Stop, want 12: the last changes were not written", got)
	}

	e1.clock.Advance(5 * time.Second) // the server is down
	var endA *Event
	e2 := newEnvWith(t, persistSettings(), envOptions{store: st, clock: e1.clock, secret: testSecret, subscribe: func(ev *Event) {
		if ev.Kind == EventEnded && string(ev.CallID) == "persist-a" {
			c := *ev
			c.Phrase, c.From, c.Values = append([]byte(nil), ev.Phrase...), append([]byte(nil), ev.From...), append(Values(nil), ev.Values...)
			endA = &c
		}
	}})
	e2.wantCount(t, 0, 0, 3)
	if e2.d.store.restored.Get() != 3 {
		t.Fatalf("restored %d", e2.d.store.restored.Get())
	}
	if n := e2.d.ProfileSize("caller", []byte("alice")); n != 3 {
		t.Fatalf("profile caller=alice holds %d after the restart, want 3", n)
	}
	l := e2.d.List("", 0)
	if len(l) != 3 || l[0].CallID != "persist-a" || l[0].State != "confirmed" || l[0].Callee != "udp:"+calleeAddr {
		t.Fatalf("listing after the restart: %+v", l)
	}

	// D's timeout passed while the server was down: BYEs at the next tick.
	e2.Take()
	e2.clock.Advance(10 * time.Millisecond)
	byes := e2.waitSent(t, 2)
	for _, s := range byes {
		if !strings.HasPrefix(s.Data, "BYE ") || header(s.Data, "Call-ID") != "persist-d" {
			t.Fatalf("sent after the restart: %q", firstLine(s.Data))
		}
	}
	e2.wantCount(t, 0, 0, 2)

	// A's callee hangs up, on the Route the first run recorded.
	a.e = e2
	out := a.inDialog("BYE", false, "ta", 5)
	if len(out) != 1 || !strings.HasPrefix(out[0].Data, "BYE sip:alice@"+callerAddr) || out[0].Dst.String() != "10.0.0.9:5060" {
		t.Fatalf("A's BYE after the restart: %v", out)
	}
	if !e2.matched[len(e2.matched)-1] || e2.ended(ReasonBye) != 1 {
		t.Fatal("A's BYE did not match its restored dialog")
	}
	// What an accounting module gets of it: the call as it was before
	// the restart.
	if endA == nil {
		t.Fatal("no end event for A")
	}
	if v, _ := endA.Values.Get("account"); endA.Start != ra.StartTime || endA.Answer != ra.AnswerTime || endA.Code != 200 ||
		string(endA.Phrase) != "OK" || endA.Flags != 1<<3|1<<31 || string(v) != "acme & co" || endA.By != Callee ||
		endA.Caller.String() != callerAddr || string(endA.From) != ra.FromHdr {
		t.Fatalf("A's end event after the restart: %+v", endA)
	}

	// E ends by its own timeout: a minute after its answer, not before.
	e2.clock.Set(answerE + 59_990)
	e2.wantCount(t, 0, 0, 1)
	e2.Take()
	e2.clock.Set(answerE + 60_000)
	e2.wantCount(t, 0, 0, 0)
	byes = e2.waitSent(t, 2)
	for _, s := range byes {
		cseq := header(s.Data, "CSeq")
		if header(s.Data, "Call-ID") != "persist-e" || (s.Dst.String() == calleeAddr) != (cseq == "11 BYE") {
			t.Fatalf("E's BYE to %s: CSeq %q\n%s", s.Dst, cseq, s.Data)
		}
	}
	if n := e2.d.ProfileSize("caller", []byte("alice")); n != 0 {
		t.Fatalf("profile caller=alice holds %d once every call ended", n)
	}
	e2.d.flush()
	if rows := stored(t, st); len(rows) != 0 {
		t.Fatalf("stored after every call ended: %v", rows)
	}
}

// TestPersistStoreBusy: while another process holds the database's write
// lock, a flush fails (counted) and its changes go back on the lists: the
// next flush, once the lock is released, writes them; a dialog that ended
// in between is deleted, not written.
func TestPersistStoreBusy(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the module's Stop (cleanups run last first)
	e := newEnvWith(t, persistSettings(), envOptions{store: st})
	e.d.w.retry = time.Millisecond
	a := e.invite("busy-a")
	a.respond(0, 200, "ta")
	b := e.invite("busy-b")
	b.respond(0, 200, "tb")

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.DefaultFileName)+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`DELETE FROM dialog WHERE dlg_id = 0`); err != nil {
		t.Fatal(err)
	}
	e.d.flush()
	if e.d.store.errors.Get() != 2 || e.d.store.writes.Get() != 0 {
		t.Fatalf("errors %d writes %d while the store is locked", e.d.store.errors.Get(), e.d.store.writes.Get())
	}
	b.inDialog("BYE", true, "tb", 11)
	tx.Rollback()
	e.d.flush()
	rows := stored(t, st)
	if len(rows) != 1 || rows["busy-a"].ToTag != "ta" {
		t.Fatalf("stored after the lock: %v, want A only", rows)
	}
}

// TestPersistBadRowLeftOut: a dialog whose row the store would refuse is
// left out of the write-back, counted, and the others are written: one
// such row failed the whole batch at every interval, so no call of the
// node was persisted while it was up (a WebSocket caller over TLS, whose
// wss hop the store refused, or a To tag over 1 KiB). A WSS caller's
// dialog is written, and restored.
func TestPersistBadRowLeftOut(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the module's Stop (cleanups run last first)
	e := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret})
	e.d.w.retry = time.Millisecond
	e.invite("row-good").respond(0, 200, "tg")
	e.inviteOver("row-wss", transport.WSS).respond(0, 200, "tw")
	e.invite("row-bad").respond(0, 200, "tb")
	// No call the module keeps makes a row the store refuses now: this
	// one's first hop towards the caller is lost, as if it had.
	h := shards.Sum([]byte("row-bad"))
	s := e.d.tbl.Shard(h)
	s.Lock()
	s.Find(h, func(en *shards.Entry[dlg]) bool { return string(en.Key()) == "row-bad" }).Value.hop[toCaller] = addrPort{}
	s.Unlock()
	e.d.flush()
	rows := stored(t, st)
	if len(rows) != 2 || rows["row-good"].ToTag != "tg" || rows["row-wss"].CallerHop != "wss:"+callerAddr {
		t.Fatalf("stored %v, want the good and the WSS call", rows)
	}
	if e.d.store.refused.Get() != 1 || e.d.store.errors.Get() != 0 || e.d.store.writes.Get() != 2 {
		t.Fatalf("refused %d, errors %d, writes %d; want 1, 0, 2",
			e.d.store.refused.Get(), e.d.store.errors.Get(), e.d.store.writes.Get())
	}
	e.wantCount(t, 0, 0, 3) // the call left out goes on
	e.mods.Stop()
	e2 := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret})
	if l := e2.d.List("", 0); len(l) != 2 || e2.d.store.restored.Get() != 2 {
		t.Fatalf("restored %d: %+v", e2.d.store.restored.Get(), l)
	}
}

// TestHopsStored: the first hop of a dialog over each of the transport's
// protocols is one the store keeps, and reads back.
func TestHopsStored(t *testing.T) {
	ap := netip.MustParseAddrPort("[2001:db8::1]:5061")
	for p := transport.Proto(0); !strings.HasPrefix(p.String(), "proto("); p++ {
		hop := string(appendHop(nil, p, ap))
		r := store.Dialog{ID: 1, CallID: "c", FromURI: "sip:a@x", FromTag: "a", ToURI: "sip:b@x", ToTag: "b",
			FromHdr: "<sip:a@x>;tag=a", ToHdr: "<sip:b@x>", CallerHop: hop, CalleeHop: hop,
			State: store.DialogConfirmed, StartTime: 1, AnswerTime: 2, Timeout: 3}
		if err := store.CheckDialog(&r); err != nil {
			t.Errorf("%v: %v", p, err)
		}
		if gp, gap, ok := parseHop(hop); !ok || gp != p || gap != ap {
			t.Errorf("%q read back as %v %v %v", hop, gp, gap, ok)
		}
	}
}

// TestRestoreTimeoutBounded: a stored dialog whose timeout is ten years
// after its answer (edited by hand, or by a broken tool) is restored to
// end 168 h after its answer, the bound of a live dialog's timeout; it
// was restored as it was. A row answered before its start is reported
// and not restored.
func TestRestoreTimeoutBounded(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the module's Stop (cleanups run last first)
	now := int64(1_700_000_000_000)  // the harness's clock
	row := func(id uint64, callID string) store.Dialog {
		return store.Dialog{ID: id, CallID: callID, FromURI: "sip:alice@example.com", FromTag: "a1",
			ToURI: "sip:bob@example.com", ToTag: "b1", FromHdr: "<sip:alice@example.com>;tag=a1", ToHdr: "<sip:bob@example.com>",
			CallerHop: "udp:" + callerAddr, State: store.DialogConfirmed, StartTime: now - 2000, AnswerTime: now - 1000,
			Timeout: now + 10*365*24*3600*1000}
	}
	if err := st.ApplyDialogs(context.Background(), []store.DialogOp{{Kind: store.DialogUpsert, Dialog: row(0x1234, "far-off")},
		{Kind: store.DialogUpsert, Dialog: row(0x1235, "answered-early")}}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE dialog SET data = json_set(data, '$.answer_time', ?) WHERE dlg_id = ?`, now-3000, 0x1235); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret})
	g := e.only(t)
	if string(g.get(g.fromTag)) != "a1" || g.timer.When() != g.answer+maxTimeout.Milliseconds() {
		t.Fatalf("restored dialog ends %v after its answer, want %v", time.Duration(g.timer.When()-g.answer)*time.Millisecond, maxTimeout)
	}
}

// TestSetTimeoutBounded: SetTimeout on an answered call starts its timer
// with the timeout it keeps, at most 168 h from now and never past 168 h
// after the answer (what a restart restores). It started the timer with
// the value given (200 h) while keeping the bounded one.
func TestSetTimeoutBounded(t *testing.T) {
	e := newEnv(t, nil)
	var set time.Duration
	e.afterMatch = func(c *routing.Ctx) {
		if !e.d.SetTimeout(c, set) {
			t.Error("SetTimeout refused")
		}
	}
	c := e.invite("bounded")
	c.respond(0, 200, "b")
	g := e.only(t)
	set = 200 * time.Hour
	c.inDialog("INFO", true, "b", 11)
	if got := time.Duration(g.timer.When()-e.clock.Now()) * time.Millisecond; got != maxTimeout || g.timeout != uint32(maxTimeout.Milliseconds()) {
		t.Fatalf("SetTimeout(200h): ends in %v, keeps %d ms; want %v both", got, g.timeout, maxTimeout)
	}
	// Answered 100 h ago (the clock is not run that far): 168 h from now
	// would be 268 h after the answer.
	h := shards.Sum([]byte("bounded"))
	s := e.d.tbl.Shard(h)
	s.Lock()
	g.answer = e.clock.Now() - (100 * time.Hour).Milliseconds()
	s.Unlock()
	set = maxTimeout
	c.inDialog("INFO", true, "b", 12)
	if g.timer.When() != g.answer+maxTimeout.Milliseconds() {
		t.Fatalf("SetTimeout(168h) 100 h after the answer: ends %v after it", time.Duration(g.timer.When()-g.answer)*time.Millisecond)
	}
	set = time.Hour
	c.inDialog("INFO", true, "b", 13)
	if g.timer.When() != e.clock.Now()+time.Hour.Milliseconds() {
		t.Fatal("SetTimeout(1h) after them: not an hour from now")
	}
}

// TestPersistQueueFull: a shard's list holds two changes per dialog the
// shard may hold; past it a change is dropped and counted, never
// blocking the call. (Only a store failing for long gets there.)
func TestPersistQueueFull(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the module's Stop (cleanups run last first)
	s := persistSettings()
	s.MaxDialogs = 4 // one per shard: lists of 2+16
	e := newEnvWith(t, s, envOptions{store: st})
	max := e.d.w.maxPend
	// Calls that all land on shard 0, each answered and hung up: an
	// upsert on that shard's list each (no delete: no row was taken).
	n := 0
	for i := 0; n < max; i++ {
		id := "full-" + itoa(i)
		if e.d.tbl.ShardFor([]byte(id)).Index() != 0 {
			continue
		}
		c := e.invite(id)
		c.respond(0, 200, "t")
		c.inDialog("BYE", true, "t", 11)
		n++
	}
	if e.d.store.drops.Get() != 0 {
		t.Fatalf("%d drops at %d changes, the list holds %d", e.d.store.drops.Get(), n, max)
	}
	for i := 0; ; i++ {
		id := "over-" + itoa(i)
		if e.d.tbl.ShardFor([]byte(id)).Index() != 0 {
			continue
		}
		c := e.invite(id)
		c.respond(0, 200, "t")
		break
	}
	if e.d.store.drops.Get() != 1 {
		t.Fatalf("drops %d, want 1", e.d.store.drops.Get())
	}
	e.wantCount(t, 0, 0, 1) // the call itself goes on
}

// TestCLIStoredDialogs: `switchboard dialog list` shows the stored
// dialogs, `dialog del <id>` deletes one so that a start does not restore
// it; a bad or unknown id is refused with what is wrong.
func TestCLIStoredDialogs(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnvWith(t, persistSettings(), envOptions{store: st})
	e.beforeRelay = func(c *routing.Ctx) bool { ok, _ := e.d.ApplyProfiles(c); return ok }
	c := e.invite("cli-a")
	c.respond(0, 200, "ta")
	e.d.flush()
	id := e.d.List("", 0)[0].ID
	run := func(args ...string) (string, error) {
		var out strings.Builder
		err := cliCommands[args[0]].Run(context.Background(), st, args[1:], &out)
		return out.String(), err
	}
	out, err := run("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") !=
		id+" cli-a sip:alice@example.com sip:bob@example.com 2023-11-14T22:13:20Z 2023-11-14T22:14:20Z caller=alice" {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if _, err := run("del", "xyz"); err == nil || !strings.Contains(err.Error(), `id "xyz": want the 16 hexadecimal digits`) {
		t.Fatalf("del xyz: %v", err)
	}
	if out, err := run("del", id); err != nil || out != "deleted dialog "+id+"\n" {
		t.Fatalf("del: %q %v", out, err)
	}
	if _, err := run("del", id); err == nil || !strings.Contains(err.Error(), "is not stored") {
		t.Fatalf("del twice: %v", err)
	}
	if out, _ := run("list"); strings.Contains(out, id) {
		t.Fatalf("listed after del:\n%s", out)
	}
}

// TestAddrPort: the dialog's compact first hops give back what they were
// given, IPv4 and IPv6 alike, an IPv4-mapped IPv6 address as the IPv4 one
// (as the transport reads and sends to it), and the zero value.
func TestAddrPort(t *testing.T) {
	for _, s := range []string{"127.0.0.1:5060", "[::ffff:192.0.2.1]:5070", "[2001:db8::1]:5080", "[::1]:5060"} {
		ap := netip.MustParseAddrPort(s)
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if got := packAddr(ap).AddrPort(); got != want {
			t.Errorf("%s came back as %s, want %s", ap, got, want)
		}
	}
	if got := packAddr(netip.AddrPort{}).AddrPort(); got.IsValid() {
		t.Errorf("the zero AddrPort came back as %s", got)
	}
}

// TestWriterBatchRoom: the write-back keeps the room a steady load's
// flushes need (about 1,000 rows a second at 500 calls/s) and lets go of
// what a burst left once flushes are small again, or empty.
// rowAllocs is the allocations of the store row of the dialog with
// Call-ID callID.
func rowAllocs(d *Dialog, callID string) float64 {
	h := shards.Sum([]byte(callID))
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Find(h, func(e *shards.Entry[dlg]) bool { return string(e.Key()) == callID })
	var t fieldtext.Fields
	d.row(e, &t) // the text's room
	return testing.AllocsPerRun(100, func() { d.row(e, &t) })
}

func TestWriterBatchRoom(t *testing.T) {
	w := &writer{}
	room := func(n int) {
		w.ops, w.from = make([]store.DialogOp, 0, n), make([]pendOp, 0, n)
	}
	room(1280)
	if w.trim(1000); cap(w.ops) != 1280 || cap(w.from) != 1280 {
		t.Fatalf("steady flush of 1000 rows: room %d, %d, want 1280 kept", cap(w.ops), cap(w.from))
	}
	if w.trim(600); w.ops != nil || w.from != nil {
		t.Fatalf("flush of 600 rows after a burst: room %d kept", cap(w.ops))
	}
	room(50_000)
	if w.trim(0); w.ops != nil {
		t.Fatal("an empty flush kept a burst's room")
	}
	room(keptBatch)
	if w.trim(0); cap(w.ops) != keptBatch {
		t.Fatalf("room of %d rows let go", keptBatch)
	}
}
