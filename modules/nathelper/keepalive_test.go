package nathelper

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/routing"
)

// registerRoute saves REGISTERs the way the provider route set does with
// nathelper on: nat_uac_test, then fix_nated_register.
func (f *fixture) registerRoute() {
	f.h.Route = func(c *routing.Ctx) {
		if !c.IsMethod(parser.MethodRegister) {
			c.Reply(405, "")
			return
		}
		o := registrar.SaveOptions{Authenticated: true}
		if f.n.NATUACTest(c, f.n.Tests()) {
			c.ForceRPort()
			f.n.FixNATedRegister(c, &o)
		}
		f.reg.SaveWith(c, o)
	}
}

// register registers contact for user from src; its Via is the phone's
// private address unless the contact names src's (a phone not behind NAT).
func (f *fixture) register(t *testing.T, user, src, contact string) {
	t.Helper()
	via := "192.168.1.10:5062"
	if strings.Contains(contact, src) {
		via = src
	}
	msg := req("REGISTER", "sip:example.com", via, "Contact: <"+contact+">\r\nExpires: 600\r\n", "")
	msg = strings.Replace(msg, "To: <sip:bob@example.com>", "To: <sip:"+user+"@example.com>", 1)
	msg = strings.Replace(msg, "From: <sip:alice@example.com>", "From: <sip:"+user+"@example.com>", 1)
	if got := f.h.Answer(src, msg); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER %s: %q", user, got)
	}
}

// nextPing advances the clock one interval and waits for what the
// keepalive sends (it sends from a goroutine of its own).
func (f *fixture) nextPing(t *testing.T, interval time.Duration) []routetest.Sent {
	t.Helper()
	return f.advance(interval, 3*time.Second)
}

// noPing advances the clock and returns what was sent within a short wait
// (nothing, if all is well).
func (f *fixture) noPing(t *testing.T, interval time.Duration) []routetest.Sent {
	t.Helper()
	return f.advance(interval, 200*time.Millisecond)
}

