package topohiding

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// env is the dialog and topohiding modules built as the server builds
// them, inside a real transaction core and router (routetest's: the
// socket is a recording double), with the request route of the calls
// route set with topology hiding on: Match for every request (403
// forged, 481 no dialog, 404 for an in-dialog request it does not know),
// CreateDialog and TopologyHiding for an initial INVITE.
type env struct {
	t     testing.TB
	th    *TopoHiding
	d     *dialog.Dialog
	clock *shards.Clock
	set   *metrics.Set
	mods  *modules.Set
	*routetest.Harness

	// beforeRelay runs on an initial INVITE after TopologyHiding.
	beforeRelay func(c *routing.Ctx)
	// natFlags are set on the dialogs of hiddenCallLoop's calls.
	natFlags uint32
	verdicts []Verdict
}

func newEnv(t testing.TB, s *Settings) *env {
	t.Helper()
	return newEnvWith(t, s, envOptions{})
}

// envOptions: a store for the dialogs (persistence), and a data
// directory for topohiding.secret.
type envOptions struct {
	store   *store.Store
	dataDir string
}

func newEnvWith(t testing.TB, s *Settings, o envOptions) *env {
	t.Helper()
	if s == nil {
		s = DefaultSettings()
	}
	e := &env{t: t, clock: shards.NewManualClock(1_700_000_000_000), set: metrics.NewSet()}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // forged tokens are logged
	set, err := modules.Build(modules.Services{Clock: e.clock, Metrics: e.set, Shards: 4, Logger: quiet, Store: o.store, DataDir: o.dataDir},
		map[string]any{"topohiding": s}, "topohiding")
	if err != nil {
		t.Fatal(err)
	}
	e.mods = set
	e.th = set.Get("topohiding").(*TopoHiding)
	e.d = set.Get("dialog").(*dialog.Dialog)
	e.Harness = routetest.New(t, e.clock)
	set.SetCore(e.Core())
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e.Route = e.route
	return e
}

func (e *env) route(c *routing.Ctx) {
	if v := e.th.Match(c); v != NotHidden || c.HasToTag() {
		e.verdicts = append(e.verdicts, v)
		switch v {
		case Matched:
			c.Relay()
		case Forged:
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(403, "Forbidden", nil)
			}
		case NoDialog:
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(481, "", nil)
			}
		default:
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(404, "Not here", nil)
			}
		}
		return
	}
	if !c.IsMethod(parser.MethodInvite) || !e.d.CreateDialog(c) || !e.th.TopologyHiding(c) {
		c.ReplyStateless(500, "", nil)
		return
	}
	if e.beforeRelay != nil {
		e.beforeRelay(c)
	}
	c.Relay()
}

func (e *env) lastVerdict() Verdict { return e.verdicts[len(e.verdicts)-1] }

// The parties. The caller is a phone at a private address behind a proxy
// of its side (P1, which record-routes); the callee answers behind a proxy
// of its own side (P2, which record-routes too).
const (
	p1Addr     = "127.0.0.1:5070"    // the caller side's proxy: where the caller's requests come from
	callerUA   = "192.168.1.10:5062" // the caller, behind P1
	p1RR       = "<sip:127.0.0.1:5070;lr;p1>"
	calleeAddr = "127.0.0.1:5080" // the callee
	callee2    = "127.0.0.1:5090" // a second branch of a forked call
	p2Addr     = "127.0.0.1:5081" // the callee side's proxy
	p2RR       = "<sip:127.0.0.1:5081;lr;p2>"
	proxyHost  = "127.0.0.1:5060"          // us
	calleeCT   = "<sip:bob@10.0.0.5:5060>" // the callee's Contact
)

// callerSide and calleeSide are what one party's messages may reveal of
// it: none of it may reach the other party.
var (
	callerSide = []string{"192.168.1.", ":5070", ";p1", "alice-ua"}
	calleeSide = []string{"10.0.0.5", "10.0.0.6", "10.0.0.7", ":5080", ":5081", ":5090", ";p2", "bob-ua"}
)

