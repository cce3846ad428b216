package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// SIP over WebSocket (RFC 7118) for browser phones. WS and WSS listeners
// accept connections only (a browser cannot be dialed), run like TLS on
// worker goroutines (one reader, one writer per connection; WSS through
// the same TLS state as TLS listeners), and share the connection table and
// its limits with TCP and TLS. The reader does the HTTP/1.1 upgrade
// (RFC 6455 §4.2, subprotocol "sip"), then decodes frames in its buffer:
// each WebSocket message is one SIP message, handed to the handler as a
// view (a fragmented one after one copy). Sends are wrapped in one
// unmasked frame each.

// wsOptions are one WS/WSS listener's settings, with defaults applied.
type wsOptions struct {
	path       string
	origins    []string
	maxFrame   int
	maxMessage int
}

const (
	wsHandshakeMax = 8 << 10 // bytes of HTTP upgrade request
	wsReadBuf      = 2048    // initial read buffer; most SIP messages fit
	wsBusyBuf      = 16384   // a busy connection's buffer; larger ones (large messages) are dropped when emptied
	wsGUID         = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// wsConn is the WebSocket state of a stream connection.
type wsConn struct {
	opts   *wsOptions
	reader wsReader
	pinged atomic.Int64 // coarse time of the last keep-alive ping sent
}

func (c *Config) validateWS(key string, l *ListenerConfig) error {
	if !l.Proto.WebSocket() {
		if l.WSPath != "" || len(l.WSOrigins) > 0 || l.WSMaxFrameSize != 0 || l.WSMaxMessageSize != 0 {
			return &ConfigError{key + ".proto", errors.New("path, origins and frame sizes are for ws and wss listeners")}
		}
		return nil
	}
	if l.WSPath != "" && (l.WSPath[0] != '/' || strings.ContainsAny(l.WSPath, " ?#\r\n")) {
		return &ConfigError{key + ".path", errors.New("not an absolute path without query: " + strconv.Quote(l.WSPath))}
	}
	for i, o := range l.WSOrigins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.ContainsAny(o, " \r\n") || strings.Count(o, "/") > 2 {
			return &ConfigError{key + ".origins[" + strconv.Itoa(i) + "]", errors.New("not an origin like https://phone.example.com[:port]: " + strconv.Quote(o))}
		}
	}
	maxMsg := c.withDefaults().MaxMessageSize
	if l.WSMaxMessageSize < 0 || l.WSMaxMessageSize > maxMsg {
		return &ConfigError{key + ".max_message_size", errors.New("must be between 1 and max_message_size (" + strconv.Itoa(maxMsg) + ")")}
	}
	if l.WSMaxFrameSize < 0 || l.WSMaxFrameSize > maxMsg {
		return &ConfigError{key + ".max_frame_size", errors.New("must be between 1 and max_message_size (" + strconv.Itoa(maxMsg) + ")")}
	}
	return nil
}

func newWSOptions(cfg *Config, lc *ListenerConfig) *wsOptions {
	o := &wsOptions{path: lc.WSPath, origins: lc.WSOrigins, maxFrame: lc.WSMaxFrameSize, maxMessage: lc.WSMaxMessageSize}
	if o.maxMessage <= 0 {
		o.maxMessage = cfg.MaxMessageSize
	}
	if o.maxFrame <= 0 {
		o.maxFrame = o.maxMessage
	}
	return o
}

// acceptWS accepts WS or WSS connections on ln, with the admission checks
// of TLS (acceptLoop).
func (s *streams) acceptWS(ln net.Listener, l *Listener) {
	setup := func(c *streamConn) { c.ws = &wsConn{opts: l.ws} } // frames what is queued
	s.acceptLoop(ln, l, setup, func(c *streamConn, nc net.Conn) {
		var conn net.Conn = nc
		if l.Proto == WSS {
			conn = tls.Server(nc, &tls.Config{GetConfigForClient: s.wssConfig})
		}
		s.serveWS(c, conn)
	})
}

