package dispatcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// optionsPinger is the module's own OPTIONS sender, for a module built
// without a transaction core (the server hands its core to the modules,
// and probes go through it: corePinger). Each probe opens a socket of its
// own, bound to the destination's socket address (or the kernel's choice)
// with a port the kernel picks, sends the request, waits for the final
// response and closes the socket. It runs on the probe goroutines, never
// on the receive path.
//
// The probes cannot leave from the listener's own port: a second UDP
// socket on the same address and port fails to bind (EADDRINUSE), and with
// SO_REUSEPORT the kernel would share the port's incoming datagrams
// between the two sockets by a hash of their source, so that some answers
// to probes would reach the listener (which drops them: they match no
// transaction) and some SIP traffic the prober. So a probe comes from the
// listener's address, not its port; its Via names that port with rport,
// and a destination answers there (RFC 3261 §18.2.2, RFC 3581). A
// destination that only accepts requests from port 5060 must accept its
// prober's address on any port.
//
// UDP and TCP are probed; TLS destinations are not (ErrUnsupported: the
// server's TLS settings are not the module's to use), and keep the state
// routes and operators give them.
type optionsPinger struct{}

// Timer E of RFC 3261 §17.1.2.2: a UDP probe is sent again after 500 ms,
// then at doubling intervals up to 4 s, until probe_timeout.
const (
	probeT1 = 500 * time.Millisecond
	probeT2 = 4 * time.Second
)

// maxProbeResponse bounds what a probe reads.
const maxProbeResponse = 65535

var errNoAnswer = errors.New("no answer")

func (optionsPinger) Ping(ctx context.Context, p Ping) (int, error) {
	switch p.Proto {
	case transport.UDP:
		return pingUDP(ctx, p)
	case transport.TCP:
		return pingTCP(ctx, p)
	}
	return 0, ErrUnsupported
}

func pingUDP(ctx context.Context, p Ping) (int, error) {
	var laddr *net.UDPAddr
	if p.Source.IsValid() {
		laddr = &net.UDPAddr{IP: p.Source.AsSlice()}
	}
	// A connected socket: it receives only from the destination, and an
	// ICMP port unreachable ends the probe at once (ECONNREFUSED).
	conn, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(p.Dst))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	req, branch := optionsRequest(p, "UDP", conn.LocalAddr().(*net.UDPAddr).AddrPort())
	buf := make([]byte, maxProbeResponse)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(probeT2)
	}
	rto := probeT1
	for ctx.Err() == nil {
		if _, err := conn.Write(req); err != nil {
			return 0, err
		}
		next := time.Now().Add(rto)
		if next.After(deadline) {
			next = deadline
		}
		for ctx.Err() == nil {
			conn.SetReadDeadline(next)
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // send again
				}
				return 0, err
			}
			if code := finalCode(buf[:n], branch); code != 0 {
				return code, nil
			}
		}
		rto = min(2*rto, probeT2)
	}
	return 0, errNoAnswer
}

func pingTCP(ctx context.Context, p Ping) (int, error) {
	var dialer net.Dialer
	if p.Source.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: p.Source.AsSlice()}
	}
	conn, err := dialer.DialContext(ctx, "tcp", p.Dst.String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req, branch := optionsRequest(p, "TCP", conn.LocalAddr().(*net.TCPAddr).AddrPort())
	if _, err := conn.Write(req); err != nil {
		return 0, err
	}
	buf := make([]byte, 0, 4096)
	for {
		skip, n, err := parser.FrameLength(buf, maxProbeResponse)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			msg := buf[skip : skip+n]
			if code := finalCode(msg, branch); code != 0 {
				return code, nil
			}
			buf = append(buf[:0], buf[skip+n:]...)
			continue
		}
		if len(buf) == cap(buf) {
			if cap(buf) >= maxProbeResponse {
				return 0, errors.New("response too large")
			}
			buf = slices.Grow(buf, cap(buf))
		}
		k, err := conn.Read(buf[len(buf):cap(buf)])
		if err != nil {
			if ctx.Err() != nil {
				return 0, errNoAnswer
			}
			return 0, err
		}
		buf = buf[:len(buf)+k]
	}
}

// finalCode returns the status code of msg when it is a final response to
// the probe with branch, else 0 (a provisional response, something else).
func finalCode(msg []byte, branch string) int {
	var m parser.Message
	if m.Parse(msg) != nil || m.IsRequest() {
		return 0
	}
	if !bytes.Equal(m.TopVia().Branch, []byte(branch)) || m.CSeq().Method != parser.MethodOptions {
		return 0
	}
	if c := m.StatusCode(); c >= 200 {
		return c
	}
	return 0
}

// optionsRequest builds the probe: OPTIONS to the destination, a Via with
// rport naming the socket it leaves from, a fresh branch, tag and Call-ID.
func optionsRequest(p Ping, proto string, local netip.AddrPort) ([]byte, string) {
	id := randomHex(12)
	branch := "z9hG4bK-ds" + id
	via := "Via: SIP/2.0/" + proto + " " + local.String() + ";branch=" + branch + ";rport\r\n"
	return optionsMessage(p, via, id, local.Addr().String()), branch
}

// optionsMessage is the probe with the Via given ("" for none: the
// transaction core adds its own), id making its tag and Call-ID.
func optionsMessage(p Ping, via, id, host string) []byte {
	var b strings.Builder
	b.WriteString("OPTIONS " + p.URI + " SIP/2.0\r\n")
	b.WriteString(via)
	b.WriteString("Max-Forwards: 70\r\n")
	b.WriteString("From: <" + p.From + ">;tag=" + id[:8] + "\r\n")
	b.WriteString("To: <" + p.URI + ">\r\n")
	b.WriteString("Call-ID: ds-" + id + "@" + host + "\r\n")
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	b.WriteString("Accept: application/sdp\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkFromURI validates probe_from: a sip: or sips: URI that can go
// between angle brackets in a header.
func checkFromURI(s string) error {
	low := strings.ToLower(s)
	if !strings.HasPrefix(low, "sip:") && !strings.HasPrefix(low, "sips:") {
		return errors.New("want a sip: or sips: URI")
	}
	if strings.ContainsAny(s, "<>\r\n\" ") || len(s) > 255 {
		return errors.New("not a URI that fits a From header")
	}
	var u parser.URI
	if err := u.Parse([]byte(s)); err != nil || len(u.Host) == 0 {
		return errors.New("not a valid SIP URI")
	}
	return nil
}