// reveals returns the first of marks found in the Via, Record-Route,
// Route, Contact or Call-Info headers of msg, "" when none is.
func reveals(msg string, marks []string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		name, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "record-route", "route", "contact", "m":
		default:
			continue
		}
		for _, m := range marks {
			if strings.Contains(line, m) {
				return line
			}
		}
	}
	return ""
}

// call is one hidden call as its parties see it.
type call struct {
	e         *env
	callID    string
	fromTag   string
	invite    string   // as the caller side sent it
	fwds      []string // the INVITE as each branch got it
	up        []string // what went back to the caller side, in order
	callerCT  string   // the proxy's Contact the caller got (in the 2xx)
	calleeCT  string   // the proxy's Contact the callee got (in the INVITE)
	calleeTag string
	cseq      int // the caller's
	ccseq     int // the callee's
	// callerSrc is where the caller's requests come from: P1, or the
	// caller's NAT for a call without proxies (directCall).
	callerSrc string
}

// invite sends an initial INVITE from the caller through P1 and returns
// the call with the relayed copies.
func (e *env) invite(callID string) *call {
	e.t.Helper()
	c := &call{e: e, callID: callID, fromTag: "atag-" + callID, cseq: 10}
	c.invite = "INVITE sip:bob@" + calleeAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + p1Addr + ";branch=z9hG4bKp1-" + callID + "\r\n" +
		"Via: SIP/2.0/UDP " + callerUA + ";branch=z9hG4bKua-" + callID + ";rport=5062;received=192.168.1.10\r\n" +
		"Max-Forwards: 69\r\n" +
		"Record-Route: " + p1RR + "\r\n" +
		"From: \"Alice\" <sip:alice@example.com>;tag=" + c.fromTag + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 10 INVITE\r\n" +
		"Contact: <sip:alice-ua@" + callerUA + ">\r\n" +
		"User-Agent: phone\r\n" +
		"Content-Length: 0\r\n\r\n"
	e.Take()
	e.Receive(p1Addr, c.invite)
	for _, s := range e.Take() {
		switch {
		case strings.HasPrefix(s.Data, "INVITE "):
			c.fwds = append(c.fwds, s.Data)
			if c.calleeCT == "" {
				c.calleeCT = header(s.Data, "Contact")
			}
		case strings.HasPrefix(s.Data, "SIP/2.0 "):
			c.up = append(c.up, s.Data)
		}
	}
	return c
}

// respond answers relayed INVITE i from the callee (branch i's address)
// through P2: its Record-Route above what the INVITE had, the callee's
// Contact. It returns what was sent.
func (c *call) respond(i, code int, tag, contact string) []routetest.Sent {
	c.e.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(c.fwds[i])); err != nil {
		c.e.t.Fatal(err)
	}
	extra := "Record-Route: " + p2RR + "\r\n"
	for _, v := range headerValues(c.fwds[i], "Record-Route") {
		extra += "Record-Route: " + v + "\r\n"
	}
	if contact != "" {
		extra += "Contact: " + contact + "\r\n"
	}
	extra += "Server: bob-ua\r\n"
	src := calleeAddr
	if i == 1 {
		src = callee2
	}
	resp := string(parser.AppendResponseHeaders(nil, &m, code, nil, []byte(tag), []byte(extra)))
	sent := c.send(src, resp)
	for _, s := range sent {
		if strings.HasPrefix(s.Data, "SIP/2.0 ") {
			c.up = append(c.up, s.Data)
			if code >= 200 && code < 300 && c.callerCT == "" {
				c.callerCT = header(s.Data, "Contact")
				c.calleeTag = tag
			}
		}
	}
	return sent
}

