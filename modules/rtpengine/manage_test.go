package rtpengine

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/modules/rtpengine/ng"
	"switchboard/routing"
	"switchboard/shards"
)

// ngPeer stands in for rtpengine in the module's unit tests (the
// end-to-end tests in cmd/switchboard run the real one): it answers offer
// and answer with an SDP naming 127.0.0.99, or an error for a call whose
// SDP says "refuse-me", and records every command.
type ngPeer struct {
	delay  atomic.Int64 // ns before each answer
	silent atomic.Bool  // offers recorded, never answered (a lost answer, a wedged rtpengine)
	conn   *net.UDPConn
	mu     sync.Mutex
	cmds   []map[string]string
}

func newNGPeer(t *testing.T) *ngPeer {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &ngPeer{conn: c}
	go func() {
		buf := make([]byte, 65536)
		var d ng.Decoder
		for {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			i := bytes.IndexByte(buf[:n], ' ')
			v, err := d.Decode(buf[i+1 : n])
			if err != nil {
				continue
			}
			rec := map[string]string{}
			for j := 0; j < v.Len(); j++ {
				k, x := v.Entry(j)
				if x.Kind() == ng.KindString {
					rec[string(k)] = string(x.Bytes())
				} else {
					rec[string(k)] = string(x.Raw())
				}
			}
			p.mu.Lock()
			p.cmds = append(p.cmds, rec)
			p.mu.Unlock()
			if rec["command"] == "offer" && p.silent.Load() {
				continue
			}
			time.Sleep(time.Duration(p.delay.Load()))
			out := append([]byte(nil), buf[:i+1]...)
			switch cmd := rec["command"]; {
			case strings.Contains(rec["sdp"], "refuse-me"):
				out = append(out, "d6:result5:error12:error-reason19:Failed to parse SDPe"...)
			case cmd == "offer" || cmd == "answer":
				port := map[string]string{"offer": "40000", "answer": "40002"}[cmd]
				sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.99\r\ns=-\r\nc=IN IP4 127.0.0.99\r\nt=0 0\r\nm=audio " + port + " RTP/AVP 0\r\n"
				out = ng.AppendEnd(ng.AppendKeyStr(ng.AppendKeyStr(ng.AppendDict(out), "result", "ok"), "sdp", sdp))
			case cmd == "ping":
				out = append(out, "d6:result4:ponge"...)
			default:
				out = append(out, "d6:result2:oke"...)
			}
			c.WriteToUDPAddrPort(out, src)
		}
	}()
	return p
}

func (p *ngPeer) commands() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]string(nil), p.cmds...)
}

// newEngine builds the module with s on a harness whose routes are the
// rtpengine_manage script.
func newEngine(t *testing.T, s *Settings) (*Engine, *routetest.Harness) {
	t.Helper()
	clock := shards.NewManualClock(1_700_000_000_000)
	set, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, map[string]any{"rtpengine": s}, "rtpengine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e := set.Get("rtpengine").(*Engine)
	h := routetest.New(t, nil)
	after := func(c *routing.Ctx, err error) {
		if err != nil && e.Refuse(c, err) {
			return
		}
		c.Relay()
	}
	h.Route = func(c *routing.Ctx) { e.Manage(c, nil, after) }
	h.Reply = func(c *routing.ReplyCtx) bool { e.ManageReply(c, nil); return true }
	h.Failure = func(c *routing.FailureCtx) { e.ManageFailure(c, nil) }
	return e, h
}

// waitSent waits for a message whose first line starts with prefix.
func waitSent(t *testing.T, h *routetest.Harness, prefix string) routetest.Sent {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, s := range h.Take() {
			if strings.HasPrefix(s.Data, prefix) {
				return s
			}
		}
	}
	t.Fatalf("nothing sent starting %q", prefix)
	return routetest.Sent{}
}

