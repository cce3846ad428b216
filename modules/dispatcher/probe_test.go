package dispatcher

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/store"
	"switchboard/transport"
)

// responder is a destination on loopback that answers OPTIONS with code,
// or not at all while silent; it counts the OPTIONS it got and remembers
// their source.
type responder struct {
	t      *testing.T
	udp    net.PacketConn
	tcp    net.Listener
	code   atomic.Int32
	silent atomic.Bool
	drop   atomic.Int32 // requests to ignore before answering
	got    atomic.Int32
	mu     sync.Mutex
	srcs   []string
	last   string
}

func newResponder(t *testing.T, network string) *responder {
	t.Helper()
	r := &responder{t: t}
	r.code.Store(200)
	var err error
	switch network {
	case "udp":
		if r.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.udp.Close() })
		go r.serveUDP()
	case "tcp":
		if r.tcp, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.tcp.Close() })
		go r.serveTCP()
	}
	return r
}

func (r *responder) port() int {
	if r.udp != nil {
		return r.udp.LocalAddr().(*net.UDPAddr).Port
	}
	return r.tcp.Addr().(*net.TCPAddr).Port
}

// answer returns the response to req, or "" to stay silent.
func (r *responder) answer(req string, src net.Addr) string {
	r.got.Add(1)
	r.mu.Lock()
	r.srcs = append(r.srcs, src.String())
	r.last = req
	r.mu.Unlock()
	if r.silent.Load() || r.drop.Add(-1) >= 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d Whatever\r\n", r.code.Load())
	for _, line := range strings.Split(req, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=r\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func (r *responder) serveUDP() {
	buf := make([]byte, 65535)
	for {
		n, src, err := r.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := r.answer(string(buf[:n]), src); resp != "" {
			// A provisional first, which the probe must wait past.
			r.udp.WriteTo([]byte(strings.Replace(resp, fmt.Sprintf("SIP/2.0 %d Whatever", r.code.Load()), "SIP/2.0 100 Trying", 1)), src)
			r.udp.WriteTo([]byte(resp), src)
		}
	}
}

func (r *responder) serveTCP() {
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			var req strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				req.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			if resp := r.answer(req.String(), c.RemoteAddr()); resp != "" {
				c.Write([]byte(resp))
			}
			time.Sleep(50 * time.Millisecond)
		}()
	}
}

func (r *responder) sources() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.srcs...)
}

