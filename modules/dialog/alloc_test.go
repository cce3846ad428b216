package dialog

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

// numberAll writes n as 8 digits over every "00000000" field of msg that
// follows one of the markers (the first time: the zeros; later: the
// previous number).
func numberAll(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=a", "Call-ID: c"} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}

const allocInvite = "INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-00000000;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a00000000\r\nTo: <sip:bob@example.com>\r\n" +
	"Call-ID: c00000000@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"

// callLoop returns a function that puts one whole call through the core:
// INVITE (with dialogs: CreateDialog, the id in the Record-Route; without:
// RecordRoute only), the callee's 200, the callee's BYE (LooseRoute, and
// ValidateDialog, FixRouteDialog when it is not valid, and MatchDialog
// with dialogs) and its 200. Messages are built in place, so the loop
// itself allocates nothing.
func callLoop(tb testing.TB, e *env, dialogs bool) func() {
	return callLoopBye(tb, e, dialogs, "sip:alice@127.0.0.1:5070")
}

// callLoopBye is callLoop with the callee's BYE addressed to byeURI (the
// callee's own address: a BYE FixRouteDialog sends to the caller).
func callLoopBye(tb testing.TB, e *env, dialogs bool, byeURI string) func() {
	e.Keep = false
	e.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			if c.LooseRoute() && (!dialogs || (e.d.ValidateDialog(c) || e.d.FixRouteDialog(c)) && e.d.MatchDialog(c)) {
				c.Relay()
				return
			}
			c.ReplyStateless(404, "", nil)
			return
		}
		if !dialogs {
			c.RecordRoute()
			c.Relay()
			return
		}
		if c.IsMethod(parser.MethodInvite) && e.d.CreateDialog(c) {
			c.Relay()
			return
		}
		c.ReplyStateless(500, "", nil)
	}
	var relayed parser.Message
	fwd := make([]byte, 0, 4096)
	e.OnSend = func(dst netip.AddrPort, data []byte) {
		if bytes.HasPrefix(data, []byte("INVITE ")) {
			fwd = append(fwd[:0], data...)
		}
	}
	invite := []byte(allocInvite)
	resp := make([]byte, 0, 4096)
	extra := make([]byte, 0, 1024)
	bye := make([]byte, 0, 4096)
	l := e.Listener(transport.UDP, netip.Addr{})
	pkt := &transport.Packet{Listener: l, Proto: transport.UDP}
	caller := netip.MustParseAddrPort(callerAddr)
	callee := netip.MustParseAddrPort(calleeAddr)
	i := 0
	return func() {
		i++
		numberAll(invite, i)
		*pkt = transport.Packet{Data: invite, Src: caller, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		if relayed.Parse(fwd) != nil {
			tb.Fatal("no INVITE relayed")
		}
		rr := relayed.Get(parser.HdrRecordRoute)
		extra = append(append(append(extra[:0], "Record-Route: "...), rr...), "\r\nContact: <sip:bob@127.0.0.1:5080>\r\n"...)
		resp = parser.AppendResponseHeaders(resp[:0], &relayed, 200, nil, []byte("b1"), extra)
		*pkt = transport.Packet{Data: resp, Src: callee, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		bye = append(append(append(bye[:0], "BYE "...), byeURI...), " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-b"...)
		bye = append(bye, invite[bytes.Index(invite, []byte("z9hG4bK-"))+8:][:8]...)
		bye = append(bye, "\r\nMax-Forwards: 70\r\nRoute: "...)
		bye = append(bye, rr...)
		bye = append(bye, "\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: "...)
		bye = append(bye, relayed.From().Raw...)
		bye = append(bye, "\r\nCall-ID: "...)
		bye = append(bye, relayed.CallID()...)
		bye = append(bye, "\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"...)
		*pkt = transport.Packet{Data: bye, Src: callee, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		// the BYE's 200 from the caller
		resp = parser.AppendResponse(resp[:0], &relayed, 200, nil, nil)
		if i%500 == 0 {
			e.clock.Advance(10 * time.Second) // finished transactions go back to their pool
		}
	}
}

// TestCallAllocatesNothing: whole calls through the core with the
// dialog module (callLoop): no allocation once the pools are warm, with
// the dialogs written to a store too (dialog.persist: the receive path
// only lists the change; the writer, which allocates the rows, does not
// run during the count).
func TestCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	for _, run := range []struct {
		name           string
		persist, fixed bool
	}{{"memory", false, false}, {"persist", true, false}, {"fixed", false, true}} {
		persist := run.persist
		t.Run(run.name, func(t *testing.T) {
			var o envOptions
			s := DefaultSettings()
			if persist {
				st, err := store.Open(t.TempDir(), store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				o.store, s.WriteInterval = st, 10*time.Minute
			}
			e := newEnvWith(t, s, o)
			call := callLoop(t, e, true)
			if run.fixed {
				// The callee's BYE addressed to itself: sent to the
				// caller by FixRouteDialog.
				call = callLoopBye(t, e, true, "sip:bob@127.0.0.1:5080")
			}
			for range 1000 {
				call()
			}
			if e.ended(ReasonBye) != 1000 || e.d.tbl.Len() != 0 {
				t.Fatalf("%d dialogs ended by BYE, %d left: the calls did not go through", e.ended(ReasonBye), e.d.tbl.Len())
			}
			if n := e.d.routeFixed.Get(); run.fixed != (n == 1000) || !run.fixed && n != 0 {
				t.Fatalf("%d BYEs fixed", n)
			}
			for range 4000 {
				call() // every pool and index at the size this load needs
			}
			if persist {
				e.d.flush() // the lists emptied, at the size of 4000 calls
				// Each call listed its upsert, and ended before the
				// flush: nothing to write.
				if e.d.store.writes.Get() != 0 {
					t.Fatalf("%d rows written for 5000 calls ended before the flush, want none", e.d.store.writes.Get())
				}
			}
			if n := testing.AllocsPerRun(1000, call); n != 0 {
				t.Fatalf("%.2f allocations per call", n)
			}
		})
	}
}

// TestSharedCallAllocatesNothing: the same calls with dialog.sharing:
// redis (a real redis-server): the receive path lists each answered
// dialog for the Redis writer under the shard lock it holds and never
// waits for Redis. The sharing's goroutine, which allocates the rows and
// pipelines, is stopped during the count; its lists are emptied before
// it, at the size of 4000 calls (the calls ended before a write: nothing
// is written, and their ends need no claim).
func TestSharedCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	rs := startRedis(t)
	e := newEnvWith(t, shareSettings(rs, "a"), envOptions{})
	sh := e.d.share
	sh.cancel()
	sh.ps.Close()
	sh.wg.Wait()
	call := callLoop(t, e, true)
	for range 5000 {
		call()
	}
	if e.ended(ReasonBye) != 5000 || e.d.tbl.Len() != 0 {
		t.Fatalf("%d dialogs ended by BYE, %d left", e.ended(ReasonBye), e.d.tbl.Len())
	}
	if err := sh.writeAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := sh.writes.Get(); n != 0 {
		t.Fatalf("%d dialogs written for 5000 calls ended before the write", n)
	}
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per call", n)
	}
	listed := 0
	for i := range sh.pend {
		listed += len(sh.pend[i].ops)
	}
	if listed != 1001 { // AllocsPerRun runs the call once more first
		t.Fatalf("%d dialogs listed for the Redis writer by 1001 calls", listed)
	}
}

