package sipdns

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Errors of the resolver.
var (
	// ErrResolverBusy is returned when every lookup slot is taken.
	ErrResolverBusy = errors.New("sipdns: too many DNS lookups in flight")
	// ErrNoTarget is returned when a next hop's name has no usable
	// target: NXDOMAIN, or no SRV and no address records.
	ErrNoTarget = errors.New("sipdns: next hop has no DNS target")
	// ErrDNSServer is returned when the server answered with an error
	// code other than NXDOMAIN (SERVFAIL, REFUSED).
	ErrDNSServer = errors.New("sipdns: DNS server error")
	// ErrTooManyLookups is returned when a resolution found no target
	// within its lookups (maxLookups, 32): the answers name more SRV sets
	// or targets than a next hop needs, none of them usable.
	ErrTooManyLookups = errors.New("sipdns: next hop needs too many DNS lookups")

	errNotCached    = errors.New("sipdns: not in the DNS cache")
	errTruncatedTCP = errors.New("sipdns: DNS answer truncated over TCP")
)

// Config configures a Resolver.
type Config struct {
	// Server is the DNS server "ip:port" (or "ip", port 53) to ask; empty
	// uses the nameservers of /etc/resolv.conf and the names of
	// /etc/hosts (both read once, by New).
	Server string
	// MaxInFlight bounds concurrent lookups (default 256); beyond it a
	// lookup fails at once (the branch gets 503) instead of piling up
	// goroutines.
	MaxInFlight int
	// Timeout bounds the whole resolution of one next hop, NAPTR, SRV and
	// address queries together (default 5 s).
	Timeout time.Duration
	// CacheSize bounds the number of cached answers, one per name and
	// record type (default 4096; negative: no cache).
	CacheSize int
	// MaxTTL caps how long a positive answer is kept (default 1 h; the
	// record's TTL when shorter).
	MaxTTL time.Duration
	// NegativeTTL caps how long NXDOMAIN or an empty answer is kept
	// (default 30 s; the SOA minimum when shorter).
	NegativeTTL time.Duration
}

// Resolver finds where a next hop's hostname leads, per RFC 3263 §4:
// NAPTR, then SRV, then A/AAAA, with its own DNS client (UDP, TCP when the
// answer is truncated) and a cache. A resolution that needs the network
// runs on its own goroutine, bounded by MaxInFlight, and calls back when
// done; one answered from the cache needs neither (Cached).
type Resolver struct {
	servers []netip.AddrPort
	srvErr  error // a Server that did not parse
	hosts   map[string][]netip.Addr
	sem     chan struct{}
	timeout time.Duration
	maxTTL  time.Duration
	negTTL  time.Duration
	cache   *dnsCache
	now     func() time.Time // the cache's clock; tests replace it
	udp     *dns.Client
	tcp     *dns.Client // when the UDP answer is truncated

	mu  sync.Mutex // rnd
	rnd *rand.Rand // SRV weights
}

// New creates a resolver.
func New(cfg Config) *Resolver {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 4096
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 30 * time.Second
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	r := &Resolver{
		sem:     make(chan struct{}, cfg.MaxInFlight),
		timeout: cfg.Timeout,
		maxTTL:  cfg.MaxTTL,
		negTTL:  cfg.NegativeTTL,
		cache:   newDNSCache(cfg.CacheSize),
		now:     time.Now,
		rnd:     rand.New(rand.NewChaCha8(seed)),
		udp:     &dns.Client{Net: "udp", Timeout: cfg.Timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}
	if cfg.Server != "" {
		ap, err := parseServer(cfg.Server)
		r.servers, r.srvErr = []netip.AddrPort{ap}, err
	} else {
		r.servers = readResolvConf("/etc/resolv.conf")
		r.hosts = readHosts("/etc/hosts")
	}
	return r
}

func parseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	return netip.AddrPort{}, errors.New("sipdns: DNS server " + s + " is not ip:port")
}

// readResolvConf returns the nameservers of a resolv.conf file (the
// loopback resolver when there is none, as the C library does).
func readResolvConf(path string) []netip.AddrPort {
	var out []netip.AddrPort
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "nameserver" {
				if a, err := netip.ParseAddr(fs[1]); err == nil && a.Zone() == "" {
					out = append(out, netip.AddrPortFrom(a, 53))
				}
			}
		}
		f.Close()
	}
	if len(out) == 0 {
		out = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return out
}

