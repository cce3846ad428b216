package txn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"switchboard/shards"
)

// ErrResolverBusy is returned when every lookup slot is taken.
var ErrResolverBusy = errors.New("txn: too many DNS lookups in flight")

// ResolverConfig configures a Resolver.
type ResolverConfig struct {
	// Server is the DNS server "ip:port" to ask; empty uses the system
	// configuration (/etc/resolv.conf).
	Server string
	// MaxInFlight bounds concurrent lookups (default 256); beyond it a
	// lookup fails at once (the branch gets 503) instead of piling up
	// goroutines.
	MaxInFlight int
	// Timeout bounds one lookup (default 5 s).
	Timeout time.Duration
}

// Resolver turns hostnames of next hops into addresses off the receive
// path: each lookup runs on its own goroutine, bounded by MaxInFlight, and
// calls back when done. It asks for A and AAAA records (RFC 3263 SRV and
// NAPTR are not done yet) and keeps no cache.
type Resolver struct {
	r       *net.Resolver
	sem     chan struct{}
	timeout time.Duration
}

// NewResolver creates a resolver.
func NewResolver(cfg ResolverConfig) *Resolver {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	r := &Resolver{sem: make(chan struct{}, cfg.MaxInFlight), timeout: cfg.Timeout}
	if cfg.Server == "" {
		r.r = net.DefaultResolver
	} else {
		server := cfg.Server
		r.r = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			},
		}
	}
	return r
}

// Lookup resolves host and calls done with the first address (IPv4
// preferred) on another goroutine.
func (r *Resolver) Lookup(host string, done func(netip.Addr, error)) {
	select {
	case r.sem <- struct{}{}:
	default:
		go done(netip.Addr{}, ErrResolverBusy)
		return
	}
	go func() {
		defer func() { <-r.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		addrs, err := r.r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			done(netip.Addr{}, err)
			return
		}
		best := netip.Addr{}
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is4() {
				best = a
				break
			}
			if !best.IsValid() {
				best = a
			}
		}
		if !best.IsValid() {
			done(best, errors.New("txn: no address for "+host))
			return
		}
		done(best, nil)
	}()
}

// resolve looks up a branch's next hop and resumes the branch. The
// shard is locked by the caller; the callback locks it again.
func (c *Core) resolve(ref shards.Ref[txn], id uint32, idx int, host []byte) {
	c.res.Lookup(string(host), func(a netip.Addr, err error) {
		s := ref.Shard()
		s.Lock()
		defer s.Unlock()
		e := ref.Entry()
		if e == nil || e.Value.id != id {
			return
		}
		t := &e.Value
		b := t.branch(idx)
		if b.state != bResolving {
			return
		}
		x := c.getCtx()
		defer c.putCtx(x)
		switch {
		case err != nil:
			c.cfg.Logger.Warn("txn: next hop did not resolve", "host", string(b.host), "err", err)
			c.branchFailed(s, e, b, 503)
		case t.canceled:
			c.branchFailed(s, e, b, 487)
		default:
			b.dst = netip.AddrPortFrom(a, b.dst.Port())
			c.sendBranch(x, s, e, c.hook(x, s, e), b)
		}
		c.checkDone(x, s, e)
		c.gc(s, e)
	})
}