func (f *fixture) advance(interval, wait time.Duration) []routetest.Sent {
	for i := 0; i < 10; i++ {
		f.h.Clock.Advance(interval / 10)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if s := f.h.Take(); len(s) > 0 {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// TestKeepaliveOptions: a NATed contact gets an OPTIONS every interval,
// sent to the address its REGISTER came from (its Request-URI the contact
// as registered); an answer of any status keeps it, unanswered pings are
// counted, and ping_failures of them in a row remove it from the location
// service.
func TestKeepaliveOptions(t *testing.T) {
	s := DefaultSettings()
	s.PingInterval, s.PingTimeout, s.PingFailures = 2*time.Second, 200*time.Millisecond, 2
	f := build(t, s, nil)
	f.registerRoute()
	f.register(t, "alice", "127.0.0.1:40000", "sip:alice@192.168.1.10:5062")
	f.register(t, "carol", "127.0.0.1:5064", "sip:carol@127.0.0.1:5064") // not behind NAT: never pinged

	ping := func() string {
		t.Helper()
		sent := f.nextPing(t, s.PingInterval)
		if len(sent) != 1 || sent[0].Dst.String() != "127.0.0.1:40000" {
			t.Fatalf("sent %+v", sent)
		}
		return sent[0].Data
	}
	opt := ping()
	if line, _, _ := strings.Cut(opt, "\r\n"); line != "OPTIONS sip:alice@192.168.1.10:5062 SIP/2.0" ||
		header(opt, "To") != "<sip:alice@192.168.1.10:5062>" || !strings.HasPrefix(header(opt, "From"), "<sip:keepalive@example.com>;tag=") ||
		!strings.HasPrefix(header(opt, "Via"), "SIP/2.0/UDP 127.0.0.1:5060;branch=") {
		t.Fatalf("OPTIONS:\n%s", opt)
	}
	f.h.Receive("127.0.0.1:40000", response(t, opt, 200, "", ""))

	// A 405 is an answer too.
	opt = ping()
	f.h.Receive("127.0.0.1:40000", response(t, opt, 405, "", ""))
	waitFor(t, func() bool { return f.counter("switchboard_nathelper_pings_answered_total") == 2 })

	// The phone is gone: two unanswered pings remove it.
	ping()
	waitFor(t, func() bool { return f.counter("switchboard_nathelper_pings_failed_total") == 1 })
	if l := f.reg.List("alice@example.com"); len(l) != 1 || l[0].PingFailures != 1 {
		t.Fatalf("after one failure %+v", l)
	}
	ping()
	waitFor(t, func() bool { return len(f.reg.List("alice@example.com")) == 0 })
	if n := f.counter("switchboard_nathelper_contacts_removed_total"); n != 1 {
		t.Fatalf("contacts_removed_total %d", n)
	}
	if n := f.counter("switchboard_nathelper_pings_sent_total"); n != 4 {
		t.Fatalf("pings_sent_total %d", n)
	}
	if sent := f.noPing(t, s.PingInterval); len(sent) != 0 {
		t.Fatalf("pinged after removal: %+v", sent)
	}
	if l := f.reg.List("carol@example.com"); len(l) != 1 {
		t.Fatalf("carol: %+v", l)
	}
}

// TestKeepaliveKeep: ping_failures 0 keeps a silent contact.
func TestKeepaliveKeep(t *testing.T) {
	s := DefaultSettings()
	s.PingInterval, s.PingTimeout, s.PingFailures = time.Second, 100*time.Millisecond, 0
	f := build(t, s, nil)
	f.registerRoute()
	f.register(t, "dave", "127.0.0.1:40000", "sip:dave@10.0.0.5")
	for i := 1; i <= 3; i++ {
		if len(f.nextPing(t, s.PingInterval)) != 1 {
			t.Fatal("no ping")
		}
		waitFor(t, func() bool { return f.counter("switchboard_nathelper_pings_failed_total") == uint64(i) })
	}
	if l := f.reg.List("dave@example.com"); len(l) != 1 || l[0].PingFailures != 3 {
		t.Fatalf("with ping_failures 0: %+v", l)
	}
}

// TestKeepaliveCRLF: ping_method crlf sends CR LF CR LF from the listener
// to the source; null, four zero bytes; paused, nothing.
func TestKeepaliveCRLF(t *testing.T) {
	for _, tc := range []struct{ method, data string }{{"crlf", "\r\n\r\n"}, {"null", "\x00\x00\x00\x00"}} {
		s := DefaultSettings()
		s.PingInterval, s.PingMethod = time.Second, tc.method
		f := build(t, s, nil)
		f.registerRoute()
		f.register(t, "erin", "127.0.0.1:40000", "sip:erin@192.168.1.10")
		sent := f.nextPing(t, s.PingInterval)
		if len(sent) != 1 || sent[0].Data != tc.data || sent[0].Dst.String() != "127.0.0.1:40000" {
			t.Fatalf("%s: sent %+v", tc.method, sent)
		}
		f.n.ka.paused.Store(true)
		if sent := f.noPing(t, s.PingInterval); len(sent) != 0 {
			t.Fatalf("%s paused: sent %+v", tc.method, sent)
		}
		if st := f.n.ka.status(); st.Enabled || st.Method != tc.method || st.Sent != 1 {
			t.Fatalf("status %+v", st)
		}
	}
}

// TestKeepaliveOff: enabled false (or ping_interval 0) pings nothing, and
// a reload turns it on.
func TestKeepaliveOff(t *testing.T) {
	s := DefaultSettings()
	s.Enabled, s.PingInterval = false, time.Second
	f := build(t, s, nil)
	f.h.Route = func(c *routing.Ctx) { f.reg.SaveWith(c, registrar.SaveOptions{Authenticated: true, NAT: true}) }
	f.register(t, "fred", "127.0.0.1:40000", "sip:fred@192.168.1.10")
	if sent := f.noPing(t, 2*time.Second); len(sent) != 0 {
		t.Fatalf("disabled, sent %+v", sent)
	}
	on := DefaultSettings()
	on.PingInterval = time.Second
	if err := f.n.Reload(on); err != nil {
		t.Fatal(err)
	}
	if sent := f.nextPing(t, time.Second); len(sent) != 1 {
		t.Fatalf("after reload, sent %+v", sent)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
