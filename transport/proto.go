// Package transport moves SIP messages between sockets and the proxy core:
// UDP datagrams, TCP streams and TLS streams in, and sends out from the
// listener's own socket or over the connection table.
package transport

import (
	"net/netip"
	"strconv"
)

// Proto is a SIP transport protocol.
type Proto uint8

const (
	UDP Proto = iota
	TCP
	TLS
	WS  // WebSocket (RFC 7118)
	WSS // WebSocket over TLS
	numProto
)

var protoNames = [numProto]string{"UDP", "TCP", "TLS", "WS", "WSS"}

// String returns the name as written in a Via header ("UDP", "TCP", "TLS",
// "WS", "WSS").
func (p Proto) String() string {
	if p < numProto {
		return protoNames[p]
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Stream reports whether p is connection-oriented.
func (p Proto) Stream() bool { return p == TCP || p == TLS || p == WS || p == WSS }

// WebSocket reports whether p is WS or WSS: messages travel in WebSocket
// frames, and connections are only accepted, never dialed.
func (p Proto) WebSocket() bool { return p == WS || p == WSS }

// ParseProto parses "udp", "tcp", "tls", "ws" or "wss" in any case.
func ParseProto(s string) (Proto, bool) {
	for i, n := range protoNames {
		if len(s) == len(n) && equalFoldASCII(s, n) {
			return Proto(i), true
		}
	}
	return 0, false
}

// ConnID names one stream connection in the connection table. Zero means
// "no connection" (UDP, or a stream message whose connection is gone).
type ConnID uint64

// Listener is one local socket address that Switchboard serves. Its fields
// are set when the transport starts and never change afterwards, so the
// proxy core may read them from any goroutine.
type Listener struct {
	// Index is the position of the listener in Config.Listeners.
	Index int
	// Proto is the transport protocol served on this address.
	Proto Proto
	// Local is the bound address, with the real port when 0 was configured.
	Local netip.AddrPort
	// AdvertisedHost is the host to write into Via and Record-Route: the
	// configured advertised host, or Local's address. IPv6 addresses are
	// written in brackets ("[::1]") as they appear in SIP URIs.
	AdvertisedHost string
	// AdvertisedPort is the configured advertised port, or Local's port.
	AdvertisedPort uint16

	// udp holds the SO_REUSEPORT sockets of a UDP listener; sends use any of
	// them since they share the address and port.
	udp []*udpSocket
	// ws holds the upgrade and frame settings of a WS or WSS listener.
	ws *wsOptions
}

// Packet is one received SIP message (or datagram) handed to the Handler.
// The transport reuses a Packet per event loop or worker: the handler must
// not keep p or p.Data after HandleMessage returns; it copies what it keeps.
type Packet struct {
	// Data is the message: one whole datagram, or one framed stream message.
	Data []byte
	// Src is the real source address and port (for received/rport).
	Src netip.AddrPort
	// Listener is the local listener the message arrived on. For messages on
	// outbound stream connections it is the listener of the same protocol and
	// address family that Send would pick.
	Listener *Listener
	// Proto is the transport the message came on.
	Proto Proto
	// Conn is the stream connection, 0 for UDP. Pass it to SendConn to answer
	// on the same connection.
	Conn ConnID
}

// Handler receives every message. HandleMessage runs on the event loop (UDP
// reader, TCP event loop or TLS worker) and must not block: work that waits
// for I/O is handed elsewhere.
type Handler interface {
	HandleMessage(p *Packet)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(p *Packet)

// HandleMessage calls f(p).
func (f HandlerFunc) HandleMessage(p *Packet) { f(p) }

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