// wssConfig is the TLS listeners' configuration (so that reloads apply)
// without client certificates: those are for trunks on TLS listeners, and
// a browser has none to present.
func (s *streams) wssConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	cfg := s.tls.server.Load()
	if cfg.ClientAuth != tls.NoClientCert {
		cfg = cfg.Clone()
		cfg.ClientAuth, cfg.ClientCAs = tls.NoClientCert, nil
	}
	return cfg, nil
}

// serveWS does the TLS handshake (WSS) and the HTTP upgrade, both within
// DialTimeout, then runs the connection.
func (s *streams) serveWS(c *streamConn, conn net.Conn) {
	defer s.wg.Done()
	deadline := time.Now().Add(s.t.cfg.DialTimeout)
	if tc, ok := conn.(*tls.Conn); ok {
		ctx, cancel := context.WithDeadline(s.ctx, deadline)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.t.stats.tlsHandshakeKO.Add(1)
			c.close()
			return
		}
	}
	_ = conn.SetDeadline(deadline)
	rest, err := wsUpgrade(conn, c.ws.opts)
	if err != nil {
		s.t.stats.wsUpgradeKO.Add(1)
		c.close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	s.wg.Add(1)
	s.runWS(c, conn, rest)
}

// wsHTTPError is a refused upgrade: the status line and headers to answer.
type wsHTTPError struct {
	status string // "400 Bad Request"
	extra  string // more header lines, each ending in CRLF
	why    string
}

func (e *wsHTTPError) Error() string { return "websocket upgrade: " + e.status + ": " + e.why }

// wsUpgrade reads the HTTP upgrade request from conn, checks it, and
// answers 101 or an error status. It returns the bytes read after the
// request (frames the client sent at once).
func wsUpgrade(conn net.Conn, o *wsOptions) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	end := -1
	for end < 0 {
		if len(buf) == cap(buf) {
			if cap(buf) >= wsHandshakeMax {
				wsRefuse(conn, &wsHTTPError{status: "431 Request Header Fields Too Large", why: "request over 8 KiB"})
				return nil, errors.New("websocket upgrade: request too large")
			}
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			end = i + 4
		} else if err != nil {
			return nil, err
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:end])))
	if err != nil {
		herr := &wsHTTPError{status: "400 Bad Request", why: err.Error()}
		wsRefuse(conn, herr)
		return nil, herr
	}
	accept, herr := wsCheckRequest(req, o)
	if herr != nil {
		wsRefuse(conn, herr)
		return nil, herr
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + accept + "\r\n" +
		"Sec-WebSocket-Protocol: sip\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		return nil, err
	}
	return buf[end:], nil
}

// wsCheckRequest applies RFC 6455 §4.2.1 and RFC 7118 §4 to the upgrade
// request and returns the Sec-WebSocket-Accept value.
func wsCheckRequest(req *http.Request, o *wsOptions) (string, *wsHTTPError) {
	bad := func(why string) (string, *wsHTTPError) {
		return "", &wsHTTPError{status: "400 Bad Request", why: why}
	}
	if req.Method != http.MethodGet {
		return "", &wsHTTPError{status: "405 Method Not Allowed", extra: "Allow: GET\r\n", why: "method " + req.Method}
	}
	if !req.ProtoAtLeast(1, 1) {
		return bad("HTTP/1.1 or later needed")
	}
	if o.path != "" && req.URL.Path != o.path {
		return "", &wsHTTPError{status: "404 Not Found", why: "path " + req.URL.Path}
	}
	if req.Host == "" {
		return bad("no Host")
	}
	if !headerHasToken(req.Header, "Upgrade", "websocket") {
		return "", &wsHTTPError{status: "426 Upgrade Required", extra: "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", why: "not a WebSocket upgrade"}
	}
	if !headerHasToken(req.Header, "Connection", "upgrade") {
		return bad("Connection has no upgrade token")
	}
	if req.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", &wsHTTPError{status: "426 Upgrade Required", extra: "Sec-WebSocket-Version: 13\r\n", why: "version " + req.Header.Get("Sec-WebSocket-Version")}
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return bad("Sec-WebSocket-Key is not 16 bytes in base64")
	}
	if !headerHasToken(req.Header, "Sec-WebSocket-Protocol", "sip") {
		return bad("the sip subprotocol was not requested (RFC 7118)")
	}
	if origin := req.Header.Get("Origin"); origin != "" && len(o.origins) > 0 {
		ok := false
		for _, a := range o.origins {
			ok = ok || strings.EqualFold(a, origin)
		}
		if !ok {
			return "", &wsHTTPError{status: "403 Forbidden", why: "origin " + origin}
		}
	}
	return wsAcceptKey(key), nil
}

