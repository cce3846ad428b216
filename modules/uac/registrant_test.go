package uac

import (
	"crypto/md5"
	"encoding/hex"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// refuseAll is the proxy's route for these tests: the registrant's
// requests are the proxy's own; nothing that arrives is relayed.
type refuseAll struct{}

func (refuseAll) Request(r *txn.Request)                                { r.Reply(501, "") }
func (refuseAll) Branch(*txn.Request, *txn.Branch)                      {}
func (refuseAll) Reply(*txn.Request, *txn.Branch, *parser.Message) bool { return true }
func (refuseAll) Failure(*txn.Request, *parser.Message)                 {}

// startProxy starts a transaction core on a real UDP socket on loopback,
// with short timers (T1 50ms: a REGISTER nobody answers gives up after
// 3.2s), and returns the originator the module sends through.
func startProxy(t *testing.T) (*modules.Originator, netip.AddrPort) {
	t.Helper()
	var core *txn.Core
	tr, err := transport.New(transport.Config{
		Listeners:  []transport.ListenerConfig{{Proto: transport.UDP, Addr: "127.0.0.1:0"}},
		UDPReaders: 1,
	}, transport.HandlerFunc(func(p *transport.Packet) { core.HandleMessage(p) }))
	if err != nil {
		t.Fatal(err)
	}
	core, err = txn.New(txn.Config{Sender: tr, Listeners: tr, Router: refuseAll{},
		T1: 50 * time.Millisecond, T2: 200 * time.Millisecond, T4: 250 * time.Millisecond,
		AllowOutbound: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close(); core.Close() })
	org := &modules.Originator{}
	org.SetCore(core)
	return org, tr.Listeners()[0].Local
}

// registrar is a carrier's registrar on a UDP socket: it challenges every
// REGISTER without credentials, checks the digest of those with, and
// grants a short lifetime. mode: "answer", "drop" (down), "min" (423
// below Min-Expires 120) or "stale" (a stale nonce for every REGISTER).
type registrar struct {
	t     *testing.T
	conn  *net.UDPConn
	mode  atomic.Value
	grant int
	mu    sync.Mutex
	seen  []regSeen
	nonce int
}

type regSeen struct {
	callID, cseq, contact, expires string
	authorized                     bool
	at                             time.Time
}

func startRegistrar(t *testing.T, grant int) *registrar {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &registrar{t: t, conn: conn, grant: grant}
	r.mode.Store("answer")
	t.Cleanup(func() { conn.Close() })
	go r.serve()
	return r
}

func (r *registrar) addr() string { return r.conn.LocalAddr().String() }

func (r *registrar) serve() {
	buf := make([]byte, 65535)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, "REGISTER ") {
			continue
		}
		mode := r.mode.Load().(string)
		s := regSeen{callID: header(msg, "Call-ID"), cseq: header(msg, "CSeq"), contact: header(msg, "Contact"),
			expires: header(msg, "Expires"), at: time.Now()}
		var reply string
		switch {
		case mode == "drop":
			continue
		case mode == "min" && s.expires != "0" && atoiOr(s.expires) < 120:
			reply = response(msg, "423 Interval Too Brief", "Min-Expires: 120\r\n")
		case mode == "stale":
			// Every REGISTER, with credentials or not, gets a new nonce
			// said to be stale.
			r.mu.Lock()
			r.nonce++
			nonce := "rn" + strconv.Itoa(r.nonce)
			r.mu.Unlock()
			reply = response(msg, "401 Unauthorized", `WWW-Authenticate: Digest realm="reg.example", nonce="`+nonce+`", qop="auth", algorithm=MD5, stale=true`+"\r\n")
		case header(msg, "Authorization") == "":
			r.mu.Lock()
			r.nonce++
			nonce := "rn" + strconv.Itoa(r.nonce)
			r.mu.Unlock()
			reply = response(msg, "401 Unauthorized", `WWW-Authenticate: Digest realm="reg.example", nonce="`+nonce+`", qop="auth", algorithm=MD5`+"\r\n")
		case validDigest(header(msg, "Authorization"), "REGISTER", "+4930123", "reg.example", "regpw"):
			s.authorized = true
			reply = response(msg, "200 OK", "Contact: "+s.contact+";expires="+strconv.Itoa(r.grant)+"\r\n")
		default:
			reply = response(msg, "403 Forbidden", "")
		}
		r.mu.Lock()
		r.seen = append(r.seen, s)
		r.mu.Unlock()
		r.conn.WriteToUDP([]byte(reply), from)
	}
}

func atoiOr(s string) int { n, _ := strconv.Atoi(s); return n }

func (r *registrar) registers() []regSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]regSeen(nil), r.seen...)
}

