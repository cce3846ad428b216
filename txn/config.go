package txn

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"switchboard/shards"
	"switchboard/sipdns"
	"switchboard/transport"
)

// Sender puts a message on the wire. *transport.Transport implements it:
// Send never blocks (UDP sendto with MSG_DONTWAIT, a queue for streams), so
// the core calls it with a shard locked.
type Sender interface {
	Send(l *transport.Listener, dst netip.AddrPort, data []byte) error
}

// TaggedSender is a Sender whose stream sends can fail after Send returned
// nil: the message waits on a connection being opened, and the connect or
// the TLS handshake then fails. *transport.Transport implements it. New
// makes the core the sender's SendErrorHandler and tags every branch
// request sent over a stream, so that such a failure ends the branch with
// 503 at once (RFC 3261 §8.1.3.1, §16.7) instead of on timer B, F or C.
// One core per sender: the last New wins.
type TaggedSender interface {
	SendTagged(l *transport.Listener, dst netip.AddrPort, data []byte, tag transport.Tag) error
	SetSendErrorHandler(h transport.SendErrorHandler)
}

// ConnSender is a Sender that also sends on a given stream connection.
// *transport.Transport implements it. With it, the responses to a request
// that came over TCP or TLS go back on that very connection (RFC 3261
// §18.2.2), whichever connection the table holds for the source address
// (a peer may reach two listeners from one port), and whatever goroutine
// sends them (a suspended request answered later). Without it, or once
// that connection has closed, they go to the source address: the
// transport uses the connection it has from there or opens one.
type ConnSender interface {
	SendConn(id transport.ConnID, data []byte) error
}

// ListenerSet picks the local socket for a destination and lists every
// listener (to recognise our own addresses in Route and Via).
// *transport.Transport implements it.
type ListenerSet interface {
	Listener(proto transport.Proto, dst netip.Addr) *transport.Listener
	Listeners() []*transport.Listener
}

// Config configures a Core. Sender, Listeners and Router are required;
// zero durations and sizes take the defaults named on each field.
type Config struct {
	Sender    Sender
	Listeners ListenerSet
	Router    Router

	// Clock drives the transaction timers. Nil: New creates a real clock
	// (1 ms tick) and Close stops it. Tests pass shards.NewManualClock.
	Clock *shards.Clock

	// RFC 3261 timer values: T1 (RTT estimate, default 500 ms), T2 (maximum
	// retransmission interval for non-INVITE requests and INVITE responses,
	// default 4 s), T4 (maximum duration a message stays in the network,
	// default 5 s). TimerC is the proxy INVITE timeout (§16.6 step 11),
	// default 3 min, reset by provisional responses.
	T1, T2, T4, TimerC time.Duration

	// FR is how long a branch waits for a response before it counts as
	// 408 (or, with RFC 3263 targets left, moves to the next one): for an
	// INVITE until the first provisional, for other requests until the
	// final response. Kamailio's fr_timer and OpenSIPS's fr_timeout; the
	// default is 64·T1, RFC 3261's timers B and F. A route may change it
	// per request with Request.SetTimeouts.
	FR time.Duration

	// Wait is how long a finished transaction stays to absorb
	// retransmissions: a non-INVITE server transaction after its final
	// response (timer J), an INVITE one after a 2xx (RFC 6026 timer L), a
	// client INVITE branch after its final response (timers D and M).
	// RFC 3261 and 6026 give 64·T1 (32 s) for all four; the default is
	// 5 s, Kamailio's and OpenSIPS's wait timer: a retransmission later
	// than that is forwarded as a new request and a late 2xx statelessly,
	// and the table holds six times fewer finished transactions. Timer H
	// (no ACK for a non-2xx final) always runs 64·T1; I and K are T4.
	Wait time.Duration

	// Shards is the number of shards of the transaction table (a power of
	// two; 0: 8 × GOMAXPROCS).
	Shards int
	// MaxTransactions bounds live transactions (0: no bound); MaxBytes
	// bounds the memory accounted to them (0: no bound). Past either, new
	// requests get 503 with Retry-After, statelessly.
	MaxTransactions int
	MaxBytes        int64
	// RetryAfter is the Retry-After value in seconds of those 503s
	// (default 5).
	RetryAfter int

	// AllowOutbound lists the networks the core may send to. A destination
	// outside every prefix is not sent to: the branch fails as on a
	// transport error (503 for the failure handling). Empty allows every
	// destination. Core.SetAllowOutbound replaces it while running.
	AllowOutbound []netip.Prefix

	// Resolver resolves hostnames in Route and Request-URI off the receive
	// path (RFC 3263). Nil: a resolver on the system DNS configuration.
	Resolver *sipdns.Resolver

	// ForeignResponse, when set, gets every response whose top Via branch
	// this core did not make (before it is forwarded statelessly): true
	// takes it. Several nodes behind one anycast address hand each other
	// the responses of the requests they sent (see anycast/). It runs on
	// the receive path: no allocation, no blocking. It gets the packet's
	// fields, not the *Packet, which would then escape to the heap for
	// every caller of HandleMessage.
	ForeignResponse func(branch, data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto) bool
	// RouteSecret keys the signature of our Record-Route values: an
	// in-dialog request is loose-routed only on a Route we recorded for its
	// dialog (routesig.go). Keep it on disk so that calls survive a
	// restart, and the same on every node that shares calls. Nil: a random
	// key for this process only.
	RouteSecret []byte

	// Supported lists the option tags accepted in Proxy-Require (others
	// get 420).
	Supported []string

	// Logger receives error-path log lines (never one per message in the
	// normal flow). Nil: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultT1         = 500 * time.Millisecond
	DefaultT2         = 4 * time.Second
	DefaultT4         = 5 * time.Second
	DefaultTimerC     = 3 * time.Minute
	DefaultWait       = 5 * time.Second
	DefaultRetryAfter = 5
)

func (c *Config) check() error {
	if c.Sender == nil {
		return errors.New("txn: Config.Sender is required")
	}
	if c.Listeners == nil {
		return errors.New("txn: Config.Listeners is required")
	}
	if c.Router == nil {
		return errors.New("txn: Config.Router is required")
	}
	if c.T1 < 0 || c.T2 < 0 || c.T4 < 0 || c.TimerC < 0 || c.Wait < 0 || c.FR < 0 || c.MaxTransactions < 0 || c.MaxBytes < 0 {
		return errors.New("txn: negative timer or limit in Config")
	}
	if c.T1 == 0 {
		c.T1 = DefaultT1
	}
	if c.T2 == 0 {
		c.T2 = DefaultT2
	}
	if c.T4 == 0 {
		c.T4 = DefaultT4
	}
	if c.TimerC == 0 {
		c.TimerC = DefaultTimerC
	}
	if c.Wait == 0 {
		c.Wait = DefaultWait
	}
	if c.FR == 0 {
		c.FR = 64 * c.T1
	}
	if c.T2 < c.T1 {
		return errors.New("txn: T2 shorter than T1")
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
