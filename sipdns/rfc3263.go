package sipdns

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"switchboard/transport"
)

// MaxTargets bounds the targets one resolution returns: the order to try
// them in for RFC 3263 §4.3 fail-over, of which a proxy tries a few.
const MaxTargets = 8

// maxRecords bounds the records one cache entry keeps, of any type, and
// the additional-section addresses of an SRV answer; so it bounds the
// NAPTR and SRV records one resolution walks, and orderSRV's draw, which
// is quadratic. Four times MaxTargets leaves room for SRV targets that
// are "." or do not resolve, and keeps every record of real answers (a
// handful); a hostile answer of thousands of records (64 KB over TCP)
// is cut to those resolution would use first (resolver.go, keepRecords).
const maxRecords = 4 * MaxTargets

// srvKey's index is a uint8.
const _ = uint8(maxRecords - 1)

// maxLookups bounds the answers one resolution looks up, from the cache
// or the network: past it a lookup fails with ErrTooManyLookups and the
// targets found so far are the answer. A NAPTR → 3 SRV → 8 targets
// chain with no additional section needs 1 + 3 + 16; a hostile answer
// whose every SRV target fails to resolve would otherwise make two
// questions (A, AAAA) per record, and as many negative cache entries.
const maxLookups = 4 * MaxTargets

// Protos is a set of transports, one bit per transport.Proto.
type Protos uint8

// Has reports whether p is in the set.
func (s Protos) Has(p transport.Proto) bool { return s&(1<<p) != 0 }

// With returns the set with p added.
func (s Protos) With(p transport.Proto) Protos { return s | 1<<p }

// NextHop is what RFC 3263 §4 resolves: the host of a SIP URI (or its
// maddr) and what the URI says about port and transport.
type NextHop struct {
	Host     string
	Port     int             // 0: the URI has no port
	Proto    transport.Proto // the transport parameter (when ProtoSet)
	ProtoSet bool            // the URI has a transport parameter
	Secure   bool            // a sips URI: TLS only
	// Supported lists the transports the caller has listeners for; NAPTR
	// and SRV records of others are skipped. Zero: UDP, TCP and TLS.
	Supported Protos
}

// Target is one address to send to, in the order resolution gave.
type Target struct {
	Proto transport.Proto
	Addr  netip.AddrPort
}

func (h *NextHop) supports(p transport.Proto) bool {
	if h.Secure && p != transport.TLS {
		return false
	}
	return h.Supported == 0 && p <= transport.TLS || h.Supported.Has(p)
}

// srvName is the SRV owner name of host for a transport (RFC 3263 §4.1:
// TLS is "_sips._tcp").
func srvName(p transport.Proto, host string) string {
	switch p {
	case transport.TCP:
		return "_sip._tcp." + host
	case transport.TLS:
		return "_sips._tcp." + host
	}
	return "_sip._udp." + host
}

// naptrProto maps the services of a NAPTR record to a transport (RFC 3263
// §4.1: SIP+D2U, SIP+D2T, SIPS+D2T).
func naptrProto(svc string) (transport.Proto, bool) {
	switch {
	case strings.EqualFold(svc, "SIP+D2U"):
		return transport.UDP, true
	case strings.EqualFold(svc, "SIP+D2T"):
		return transport.TCP, true
	case strings.EqualFold(svc, "SIPS+D2T"):
		return transport.TLS, true
	}
	return 0, false
}

// sipNAPTR reports whether a NAPTR record leads to SIP (flag "s", a SIP
// service, a replacement) and over which transport.
func sipNAPTR(rr dnsRR) (transport.Proto, bool) {
	p, ok := naptrProto(rr.svc)
	return p, ok && strings.EqualFold(rr.flags, "s") && rr.host != ""
}

// naptrOrder orders NAPTR records by order, then preference.
func naptrOrder(a, b dnsRR) int {
	if a.prio != b.prio {
		return int(a.prio) - int(b.prio)
	}
	return int(a.wt) - int(b.wt)
}