// readHosts reads the name → address table of a hosts file.
func readHosts(path string) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fs[0])
		if err != nil || a.Zone() != "" {
			continue
		}
		for _, n := range fs[1:] {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m[n] = append(m[n], a.Unmap())
		}
	}
	return m
}

// Resolve finds the targets of next hop h (RFC 3263 §4) and calls done
// with them, in the order to try, on another goroutine. An answer from the
// cache still goes through a goroutine: use Cached first to avoid it.
func (r *Resolver) Resolve(h NextHop, done func([]Target, error)) {
	select {
	case r.sem <- struct{}{}:
	default:
		go done(nil, ErrResolverBusy)
		return
	}
	go func() {
		defer func() { <-r.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		done(r.targets(ctx, h, true))
	}()
}

// Cached returns the targets of h when every answer the resolution needs
// is in the cache (positive or negative); ok is false when one is not, or
// when the cached answers lead nowhere (Resolve then asks again and reports
// the error).
func (r *Resolver) Cached(h NextHop) ([]Target, bool) {
	ts, err := r.targets(context.Background(), h, false)
	return ts, err == nil
}

// Lookup resolves host's A and AAAA records and calls done with the first
// address (IPv4 preferred) on another goroutine.
func (r *Resolver) Lookup(host string, done func(netip.Addr, error)) {
	r.Resolve(NextHop{Host: host, Port: 5060}, func(ts []Target, err error) {
		if err != nil {
			done(netip.Addr{}, err)
			return
		}
		done(ts[0].Addr.Addr(), nil)
	})
}

// lookup returns the answer for (name, qtype): from the cache, or when
// network is set from the server (then cached). CNAMEs are followed. Each
// lookup takes one of the resolution's left; with none left it fails with
// ErrTooManyLookups, the same from the cache as from the network.
func (r *Resolver) lookup(ctx context.Context, left *int, name string, qtype uint16, network bool) (*cacheEntry, error) {
	if *left <= 0 {
		return nil, ErrTooManyLookups
	}
	*left--
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if r.hosts != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
		if as, ok := r.hosts[name]; ok {
			e := &cacheEntry{neg: true}
			for _, a := range as {
				if a.Is4() == (qtype == dns.TypeA) {
					e.rrs = append(e.rrs, dnsRR{name: name, typ: qtype, addr: a})
					e.neg = false
				}
			}
			return e, nil
		}
	}
	k := cacheKey{name, qtype}
	if e, ok := r.cache.get(k, r.now()); ok {
		return e, nil
	}
	if !network {
		return nil, errNotCached
	}
	e, err := r.query(ctx, name, qtype, 0)
	if err != nil {
		return nil, err
	}
	r.cache.put(k, e, r.now())
	return e, nil
}

// query asks the server and builds the cache entry: the records of
// qtype owned by name or by the end of its CNAME chain.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16, depth int) (*cacheEntry, error) {
	m, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	now := r.now()
	switch m.rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return r.negative(m, now), nil
	default:
		return nil, ErrDNSServer
	}
	ttl := uint32(r.maxTTL / time.Second)
	owner := name
	var rrs []dnsRR
	for hops := 0; hops < 8 && rrs == nil; hops++ {
		next := ""
		for _, rr := range m.ans {
			switch {
			case rr.name != owner:
			case rr.typ == qtype:
				rrs = append(rrs, rr)
				ttl = min(ttl, rr.ttl)
			case rr.typ == dns.TypeCNAME && next == "":
				next = rr.host
				ttl = min(ttl, rr.ttl)
			}
		}
		if rrs != nil || next == "" {
			break
		}
		owner = next
	}
	if rrs == nil && owner != name && depth < 4 {
		// The chain leaves the answer: ask for its end.
		e, err := r.query(ctx, owner, qtype, depth+1)
		if err != nil {
			return nil, err
		}
		if e.exp.After(now.Add(time.Duration(ttl) * time.Second)) {
			e.exp = now.Add(time.Duration(ttl) * time.Second)
		}
		return e, nil
	}
	if rrs == nil {
		return r.negative(m, now), nil
	}
	e := &cacheEntry{rrs: keepRecords(qtype, rrs, owner)}
	if qtype == dns.TypeSRV {
		for _, rr := range m.extra {
			if rr.typ == dns.TypeA || rr.typ == dns.TypeAAAA {
				ttl = min(ttl, rr.ttl)
			}
		}
		e.extra = keepExtra(e.rrs, m.extra)
	}
	// The TTL is the smallest of the whole answer's, kept records or not.
	e.exp = now.Add(time.Duration(ttl) * time.Second)
	return e, nil
}

