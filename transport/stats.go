package transport

import "sync/atomic"

// Counters are striped so that UDP readers on different cores do not share
// a cache line: each reader adds to its own stripe, Stats sums them.
const statStripes = 8

type counterStripe struct {
	packetsIn  [numProto]atomic.Uint64
	bytesIn    [numProto]atomic.Uint64
	packetsOut [numProto]atomic.Uint64
	bytesOut   [numProto]atomic.Uint64
	admitDrops atomic.Uint64 // datagrams Config.Admit refused
	_          [64]byte
}

type counters struct {
	stripes [statStripes]counterStripe

	errors         atomic.Uint64 // receive/send syscall failures, framing errors
	dropsIn        atomic.Uint64 // oversize or truncated datagrams dropped
	sendDrops      atomic.Uint64 // sends refused (full queue, EAGAIN, no route) or queued and lost with their connection
	connsOpen      atomic.Int64  // stream connections open now
	connsAccepted  atomic.Uint64 // inbound stream connections accepted
	connsDialed    atomic.Uint64 // outbound stream connections established
	connsRejected  atomic.Uint64 // inbound connections refused by limits
	connsShareFull atomic.Uint64 // of which: inbound connections had used their share
	connsIdle      atomic.Uint64 // connections closed by the idle timeout
	connsSlow      atomic.Uint64 // connections closed by the message timeout
	connsOversize  atomic.Uint64 // connections closed for an oversize/bad message
	connsOverflow  atomic.Uint64 // connections closed because the write queue overflowed
	admitRefused   atomic.Uint64 // inbound connections Config.Admit refused
	admitClosed    atomic.Uint64 // open inbound connections closed when Admit began refusing their source
	tlsHandshakeKO atomic.Uint64 // failed TLS handshakes (both directions)
	wsUpgradeKO    atomic.Uint64 // WebSocket upgrade requests refused or cut short
	keepalivePings atomic.Uint64 // CRLFCRLF pings answered
}

// ProtoStats are the traffic counters of one protocol.
type ProtoStats struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
}

// Stats is a snapshot of the transport counters. The metrics package reads
// it periodically; every field only grows except ConnsOpen.
type Stats struct {
	Proto [numProto]ProtoStats // indexed by Proto

	Errors        uint64 // socket errors and stream framing errors
	DropsIn       uint64 // received datagrams dropped (oversize, truncated)
	SendDrops     uint64 // sends refused (queue full, EAGAIN, no connection), or accepted and lost when their connection failed or closed first
	ConnsOpen     int64  // stream connections open now
	ConnsAccepted uint64
	ConnsDialed   uint64
	ConnsRejected uint64 // inbound connections refused by MaxConns, the inbound share or MaxConnsPerIP
	// ConnsShareFull counts, among ConnsRejected, the connections refused
	// because inbound ones held every slot not kept for outbound dials
	// (MaxConns − OutboundReserve).
	ConnsShareFull uint64
	ConnsIdle      uint64 // closed by IdleTimeout
	ConnsSlow      uint64 // closed by MessageTimeout: a message begun and not finished
	ConnsOversize  uint64 // closed for an oversize or unframeable message
	ConnsOverflow  uint64 // closed because the write queue bound was reached
	TLSHandshakeKO uint64
	// WSUpgradeKO counts WS/WSS connections closed before the WebSocket
	// upgrade completed: a refused request (path, Origin, no sip
	// subprotocol, not an upgrade) or one that did not come in time.
	WSUpgradeKO    uint64
	KeepalivePings uint64 // RFC 5626 CRLFCRLF pings answered with CRLF
	// AdmitDrops counts datagrams dropped before parsing because
	// Config.Admit refused their source (a banned address); they are not
	// in PacketsIn.
	AdmitDrops uint64
	// AdmitRefused counts inbound TCP/TLS connections closed at accept
	// because Config.Admit refused their source; they are not in
	// ConnsAccepted or ConnsRejected.
	AdmitRefused uint64
	// AdmitClosed counts inbound connections that were open when
	// Config.Admit began refusing their source, closed at their next
	// message (which is not handled).
	AdmitClosed uint64
}

func (c *counters) in(stripe int, p Proto, n int) {
	s := &c.stripes[stripe&(statStripes-1)]
	s.packetsIn[p].Add(1)
	s.bytesIn[p].Add(uint64(n))
}

func (c *counters) out(stripe int, p Proto, n int) {
	s := &c.stripes[stripe&(statStripes-1)]
	s.packetsOut[p].Add(1)
	s.bytesOut[p].Add(uint64(n))
}

func (c *counters) snapshot() Stats {
	var st Stats
	for i := range c.stripes {
		s := &c.stripes[i]
		for p := range st.Proto {
			st.Proto[p].PacketsIn += s.packetsIn[p].Load()
			st.Proto[p].BytesIn += s.bytesIn[p].Load()
			st.Proto[p].PacketsOut += s.packetsOut[p].Load()
			st.Proto[p].BytesOut += s.bytesOut[p].Load()
		}
		st.AdmitDrops += s.admitDrops.Load()
	}
	st.Errors = c.errors.Load()
	st.DropsIn = c.dropsIn.Load()
	st.SendDrops = c.sendDrops.Load()
	st.ConnsOpen = c.connsOpen.Load()
	st.ConnsAccepted = c.connsAccepted.Load()
	st.ConnsDialed = c.connsDialed.Load()
	st.ConnsRejected = c.connsRejected.Load()
	st.ConnsShareFull = c.connsShareFull.Load()
	st.ConnsIdle = c.connsIdle.Load()
	st.ConnsSlow = c.connsSlow.Load()
	st.ConnsOversize = c.connsOversize.Load()
	st.ConnsOverflow = c.connsOverflow.Load()
	st.TLSHandshakeKO = c.tlsHandshakeKO.Load()
	st.WSUpgradeKO = c.wsUpgradeKO.Load()
	st.KeepalivePings = c.keepalivePings.Load()
	st.AdmitRefused = c.admitRefused.Load()
	st.AdmitClosed = c.admitClosed.Load()
	return st
}

// rejected counts an inbound connection refused by admit's err.
func (c *counters) rejected(err error) {
	c.connsRejected.Add(1)
	if err == errInboundShare {
		c.connsShareFull.Add(1)
	}
}
