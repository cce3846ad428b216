package rtpengine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// lockedBuf is a log sink for several goroutines.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// tableEngine builds the module on a SQLite store with outbound.allow
// allow; routes use flags (nil: the default set).
func tableEngine(t *testing.T, st *store.Store, s *Settings, allow []string, logs *lockedBuf, flags *Flags) (*Engine, *routetest.Harness, error) {
	t.Helper()
	var prefixes []netip.Prefix
	for _, a := range allow {
		prefixes = append(prefixes, netip.MustParsePrefix(a))
	}
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000),
		Logger: slog.New(slog.NewTextHandler(logs, nil)), AllowOutbound: prefixes}, map[string]any{"rtpengine": s}, "rtpengine")
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(set.Stop)
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	e := set.Get("rtpengine").(*Engine)
	h := routetest.New(t, nil)
	h.Route = func(c *routing.Ctx) {
		e.Manage(c, flags, func(c *routing.Ctx, err error) {
			if err != nil && e.Refuse(c, err) {
				return
			}
			c.Relay()
		})
	}
	h.Reply = func(c *routing.ReplyCtx) bool { e.ManageReply(c, flags); return true }
	return e, h, nil
}

func openStore(t *testing.T) *store.Store {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestTableSets: instances of the rtpengine table join the configured
// ones, by set. A route's flags name the set (InSet); a table change is
// picked up by the poll without a restart, and a call keeps the instance
// its session was created on (its answer and delete reach it) although a
// reload took that instance out of its set meanwhile. A row whose address
// outbound.allow forbids is skipped with its reason logged, and listed
// nowhere; a configured one stops the start with an error naming its key.
// The control sockets are bound to loopback, not to the wildcard address.
func TestTableSets(t *testing.T) {
	ctx := context.Background()
	a, b, c := newNGPeer(t), newNGPeer(t), newNGPeer(t)
	sock := func(p *ngPeer) string { return "udp:" + p.conn.LocalAddr().String() }
	st := openStore(t)
	if _, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 2, Socket: sock(b), Weight: 1}); err != nil {
		t.Fatal(err)
	}
	forbidden, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 2, Socket: "udp:192.0.2.7:2223", Weight: 5})
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Instances = []string{sock(a)} // set 0
	s.PollInterval = 20 * time.Millisecond
	logs := &lockedBuf{}
	e, h, err := tableEngine(t, st, s, []string{"127.0.0.0/8"}, logs, MustParseFlags("ICE=remove").InSet(2))
	if err != nil {
		t.Fatal(err)
	}
	l := e.List()
	if len(l) != 2 || l[0].Source != "config" || l[0].Set != 0 || l[1].Source != "table" || l[1].Set != 2 || l[1].URL != sock(b) || l[1].ID == 0 {
		t.Fatalf("instances %+v", l)
	}
	if !strings.Contains(logs.String(), "table row skipped") || !strings.Contains(logs.String(), "192.0.2.7 is outside outbound.allow") ||
		!strings.Contains(logs.String(), "row="+itoa(int(forbidden.ID))) {
		t.Fatalf("the forbidden row's reason is not logged:\n%s", logs)
	}
	for _, la := range e.Client().Locals() {
		if la.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("control socket bound to %v, want 127.0.0.1", la)
		}
	}

	// A call through set 2: its offer goes to b.
	inv := withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP)
	h.Receive("127.0.0.1:5070", inv)
	fwd := waitSent(t, h, "INVITE ")
	waitCommand(t, b, 1, "offer")
	if n := len(a.commands()); n != 0 {
		t.Fatalf("set 0's instance got %d commands", n)
	}

	// The table changes while the call rings: b leaves set 2, c joins.
	if _, err := st.DeleteRTPEngineOf(ctx, 2, sock(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 2, Socket: sock(c), Weight: 1}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l = e.List()
		if len(l) == 2 && l[1].URL == sock(c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("table change not loaded: %+v", l)
		}
	}
	// The call's answer and BYE still reach b, which has its session.
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b1", answerSDP))
	waitSent(t, h, "SIP/2.0 200 OK")
	waitCommand(t, b, 2, "answer")
	bye := strings.Replace(strings.Replace(strings.Replace(inv, "INVITE sip:", "BYE sip:", 1), "CSeq: 1 INVITE", "CSeq: 2 BYE", 1),
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1)
	bye = strings.Replace(strings.Split(bye, "Content-Type:")[0]+"Content-Length: 0\r\n\r\n", "branch=z9hG4bK.t", "branch=z9hG4bK.bye", 1)
	h.Receive("127.0.0.1:5070", bye)
	waitSent(t, h, "BYE ")
	waitCommand(t, b, 3, "delete")
	// The call is forgotten when the delete's answer comes back, just
	// after the peer has seen the command.
	for deadline := time.Now().Add(3 * time.Second); e.calls.len() != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if len(c.commands()) != 0 || e.calls.len() != 0 {
		t.Fatalf("commands to the new instance %v; calls remembered %d", c.commands(), e.calls.len())
	}
	// A new call goes to the set as it is now.
	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	waitSent(t, h, "INVITE ")
	waitCommand(t, c, 1, "offer")

	// The operator's disable holds across a table reload; rtpengine.reload
	// loads at once.
	if err := e.SetDisabled(sock(c), 2, true); err != nil {
		t.Fatal(err)
	}
	if err := e.SetDisabled(sock(c), 7, true); err == nil {
		t.Fatal("disable in a set without the instance accepted")
	}
	if err := e.LoadTable(ctx); err != nil {
		t.Fatal(err)
	}
	if l := e.List(); l[1].State != "disabled" {
		t.Fatalf("after reload: %+v", l)
	}

	// A configured instance outside outbound.allow: no start, the key named.
	s2 := DefaultSettings()
	s2.Instances = []string{sock(a), "1 == udp:192.0.2.8:2223"}
	_, _, err = tableEngine(t, openStore(t), s2, []string{"127.0.0.0/8"}, &lockedBuf{}, nil)
	var ke *modules.KeyError
	if !errors.As(err, &ke) || ke.Key != "instances[1]" || !strings.Contains(err.Error(), "192.0.2.8:2223 is outside outbound.allow") {
		t.Fatalf("forbidden configured instance: %v", err)
	}
	if err := s2.checkOutbound(func(a netip.Addr) bool { return a.IsLoopback() }); err == nil || !strings.Contains(err.Error(), "instances[1]") {
		t.Fatalf("checkOutbound: %v", err)
	}
}