// keepRecords returns what a cache entry keeps of the records of an
// answer: at most maxRecords, the first resolution would use, in a slice
// of their own (the answer's, however long, is not held). A and AAAA: in
// answer order, as addrTargets takes them. SRV: by priority, stably, so
// the best priorities are kept (orderSRV sorts stably by priority first:
// for an answer that is not cut its draw is the same). NAPTR: the records
// targets can use
// (flag "s", a SIP service, a replacement), by order then preference,
// stably, as targets sorts them. Every record gets owner as its name, one
// string for all.
func keepRecords(qtype uint16, rrs []dnsRR, owner string) []dnsRR {
	switch qtype {
	case dns.TypeSRV:
		slices.SortStableFunc(rrs, func(a, b dnsRR) int { return int(a.prio) - int(b.prio) })
	case dns.TypeNAPTR:
		rrs = slices.DeleteFunc(rrs, func(rr dnsRR) bool {
			_, ok := sipNAPTR(rr)
			return !ok
		})
		slices.SortStableFunc(rrs, naptrOrder)
	}
	out := make([]dnsRR, min(len(rrs), maxRecords))
	copy(out, rrs)
	for i := range out {
		out[i].name = owner
	}
	return out
}

// keepExtra returns the addresses of an SRV answer's additional section
// that srvTargets can use: those of the kept records' targets, at most
// MaxTargets per target and family (srvTargets never takes more), and at
// most maxRecords in all, a target's addresses all kept or none (a target
// without any is looked up).
func keepExtra(srv, extra []dnsRR) []dnsRR {
	var out []dnsRR
	for i, rr := range srv {
		if rr.host == "" || slices.ContainsFunc(srv[:i], func(p dnsRR) bool { return p.host == rr.host }) {
			continue // "." or a target seen already
		}
		n, a, aaaa := len(out), 0, 0
		for _, x := range extra {
			switch {
			case x.name != rr.host:
				continue
			case x.typ == dns.TypeA && a < MaxTargets:
				a++
			case x.typ == dns.TypeAAAA && aaaa < MaxTargets:
				aaaa++
			default:
				continue
			}
			x.name = rr.host
			out = append(out, x)
		}
		if len(out) > maxRecords {
			out = out[:n]
		}
	}
	return slices.Clip(out)
}

// negative builds the entry for NXDOMAIN or no data: kept for the SOA's
// minimum (RFC 2308 §5), at most NegativeTTL.
func (r *Resolver) negative(m *dnsMsg, now time.Time) *cacheEntry {
	d := r.negTTL
	for _, rr := range m.auth {
		if rr.typ == dns.TypeSOA {
			d = min(d, time.Duration(min(rr.ttl, rr.min))*time.Second)
			break
		}
	}
	return &cacheEntry{neg: true, exp: now.Add(d)}
}

// exchange sends one question and returns the answer: over UDP, each
// server in turn, twice, sharing the context's deadline; over TCP when
// the UDP answer is truncated.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dnsMsg, error) {
	if r.srvErr != nil {
		return nil, r.srvErr
	}
	q, err := newQuery(name, qtype)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(r.timeout)
	}
	tries := 2 * len(r.servers)
	var last error
	for i := 0; i < tries; i++ {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		srv := r.servers[i%len(r.servers)].String()
		m, err := ask(ctx, r.udp, q, srv, time.Now().Add(left/time.Duration(tries-i)))
		if err == nil && m.tc {
			if m, err = ask(ctx, r.tcp, q, srv, deadline); err == nil && m.tc {
				err = errTruncatedTCP
			}
		}
		if err == nil {
			return m, nil
		}
		last = err
	}
	if last == nil {
		last = context.DeadlineExceeded
	}
	return nil, last
}

// ask sends q to srv with client c and decodes the answer.
func ask(ctx context.Context, c *dns.Client, q *dns.Msg, srv string, deadline time.Time) (*dnsMsg, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, q, srv)
	if err != nil {
		// A truncated UDP answer may end inside a record, which does not
		// unpack: its header is enough to ask again over TCP.
		if resp != nil && resp.Truncated && resp.Response && resp.Id == q.Id && c.Net == "udp" {
			return &dnsMsg{tc: true}, nil
		}
		return nil, err
	}
	return decodeAnswer(q, resp)
}