// probeEnv is a started module that probes every 50ms.
func probeEnv(t *testing.T, edit func(*Settings), rows ...store.DispatcherDest) *env {
	t.Helper()
	s := DefaultSettings()
	s.ProbeInterval = 100 * time.Millisecond
	s.ProbeTimeout = 90 * time.Millisecond
	s.ProbeFailures = 2
	s.ProbeSuccesses = 2
	if edit != nil {
		edit(s)
	}
	e := newEnv(t, envOptions{settings: s, rows: rows})
	if err := e.mods.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitState waits until destination uri of set is in state want.
func (e *env) waitState(set int, uri, want string, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for e.state(set, uri) != want {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s is %s after %s, want %s", uri, e.state(set, uri), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func udpDest(set int, r *responder, probeMode int) store.DispatcherDest {
	return store.DispatcherDest{SetID: set, Destination: "sip:127.0.0.1:" + strconv.Itoa(r.port()), Weight: 1, ProbeMode: probeMode}
}

// A destination probed always that stops answering is taken out after
// probe_failures probes, skipped, and put back after probe_successes
// answers.
func TestProbingTakesOutAndBringsBack(t *testing.T) {
	r := newResponder(t, "udp")
	other := newResponder(t, "udp")
	e := probeEnv(t, nil, udpDest(1, r, 1), udpDest(1, other, 0))
	u := "sip:127.0.0.1:" + strconv.Itoa(r.port())
	time.Sleep(350 * time.Millisecond)
	if s := e.state(1, u); s != "active" || r.got.Load() < 2 {
		t.Fatalf("answering: %s after %d probes", s, r.got.Load())
	}
	if i := e.info(1, u); i.LastProbeCode != 200 || i.LastProbe == "" {
		t.Fatalf("last probe: %+v", i)
	}
	r.silent.Store(true)
	e.waitState(1, u, "probing", 3*time.Second)
	if i := e.info(1, u); i.ProbeFailures < 2 || i.LastProbeCode != 0 {
		t.Fatalf("after the silence: %+v", i)
	}
	// Skipped while probing.
	for i := 0; i < 4; i++ {
		var got string
		e.d.reloadMu.Lock()
		s := e.d.tab.Load().sets[1]
		e.d.reloadMu.Unlock()
		if j := s.roundRobin(); j >= 0 {
			got = s.dests[j].uri
		}
		if got == u {
			t.Fatal("a probing destination was selected")
		}
	}
	r.silent.Store(false)
	e.waitState(1, u, "active", 3*time.Second)
	if n := e.metric("switchboard_dispatcher_state_changes_total"); n != 2 {
		t.Fatalf("state changes %v", n)
	}
	// probe_mode 0 and active: never probed.
	if n := other.got.Load(); n != 0 {
		t.Fatalf("an active destination with probe_mode 0 got %d probes", n)
	}
}

// Destinations probing (in the store, or marked by routes) are probed
// until they answer; inactive ones never.
func TestProbeModesAndStates(t *testing.T) {
	probing, inactive := newResponder(t, "udp"), newResponder(t, "udp")
	a, b := udpDest(1, probing, 0), udpDest(1, inactive, 1)
	a.State, b.State = store.DispatcherProbing, store.DispatcherInactive
	e := probeEnv(t, nil, a, b)
	e.waitState(1, a.Destination, "active", 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := inactive.got.Load(); n != 0 {
		t.Fatalf("an inactive destination got %d probes", n)
	}
	if n := probing.got.Load(); n < 2 || n > 4 {
		// Probed until it answered twice, then left alone (probe_mode 0).
		t.Fatalf("the probing destination got %d probes", n)
	}
}

// Only 2xx means up, and the codes of probe_reply_codes.
func TestProbeReplyCodes(t *testing.T) {
	r := newResponder(t, "udp")
	r.code.Store(501)
	e := probeEnv(t, nil, udpDest(1, r, 1))
	u := "sip:127.0.0.1:" + strconv.Itoa(r.port())
	e.waitState(1, u, "probing", 3*time.Second)
	if i := e.info(1, u); i.LastProbeCode != 501 {
		t.Fatalf("last code %d", i.LastProbeCode)
	}
	s := DefaultSettings()
	s.ProbeInterval, s.ProbeTimeout, s.ProbeFailures, s.ProbeSuccesses = 100*time.Millisecond, 90*time.Millisecond, 2, 2
	s.ProbeReplyCodes = []int{501}
	if err := e.d.Reload(s); err != nil {
		t.Fatal(err)
	}
	e.waitState(1, u, "active", 3*time.Second)
}

func TestProbeTCP(t *testing.T) {
	r := newResponder(t, "tcp")
	d := store.DispatcherDest{SetID: 1, Destination: fmt.Sprintf("sip:127.0.0.1:%d;transport=tcp", r.port()), Weight: 1, ProbeMode: 1,
		State: store.DispatcherProbing}
	e := probeEnv(t, nil, d)
	e.waitState(1, d.Destination, "active", 3*time.Second)
	r.mu.Lock()
	via := r.last
	r.mu.Unlock()
	if !strings.Contains(via, "Via: SIP/2.0/TCP 127.0.0.1:") {
		t.Fatalf("probe over TCP:\n%s", via)
	}
	r.silent.Store(true)
	e.waitState(1, d.Destination, "probing", 3*time.Second)
}

// The socket column says where probes leave from.
func TestProbeSource(t *testing.T) {
	r := newResponder(t, "udp")
	d := udpDest(1, r, 1)
	d.Socket = "udp:127.0.0.2:5060"
	probeEnv(t, nil, d)
	deadline := time.Now().Add(2 * time.Second)
	for len(r.sources()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no probe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range r.sources() {
		if !strings.HasPrefix(s, "127.0.0.2:") {
			t.Fatalf("a probe from %s, want 127.0.0.2", s)
		}
	}
}

// A UDP probe is sent again (timer E) until it is answered.
func TestPingRetransmits(t *testing.T) {
	r := newResponder(t, "udp")
	r.drop.Store(1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	code, err := optionsPinger{}.Ping(ctx, Ping{Proto: transport.UDP, Dst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(r.port())),
		URI: "sip:127.0.0.1", From: "sip:dispatcher@localhost"})
	if err != nil || code != 200 || r.got.Load() != 2 || time.Since(start) < probeT1 {
		t.Fatalf("code %d, %v, %d requests in %s", code, err, r.got.Load(), time.Since(start))
	}
}

// A closed UDP port fails the probe at once (ICMP port unreachable), a
// silent one at the timeout; TLS is not probed by this pinger.
func TestPingFailures(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p := Ping{Proto: transport.UDP, Dst: closed, URI: "sip:127.0.0.1", From: "sip:dispatcher@localhost"}
	start := time.Now()
	if _, err := (optionsPinger{}).Ping(ctx, p); err == nil || time.Since(start) > time.Second {
		t.Fatalf("a closed port: %v after %s", err, time.Since(start))
	}
	r := newResponder(t, "udp")
	r.silent.Store(true)
	p.Dst = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(r.port()))
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := (optionsPinger{}).Ping(short, p); err == nil {
		t.Fatal("a silent destination answered")
	}
	p.Proto = transport.TLS
	if _, err := (optionsPinger{}).Ping(ctx, p); err != ErrUnsupported {
		t.Fatalf("TLS: %v", err)
	}
}

func TestOptionsRequest(t *testing.T) {
	req, branch := optionsRequest(Ping{URI: "sip:192.0.2.10:5060;transport=tcp", From: "sip:ds@example.com"}, "TCP",
		netip.MustParseAddrPort("[2001:db8::1]:40000"))
	var m parser.Message
	if err := m.Parse(req); err != nil {
		t.Fatalf("%v\n%s", err, req)
	}
	v := m.TopVia()
	if m.Method() != parser.MethodOptions || string(v.Branch) != branch || !v.HasRPort || string(v.Host) != "[2001:db8::1]" || v.Port != 40000 ||
		string(v.Transport) != "TCP" || string(m.RequestURI()) != "sip:192.0.2.10:5060;transport=tcp" || len(m.FromTag()) == 0 {
		t.Fatalf("probe:\n%s", req)
	}
	if _, b2 := optionsRequest(Ping{URI: "sip:x", From: "sip:y"}, "UDP", netip.MustParseAddrPort("127.0.0.1:1")); b2 == branch {
		t.Fatal("the branch is not fresh")
	}
}

// recordingPinger stands for another OPTIONS sender (the transaction
// core's, one day): the module uses whatever SetPinger gives it.
type recordingPinger struct {
	mu   sync.Mutex
	seen []Ping
}

func (p *recordingPinger) Ping(ctx context.Context, q Ping) (int, error) {
	p.mu.Lock()
	p.seen = append(p.seen, q)
	p.mu.Unlock()
	return 200, nil
}

func TestSetPinger(t *testing.T) {
	s := DefaultSettings()
	s.ProbeInterval, s.ProbeTimeout, s.ProbeSuccesses = 100*time.Millisecond, 90*time.Millisecond, 1
	d := store.DispatcherDest{SetID: 1, Destination: "sips:127.0.0.1:5999", Weight: 1, State: store.DispatcherProbing, Socket: "tls:127.0.0.3"}
	e := newEnv(t, envOptions{settings: s, rows: []store.DispatcherDest{d}})
	rp := &recordingPinger{}
	e.d.SetPinger(rp)
	if err := e.mods.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitState(1, "sips:127.0.0.1:5999", "active", 3*time.Second)
	rp.mu.Lock()
	q := rp.seen[0]
	rp.mu.Unlock()
	if q.Proto != transport.TLS || q.Dst.String() != "127.0.0.1:5999" || q.URI != "sips:127.0.0.1:5999" || q.From != "sip:dispatcher@localhost" ||
		q.Source.String() != "127.0.0.3" {
		t.Fatalf("ping %+v", q)
	}
}

// Probes through the transaction core (what the server uses): the core
// adds its Via (the listener's address and port), the response to it is
// the probe's answer; no answer ends at probe_timeout.
func TestCorePinger(t *testing.T) {
	h := routetest.New(t, nil)
	p := corePinger{core: h.Core()}
	dst := netip.MustParseAddrPort("127.0.0.1:5999")
	q := Ping{Proto: transport.UDP, Dst: dst, URI: "sip:127.0.0.1:5999", From: "sip:ds@example.com"}
	got := make(chan pingResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		code, err := p.Ping(ctx, q)
		got <- pingResult{code, err}
	}()
	var req string
	deadline := time.Now().Add(2 * time.Second)
	for req == "" && time.Now().Before(deadline) {
		for _, s := range h.Take() {
			if strings.HasPrefix(s.Data, "OPTIONS ") && s.Dst == dst {
				req = s.Data
			}
		}
		time.Sleep(time.Millisecond)
	}
	var m parser.Message
	if req == "" || m.Parse([]byte(req)) != nil {
		t.Fatalf("no OPTIONS sent: %q", req)
	}
	if string(m.RequestURI()) != "sip:127.0.0.1:5999" || strings.Count(req, "Via: ") != 1 || !strings.Contains(req, "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=") ||
		!strings.Contains(req, "From: <sip:ds@example.com>;tag=") {
		t.Fatalf("probe:\n%s", req)
	}
	r := newResponder(t, "udp") // only for its answer(): builds the response
	h.Receive(dst.String(), r.answer(req, &net.UDPAddr{}))
	if res := <-got; res.err != nil || res.code != 200 {
		t.Fatalf("answered: %+v", res)
	}
	// No answer: the probe gives up at its context's end.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Ping(ctx, q); err == nil {
		t.Fatal("an unanswered probe succeeded")
	}
}

// The server hands the modules its core (modules.Set.SetCore) before
// Start: probes then go through it.
func TestProbesThroughTheCore(t *testing.T) {
	s := DefaultSettings()
	s.ProbeInterval, s.ProbeTimeout, s.ProbeSuccesses = 100*time.Millisecond, 90*time.Millisecond, 1
	d := store.DispatcherDest{SetID: 1, Destination: "sip:127.0.0.1:5998", Weight: 1, State: store.DispatcherProbing}
	e := newEnv(t, envOptions{settings: s, rows: []store.DispatcherDest{d}})
	h := routetest.New(t, nil)
	e.mods.SetCore(h.Core())
	if err := e.mods.Start(); err != nil {
		t.Fatal(err)
	}
	r := newResponder(t, "udp")
	deadline := time.Now().Add(3 * time.Second)
	for e.state(1, d.Destination) != "active" {
		if time.Now().After(deadline) {
			t.Fatal("the probe through the core was not answered")
		}
		for _, sent := range h.Take() {
			if strings.HasPrefix(sent.Data, "OPTIONS sip:127.0.0.1:5998 ") {
				h.Receive("127.0.0.1:5998", r.answer(sent.Data, &net.UDPAddr{}))
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProbeReplyCodesAnswered(t *testing.T) {
	s := DefaultSettings()
	s.ProbeReplyCodes = []int{403, 480, 501, 699}
	ps := newProbeSettings(s)
	for code, want := range map[int]bool{200: true, 299: true, 403: true, 480: true, 501: true, 699: true,
		100: false, 404: false, 481: false, 500: false, 503: false, 0: false, 700: false} {
		if ps.answered(code) != want {
			t.Errorf("%d: %v", code, !want)
		}
	}
}

// TestStateChangeRaisesEvent: every change of a destination's state is
// raised as E_DISPATCHER_STATUS.
func TestStateChangeRaisesEvent(t *testing.T) {
	ev := modules.NewEvents(nil, nil)
	sub := ev.Subscribe([]string{modules.EventDestStatus}, 4)
	e := newEnv(t, envOptions{events: ev, rows: []store.DispatcherDest{{ID: 1, SetID: 3, Destination: "sip:127.0.0.1:5071", Weight: 1}}})
	e.d.force(e.d.states[stateKey{3, "sip:127.0.0.1:5071"}], Inactive, "set by an operator")
	select {
	case m := <-sub.C():
		var v struct {
			Params map[string]any `json:"params"`
		}
		json.Unmarshal(m.JSON, &v)
		if p := v.Params; p["group"] != float64(3) || p["address"] != "sip:127.0.0.1:5071" || p["status"] != "inactive" || p["old_status"] != "active" || p["reason"] != "set by an operator" {
			t.Fatalf("event %s", m.JSON)
		}
	default:
		t.Fatal("no E_DISPATCHER_STATUS")
	}
}
