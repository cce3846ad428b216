package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A hand-made WebSocket client: the tests build frames byte by byte, so
// that they can also build the ones a well-behaved library never sends.

func wsConfig(extra func(*Config)) Config {
	cfg := Config{Listeners: []ListenerConfig{{Proto: WS, Addr: "127.0.0.1:0"}}}
	if extra != nil {
		extra(&cfg)
	}
	return cfg
}

// wsRequest is an upgrade request for path with the given extra header
// lines (each ending in CRLF).
func wsRequest(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: sip.example.com\r\n" +
		"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

const wsSIPProto = "Sec-WebSocket-Protocol: sip\r\n"

// wsHandshake sends req on c and returns the response head.
func wsHandshake(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("handshake: %v after %q", err, head)
		}
		head = append(head, b[0])
	}
	c.SetReadDeadline(time.Time{})
	return string(head)
}

// dialWS opens a connection and upgrades it; it fails unless the answer is 101.
func dialWS(t *testing.T, to netip.AddrPort) net.Conn {
	t.Helper()
	c := dialTCP(t, to)
	upgradeWS(t, c)
	return c
}

func upgradeWS(t *testing.T, c net.Conn) {
	t.Helper()
	resp := wsHandshake(t, c, wsRequest("/", wsSIPProto))
	if !strings.HasPrefix(resp, "HTTP/1.1 101 ") {
		t.Fatalf("upgrade refused: %q", resp)
	}
}

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame builds one frame; masked frames use testMask.
func clientFrame(op byte, fin, masked bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, m|byte(n))
	case n <= 0xFFFF:
		out = append(out, m|126, byte(n>>8), byte(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	out = append(out, testMask[:]...)
	for i, c := range payload {
		out = append(out, c^testMask[i&3])
	}
	return out
}

func maskedText(s string) []byte { return clientFrame(wsOpText, true, true, []byte(s)) }

// readFrame reads one server frame (which must be unmasked).
func readFrame(t *testing.T, r io.Reader) (op byte, payload []byte) {
	t.Helper()
	if c, ok := r.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		t.Fatalf("server frame not final or masked: %x", h)
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		io.ReadFull(r, e[:])
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		io.ReadFull(r, e[:])
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0F, payload
}

// expectCloseFrame reads a close frame with code, then the end of the
// connection.
func expectCloseFrame(t *testing.T, c net.Conn, code uint16) {
	t.Helper()
	op, p := readFrame(t, c)
	if op != wsOpClose || len(p) < 2 || binary.BigEndian.Uint16(p) != code {
		t.Fatalf("want close %d, got op %x payload %q", code, op, p)
	}
	expectClosed(t, c, 5*time.Second)
}

func TestWSUpgradeAndRoundTrip(t *testing.T) {
	var tr *Transport
	rec := newRecorder()
	// The handler answers on the connection from inside HandleMessage.
	h := HandlerFunc(func(p *Packet) {
		rec.HandleMessage(p)
		if err := tr.SendConn(p.Conn, []byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Error(err)
		}
	})
	tr = startTransport(t, wsConfig(nil), h)
	l := tr.Listeners()[0]
	c := dialTCP(t, l.Local)
	resp := wsHandshake(t, c, wsRequest("/", "Sec-WebSocket-Protocol: chat, sip\r\nOrigin: https://phone.example.com\r\n"))
	// RFC 6455 §1.3: the accept value for this key.
	for _, want := range []string{"HTTP/1.1 101 ", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "Sec-WebSocket-Protocol: sip\r\n", "Upgrade: websocket\r\n"} {
		if !strings.Contains(resp, want) {
			t.Fatalf("response lacks %q:\n%s", want, resp)
		}
	}
	msg := sipMsg("REGISTER", "")
	c.Write(maskedText(msg))
	pkts := rec.wait(t, 1)
	p := pkts[0]
	if string(p.Data) != msg || p.Proto != WS || p.Listener != l || p.Conn == 0 || p.Src != c.LocalAddr().(*net.TCPAddr).AddrPort() {
		t.Fatalf("packet %+v %q", p, p.Data)
	}
	if op, got := readFrame(t, c); op != wsOpText || string(got) != "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n" {
		t.Fatalf("answer op %x %q", op, got)
	}
	// The registrar's way back: Send to the source address on the WS
	// listener finds the connection (a browser cannot be dialed).
	if err := tr.Send(l, p.Src, []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, got := readFrame(t, c); string(got) != "OPTIONS sip:x SIP/2.0\r\n\r\n" {
		t.Fatalf("send by address: %q", got)
	}
	// A binary body goes in a binary frame: a browser refuses invalid
	// UTF-8 in a text frame.
	bin := []byte("MESSAGE sip:x SIP/2.0\r\nContent-Length: 2\r\n\r\n\xff\xfe")
	tr.SendConn(p.Conn, bin)
	if op, got := readFrame(t, c); op != wsOpBinary || !bytes.Equal(got, bin) {
		t.Fatalf("binary op %x %q", op, got)
	}
	// Sends are counted after they are queued: the peer may read first.
	waitFor(t, func() bool { return tr.Stats().Proto[WS].PacketsOut == 3 }, "3 packets out")
	if st := tr.Stats(); st.Proto[WS].PacketsIn != 1 || st.ConnsAccepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSUpgradeRefused(t *testing.T) {
	tr := startTransport(t, wsConfig(func(c *Config) {
		c.Listeners[0].WSPath = "/sip"
		c.Listeners[0].WSOrigins = []string{"https://phone.example.com"}
	}), newRecorder())
	addr := tr.Listeners()[0].Local
	cases := []struct {
		name, req, status string
	}{
		{"good", wsRequest("/sip", wsSIPProto+"Origin: https://PHONE.example.com\r\n"), "101"},
		{"no origin (not a browser)", wsRequest("/sip", wsSIPProto), "101"},
		{"query ignored", wsRequest("/sip?x=1", wsSIPProto), "101"},
		{"other origin", wsRequest("/sip", wsSIPProto+"Origin: https://evil.example.net\r\n"), "403"},
		{"other path", wsRequest("/", wsSIPProto), "404"},
		{"no sip subprotocol", wsRequest("/sip", "Sec-WebSocket-Protocol: chat\r\n"), "400"},
		{"no subprotocol", wsRequest("/sip", ""), "400"},
		{"version 8", strings.Replace(wsRequest("/sip", wsSIPProto), "Version: 13", "Version: 8", 1), "426"},
		{"not an upgrade", "GET /sip HTTP/1.1\r\nHost: x\r\n\r\n", "426"},
		{"POST", strings.Replace(wsRequest("/sip", wsSIPProto), "GET", "POST", 1), "405"},
		{"bad key", strings.Replace(wsRequest("/sip", wsSIPProto), "dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1), "400"},
		{"HTTP/1.0", strings.Replace(wsRequest("/sip", wsSIPProto), "HTTP/1.1", "HTTP/1.0", 1), "400"},
		{"garbage", "\x16\x03\x01 hello\r\n\r\n", "400"},
	}
	refused := 0
	for _, tc := range cases {
		c := dialTCP(t, addr)
		resp := wsHandshake(t, c, tc.req)
		if !strings.HasPrefix(resp, "HTTP/1.1 "+tc.status+" ") {
			t.Errorf("%s: want %s, got %q", tc.name, tc.status, resp)
		}
		if tc.status != "101" {
			refused++
			expectClosed(t, c, 5*time.Second)
		}
		c.Close()
	}
	// A request larger than 8 KiB is refused without being read further.
	c := dialTCP(t, addr)
	resp := wsHandshake(t, c, "GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 9000)+"\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 431 ") {
		t.Errorf("large request: %q", resp)
	}
	refused++
	waitFor(t, func() bool { return tr.Stats().WSUpgradeKO == uint64(refused) }, "WSUpgradeKO")
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pkts)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wsTestStream is a message in one frame, a ping, then a message in three
// fragments with a ping between the first two: what the reader must put
// back together wherever the stream is cut.
func wsTestStream(a, b string) []byte {
	var s []byte
	s = append(s, maskedText(a)...)
	s = append(s, clientFrame(wsOpPing, true, true, []byte("p1"))...)
	s = append(s, clientFrame(wsOpText, false, true, []byte(b[:10]))...)
	s = append(s, clientFrame(wsOpPing, true, true, []byte("p2"))...)
	s = append(s, clientFrame(wsOpContinuation, false, true, []byte(b[10:200]))...)
	s = append(s, clientFrame(wsOpContinuation, true, true, []byte(b[200:]))...)
	return s
}

func TestWSFramesEveryOffset(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	a := sipMsg("INVITE", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"+strings.Repeat("a=x\r\n", 30))
	b := sipMsg("MESSAGE", strings.Repeat("fragmented ", 30))
	stream := wsTestStream(a, b)
	want := 0
	for k := 1; k < len(stream); k++ {
		c.Write(stream[:k])
		time.Sleep(100 * time.Microsecond)
		c.Write(stream[k:])
		want += 2
		pkts := rec.wait(t, want)
		if got := string(pkts[want-2].Data); got != a {
			t.Fatalf("cut at %d: first message %q", k, got)
		}
		if got := string(pkts[want-1].Data); got != b {
			t.Fatalf("cut at %d: fragmented message %q", k, got)
		}
		// p2's pong, after p1's unless p2 came before a writer took
		// p1's, which it then replaced (queuePong).
		for seen := ""; seen != "p2"; {
			op, p := readFrame(t, c)
			if op != wsOpPong || string(p) != "p2" && (string(p) != "p1" || seen != "") {
				t.Fatalf("cut at %d: after pong %q, got %x %q", k, seen, op, p)
			}
			seen = string(p)
		}
	}
}

func TestWSReaderEveryOffset(t *testing.T) {
	a := sipMsg("INVITE", strings.Repeat("x", 300)) // 16-bit length
	b := sipMsg("MESSAGE", strings.Repeat("y", 250))
	stream := wsTestStream(a, b)
	want := []string{"T" + a, "9p1", "9p2", "T" + b}
	for k := 0; k <= len(stream); k++ {
		got := readerEvents(t, [][]byte{stream[:k], stream[k:]})
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("cut at %d: %q", k, got)
		}
	}
}

// readerEvents runs a wsReader over the parts as reads of a stream and
// returns its events as opcode letter + payload; an error ends the list
// with "E".
func readerEvents(t testing.TB, parts [][]byte) []string {
	r := wsReader{requireMask: true, maxFrame: 1 << 16, maxMessage: 1 << 16}
	var buf, all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var out []string
	fed := 0
	for _, p := range parts {
		buf = append(buf, p...)
		fed += len(p)
		for {
			ev, used, err := r.next(buf)
			if used > len(buf) {
				t.Fatalf("used %d of %d", used, len(buf))
			}
			buf = buf[used:]
			if err == errWSNeedMore {
				break
			}
			if err != nil {
				return append(out, "E")
			}
			name := map[byte]string{wsOpText: "T", wsOpBinary: "B", wsOpPing: "9", wsOpPong: "A", wsOpClose: "8"}[ev.op]
			out = append(out, name+string(ev.payload))
		}
	}
	return out
}

func TestWSFrameRules(t *testing.T) {
	big := strings.Repeat("z", 200)
	cases := []struct {
		name  string
		frame []byte
		err   error
	}{
		{"unmasked client frame", clientFrame(wsOpText, true, false, []byte("hi")), errWSUnmasked},
		{"reserved bit", append([]byte{0xC1}, clientFrame(wsOpText, true, true, nil)[1:]...), errWSReserved},
		{"unknown opcode", clientFrame(0x3, true, true, nil), errWSOpcode},
		{"fragmented ping", clientFrame(wsOpPing, false, true, nil), errWSControlFrag},
		{"ping over 125", clientFrame(wsOpPing, true, true, []byte(big)), errWSControlLen},
		{"16-bit length for 5 bytes", []byte{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 1, 2, 3, 4, 5}, errWSLengthForm},
		{"64-bit length for 300 bytes", append([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 1, 44}, make([]byte, 304)...), errWSLengthForm},
		{"64-bit length, top bit set", []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, errWSFrameTooBig},
		{"frame over the limit", clientFrame(wsOpText, true, true, make([]byte, 101)), errWSFrameTooBig},
		{"continuation without a start", clientFrame(wsOpContinuation, true, true, []byte("x")), errWSContinuation},
		{"new message inside a fragmented one", append(clientFrame(wsOpText, false, true, []byte("a")), maskedText("b")...), errWSInterleaved},
		{"fragments over the message limit", append(append(clientFrame(wsOpText, false, true, make([]byte, 90)), clientFrame(wsOpContinuation, false, true, make([]byte, 90))...), clientFrame(wsOpContinuation, true, true, make([]byte, 90))...), errWSMsgTooBig},
	}
	for _, tc := range cases {
		r := wsReader{requireMask: true, maxFrame: 100, maxMessage: 200}
		var err error
		b := tc.frame
		for {
			var used int
			_, used, err = r.next(b)
			b = b[used:]
			if err != nil {
				break
			}
		}
		if err != tc.err {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	// The header of a too-large frame is refused before its payload comes.
	r := wsReader{requireMask: true, maxFrame: 100, maxMessage: 100}
	if _, _, err := r.next([]byte{0x81, 0x80 | 126, 0x10, 0x00}); err != errWSFrameTooBig {
		t.Fatalf("header alone: %v", err)
	}
}

func TestWSMaskRequired(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	c.Write(clientFrame(wsOpText, true, false, []byte(sipMsg("OPTIONS", ""))))
	expectCloseFrame(t, c, wsCloseProtocol)
	time.Sleep(20 * time.Millisecond)
	if rec.count() != 0 {
		t.Fatal("unmasked frame delivered")
	}
	waitFor(t, func() bool { return tr.Stats().ConnsOpen == 0 }, "connection closed")
}

func TestWSOversize(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(func(c *Config) {
		c.Listeners[0].WSMaxFrameSize = 1000
		c.Listeners[0].WSMaxMessageSize = 2000
	}), rec)
	addr := tr.Listeners()[0].Local
	// A frame announcing more than the frame limit: closed with 1009
	// before the payload is sent.
	c := dialWS(t, addr)
	c.Write([]byte{0x81, 0x80 | 126, 0x04, 0x00, 1, 2, 3, 4})
	expectCloseFrame(t, c, wsCloseTooBig)
	// Fragments within the frame limit adding up to more than the
	// message limit, in one write: a read fills the 2 KiB buffer, which
	// is larger than a whole frame here, and must not be taken for a
	// frame that does not fit.
	c = dialWS(t, addr)
	var frags []byte
	frags = append(frags, clientFrame(wsOpText, false, true, make([]byte, 900))...)
	frags = append(frags, clientFrame(wsOpContinuation, false, true, make([]byte, 900))...)
	frags = append(frags, clientFrame(wsOpContinuation, true, true, make([]byte, 900))...)
	c.Write(frags)
	expectCloseFrame(t, c, wsCloseTooBig)
	// At the limits everything passes.
	c = dialWS(t, addr)
	head := len(sipMsg("MESSAGE", strings.Repeat("m", 1000))) - 1000 // with a 4-digit Content-Length
	m := sipMsg("MESSAGE", strings.Repeat("m", 2000-head))
	c.Write(clientFrame(wsOpText, false, true, []byte(m[:1000])))
	c.Write(clientFrame(wsOpContinuation, true, true, []byte(m[1000:])))
	if got := rec.wait(t, 1)[0].Data; string(got) != m {
		t.Fatalf("message at the limit: %d bytes", len(got))
	}
	if st := tr.Stats(); st.ConnsOversize != 2 {
		t.Fatalf("ConnsOversize %d", st.ConnsOversize)
	}
}

func TestWSCloseHandshake(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	c.Write(maskedText(sipMsg("OPTIONS", "")))
	id := rec.wait(t, 1)[0].Conn
	var payload [2]byte
	binary.BigEndian.PutUint16(payload[:], wsCloseGoingAway)
	c.Write(clientFrame(wsOpClose, true, true, payload[:]))
	expectCloseFrame(t, c, wsCloseGoingAway)
	waitFor(t, func() bool { return tr.SendConn(id, []byte("x")) == ErrNoConn }, "connection gone from the table")
	// A close frame without a status is answered with 1000.
	c = dialWS(t, tr.Listeners()[0].Local)
	c.Write(clientFrame(wsOpClose, true, true, nil))
	expectCloseFrame(t, c, wsCloseNormal)
	// A code no endpoint may send (RFC 6455 §7.4) is not echoed: 1002.
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 2000, 5000} {
		c = dialWS(t, tr.Listeners()[0].Local)
		binary.BigEndian.PutUint16(payload[:], code)
		c.Write(clientFrame(wsOpClose, true, true, payload[:]))
		expectCloseFrame(t, c, wsCloseProtocol)
	}
	// 3000–4999 are the application's: echoed.
	c = dialWS(t, tr.Listeners()[0].Local)
	binary.BigEndian.PutUint16(payload[:], 4000)
	c.Write(clientFrame(wsOpClose, true, true, payload[:]))
	expectCloseFrame(t, c, 4000)
}

// TestWSTextNotUTF8: a text message that is not UTF-8 closes the
// connection with 1007 (RFC 6455 §8.1), whole or in fragments, and
// reaches no handler; a binary one is taken.
func TestWSTextNotUTF8(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	bad := sipMsg("MESSAGE", "caf\xe9")
	c := dialWS(t, tr.Listeners()[0].Local)
	c.Write(clientFrame(wsOpBinary, true, true, []byte(bad)))
	rec.wait(t, 1)
	c.Write(maskedText(bad))
	expectCloseFrame(t, c, wsCloseInvalidData)
	c = dialWS(t, tr.Listeners()[0].Local)
	c.Write(append(clientFrame(wsOpText, false, true, []byte(bad[:10])), clientFrame(wsOpContinuation, true, true, []byte(bad[10:]))...))
	expectCloseFrame(t, c, wsCloseInvalidData)
	if n := rec.count(); n != 1 {
		t.Fatalf("%d messages handled, want the binary one", n)
	}
}

func TestWSAbruptCloseReleases(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	addr := tr.Listeners()[0].Local
	// Warm up: the first connection starts the sweeper and pools.
	w := dialWS(t, addr)
	w.Write(maskedText(sipMsg("OPTIONS", "")))
	rec.wait(t, 1)
	g, f := countGoroutines(), countFDs(t)
	var ids []ConnID
	for i := 0; i < 5; i++ {
		c := dialWS(t, addr)
		c.Write(maskedText(sipMsg("OPTIONS", "")))
		ids = append(ids, rec.wait(t, 2+i)[1+i].Conn)
		// Half a frame, then the socket goes away without a close frame.
		fr := maskedText(sipMsg("INVITE", "v=0\r\n"))
		c.Write(fr[:len(fr)/2])
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	for _, id := range ids {
		waitFor(t, func() bool { _, ok := tr.ConnRemote(id); return !ok }, "connection gone")
	}
	expectNoLeak(t, g, f)
	if st := tr.Stats(); st.ConnsOpen != 1 {
		t.Fatalf("ConnsOpen %d", st.ConnsOpen)
	}
}

func TestWSSRoundTrip(t *testing.T) {
	pki := newPKI(t, "ws-ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	var tr *Transport
	rec := newRecorder()
	tr = startTransport(t, Config{
		Listeners:   []ListenerConfig{{Proto: WSS, Addr: "[::1]:0", WSPath: "/ws"}},
		TLSCertFile: cf, TLSKeyFile: kf,
	}, HandlerFunc(func(p *Packet) {
		rec.HandleMessage(p)
		tr.SendConn(p.Conn, p.Data) // echo
	}))
	l := tr.Listeners()[0]
	c, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := wsHandshake(t, c, wsRequest("/ws", wsSIPProto)); !strings.HasPrefix(resp, "HTTP/1.1 101 ") {
		t.Fatalf("upgrade: %q", resp)
	}
	msg := sipMsg("REGISTER", "")
	c.Write(maskedText(msg))
	p := rec.wait(t, 1)[0]
	if p.Proto != WSS || string(p.Data) != msg || !p.Src.Addr().Is6() {
		t.Fatalf("packet %+v", p)
	}
	if _, got := readFrame(t, c); string(got) != msg {
		t.Fatalf("echo %q", got)
	}
	// A URI says transport=ws for WSS too (RFC 7118 §5.2): WS picks the
	// WSS listener and finds the connection.
	if tr.Listener(WS, p.Src.Addr()) != l {
		t.Fatal("no listener for transport=ws")
	}
	if err := tr.SendProto(WS, p.Src, []byte("BYE sip:x SIP/2.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, got := readFrame(t, c); string(got) != "BYE sip:x SIP/2.0\r\n\r\n" {
		t.Fatalf("send as ws: %q", got)
	}
	// Plain WebSocket on the WSS port never gets an upgrade.
	pc := dialTCP(t, l.Local)
	pc.Write([]byte(wsRequest("/ws", wsSIPProto)))
	expectClosed(t, pc, 10*time.Second)
}

func TestWSNeverDialed(t *testing.T) {
	tr := startTransport(t, wsConfig(nil), newRecorder())
	l := tr.Listeners()[0]
	dst := netip.MustParseAddrPort("127.0.0.1:9")
	if err := tr.Send(l, dst, []byte("x")); err != ErrNoConn {
		t.Fatalf("Send: %v", err)
	}
	if _, err := tr.Connect(l, dst, ""); err != ErrNoConn {
		t.Fatalf("Connect: %v", err)
	}
	if st := tr.Stats(); st.ConnsOpen != 0 || st.ConnsDialed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSConnectionLimitsShared(t *testing.T) {
	tr := startTransport(t, Config{
		Listeners: []ListenerConfig{{Proto: TCP, Addr: "127.0.0.1:0"}, {Proto: WS, Addr: "127.0.0.1:0"}},
		MaxConns:  3, MaxConnsPerIP: 2, StreamLoops: 1,
	}, newRecorder())
	tcp, ws := tr.Listeners()[0].Local, tr.Listeners()[1].Local
	dialTCP(t, tcp).Write([]byte(sipMsg("OPTIONS", "")))
	dialWS(t, ws)
	waitFor(t, func() bool { return tr.Stats().ConnsOpen == 2 }, "two connections")
	// The per-IP limit counts TCP and WS together: a third connection
	// from 127.0.0.1 is refused at accept.
	c := dialTCP(t, ws)
	expectClosed(t, c, 5*time.Second)
	// From another address the total limit (3) still has one slot.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c2, err := d.Dial("tcp", ws.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	upgradeWS(t, c2)
	if st := tr.Stats(); st.ConnsRejected != 1 || st.ConnsOpen != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSKeepalive(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(func(c *Config) { c.IdleTimeout = 400 * time.Millisecond }), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	// Silent for half the idle timeout: the server pings; answering
	// keeps the connection open past the timeout.
	deadline := time.Now().Add(1200 * time.Millisecond)
	pings := 0
	for time.Now().Before(deadline) {
		op, p := readFrame(t, c)
		if op != wsOpPing {
			t.Fatalf("op %x", op)
		}
		pings++
		c.Write(clientFrame(wsOpPong, true, true, p))
	}
	if pings < 2 {
		t.Fatalf("%d pings", pings)
	}
	// A CRLFCRLF keep-alive in a message is answered with CRLF.
	c.Write(maskedText("\r\n\r\n"))
	for {
		op, p := readFrame(t, c)
		if op == wsOpPing {
			continue
		}
		if op != wsOpText || string(p) != "\r\n" {
			t.Fatalf("CRLF pong: %x %q", op, p)
		}
		break
	}
	// A peer that does not answer is closed by the idle timeout.
	expectClosed(t, c, 3*time.Second)
	if st := tr.Stats(); st.ConnsIdle != 1 || st.KeepalivePings != 1 || rec.count() != 0 {
		t.Fatalf("stats %+v, %d messages", st, rec.count())
	}
}

// TestWSReceiveNoAllocs: a message in one frame reaches the handler as a
// view into the read buffer, with no allocation per message.
func TestWSReceiveNoAllocs(t *testing.T) {
	var got atomic.Int64
	tr := startTransport(t, wsConfig(nil), HandlerFunc(func(p *Packet) { got.Add(1) }))
	c := dialWS(t, tr.Listeners()[0].Local)
	m := maskedText(sipMsg("OPTIONS", ""))
	msg := append(append([]byte(nil), m...), m...)
	for i := 0; i < 100; i++ {
		c.Write(msg)
	}
	waitCount(t, &got, 200)
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		c.Write(msg)
		if i%64 == 0 {
			waitCount(t, &got, int64(200+2*i))
		}
	}
	waitCount(t, &got, 200+2*n)
	runtime.ReadMemStats(&after)
	allocs := after.Mallocs - before.Mallocs
	t.Logf("%d allocations for %d messages", allocs, 2*n)
	if allocs > n/20 {
		t.Fatalf("%d allocations for %d messages", allocs, 2*n)
	}
}

func TestWSConfigErrors(t *testing.T) {
	cases := []struct {
		lc  ListenerConfig
		key string
	}{
		{ListenerConfig{Proto: WS, Addr: "127.0.0.1:0", WSPath: "sip"}, "listeners[0].path"},
		{ListenerConfig{Proto: WS, Addr: "127.0.0.1:0", WSOrigins: []string{"phone.example.com"}}, "listeners[0].origins[0]"},
		{ListenerConfig{Proto: WS, Addr: "127.0.0.1:0", WSMaxMessageSize: 70000}, "listeners[0].max_message_size"},
		{ListenerConfig{Proto: WS, Addr: "127.0.0.1:0", WSMaxFrameSize: -1}, "listeners[0].max_frame_size"},
		{ListenerConfig{Proto: TCP, Addr: "127.0.0.1:0", WSPath: "/x"}, "listeners[0].proto"},
		{ListenerConfig{Proto: WSS, Addr: "127.0.0.1:0"}, "tls_cert_file"},
	}
	for _, tc := range cases {
		_, err := New(Config{Listeners: []ListenerConfig{tc.lc}}, newRecorder())
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%+v: %v, want key %s", tc.lc, err, tc.key)
		}
	}
}

// FuzzWSFrames feeds arbitrary bytes to the frame reader, whole and cut in
// two reads: it must never panic nor use more than it was given, and must
// find the same messages and control frames either way.
func FuzzWSFrames(f *testing.F) {
	f.Add(wsTestStream(sipMsg("INVITE", strings.Repeat("a", 200)), sipMsg("BYE", strings.Repeat("b", 300))), 17)
	f.Add(clientFrame(wsOpClose, true, true, []byte{3, 232, 'o', 'k'}), 3)
	f.Add([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0}, 5)
	f.Add(clientFrame(wsOpText, true, false, []byte("x")), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		// The reader unmasks in place: each run gets its own copy.
		whole := readerEvents(t, [][]byte{bytes.Clone(data)})
		d := bytes.Clone(data)
		split := readerEvents(t, [][]byte{d[:cut], d[cut:]})
		if strings.Join(whole, "\x00") != strings.Join(split, "\x00") {
			t.Fatalf("whole %q split at %d %q", whole, cut, split)
		}
	})
}

// wsClient is an upgraded connection for benchmarks.
func benchWSConn(b *testing.B, tr *Transport) net.Conn {
	c, err := net.Dial("tcp", tr.Listeners()[0].Local.String())
	if err != nil {
		b.Fatal(err)
	}
	c.Write([]byte(wsRequest("/", wsSIPProto)))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	return c
}

// BenchmarkStreamReceive measures a message from the client's write to the
// handler on TCP (gnet event loop), TLS and WS (reader goroutines): the
// same message, 64 per write, up to 16 writes ahead of the handler.
// Compare them with benchstat.
func BenchmarkStreamReceive(b *testing.B) {
	msg := sipMsg("OPTIONS", "")
	pki := newPKI(b, "bench-ca")
	cf, kf, _ := pki.issue(b, "server", nil, false)
	for _, proto := range []Proto{TCP, TLS, WS} {
		b.Run(proto.String(), func(b *testing.B) {
			var got atomic.Int64
			tr, err := New(Config{Listeners: []ListenerConfig{{Proto: proto, Addr: "127.0.0.1:0"}}, StreamLoops: 1, TLSCertFile: cf, TLSKeyFile: kf},
				HandlerFunc(func(p *Packet) { got.Add(1) }))
			if err != nil {
				b.Fatal(err)
			}
			if err := tr.Start(); err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			var c net.Conn
			one := []byte(msg)
			switch proto {
			case WS:
				c = benchWSConn(b, tr)
				one = maskedText(msg)
			case TLS:
				if c, err = tls.Dial("tcp", tr.Listeners()[0].Local.String(), &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}); err != nil {
					b.Fatal(err)
				}
			default:
				if c, err = net.Dial("tcp", tr.Listeners()[0].Local.String()); err != nil {
					b.Fatal(err)
				}
			}
			defer c.Close()
			const batch = 64
			burst := bytes.Repeat(one, batch)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				n := min(batch, b.N-sent)
				c.Write(burst[:n*len(one)])
				sent += n
				for got.Load() < int64(sent-16*batch) {
					runtime.Gosched()
				}
			}
			for got.Load() < int64(b.N) {
				runtime.Gosched()
			}
		})
	}
}

// TestWSSendNoAllocs: a send on an open WebSocket connection (the frame
// header written in front of the copy, in a pooled buffer) allocates
// nothing; the frame is what a client reads.
func TestWSSendNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under -race")
	}
	tr := startTransport(t, wsConfig(nil), newRecorder())
	s := &streams{t: tr}
	c := s.newConn(WS, &Listener{Proto: WS}, netip.MustParseAddrPort("127.0.0.1:40000"), true)
	c.ws = &wsConn{}
	c.state = connOpen
	c.wake = make(chan struct{}, 1)
	msg := []byte(sipMsg("OPTIONS", strings.Repeat("b", 200)))
	var last []byte
	drain := func() {
		c.mu.Lock()
		for i, w := range c.queue {
			last = append(last[:0], w.b...)
			putWbuf(w)
			c.queue[i] = nil
		}
		c.queue = c.queue[:0]
		c.queuedBytes = 0
		c.flushPending = false
		c.mu.Unlock()
		select {
		case <-c.wake:
		default:
		}
	}
	if a := testing.AllocsPerRun(1000, func() {
		if err := c.send(msg, c.remote, Tag{}); err != nil {
			t.Fatal(err)
		}
		drain()
	}); a != 0 {
		t.Fatalf("WS send: %.1f allocations per call", a)
	}
	if op, p := readFrame(t, bytes.NewReader(last)); op != wsOpText || !bytes.Equal(p, msg) {
		t.Fatalf("frame op %x payload %q", op, p)
	}
}

// TestWSAdmit: a banned source is refused at accept, before the upgrade;
// a WebSocket opened before the ban is closed at its next message, which
// is not handled.
func TestWSAdmit(t *testing.T) {
	var banned atomic.Bool
	rec := newRecorder()
	tr := startTransport(t, wsConfig(func(c *Config) {
		c.Admit = func(netip.Addr) bool { return !banned.Load() }
	}), rec)
	addr := tr.Listeners()[0].Local
	c := dialWS(t, addr)
	c.Write(maskedText(sipMsg("OPTIONS", "")))
	rec.wait(t, 1)
	banned.Store(true)
	c.Write(maskedText(sipMsg("INVITE", "")))
	expectClosed(t, c, 5*time.Second)
	// Refused with a reset at accept: the dial itself may see it.
	if d, err := net.Dial("tcp", addr.String()); err == nil {
		d.Write([]byte(wsRequest("/", wsSIPProto)))
		expectClosed(t, d, 5*time.Second)
		d.Close()
	}
	// Counted after the socket is closed: the peer may see it first.
	waitFor(t, func() bool { return tr.Stats().AdmitRefused == 1 }, "AdmitRefused")
	if st := tr.Stats(); st.AdmitClosed != 1 || rec.count() != 1 {
		t.Fatalf("stats %+v, %d messages", st, rec.count())
	}
}

// TestWSQueueAccounting: the write queue counts what the writer writes,
// frame headers included, so that once everything is written it is back
// at zero and the WriteQueueBytes bound keeps its meaning.
func TestWSQueueAccounting(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(nil), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	c.Write(maskedText(sipMsg("OPTIONS", "")))
	id := rec.wait(t, 1)[0].Conn
	msg := []byte(sipMsg("MESSAGE", strings.Repeat("q", 300)))
	for i := 0; i < 100; i++ {
		if err := tr.SendConn(id, msg); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		if _, p := readFrame(t, c); !bytes.Equal(p, msg) {
			t.Fatalf("message %d: %q", i, p)
		}
	}
	sc := tr.streams.table.get(id)
	waitFor(t, func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return sc.queuedBytes == 0 && len(sc.queue) == 0
	}, "queue back at 0")
}

// TestWSWriteBackPressure: a browser that stops reading is closed once
// its queue holds WriteQueueBytes; the sends say so.
func TestWSWriteBackPressure(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, wsConfig(func(c *Config) { c.WriteQueueBytes = 64 << 10 }), rec)
	c := dialWS(t, tr.Listeners()[0].Local)
	c.(*net.TCPConn).SetReadBuffer(4096)
	c.Write(maskedText(sipMsg("OPTIONS", "")))
	id := rec.wait(t, 1)[0].Conn
	msg := []byte(sipMsg("MESSAGE", strings.Repeat("p", 1000)))
	var full bool
	for i := 0; i < 20000 && !full; i++ {
		switch err := tr.SendConn(id, msg); err {
		case nil:
		case ErrQueueFull, ErrNoConn:
			full = true
		default:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("20 MB queued for a peer that does not read")
	}
	waitFor(t, func() bool { _, ok := tr.ConnRemote(id); return !ok }, "connection closed")
	if st := tr.Stats(); st.ConnsOverflow != 1 {
		t.Fatalf("ConnsOverflow %d", st.ConnsOverflow)
	}
}

// TestWSShutdownSendsGoingAway: closing the transport sends each WebSocket
// peer a close frame 1001, after the messages already queued for it.
func TestWSShutdownSendsGoingAway(t *testing.T) {
	rec := newRecorder()
	tr, err := New(wsConfig(nil), rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialWS(t, tr.Listeners()[0].Local)
	c.Write(maskedText(sipMsg("OPTIONS", "")))
	id := rec.wait(t, 1)[0].Conn
	if err := tr.SendConn(id, []byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	if op, p := readFrame(t, c); op != wsOpText || !strings.HasPrefix(string(p), "SIP/2.0 200 OK") {
		t.Fatalf("queued message lost: op %x %q", op, p)
	}
	expectCloseFrame(t, c, wsCloseGoingAway)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}