// respond builds the response to a relayed request, from its next hop.
func respond(req string, code, reason, toTag, body string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + code + " " + reason + "\r\n")
	for _, l := range strings.Split(req, "\r\n") {
		low := strings.ToLower(l)
		switch {
		case strings.HasPrefix(low, "via:"), strings.HasPrefix(low, "from:"), strings.HasPrefix(low, "call-id:"),
			strings.HasPrefix(low, "cseq:"), strings.HasPrefix(low, "record-route:"):
			b.WriteString(l + "\r\n")
		case strings.HasPrefix(low, "to:"):
			if !strings.Contains(l, ";tag=") { // in a dialog: its tag already
				l += ";tag=" + toTag
			}
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString("Contact: <sip:bob@127.0.0.1:5080>\r\n")
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	b.WriteString("Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func withSDP(req, body string) string {
	return strings.Replace(req, "Content-Length: 0\r\n\r\n", "Content-Type: application/sdp\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body, 1)
}

const offerSDP = "v=0\r\no=alice 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
const answerSDP = "v=0\r\no=bob 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"

// TestManageCall: rtpengine_manage through a real transaction core. The
// INVITE's SDP goes to rtpengine as an offer (call-id, from-tag, the
// source as received-from, the configured flags) and the relayed INVITE
// carries rtpengine's SDP; the 200's SDP goes as the answer (with the
// callee's to-tag) while the 200 is held, and the caller gets rtpengine's
// SDP; a re-INVITE is offered with both tags; a BYE deletes the session;
// a 486 deletes it from the failure route;
// an SDP rtpengine refuses gets 488 with its reason.
func TestManageCall(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	s.Flags = "replace-origin replace-session-connection ICE=remove RTP/AVP direction=pub direction=priv trust-address"
	_, h := newEngine(t, s)

	inv := withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "Contact: <sip:alice@192.168.1.10:5062>\r\n"), offerSDP)
	h.Receive("127.0.0.1:5070", inv)
	fwd := waitSent(t, h, "INVITE ")
	if !strings.HasSuffix(fwd.Data, "c=IN IP4 127.0.0.99\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n") || !strings.Contains(fwd.Data, "Content-Length: 90\r\n") {
		t.Fatalf("relayed INVITE:\n%s", fwd.Data)
	}
	cmds := peer.commands()
	if len(cmds) != 1 {
		t.Fatalf("commands %v", cmds)
	}
	want := map[string]string{"command": "offer", "sdp": offerSDP, "received-from": "l3:IP49:127.0.0.1e",
		"ICE": "remove", "transport-protocol": "RTP/AVP", "replace": "l6:origin18:session-connectione",
		"direction": "l3:pub4:prive", "flags": "l13:trust-addresse"}
	for k, v := range want {
		if cmds[0][k] != v {
			t.Errorf("offer %s = %q, want %q", k, cmds[0][k], v)
		}
	}
	if cmds[0]["call-id"] == "" || cmds[0]["from-tag"] == "" || cmds[0]["to-tag"] != "" {
		t.Errorf("offer ids %v", cmds[0])
	}

	// The 200 and its retransmission while rtpengine is slow: one answer
	// command, one 200 upstream.
	peer.delay.Store(int64(100 * time.Millisecond))
	ok := respond(fwd.Data, "200", "OK", "b1", answerSDP)
	h.Receive("127.0.0.1:5080", ok)
	h.Receive("127.0.0.1:5080", ok)
	up := waitSent(t, h, "SIP/2.0 200 OK")
	peer.delay.Store(0)
	time.Sleep(150 * time.Millisecond)
	for _, s := range h.Take() {
		t.Errorf("sent after the 200: %.40q", s.Data)
	}
	if !strings.HasSuffix(up.Data, "m=audio 40002 RTP/AVP 0\r\n") || strings.Count(up.Data, "Via:") != 1 {
		t.Fatalf("200 upstream:\n%s", up.Data)
	}
	cmds = peer.commands()
	if len(cmds) != 2 || cmds[1]["command"] != "answer" || cmds[1]["to-tag"] != "b1" || cmds[1]["sdp"] != answerSDP ||
		cmds[1]["from-tag"] != cmds[0]["from-tag"] || cmds[1]["received-from"] != "l3:IP49:127.0.0.1e" {
		t.Fatalf("answer %v", cmds[len(cmds)-1])
	}

	// A re-INVITE (in the dialog: To tag) is offered again with both tags.
	reinv := withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP)
	reinv = strings.Replace(reinv, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1)
	h.Receive("127.0.0.1:5070", reinv)
	waitSent(t, h, "INVITE ")
	if c := waitCommand(t, peer, 3, "offer"); c["to-tag"] != "b1" || c["from-tag"] == "" {
		t.Fatalf("re-INVITE offer %v", c)
	}

	// BYE: the session is deleted (the route relays it; here it goes to
	// its R-URI).
	bye := routetest.Request("BYE", "sip:bob@127.0.0.1:5080", "")
	h.Receive("127.0.0.1:5070", bye)
	waitSent(t, h, "BYE ")
	waitCommand(t, peer, 4, "delete")

	// A 486: the failure route deletes the session the offer opened.
	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	fwd = waitSent(t, h, "INVITE ")
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "486", "Busy Here", "b2", ""))
	waitSent(t, h, "SIP/2.0 486")
	if c := waitCommand(t, peer, 6, "delete"); c["to-tag"] != "" || c["call-id"] != peer.commands()[4]["call-id"] {
		t.Fatalf("delete after 486: %v", c)
	}

	// A callee's 200 whose SDP does not parse is relayed as it came (the
	// call is answered; nothing to give rtpengine), not held.
	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	fwd = waitSent(t, h, "INVITE ")
	n := len(peer.commands())
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b3", "garbage\r\n"))
	if up := waitSent(t, h, "SIP/2.0 200 OK"); !strings.HasSuffix(up.Data, "\r\n\r\ngarbage\r\n") {
		t.Fatalf("200 with a malformed SDP relayed as\n%s", up.Data)
	}
	if len(peer.commands()) != n {
		t.Fatalf("a malformed SDP was sent to rtpengine: %v", peer.commands()[n:])
	}

	// rtpengine refuses the SDP: 488 with its reason, nothing relayed.
	r := h.Answer("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP+"a=refuse-me\r\n"))
	if r == "" {
		up := waitSent(t, h, "SIP/2.0 4")
		r = up.Data
	}
	if !strings.HasPrefix(r, "SIP/2.0 488 Not Acceptable Here (media relay: Failed to parse SDP)\r\n") {
		t.Fatalf("refused SDP: %q", r)
	}
}