// TestEventsAllocateNothing: the same calls with a subscriber: the
// events (created, answered, ended) are built without allocating.
func TestEventsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil)
	var ended, code int
	e.d.Subscribe(func(ev *Event) {
		if ev.Kind == EventEnded {
			ended++
			code = ev.Code
		}
	})
	call := callLoop(t, e, true)
	for range 5000 {
		call()
	}
	if ended != 5000 || code != 200 {
		t.Fatalf("%d ended events (code %d) for 5000 calls", ended, code)
	}
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per call with a subscriber", n)
	}
}

// BenchmarkCall: one whole call (callLoop) through the core, with and
// without a dialog: the cost the dialog adds to a call.
func BenchmarkCall(b *testing.B) {
	for _, dialogs := range []bool{false, true} {
		name := "relay"
		if dialogs {
			name = "dialog"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, nil)
			call := callLoop(b, e, dialogs)
			for range 5000 {
				call()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				call()
			}
		})
	}
}

// TestMatchAllocatesNothing: the in-dialog match alone, repeated inside
// the route of one loose-routed request: no allocation.
func TestMatchAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil)
	c := e.invite("alloc-match")
	c.respond(0, 200, "b")
	var n, m, p, v, f, de float64 = -1, -1, -1, -1, -1, -1
	e.Route = func(rc *routing.Ctx) {
		if !rc.LooseRoute() {
			t.Error("not loose-routed")
			return
		}
		if rc.IsMethod(parser.MethodBye) {
			// Addressed to the caller herself: fixed each time.
			f = testing.AllocsPerRun(1000, func() {
				if e.d.ValidateDialog(rc) || !e.d.FixRouteDialog(rc) || !e.d.ValidateDialog(rc) {
					t.Fatal("not fixed")
				}
				rc.SetRU([]byte("sip:alice@127.0.0.1:5070"))
			})
			rc.Relay()
			return
		}
		v = testing.AllocsPerRun(1000, func() {
			if !e.d.ValidateDialog(rc) {
				t.Fatal("not valid")
			}
		})
		n = testing.AllocsPerRun(1000, func() {
			if !e.d.MatchDialog(rc) {
				t.Fatal("no match")
			}
		})
		m = testing.AllocsPerRun(1000, func() { e.d.IsInDialog(rc) })
		de = testing.AllocsPerRun(1000, func() {
			if has, ended := e.d.DialogEnded(rc); !has || ended {
				t.Fatal("the dialog not named, or ended")
			}
		})
		id, _ := parseID(rc.R.DialogRouteParam(didParam))
		p = testing.AllocsPerRun(1000, func() {
			var buf [2048]byte
			if _, ok := e.d.MatchDialogID(rc, id, Caller, buf[:0]); !ok {
				t.Fatal("no match by id")
			}
		})
		rc.Relay()
	}
	c.inDialog("INFO", true, "b", 11)
	c.inDialogTo("BYE", true, "b", 12, "sip:alice@"+callerAddr, nil, "")
	if n != 0 || m != 0 || p != 0 || v != 0 || f != 0 || de != 0 {
		t.Fatalf("MatchDialog %.2f, IsInDialog %.2f, MatchDialogID %.2f, ValidateDialog %.2f, FixRouteDialog %.2f, DialogEnded %.2f allocations", n, m, p, v, f, de)
	}
}

// TestSpiralAllocatesNothing: CreateDialog on the second pass of a
// ringing call's INVITE (its From URI and CSeq, our Via with the branch
// the first pass went out on, below another proxy's), repeated inside
// the route of that pass: taken for the spiral each time, no second
// dialog, no allocation.
func TestSpiralAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil)
	c := e.invite("alloc-spiral")
	c.respond(0, 180, "b1")
	n := -1.0
	e.Route = func(rc *routing.Ctx) {
		n = testing.AllocsPerRun(1000, func() {
			if !e.d.CreateDialog(rc) || rc.Value(SlotDialog) != 0 {
				t.Fatal("the second pass not taken for the spiral")
			}
		})
		rc.Relay()
	}
	const proxy = "127.0.0.1:5099"
	c.send(proxy, strings.NewReplacer("INVITE sip:bob@"+calleeAddr, "INVITE sip:carol@"+callee2,
		"\r\nVia: ", "\r\nVia: SIP/2.0/UDP "+proxy+";branch=z9hG4bKproxy\r\nVia: ").Replace(c.fwd))
	if n != 0 || e.d.tbl.Len() != 1 {
		t.Fatalf("CreateDialog on the spiral: %.2f allocations, %d dialogs", n, e.d.tbl.Len())
	}
}