// fromCaller sends an in-dialog request of the caller through P1 to the
// proxy's Contact it got (ruriCT; "" the one of the 2xx), with To tag
// toTag ("" the callee's).
func (c *call) fromCaller(method, ruriCT, toTag, extra string) []routetest.Sent {
	c.e.t.Helper()
	if ruriCT == "" {
		ruriCT = c.callerCT
	}
	if toTag == "" {
		toTag = c.calleeTag
	}
	c.cseq++
	cseq := itoa(c.cseq)
	if method == "ACK" {
		cseq = "10"
	}
	src := p1Addr
	if c.callerSrc != "" {
		src = c.callerSrc
	}
	return c.send(src, method+" "+uri(ruriCT)+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+p1Addr+";branch=z9hG4bKp1-"+method+cseq+c.callID+"\r\n"+
		"Via: SIP/2.0/UDP "+callerUA+";branch=z9hG4bKua-"+method+cseq+c.callID+"\r\n"+
		"Max-Forwards: 69\r\n"+
		"From: \"Alice\" <sip:alice@example.com>;tag="+c.fromTag+"\r\n"+
		"To: <sip:bob@example.com>;tag="+toTag+"\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		"CSeq: "+cseq+" "+method+"\r\n"+
		extra+
		"Content-Length: 0\r\n\r\n")
}

// fromCallee sends an in-dialog request of the callee, from its address
// through P2's Route (which P2 removed: none left), to the proxy's
// Contact it got in the INVITE.
func (c *call) fromCallee(method, extra string) []routetest.Sent {
	c.e.t.Helper()
	c.ccseq++
	return c.send(p2Addr, method+" "+uri(c.calleeCT)+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+p2Addr+";branch=z9hG4bKp2-"+method+itoa(c.ccseq)+c.callID+"\r\n"+
		"Via: SIP/2.0/UDP "+calleeAddr+";branch=z9hG4bKbob-"+method+itoa(c.ccseq)+c.callID+"\r\n"+
		"Max-Forwards: 69\r\n"+
		"From: <sip:bob@example.com>;tag="+c.calleeTag+"\r\n"+
		"To: \"Alice\" <sip:alice@example.com>;tag="+c.fromTag+"\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		"CSeq: "+itoa(c.ccseq)+" "+method+"\r\n"+
		extra+
		"Content-Length: 0\r\n\r\n")
}

// answer sends the response of the party at src to relayed request req,
// with extra headers.
func (c *call) answer(src, req string, code int, extra string) []routetest.Sent {
	c.e.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		c.e.t.Fatal(err)
	}
	return c.send(src, string(parser.AppendResponseHeaders(nil, &m, code, nil, nil, []byte(extra))))
}

func (c *call) send(src, msg string) []routetest.Sent {
	c.e.Take()
	c.e.Receive(src, msg)
	return c.e.Take()
}

// uri returns the URI inside a name-addr.
func uri(na string) string {
	if i := strings.IndexByte(na, '<'); i >= 0 {
		if j := strings.IndexByte(na[i:], '>'); j > 0 {
			return na[i+1 : i+j]
		}
	}
	return na
}

// only returns the one message sent whose first line starts with prefix.
func only(t testing.TB, sent []routetest.Sent, prefix string) routetest.Sent {
	t.Helper()
	var got []routetest.Sent
	for _, s := range sent {
		if strings.HasPrefix(s.Data, prefix) {
			got = append(got, s)
		}
	}
	if len(got) != 1 {
		var lines []string
		for _, s := range sent {
			l, _, _ := strings.Cut(s.Data, "\r\n")
			lines = append(lines, s.Dst.String()+" "+l)
		}
		t.Fatalf("%d messages %q sent, want 1; sent:\n%s", len(got), prefix, strings.Join(lines, "\n"))
	}
	return got[0]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// headerValues returns the values of every header line called name.
func headerValues(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, splitComma(strings.TrimSpace(v))...)
		}
	}
	return out
}

func splitComma(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

func header(msg, name string) string {
	if v := headerValues(msg, name); len(v) > 0 {
		return v[0]
	}
	return ""
}
