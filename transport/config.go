package transport

import (
	"errors"
	"net/netip"
	"runtime"
	"strconv"
	"time"
)

// ListenerConfig is one socket to serve.
type ListenerConfig struct {
	// Proto is UDP, TCP or TLS.
	Proto Proto
	// Addr is "ip:port", e.g. "0.0.0.0:5060" or "[::1]:5061". Port 0 binds
	// an ephemeral port (tests); Listener.Local shows the real one.
	Addr string
	// AdvertisedHost and AdvertisedPort, when set, are what goes into Via and
	// Record-Route instead of the local address (NAT, anycast).
	AdvertisedHost string
	AdvertisedPort uint16

	// WebSocket listeners (WS, WSS) only.
	//
	// WSPath is the request path the HTTP upgrade must ask for ("/sip");
	// empty accepts any path.
	WSPath string
	// WSOrigins lists the Origin header values accepted in the upgrade
	// ("https://phone.example.com"), compared without regard to case. A
	// browser always sends Origin; an upgrade with another one is
	// refused with 403. Empty accepts any origin, and an upgrade without
	// Origin (a client that is not a browser) is always accepted.
	WSOrigins []string
	// WSMaxFrameSize bounds one frame's payload; a larger frame closes the
	// connection (status 1009) before its payload is read. Default
	// MaxMessageSize.
	WSMaxFrameSize int
	// WSMaxMessageSize bounds one WebSocket message (one SIP message, RFC
	// 7118 §5), fragments put together. At most, and by default,
	// MaxMessageSize.
	WSMaxMessageSize int
}

// Config is the transport configuration. Zero values take the defaults
// listed on each field.
type Config struct {
	Listeners []ListenerConfig

	// MaxMessageSize bounds one SIP message on any transport; larger UDP
	// datagrams are dropped and counted, a larger stream message closes the
	// connection. Default 65535.
	MaxMessageSize int

	// UDPReaders is the number of SO_REUSEPORT sockets and reader goroutines
	// per UDP listener. Default GOMAXPROCS.
	UDPReaders int
	// UDPBatch is the number of datagrams one recvmmsg call may return.
	// Default 16.
	UDPBatch int
	// SocketBuffer sets SO_RCVBUF and SO_SNDBUF on UDP sockets when > 0
	// (the kernel caps it at net.core.rmem_max / wmem_max).
	SocketBuffer int

	// StreamLoops is the number of gnet event loops for TCP. Default GOMAXPROCS.
	StreamLoops int
	// StreamReusePort binds the TCP, TLS, WS and WSS listeners with
	// SO_REUSEPORT, so that several processes on one host serve one address
	// and the kernel spreads the connections over them by a hash of the
	// addresses and ports: several anycast nodes on one machine (the
	// server sets it when anycast.relay is configured). Off, a second
	// process on the same address fails to start, which is what a single
	// server wants. UDP listeners always use SO_REUSEPORT (UDPReaders).
	StreamReusePort bool
	// MaxConns bounds open stream connections (TCP, TLS, WS, WSS; both directions).
	// Default 65536.
	MaxConns int
	// OutboundReserve is the number of MaxConns slots inbound connections
	// may not take: kept for the connections the proxy dials (to the next
	// hop, a trunk), so that peers connecting in cannot make every relay
	// over TCP/TLS fail. Inbound connections are accepted while fewer
	// than MaxConns − OutboundReserve are open; outbound ones use any
	// free slot. Default 0 (no reserve); at most MaxConns − 1.
	OutboundReserve int
	// MaxConnsPerIP bounds inbound stream connections from one source IP
	// (an IPv6 source counted by its /64). Default 256.
	MaxConnsPerIP int
	// IdleTimeout closes a stream connection that received nothing for this
	// long; it also releases a peer that sent half a message and stalled.
	// Default 120s (RFC 5626 keep-alives are sent every 30s or less).
	IdleTimeout time.Duration
	// MessageTimeout closes a stream connection that began a message and
	// has not sent the rest of it within this long, however often more
	// of it trickles in (Kamailio tcp_msg_read_timeout): a peer dripping a
	// byte now and then would otherwise hold MaxMessageSize of buffer for
	// ever. Default 20s.
	MessageTimeout time.Duration
	// DialTimeout bounds an outbound TCP connect plus TLS handshake, and an
	// inbound TLS handshake. Default 5s.
	DialTimeout time.Duration
	// WriteQueueBytes bounds the memory held by what waits to be written
	// on one stream connection (the capacity of its buffers, 2 KiB at
	// least each); beyond it the connection is closed (a peer that does
	// not read must not grow memory). For a connection still being opened,
	// sends beyond it are refused with ErrQueueFull. Default 1 MiB.
	WriteQueueBytes int

	// TLS: certificate and key files (PEM). More pairs may be listed in
	// TLSCertificates for SNI; the first pair is the default.
	TLSCertFile string
	TLSKeyFile  string
	// TLSCertificates are further certificate/key pairs chosen by SNI.
	TLSCertificates []CertKeyFiles
	// TLSClientCAFile, when set, makes TLS listeners request and verify
	// client certificates against these CAs (mutual TLS for trunks).
	TLSClientCAFile string
	// TLSRequireClientCert rejects TLS clients that present no certificate.
	// Only meaningful with TLSClientCAFile.
	TLSRequireClientCert bool
	// TLSRootCAFile verifies servers on outbound TLS connections; when empty
	// the system roots are used.
	TLSRootCAFile string
	// TLSInsecureSkipVerify disables verification of servers on outbound TLS
	// connections (peers addressed by IP without matching certificates).
	TLSInsecureSkipVerify bool
	// TLSMinVersion is the lowest accepted version. Default and minimum TLS 1.2.
	TLSMinVersion uint16

	// Admit, when set, is asked about the source address of every received
	// datagram before it is parsed, and of every inbound TCP/TLS connection
	// at accept (before a TLS handshake): false drops the datagram
	// (Stats.AdmitDrops) or closes the connection with a reset
	// (Stats.AdmitRefused). Bans (modules/pike) plug in here, so a banned
	// source costs one call per datagram and nothing more. It runs on every
	// UDP reader for every datagram: it must be cheap, allocation-free and
	// safe for concurrent use. Nil admits everyone.
	Admit func(netip.Addr) bool
}