// TestSettingsErrors: bad instance lists, sets and bind addresses are
// refused naming the key.
func TestSettingsErrors(t *testing.T) {
	for _, c := range []struct {
		mod  func(s *Settings)
		want string
	}{
		{func(s *Settings) { s.Instances = []string{"x == udp:127.0.0.1:1"} }, `instances[0]: "x == udp:127.0.0.1:1": set "x" before '=='`},
		{func(s *Settings) { s.Instances = []string{"1 == udp:127.0.0.1:1", "1==udp:127.0.0.1:1=2"} }, "instances[1]: 127.0.0.1:1 is listed twice in set 1"},
		{func(s *Settings) { s.BindAddress = "0.0.0.0" }, "bind_address: 0.0.0.0 is the wildcard address"},
		{func(s *Settings) { s.BindAddress = "localhost" }, `bind_address: "localhost" is not an IP address`},
		{func(s *Settings) { s.BindAddress = "127.0.0.1"; s.Instances = []string{"udp:[::1]:2223"} }, "instances[0]: [::1]:2223 cannot be reached from bind_address 127.0.0.1"},
		{func(s *Settings) { s.DefaultSet = 70000 }, "default_set"},
		{func(s *Settings) { s.PollInterval = 0 }, "poll_interval"},
		{func(s *Settings) { s.CallTimeout = time.Second }, "call_timeout"},
	} {
		s := DefaultSettings()
		c.mod(s)
		if err := s.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
	s := DefaultSettings()
	s.Instances = []string{"udp:127.0.0.1:2223", "1 == udp:127.0.0.1:2223=3"} // one rtpengine in two sets
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

// TestOutboundChangedRechecksTableRows: a reload that narrows
// outbound.allow (the transaction core's list, then Set.OutboundChanged)
// takes a table row now outside it out of use, with its reason logged,
// and one that widens the list takes the row up again: the control
// socket sends nowhere the server may no longer send to, without a
// restart.
func TestOutboundChangedRechecksTableRows(t *testing.T) {
	ctx := context.Background()
	a := newNGPeer(t)
	st := openStore(t)
	row, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 0, Socket: "udp:127.0.0.2:2223", Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Instances = []string{"udp:" + a.conn.LocalAddr().String()}
	logs := &lockedBuf{}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000),
		Logger: slog.New(slog.NewTextHandler(logs, nil)), AllowOutbound: loopback}, map[string]any{"rtpengine": s}, "rtpengine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	h := routetest.New(t, nil)
	h.Core().SetAllowOutbound(loopback)
	set.SetCore(h.Core())
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	e := set.Get("rtpengine").(*Engine)
	if l := e.List(); len(l) != 2 {
		t.Fatalf("instances before the reload: %+v", l)
	}

	h.Core().SetAllowOutbound([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if errs := set.OutboundChanged(); len(errs) != 0 {
		t.Fatal(errs)
	}
	if l := e.List(); len(l) != 1 || l[0].Source != "config" {
		t.Fatalf("after narrowing outbound.allow to 127.0.0.1/32, the row for 127.0.0.2 is still in use: %+v", l)
	}
	if !strings.Contains(logs.String(), "127.0.0.2 is outside outbound.allow") || !strings.Contains(logs.String(), "row="+itoa(int(row.ID))) {
		t.Fatalf("the row's reason is not logged:\n%s", logs)
	}

	h.Core().SetAllowOutbound(loopback)
	if errs := set.OutboundChanged(); len(errs) != 0 {
		t.Fatal(errs)
	}
	if l := e.List(); len(l) != 2 {
		t.Fatalf("after widening outbound.allow again, the row is not taken up: %+v", l)
	}
}