// wsAcceptKey is the Sec-WebSocket-Accept value for a client's key.
func wsAcceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// headerHasToken reports whether a comma-separated header has token, in
// any case, in any of its lines.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func wsRefuse(conn net.Conn, e *wsHTTPError) {
	_, _ = conn.Write([]byte("HTTP/1.1 " + e.status + "\r\n" + e.extra + "Connection: close\r\nContent-Length: 0\r\n\r\n"))
}

// runWS starts the writer and reads frames until the connection ends. pre
// holds bytes read with the upgrade request.
func (s *streams) runWS(c *streamConn, conn net.Conn, pre []byte) {
	defer s.wg.Done()
	c.mu.Lock()
	if c.state == connClosed {
		c.mu.Unlock()
		return
	}
	c.wake = make(chan struct{}, 1)
	c.state = connOpen
	pending := len(c.queue) > 0
	c.flushPending = pending
	c.mu.Unlock()
	c.lastRead.Store(s.now.Load())
	if pending {
		c.wake <- struct{}{}
	}
	s.wg.Add(1)
	go s.writeTLS(c, conn)
	defer c.close()

	o := c.ws.opts
	r := &c.ws.reader
	r.requireMask, r.maxFrame, r.maxMessage = true, o.maxFrame, o.maxMessage
	// The buffer holds at least one whole frame: header (at most 14
	// bytes) and payload.
	limit := o.maxFrame + 14
	buf := make([]byte, max(wsReadBuf, len(pre)))
	end := copy(buf, pre)
	start := 0
	grow := false
	for {
		if start < end {
			used, code, err := c.wsConsume(buf[start:end])
			start += used
			c.partial(start < end || c.ws.reader.inMsg)
			if start == end {
				start, end = 0, 0
				if len(buf) > wsBusyBuf {
					// A large message came and went: an idle
					// connection keeps only a small buffer.
					buf = make([]byte, wsReadBuf)
				}
			}
			if err != nil {
				if code != 0 {
					wsWriteClose(conn, code, err.Error())
					wsLinger(conn)
				}
				return
			}
		}
		if start > 0 {
			// The start of a frame: move it to the front, so that the
			// next read has the rest of the buffer, not a sliver.
			end = copy(buf, buf[start:end])
			start = 0
		}
		if end == len(buf) && len(buf) >= limit {
			// Cannot happen: wsDecodeHeader refuses frames larger than
			// the buffer. Never spin on it.
			s.t.stats.connsOversize.Add(1)
			return
		}
		if end == len(buf) || grow && len(buf) < min(wsBusyBuf, limit) {
			nb := make([]byte, min(2*len(buf), max(limit, len(buf))))
			copy(nb, buf[:end])
			buf = nb
		}
		n, err := conn.Read(buf[end:])
		// A read that filled the buffer: the peer sends faster than one
		// small buffer per read takes (kept up to wsBusyBuf).
		grow = n == len(buf)-end
		if n > 0 {
			end += n
			c.lastRead.Store(s.now.Load())
		}
		if err != nil && n == 0 {
			return
		}
	}
}

// errWSClosed ends the reader after the peer's close frame was answered.
var errWSClosed = errors.New("websocket: closed by the peer")

