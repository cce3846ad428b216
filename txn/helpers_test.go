package txn

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// recSender is a test double for the socket only: it records what the
// core sends. Everything above it (transactions, timers) is real.
type recSender struct {
	mu   sync.Mutex
	ls   []*transport.Listener
	msgs []sentMsg
	fail map[netip.AddrPort]error
	keep bool // false: count only (benchmarks)
	n    int
	eh   transport.SendErrorHandler // set by the core (TaggedSender)
}

type sentMsg struct {
	l    *transport.Listener
	dst  netip.AddrPort
	data string
	tag  transport.Tag
}

func (r *recSender) Send(l *transport.Listener, dst netip.AddrPort, data []byte) error {
	return r.SendTagged(l, dst, data, transport.Tag{})
}

func (r *recSender) SendTagged(l *transport.Listener, dst netip.AddrPort, data []byte, tag transport.Tag) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail[dst]; err != nil {
		return err
	}
	r.n++
	if r.keep {
		r.msgs = append(r.msgs, sentMsg{l, dst, string(data), tag})
	}
	return nil
}

func (r *recSender) SetSendErrorHandler(h transport.SendErrorHandler) {
	r.mu.Lock()
	r.eh = h
	r.mu.Unlock()
}

// lost reports m as the transport does when the connection it was queued
// on could not be opened: later, from another goroutine than the sender's,
// with no lock held.
func (r *recSender) lost(m sentMsg, err error) {
	r.mu.Lock()
	eh := r.eh
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		eh.SendFailed(transport.SendFailure{Listener: m.l, Dst: m.dst, Proto: m.l.Proto, Tag: m.tag, Err: err})
		close(done)
	}()
	<-done
}

func (r *recSender) Listener(proto transport.Proto, dst netip.Addr) *transport.Listener {
	for _, l := range r.ls {
		if l.Proto == proto && l.Local.Addr().Is4() == dst.Unmap().Is4() {
			return l
		}
	}
	return nil
}

func (r *recSender) Listeners() []*transport.Listener { return r.ls }

// take returns and forgets what was sent.
func (r *recSender) take() []sentMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

// funcRouter is a Router made of functions; nil ones relay / forward /
// do nothing.
type funcRouter struct {
	request func(r *Request)
	branch  func(r *Request, b *Branch)
	reply   func(r *Request, b *Branch, m *parser.Message) bool
	failure func(r *Request, best *parser.Message)
}

func (f *funcRouter) Request(r *Request) {
	if f.request != nil {
		f.request(r)
		return
	}
	r.Relay()
}
func (f *funcRouter) Branch(r *Request, b *Branch) {
	if f.branch != nil {
		f.branch(r, b)
	}
}
func (f *funcRouter) Reply(r *Request, b *Branch, m *parser.Message) bool {
	if f.reply != nil {
		return f.reply(r, b, m)
	}
	return true
}
func (f *funcRouter) Failure(r *Request, best *parser.Message) {
	if f.failure != nil {
		f.failure(r, best)
	}
}

var (
	proxyAddr = netip.MustParseAddrPort("127.0.0.1:5060")
	uacAddr   = netip.MustParseAddrPort("127.0.0.1:5070")
	uasAddr   = netip.MustParseAddrPort("127.0.0.1:5080")
	uas2Addr  = netip.MustParseAddrPort("127.0.0.1:5090")
)

type harness struct {
	t     testing.TB
	clock *shards.Clock
	snd   *recSender
	core  *Core
	rt    *funcRouter
	udp   *transport.Listener
	tcp   *transport.Listener
}

func newHarness(t testing.TB, mod func(*Config)) *harness {
	h := &harness{t: t, clock: shards.NewManualClock(1_000_000), rt: &funcRouter{}}
	h.udp = &transport.Listener{Index: 0, Proto: transport.UDP, Local: proxyAddr, AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.tcp = &transport.Listener{Index: 1, Proto: transport.TCP, Local: proxyAddr, AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.snd = &recSender{ls: []*transport.Listener{h.udp, h.tcp}, keep: true}
	cfg := Config{
		Sender: h.snd, Listeners: h.snd, Router: h.rt, Clock: h.clock, Shards: 4,
		AllowOutbound: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.core = c
	t.Cleanup(c.Close)
	return h
}

// in delivers a message from src over UDP.
func (h *harness) in(src netip.AddrPort, msg string) {
	h.inProto(src, transport.UDP, msg)
}

func (h *harness) inProto(src netip.AddrPort, proto transport.Proto, msg string) {
	l := h.udp
	if proto == transport.TCP {
		l = h.tcp
	}
	msg = fixCL(msg)
	p := transport.Packet{Data: []byte(msg), Src: src, Listener: l, Proto: proto}
	h.core.HandleMessage(&p)
}

func (h *harness) advance(d time.Duration) { h.clock.Advance(d) }

// sig is the Record-Route signature the core gives the dialog (callID, tag).
func (h *harness) sig(callID, tag string) string {
	return string(h.core.sigs.appendSig(nil, []byte(callID), []byte(tag)))
}

// fixCL normalises line ends to CRLF and sets Content-Length.
func fixCL(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	msg = strings.TrimLeft(msg, "\n")
	head, body, _ := strings.Cut(msg, "\n\n")
	head = strings.ReplaceAll(head, "\n", "\r\n")
	if !strings.Contains(strings.ToLower(head), "content-length:") {
		head += "\r\nContent-Length: " + itoa(len(body))
	}
	return head + "\r\n\r\n" + body
}

func itoa(n int) string { return string(appendUint(nil, uint64(n))) }

// expect returns the single message sent to dst among msgs.
func (h *harness) expectTo(msgs []sentMsg, dst netip.AddrPort) []parser.Message {
	h.t.Helper()
	var out []parser.Message
	for _, m := range msgs {
		if m.dst == dst {
			var pm parser.Message
			if err := pm.Parse([]byte(m.data)); err != nil {
				h.t.Fatalf("sent unparsable message: %v\n%s", err, m.data)
			}
			out = append(out, pm)
		}
	}
	return out
}

func status(m *parser.Message) int { return m.StatusCode() }

func describe(msgs []sentMsg) string {
	var b strings.Builder
	for _, m := range msgs {
		line, _, _ := strings.Cut(m.data, "\r\n")
		b.WriteString(m.dst.String() + " " + line + "\n")
	}
	return b.String()
}

// firstLines returns "dst first-line" for each message.
func firstLines(msgs []sentMsg) []string {
	var out []string
	for _, m := range msgs {
		line, _, _ := strings.Cut(m.data, "\r\n")
		out = append(out, m.dst.String()+" "+line)
	}
	return out
}

func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func headers(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// topBranch returns the branch of the first Via of a sent message.
func topBranch(msg string) string {
	v := header(msg, "Via")
	_, b, _ := strings.Cut(v, "branch=")
	b, _, _ = strings.Cut(b, ";")
	return b
}

func invite(branch, callID string) string {
	return `INVITE sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=` + branch + `
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: ` + callID + `
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:5070>
Content-Type: application/sdp

v=0
`
}

// respond builds a response to a sent request, as a UAS would.
func respond(req string, code int, toTag string) string {
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		panic(err)
	}
	tag := []byte(nil)
	if toTag != "" {
		tag = []byte(toTag)
	}
	return string(parser.AppendResponse(nil, &m, code, nil, tag))
}

func contains(msgs []string, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

var _ = bytes.Equal
