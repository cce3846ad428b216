package sipdns

import (
	"sync"
	"time"
)

// dnsCache keeps answers per (name, type) until their TTL runs out:
// positive ones for the smallest TTL of the records used (capped),
// negative ones (NXDOMAIN, no data) for the SOA minimum (capped). It holds
// at most max entries: when full, expired entries go first, then
// arbitrary ones. Lookups are rare next to messages (once per hostname
// next hop and TTL), so one mutex is enough.
type dnsCache struct {
	mu  sync.Mutex
	m   map[cacheKey]*cacheEntry
	max int
}

type cacheKey struct {
	name string
	typ  uint16
}

// cacheEntry is the answer to one question: the records of the asked type
// for the name (after CNAMEs), and for SRV the addresses the server put in
// the additional section. neg marks NXDOMAIN or an empty answer.
type cacheEntry struct {
	rrs   []dnsRR
	extra []dnsRR
	neg   bool
	exp   time.Time
}

func newDNSCache(max int) *dnsCache {
	return &dnsCache{m: make(map[cacheKey]*cacheEntry), max: max}
}

func (c *dnsCache) get(k cacheKey, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	if !now.Before(e.exp) {
		delete(c.m, k)
		return nil, false
	}
	return e, true
}

// put stores e (immutable from now on) unless it has already expired.
func (c *dnsCache) put(k cacheKey, e *cacheEntry, now time.Time) {
	if !now.Before(e.exp) || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for k2, e2 := range c.m {
			if !now.Before(e2.exp) {
				delete(c.m, k2)
			}
		}
		// Still full: drop an eighth, in map order (arbitrary).
		for k2 := range c.m {
			if len(c.m) < c.max-c.max/8 {
				break
			}
			delete(c.m, k2)
		}
	}
	c.m[k] = e
}

func (c *dnsCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