// targets runs the RFC 3263 §4 procedure for h. With network false every
// answer must come from the cache (errNotCached otherwise). It looks up at
// most maxLookups answers: the resolution stops at the first lookup past
// them, and the targets found by then are the answer (ErrTooManyLookups
// when there are none).
func (r *Resolver) targets(ctx context.Context, h NextHop, network bool) ([]Target, error) {
	left := maxLookups
	ts, err := r.walk(ctx, &left, h, network)
	if err == ErrTooManyLookups && len(ts) > 0 {
		err = nil
	}
	return ts, err
}

// walk is targets with the lookups left: it returns ErrTooManyLookups, with
// the targets found so far, when they run out.
func (r *Resolver) walk(ctx context.Context, left *int, h NextHop, network bool) ([]Target, error) {
	host := strings.ToLower(strings.TrimSuffix(h.Host, "."))
	proto := transport.UDP
	switch {
	case h.ProtoSet:
		proto = h.Proto
	case h.Secure:
		proto = transport.TLS
	}
	port := h.Port
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if port == 0 {
			port = defaultPort(proto)
		}
		return []Target{{proto, netip.AddrPortFrom(a.Unmap(), uint16(port))}}, nil
	}
	var ts []Target
	var err error
	switch {
	case port != 0:
		// §4.2: an explicit port means A/AAAA only.
		return r.addrTargets(ctx, left, nil, host, proto, port, network)
	case h.ProtoSet:
		// §4.2: the transport is known; SRV for it, else A/AAAA.
		if ts, err = r.srvTargets(ctx, left, ts, srvName(proto, host), proto, network); err != nil || len(ts) > 0 {
			return ts, err
		}
		return r.addrTargets(ctx, left, nil, host, proto, defaultPort(proto), network)
	}

	// §4.1: NAPTR records of the transports we have, in order and
	// preference; each names an SRV record.
	e, err := r.lookup(ctx, left, host, dns.TypeNAPTR, network)
	if err != nil {
		return nil, err
	}
	var recs []dnsRR
	for _, rr := range e.rrs {
		if p, ok := sipNAPTR(rr); ok && h.supports(p) {
			recs = append(recs, rr)
		}
	}
	slices.SortStableFunc(recs, naptrOrder)
	var firstErr error
	for _, rr := range recs {
		if len(ts) >= MaxTargets {
			break
		}
		p, _ := naptrProto(rr.svc)
		if ts, err = r.srvTargets(ctx, left, ts, rr.host, p, network); err == errNotCached {
			return nil, err
		} else if err == ErrTooManyLookups {
			return ts, err
		} else if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(ts) > 0 {
		return ts, nil
	}

	// No (usable) NAPTR: SRV for each transport we have, UDP, TCP, TLS.
	for _, p := range [...]transport.Proto{transport.UDP, transport.TCP, transport.TLS} {
		if !h.supports(p) || len(ts) >= MaxTargets {
			continue
		}
		if ts, err = r.srvTargets(ctx, left, ts, srvName(p, host), p, network); err == errNotCached {
			return nil, err
		} else if err == ErrTooManyLookups {
			return ts, err
		} else if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(ts) > 0 {
		return ts, nil
	}

	// No SRV: A/AAAA on the default port, UDP (TLS for sips).
	if !h.Secure && !h.supports(transport.UDP) && h.supports(transport.TCP) {
		proto = transport.TCP
	}
	ts, err = r.addrTargets(ctx, left, nil, host, proto, defaultPort(proto), network)
	if err == ErrNoTarget && firstErr != nil {
		err = firstErr // say why SRV did not answer rather than "no target"
	}
	return ts, err
}

// srvTargets appends the targets of the SRV records at name, ordered per
// RFC 2782, each target's addresses taken from the additional section when
// the server sent them, else looked up. A missing or empty record set
// appends nothing and is no error.
func (r *Resolver) srvTargets(ctx context.Context, left *int, ts []Target, name string, p transport.Proto, network bool) ([]Target, error) {
	e, err := r.lookup(ctx, left, name, dns.TypeSRV, network)
	if err != nil || e.neg {
		return ts, err
	}
	// The order is drawn over keys on the stack, not over copies of the
	// records (the cache keeps at most maxRecords of them), and not drawn
	// when every target is ".".
	var buf [maxRecords]srvKey
	keys, usable := buf[:0], false
	for i, rr := range e.rrs[:min(len(e.rrs), maxRecords)] {
		keys = append(keys, srvKey{rr.prio, rr.wt, uint8(i)})
		usable = usable || rr.host != ""
	}
	if !usable {
		return ts, nil
	}
	r.mu.Lock()
	orderSRV(keys, r.rnd)
	r.mu.Unlock()
	for _, k := range keys {
		if len(ts) >= MaxTargets {
			break
		}
		rr := &e.rrs[k.i]
		if rr.host == "" {
			continue // "." : the service is decidedly not available here
		}
		n := len(ts)
		for _, fam := range [...]uint16{dns.TypeA, dns.TypeAAAA} {
			for _, x := range e.extra {
				if x.typ == fam && x.name == rr.host && len(ts) < MaxTargets {
					ts = append(ts, Target{p, netip.AddrPortFrom(x.addr.Unmap(), rr.port)})
				}
			}
		}
		if len(ts) > n {
			continue
		}
		var err error
		if ts, err = r.addrTargets(ctx, left, ts, rr.host, p, int(rr.port), network); err == errNotCached {
			return nil, err
		} else if err == ErrTooManyLookups {
			return ts, err
		}
		// Another target may still resolve: an error here only skips this one.
	}
	return ts, nil
}

// addrTargets appends the A then AAAA addresses of host (IPv4 first, as
// most next hops listen on both and IPv4 paths are the common ones).
func (r *Resolver) addrTargets(ctx context.Context, left *int, ts []Target, host string, p transport.Proto, port int, network bool) ([]Target, error) {
	n := len(ts)
	var firstErr error
	for _, fam := range [...]uint16{dns.TypeA, dns.TypeAAAA} {
		e, err := r.lookup(ctx, left, host, fam, network)
		if err == errNotCached {
			return nil, err
		}
		if err == ErrTooManyLookups {
			return ts, err
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range e.rrs {
			if len(ts) < MaxTargets {
				ts = append(ts, Target{p, netip.AddrPortFrom(rr.addr.Unmap(), uint16(port))})
			}
		}
	}
	if len(ts) == n {
		if firstErr != nil {
			return ts, firstErr
		}
		return ts, ErrNoTarget
	}
	return ts, nil
}

// srvKey is what orderSRV needs of an SRV record: priority, weight, and
// the record's index in its cache entry (below maxRecords).
type srvKey struct {
	prio, wt uint16
	i        uint8
}

// orderSRV sorts SRV records for use (RFC 2782): by priority, and within
// one priority by a weighted random draw: a record is picked with
// probability weight/sum of the weights left, weight-0 records only
// rarely before the others.
func orderSRV(recs []srvKey, rnd *rand.Rand) {
	slices.SortStableFunc(recs, func(a, b srvKey) int { return int(a.prio) - int(b.prio) })
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].prio == recs[i].prio {
			j++
		}
		group := recs[i:j]
		// Weight-0 records first, as RFC 2782 says to arrange them before
		// the draw.
		slices.SortStableFunc(group, func(a, b srvKey) int {
			return min(int(a.wt), 1) - min(int(b.wt), 1)
		})
		sum := 0
		for _, rr := range group {
			sum += int(rr.wt)
		}
		for k := range group {
			pick := 0
			if sum > 0 {
				pick = rnd.IntN(sum + 1)
			}
			run := 0
			for m := k; m < len(group); m++ {
				run += int(group[m].wt)
				if run >= pick {
					rr := group[m]
					copy(group[k+1:m+1], group[k:m])
					group[k] = rr
					sum -= int(rr.wt) // the weights of group[k+1:]
					break
				}
			}
		}
		i = j
	}
}

// defaultPort is the port of a SIP URI without one (RFC 3261 §19.1.2):
// 5061 for TLS, 5060 otherwise.
func defaultPort(p transport.Proto) int {
	if p == transport.TLS {
		return 5061
	}
	return 5060
}