func waitCommand(t *testing.T, p *ngPeer, n int, cmd string) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c := p.commands(); len(c) >= n {
			if c[n-1]["command"] != cmd {
				t.Fatalf("command %d is %v, want %s", n, c[n-1], cmd)
			}
			return c[n-1]
		}
	}
	t.Fatalf("no command %d (%s): %v", n, cmd, p.commands())
	return nil
}

func TestParseFlags(t *testing.T) {
	f, err := ParseFlags("trust-address replace-origin ICE=force SDES-off RTP/SAVPF direction=pub")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.frag); got != "3:ICE5:force18:transport-protocol9:RTP/SAVPF5:flagsl13:trust-addresse7:replacel6:origine4:SDESl3:offe9:directionl3:pube" {
		t.Fatalf("%q", got)
	}
	for _, bad := range []string{"ICE=", "=x", "sdp=x", "ICE=a ICE=b", "direction=a direction=b direction=c"} {
		if _, err := ParseFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestReload: a reload adds and removes instances, keeps the state of
// those kept (an operator's disable stays), and applies flags and
// on_unavailable; the module is off without instances. One that also
// changes max_calls and timeout, which take effect at the next start, is
// not refused: CheckReload names them as needing a restart, and Reload
// applies the flags and keeps them in force.
func TestReload(t *testing.T) {
	p1, p2 := newNGPeer(t), newNGPeer(t)
	u1, u2 := "udp:"+p1.conn.LocalAddr().String(), "udp:"+p2.conn.LocalAddr().String()
	s := DefaultSettings()
	s.Instances = []string{u1}
	e, _ := newEngine(t, s)
	if err := e.SetDisabled(u1, -1, true); err != nil {
		t.Fatal(err)
	}
	s2 := DefaultSettings()
	s2.Instances = []string{u1, u2 + "=3"}
	s2.Flags = "ICE=force"
	s2.OnUnavailable = "relay"
	if err := e.Reload(s2); err != nil {
		t.Fatal(err)
	}
	l := e.List()
	if len(l) != 2 || l[0].State != "disabled" || l[1].State != "up" || l[1].Weight != 3 {
		t.Fatalf("after reload: %+v", l)
	}
	if e.DefaultFlags().String() != "ICE=force" || !e.relayOnFail.Load() {
		t.Fatal("flags or on_unavailable not applied")
	}
	s3 := *s2
	s3.MaxCalls, s3.Timeout, s3.Flags = 7, 2*s2.Timeout, "ICE=remove"
	err := e.CheckReload(&s3)
	var keys []string
	for _, one := range err.(interface{ Unwrap() []error }).Unwrap() {
		if ke, ok := one.(*modules.KeyError); ok && ke.Restart {
			keys = append(keys, ke.Key)
		}
	}
	if strings.Join(keys, ",") != "max_calls,timeout" {
		t.Fatalf("CheckReload: %v, want max_calls and timeout named as needing a restart", err)
	}
	if err := e.Reload(&s3); err != nil || e.DefaultFlags().String() != "ICE=remove" || s3.MaxCalls != s2.MaxCalls || s3.Timeout != s2.Timeout {
		t.Fatalf("reload with max_calls and timeout changed: %v, flags %s, settings left with max_calls %d, timeout %s",
			err, e.DefaultFlags(), s3.MaxCalls, s3.Timeout)
	}
	if err := e.Reload(DefaultSettings()); err != nil || e.Enabled() || len(e.List()) != 0 {
		t.Fatalf("without instances: enabled %v, %v", e.Enabled(), err)
	}
}
