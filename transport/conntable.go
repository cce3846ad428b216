package transport

import (
	"errors"
	"net/netip"
	"sync"
)

// connKey finds a stream connection by protocol and remote address: the
// address the connection was accepted from or dialed to, or an alias.
type connKey struct {
	proto Proto
	addr  netip.AddrPort
}

// connTable holds every stream connection, TCP and TLS, in both directions.
// Lookups take a read lock; opening and closing connections take the write
// lock, which is not per message.
type connTable struct {
	mu      sync.RWMutex
	byID    map[ConnID]*streamConn
	byAddr  map[connKey]*streamConn
	perIP   map[netip.Addr]int
	inbound int // inbound connections in byID
	nextID  ConnID
}

// connLimits bound the table: every connection, the inbound ones (all
// connections less the slots kept for outbound dials), and the inbound
// ones from one IP address.
type connLimits struct {
	total, inbound, perIP int
}

func (c *Config) connLimits() connLimits {
	return connLimits{total: c.MaxConns, inbound: c.MaxConns - c.OutboundReserve, perIP: c.MaxConnsPerIP}
}

// Reasons admit refuses a connection.
var (
	errInboundShare = errors.New("transport: inbound connections use their whole share")
	errPerIP        = errors.New("transport: per-IP connection limit reached")
)

func (ct *connTable) init() {
	ct.byID = make(map[ConnID]*streamConn)
	ct.byAddr = make(map[connKey]*streamConn)
	ct.perIP = make(map[netip.Addr]int)
}

// admit registers c when the limits allow it and gives it an id; else it
// returns ErrConnLimit, errInboundShare or errPerIP. Inbound connections
// count against their share and the per-IP limit, so that peers dialing
// in cannot take the slots outbound dials need. An outbound connection
// with the same key as an existing one returns that one instead (two
// senders raced to open it).
func (ct *connTable) admit(c *streamConn, lim connLimits) (existing *streamConn, err error) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	key := connKey{c.proto, c.remote}
	if !c.inbound {
		if e := ct.byAddr[key]; e != nil {
			return e, nil
		}
	}
	if len(ct.byID) >= lim.total {
		return nil, ErrConnLimit
	}
	ip := perIPKey(c.remote.Addr())
	if c.inbound {
		if ct.inbound >= lim.inbound {
			return nil, errInboundShare
		}
		if ct.perIP[ip] >= lim.perIP {
			return nil, errPerIP
		}
	}
	ct.nextID++
	c.id = ct.nextID
	ct.byID[c.id] = c
	// A new inbound connection from the same address replaces an older
	// one for sending: the peer reconnected.
	ct.byAddr[key] = c
	c.keys = append(c.keys, key)
	if c.inbound {
		ct.perIP[ip]++
		ct.inbound++
	}
	return nil, nil
}

// perIPKey is what MaxConnsPerIP counts: the address, or for IPv6 its
// /64, which one host (or customer) usually has whole: counted by /128,
// one host could take every inbound slot.
func perIPKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (ct *connTable) remove(c *streamConn) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.byID[c.id] != c {
		return
	}
	delete(ct.byID, c.id)
	for _, k := range c.keys {
		if ct.byAddr[k] == c {
			delete(ct.byAddr, k)
		}
	}
	if c.inbound {
		ct.inbound--
		ip := perIPKey(c.remote.Addr())
		if n := ct.perIP[ip] - 1; n > 0 {
			ct.perIP[ip] = n
		} else {
			delete(ct.perIP, ip)
		}
	}
}

func (ct *connTable) alias(id ConnID, key connKey) bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	c := ct.byID[id]
	if c == nil || c.proto != key.proto {
		return false
	}
	if ct.byAddr[key] == c {
		return true
	}
	ct.byAddr[key] = c
	c.keys = append(c.keys, key)
	return true
}

func (ct *connTable) get(id ConnID) *streamConn {
	ct.mu.RLock()
	c := ct.byID[id]
	ct.mu.RUnlock()
	return c
}

func (ct *connTable) lookup(key connKey) *streamConn {
	ct.mu.RLock()
	c := ct.byAddr[key]
	ct.mu.RUnlock()
	return c
}

func (ct *connTable) count() int {
	ct.mu.RLock()
	n := len(ct.byID)
	ct.mu.RUnlock()
	return n
}

// snapshot appends every connection to dst (for the idle sweep and Close).
func (ct *connTable) snapshot(dst []*streamConn) []*streamConn {
	ct.mu.RLock()
	for _, c := range ct.byID {
		dst = append(dst, c)
	}
	ct.mu.RUnlock()
	return dst
}