// response answers a request: Via, From, To (with a tag), Call-ID, CSeq.
func response(req, status, extra string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, v := range headers(req, "Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + header(req, "From") + "\r\nTo: " + header(req, "To") + ";tag=reg1\r\nCall-ID: " +
		header(req, "Call-ID") + "\r\nCSeq: " + header(req, "CSeq") + "\r\n" + extra + "Content-Length: 0\r\n\r\n")
	return b.String()
}

func validDigest(value, method, user, realm, password string) bool {
	var a parser.Auth
	if !parser.ParseAuth([]byte(value), &a) || string(a.Username) != user || string(a.Realm) != realm {
		return false
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1 := h(user + ":" + realm + ":" + password)
	ha2 := h(method + ":" + string(a.URI))
	return string(a.Response) == h(ha1+":"+string(a.Nonce)+":"+string(a.NC)+":"+string(a.CNonce)+":"+string(a.QOP)+":"+ha2)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) view(id int64) regView {
	for _, v := range f.u.reg.views() {
		if v.ID == id {
			return v
		}
	}
	return regView{}
}

// The registrant registers (answering the registrar's challenge),
// refreshes before the granted time runs out, keeps trying while the
// registrar is down and registers again when it is back, and
// unregisters a registration deleted from the table.
func TestRegistrant(t *testing.T) {
	org, proxy := startProxy(t)
	reg := startRegistrar(t, 2) // 2 s granted: refreshed after 1.5 s
	s := defaultSettings().(*Settings)
	s.PollInterval, s.RetryMin, s.RetryMax = 20*time.Millisecond, 200*time.Millisecond, 400*time.Millisecond
	var id int64
	f := build(t, s, func(st *store.Store) {
		r, err := st.AddUACRegistration(ctx, store.UACRegistration{AOR: "sip:+4930123@reg.example", Registrar: "reg.example",
			Proxy: reg.addr(), Password: "regpw"})
		if err != nil {
			t.Fatal(err)
		}
		id = r.ID
	}, org)

	waitFor(t, 3*time.Second, "registered", func() bool { return f.view(id).State == stateRegistered })
	seen := reg.registers()
	if len(seen) != 2 || seen[0].authorized || !seen[1].authorized || seen[0].callID != seen[1].callID {
		t.Fatalf("REGISTERs seen: %+v", seen)
	}
	if seen[0].cseq != "1 REGISTER" || seen[1].cseq != "2 REGISTER" || seen[0].expires != "3600" {
		t.Errorf("first REGISTERs: %+v", seen)
	}
	if want := "<sip:+4930123@" + proxy.String() + ">"; seen[1].contact != want {
		t.Errorf("Contact %q, want %q", seen[1].contact, want)
	}
	v := f.view(id)
	until, _ := time.Parse(time.RFC3339, v.Until)
	if v.Code != 200 || v.Failures != 0 || time.Until(until) > 3*time.Second || v.Dst != "UDP:"+reg.addr() {
		t.Errorf("state %+v", v)
	}
	if g := f.m.GetOrCreateGauge(`switchboard_uac_registrations{state="registered"}`, nil).Get(); g != 1 {
		t.Errorf("registered gauge %v", g)
	}

	// The refresh: same Call-ID, the CSeq going on.
	waitFor(t, 3*time.Second, "refreshed", func() bool { return len(reg.registers()) >= 4 })
	seen = reg.registers()
	if seen[3].callID != seen[0].callID || seen[3].cseq != "4 REGISTER" || !seen[3].authorized {
		t.Errorf("refresh: %+v", seen[2:4])
	}
	if gap := seen[2].at.Sub(seen[1].at); gap < time.Second || gap > 2*time.Second {
		t.Errorf("refreshed %s after the registration granted for 2s (want three quarters)", gap)
	}

	// The registrar goes down: the refresh times out, the binding runs
	// out, the registration is failed and tried again, and registers when
	// the registrar is back.
	reg.mode.Store("drop")
	waitFor(t, 8*time.Second, "failed", func() bool { return f.view(id).State == stateFailed })
	if v := f.view(id); v.Code != 408 || v.Failures == 0 {
		t.Errorf("while down: %+v", v)
	}
	if f.counter("switchboard_uac_register_failures_total") == 0 {
		t.Error("failures not counted")
	}
	reg.mode.Store("answer")
	waitFor(t, 6*time.Second, "registered again", func() bool { return f.view(id).State == stateRegistered })
	if v := f.view(id); v.Failures != 0 {
		t.Errorf("after recovery: %+v", v)
	}

	// Deleted: unregistered (Expires: 0, answered challenge too), then
	// gone from the list.
	n := len(reg.registers())
	if _, err := f.st.DeleteUACRegistration(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "unregistered", func() bool {
		for _, s := range reg.registers()[n:] {
			if s.expires == "0" && s.authorized {
				return true
			}
		}
		return false
	})
	waitFor(t, 2*time.Second, "forgotten", func() bool { return len(f.u.reg.views()) == 0 })
}

// A 423 raises the lifetime asked for to the registrar's Min-Expires.
func TestRegistrantMinExpires(t *testing.T) {
	org, _ := startProxy(t)
	reg := startRegistrar(t, 300)
	reg.mode.Store("min")
	var id int64
	f := build(t, nil, func(st *store.Store) {
		r, _ := st.AddUACRegistration(ctx, store.UACRegistration{AOR: "sip:+4930123@reg.example", Registrar: "sip:" + reg.addr(),
			Password: "regpw", Expires: 60})
		id = r.ID
	}, org)
	waitFor(t, 3*time.Second, "registered", func() bool { return f.view(id).State == stateRegistered })
	seen := reg.registers()
	if seen[0].expires != "60" || seen[len(seen)-1].expires != "120" || f.view(id).Expires != 120 {
		t.Errorf("REGISTERs %+v, state %+v", seen, f.view(id))
	}
}

// TestRegistrantStaleNonces: a registrar that calls every nonce stale
// gets the credentials again twice at once, then the back-off: not a
// REGISTER a round trip.
func TestRegistrantStaleNonces(t *testing.T) {
	org, _ := startProxy(t)
	reg := startRegistrar(t, 300)
	reg.mode.Store("stale")
	var id int64
	f := build(t, nil, func(st *store.Store) {
		r, _ := st.AddUACRegistration(ctx, store.UACRegistration{AOR: "sip:+4930123@reg.example", Registrar: "sip:" + reg.addr(), Password: "regpw"})
		id = r.ID
	}, org)
	waitFor(t, 3*time.Second, "failed", func() bool { return f.view(id).State == stateFailed })
	time.Sleep(500 * time.Millisecond)
	if n := len(reg.registers()); n != 2+maxStaleAnswers {
		t.Fatalf("%d REGISTERs to a registrar calling every nonce stale, want %d", n, 2+maxStaleAnswers)
	}
	if v := f.view(id); !strings.Contains(v.Error, "stale") {
		t.Fatalf("state %+v", v)
	}
}

// TestGrantedExpires: the lifetime is that of our own Contact among the
// AOR's bindings, and never more than a day (a registrar's 4,000,000,000
// overflowed the refresh timer into a refresh a second).
func TestGrantedExpires(t *testing.T) {
	ok := func(contacts, expires string) *parser.Message {
		var m parser.Message
		msg := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n" +
			"Call-ID: c\r\nCSeq: 1 REGISTER\r\n" + contacts + expires + "Content-Length: 0\r\n\r\n"
		if err := m.Parse([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	const ours = "sip:+4930123@127.0.0.1:5060"
	for _, c := range []struct {
		contacts, expires string
		want              int
	}{
		{"Contact: <sip:other@192.0.2.1>;expires=1, <" + ours + ">;expires=600\r\n", "", 600},
		{"Contact: <sip:other@192.0.2.1>;expires=30, <sip:x@192.0.2.2>;expires=90\r\n", "", 30},
		{"Contact: <" + ours + ">;expires=4000000000\r\n", "", store.MaxUACExpires},
		{"", "Expires: 4000000000\r\n", store.MaxUACExpires},
		{"", "Expires: 120\r\n", 120},
		{"", "", 3600},
	} {
		if got := grantedExpires(ok(c.contacts, c.expires), 3600, ours); got != c.want {
			t.Errorf("%q %q: %d, want %d", c.contacts, c.expires, got, c.want)
		}
	}
}

// TestRegistrantBackoff: each failure in a row doubles the wait from
// retry_min up to retry_max, and stays there (thirty failures shifted
// retry_min out of range: a retry at once).
func TestRegistrantBackoff(t *testing.T) {
	s := defaultSettings().(*Settings)
	f := build(t, s, nil, nil)
	r := f.u.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	g := &registration{row: store.UACRegistration{ID: 1, AOR: "sip:a@b", Registrar: "sip:b"}, state: stateFailed}
	want := s.RetryMin
	for i := 1; i <= 70; i++ {
		before := time.Now()
		r.fail(g, 503, "x", "", 0)
		g.timer.Stop()
		if w := g.next.Sub(before); w < want-time.Second || w > want+time.Second {
			t.Fatalf("failure %d: next attempt in %s, want %s", i, w, want)
		}
		want = min(2*want, s.RetryMax)
	}
}