// CertKeyFiles is one certificate chain and its key, both PEM files.
type CertKeyFiles struct {
	CertFile string
	KeyFile  string
}

const (
	defaultMaxMessageSize = 65535
	defaultUDPBatch       = 16
	defaultMaxConns       = 65536
	defaultMaxConnsPerIP  = 256
	defaultIdleTimeout    = 120 * time.Second
	defaultMessageTimeout = 20 * time.Second
	defaultDialTimeout    = 5 * time.Second
	defaultWriteQueue     = 1 << 20
	maxUDPDatagram        = 65535
)

func (c *Config) withDefaults() Config {
	d := *c
	if d.MaxMessageSize <= 0 {
		d.MaxMessageSize = defaultMaxMessageSize
	}
	if d.UDPReaders <= 0 {
		d.UDPReaders = runtime.GOMAXPROCS(0)
	}
	if d.UDPBatch <= 0 {
		d.UDPBatch = defaultUDPBatch
	}
	if d.StreamLoops <= 0 {
		d.StreamLoops = runtime.GOMAXPROCS(0)
	}
	if d.MaxConns <= 0 {
		d.MaxConns = defaultMaxConns
	}
	if d.MaxConnsPerIP <= 0 {
		d.MaxConnsPerIP = defaultMaxConnsPerIP
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = defaultIdleTimeout
	}
	if d.MessageTimeout <= 0 {
		d.MessageTimeout = defaultMessageTimeout
	}
	if d.DialTimeout <= 0 {
		d.DialTimeout = defaultDialTimeout
	}
	if d.WriteQueueBytes <= 0 {
		d.WriteQueueBytes = defaultWriteQueue
	}
	return d
}

// ConfigError names the offending key.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return "transport: " + e.Key + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func (c *Config) validate() error {
	if len(c.Listeners) == 0 {
		return &ConfigError{"listeners", errors.New("no listener configured")}
	}
	hasTLS := false
	for i, l := range c.Listeners {
		key := "listeners[" + strconv.Itoa(i) + "]"
		switch l.Proto {
		case UDP, TCP:
		case TLS, WSS:
			hasTLS = true
		case WS:
		default:
			return &ConfigError{key + ".proto", errors.New("unsupported protocol " + l.Proto.String())}
		}
		ap, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			return &ConfigError{key + ".addr", err}
		}
		if err := c.validateWS(key, &l); err != nil {
			return err
		}
		// SO_REUSEPORT would let two UDP listeners on one address bind
		// and split the traffic between them silently.
		for j, o := range c.Listeners[:i] {
			if o.Proto.Stream() == l.Proto.Stream() && ap.Port() != 0 {
				if oap, err := netip.ParseAddrPort(o.Addr); err == nil && oap == ap {
					return &ConfigError{key + ".addr", errors.New("same address as listeners[" + strconv.Itoa(j) + "]")}
				}
			}
		}
	}
	if hasTLS && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
		return &ConfigError{"tls_cert_file", errors.New("a TLS or WSS listener needs a certificate and key file")}
	}
	if c.OutboundReserve < 0 || c.OutboundReserve >= c.withDefaults().MaxConns {
		return &ConfigError{"outbound_reserve", errors.New("must be between 0 and max_conns - 1")}
	}
	if c.MaxMessageSize > 1<<24 {
		return &ConfigError{"max_message_size", errors.New("larger than 16 MiB")}
	}
	if c.TLSMinVersion != 0 && c.TLSMinVersion < 0x0303 {
		return &ConfigError{"tls_min_version", errors.New("below TLS 1.2")}
	}
	return nil
}