// wsConsume handles the whole frames at the start of b: messages go to
// the handler, pings are answered, a close frame is answered and ends the
// connection. It returns the bytes used; with an error the connection
// must close, after a close frame with code if code is not 0.
func (c *streamConn) wsConsume(b []byte) (used int, code uint16, err error) {
	t := c.s.t
	r := &c.ws.reader
	for {
		ev, n, err := r.next(b[used:])
		used += n
		if err == errWSNeedMore {
			return used, 0, nil
		}
		if err != nil {
			var fe *wsFrameError
			if errors.As(err, &fe) {
				if fe.code == wsCloseTooBig {
					t.stats.connsOversize.Add(1)
				}
				t.stats.errors.Add(1)
				return used, fe.code, err
			}
			return used, wsCloseProtocol, err
		}
		switch ev.op {
		case wsOpPing:
			c.queuePong(wsOpPong, ev.payload)
		case wsOpPong:
		case wsOpClose:
			code, err := wsCloseCode(ev.payload)
			if err != nil {
				return used, wsCloseProtocol, err
			}
			if code == wsCloseNoStatus {
				code = wsCloseNormal
			}
			return used, code, errWSClosed
		default:
			if ev.op == wsOpText && !utf8.Valid(ev.payload) {
				return used, wsCloseInvalidData, errWSText // RFC 6455 §8.1
			}
			if err := c.deliverWS(ev.payload); err != nil {
				return used, wsCloseGoingAway, err
			}
			if cap(r.msg) > 4*wsReadBuf {
				r.msg = nil // a fragmented large message is not kept
			}
		}
	}
}

// deliverWS hands one WebSocket message, which is one SIP message (RFC
// 7118 §5), to the handler. A message of CRLFs only is an RFC 5626
// keep-alive: a CRLFCRLF ping is answered.
func (c *streamConn) deliverWS(m []byte) error {
	t := c.s.t
	n, pings, _ := skipKeepalives(m)
	if n == len(m) || n+1 == len(m) && m[n] == '\r' {
		for ; pings > 0; pings-- {
			t.stats.keepalivePings.Add(1)
			c.pong()
		}
		return nil
	}
	if t.cfg.Admit != nil && !t.cfg.Admit(c.remote.Addr()) {
		t.stats.admitClosed.Add(1)
		return errRefused
	}
	p := &c.pkt
	p.Data = m[:len(m):len(m)]
	p.Src = c.remote
	p.Listener = c.l
	p.Proto = c.proto
	p.Conn = c.id
	t.stats.in(int(c.id), c.proto, len(m))
	t.handler.HandleMessage(p)
	p.Data = nil
	return nil
}

// wsWriteClose writes a close frame straight to conn (bounded in time),
// ahead of anything still queued: after a close frame nothing else may
// be sent (RFC 6455 §5.5.1).
func wsWriteClose(conn net.Conn, code uint16, reason string) {
	var b [128]byte
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write(wsAppendClose(b[:0], code, reason))
}

// wsLinger half-closes conn after a close frame and reads what the peer
// still sends, for up to a second and 64 KiB: closing a socket with
// unread bytes sends a reset, which may destroy the close frame before
// the peer reads it.
func wsLinger(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	var b [1024]byte
	for n := 0; n < 64<<10; {
		k, err := conn.Read(b[:])
		if err != nil {
			return
		}
		n += k
	}
}

// sendFrame queues a control frame (ping, pong) on a WebSocket connection.
func (c *streamConn) sendFrame(op byte, payload []byte) {
	_ = c.sendOp(op, payload, c.remote, Tag{})
}

// wsOpFor is the opcode a SIP message is sent with: text, as browsers
// expect, unless it is not UTF-8 (a binary body), which a browser would
// refuse in a text frame.
func wsOpFor(data []byte) byte {
	if utf8.Valid(data) {
		return wsOpText
	}
	return wsOpBinary
}

// getWSWbuf is getWbuf with data wrapped in one frame.
func getWSWbuf(op byte, data []byte, dst netip.AddrPort, tag Tag) *wbuf {
	w := wbufPool.Get().(*wbuf)
	w.b = wsAppendHeader(w.b[:0], op, len(data))
	w.b = append(w.b, data...)
	w.dst, w.tag = dst, tag
	return w
}

// wsKeepalive pings a WebSocket connection that has been quiet for half
// the idle timeout, at most once per quarter of it: browsers answer pings
// by themselves, so a registered phone that sends nothing is not closed.
func (c *streamConn) wsKeepalive(now int64, idle int64) {
	if now-c.lastRead.Load() < idle/2 || now-c.ws.pinged.Load() < idle/4 {
		return
	}
	c.ws.pinged.Store(now)
	c.sendFrame(wsOpPing, nil)
}
