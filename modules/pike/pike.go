// Package pike is flood detection and source bans (OpenSIPS pike:
// pike_check_req; Kamailio pike with an htable of banned addresses).
//
// Check counts the requests of each source (an IPv4 address, or an IPv6
// /64) over a sliding window; a source over max_requests in the window is
// banned for ban_time. A banned source costs almost nothing: the transport
// asks Admit about every datagram before parsing it and every TCP/TLS
// connection at accept, and drops what comes from a banned source. The ban
// table is shared: the authban module bans addresses that fail
// authentication through it, and the pike.ban management command bans by
// hand.
//
// Both tables are fixed in size at start (max_sources, max_bans) and
// allocate nothing per request; see Counters and Bans for what is evicted
// when they are full. Trusted sources are exempt: the addresses listed in
// exempt, and, when the permissions module is compiled in, its group
// exempt_group.
package pike

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/shards"
)

// Settings are the pike section of the configuration.
type Settings struct {
	// Window is the sliding window requests are counted over (OpenSIPS
	// sampling_time_unit). Default 2s.
	Window time.Duration `yaml:"window"`
	// MaxRequests is the most requests a source may send within Window;
	// one more bans it (OpenSIPS reqs_density_per_unit). Default 30;
	// 0 turns the rate check off (bans made by others still apply).
	MaxRequests int `yaml:"max_requests"`
	// BanTime is how long an offender stays banned. Default 5m.
	BanTime time.Duration `yaml:"ban_time"`
	// IPv6Prefix groups IPv6 sources: all addresses of one prefix count
	// and are banned as one. Default 64.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxSources is the size of the rate table. Default 65536 (2 MiB).
	MaxSources int `yaml:"max_sources"`
	// MaxBans is the size of the ban table. Default 16384 (640 KiB).
	MaxBans int `yaml:"max_bans"`
	// Exempt lists addresses and prefixes never counted nor banned by
	// Check. Default the host itself: 127.0.0.1 and ::1.
	Exempt []string `yaml:"exempt"`
	// ExemptGroup exempts the permissions module's address group (its
	// trusted gateways) when that module is compiled in. Default 1; 0:
	// none.
	ExemptGroup int `yaml:"exempt_group"`
}

// DefaultSettings are the defaults documented in docs/configuration.md.
func DefaultSettings() *Settings {
	return &Settings{
		Window:      2 * time.Second,
		MaxRequests: 30,
		BanTime:     5 * time.Minute,
		IPv6Prefix:  64,
		MaxSources:  65536,
		MaxBans:     16384,
		Exempt:      []string{"127.0.0.1", "::1"},
		ExemptGroup: 1,
	}
}

// Limits of the settings.
const (
	minTable = 1024
	maxTable = 1 << 24
)

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.Window < 100*time.Millisecond || s.Window > time.Hour:
		return modules.Errorf("window", "must be between 100ms and 1h, not %v", s.Window)
	case s.MaxRequests < 0 || s.MaxRequests > 1_000_000:
		return modules.Errorf("max_requests", "must be between 0 (no rate check) and 1000000, not %d", s.MaxRequests)
	case s.BanTime < time.Second || s.BanTime > 30*24*time.Hour:
		return modules.Errorf("ban_time", "must be between 1s and 720h, not %v", s.BanTime)
	case s.IPv6Prefix < 16 || s.IPv6Prefix > 128:
		return modules.Errorf("ipv6_prefix", "must be between 16 and 128, not %d", s.IPv6Prefix)
	case s.MaxSources < minTable || s.MaxSources > maxTable:
		return modules.Errorf("max_sources", "must be between %d and %d, not %d", minTable, maxTable, s.MaxSources)
	case s.MaxBans < minTable || s.MaxBans > maxTable:
		return modules.Errorf("max_bans", "must be between %d and %d, not %d", minTable, maxTable, s.MaxBans)
	case s.ExemptGroup < 0:
		return modules.Errorf("exempt_group", "must be 0 (none) or a group number, not %d", s.ExemptGroup)
	}
	if _, err := parseExempt(s.Exempt); err != nil {
		return err
	}
	return nil
}

// parseExempt reads "192.0.2.1", "2001:db8::1", "10.0.0.0/8".
func parseExempt(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, modules.Errorf("exempt["+strconv.Itoa(i)+"]", "%q is not an address or prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func init() {
	modules.Register(modules.Definition{
		Name: "pike",
		Doc:  "flood detection: per-source request rate over a sliding window, bans the transport enforces",
		// The permissions module's trusted group is exempt when that
		// module is compiled in; pike works without it.
		Uses:     []string{"permissions"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
	})
}

// GroupChecker is what pike asks of the permissions module: is a in
// address group g (OpenSIPS check_source_address(g)).
type GroupChecker interface {
	InGroup(group int, a netip.Addr) bool
}

// Pike is the flood detector and the ban table. It is safe for concurrent
// use; Check, CheckAddr, Admit and Banned allocate nothing.
type Pike struct {
	host   *modules.Host
	clock  *shards.Clock
	v6bits int
	bans   *Bans
	rates  atomic.Pointer[Counters]
	params atomic.Pointer[params]
	groups GroupChecker // nil without the permissions module
	over   atomic.Uint64
	// hitsBefore are the checks counted by rate tables replaced on reload.
	hitsBefore atomic.Uint64

	mu   sync.Mutex // settings, for Reload
	set  Settings
	stop chan struct{}
	wg   sync.WaitGroup
}

// params are the settings Check reads, swapped whole on reload.
type params struct {
	max    uint32 // 0: no rate check
	ban    int64  // ms
	exempt []netip.Prefix
	group  int
	// shared are the IPv6 prefixes (keys at ipv6_prefix) that hold an
	// exempt address, or an exempt prefix longer than ipv6_prefix, beside
	// addresses that are not exempt. Those are counted and banned one by
	// one: a ban of the prefix would be a ban of the exempt peer too,
	// which anyone could get by flooding from a neighbour's address,
	// spoofed over UDP.
	shared []Key
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Clock == nil {
		return nil, errors.New("pike needs the server's clock")
	}
	g, _ := h.Module("permissions").(GroupChecker)
	p, err := New(h.Clock, *s, g, h.Shards)
	if err != nil {
		return nil, err
	}
	p.host = h
	h.AdmitSources(p.Admit)
	p.registerCommands(h)
	p.registerMetrics(h)
	return p, nil
}

// New builds a Pike outside the module framework (tests, tools): groups
// may be nil; shards 0 picks 64.
func New(clock *shards.Clock, s Settings, groups GroupChecker, nshards int) (*Pike, error) {
	if err := checkSettings(&s); err != nil {
		return nil, err
	}
	if nshards <= 0 {
		nshards = 64
	}
	p := &Pike{clock: clock, v6bits: s.IPv6Prefix, groups: groups, set: s, stop: make(chan struct{})}
	p.bans = NewBans(s.MaxBans, nshards)
	p.rates.Store(NewCounters(s.MaxSources, nshards, s.Window))
	pr, err := paramsOf(&s, s.IPv6Prefix)
	if err != nil {
		return nil, err
	}
	p.params.Store(pr)
	return p, nil
}

// paramsOf reads s for a table that keys IPv6 sources by their first
// v6bits bits.
func paramsOf(s *Settings, v6bits int) (*params, error) {
	ex, err := parseExempt(s.Exempt)
	if err != nil {
		return nil, err
	}
	pr := &params{max: uint32(s.MaxRequests), ban: s.BanTime.Milliseconds(), exempt: ex, group: s.ExemptGroup}
	for _, e := range ex {
		if a := e.Addr(); a.Is6() && !a.Is4In6() && e.Bits() > v6bits {
			if k := KeyOf(a, v6bits); !slices.Contains(pr.shared, k) {
				pr.shared = append(pr.shared, k)
			}
		}
	}
	return pr, nil
}

// Check counts the request in c against its source's rate and reports
// whether it may go on (OpenSIPS: pike_check_req()). False: the source is
// over the limit, and is now banned for ban_time, or was banned already;
// the route drops the request (c.Drop()) without an answer. Exempt
// sources are not counted, so never banned for their rate; a ban of the
// address itself (made by hand, or before it was exempted) still refuses
// them, as the transport does, a ban of their IPv6 prefix never. It
// allocates nothing.
func (p *Pike) Check(c *routing.Ctx) bool { return p.CheckAddr(c.SrcIP()) }

// CheckAddr is Check for a source address.
func (p *Pike) CheckAddr(a netip.Addr) bool {
	pr := p.params.Load()
	now := p.clock.Now()
	if p.refused(a, now, true) {
		// Exempt or not, as the transport refuses it (a manual ban of a
		// trusted address, or a ban made before it was exempted).
		p.over.Add(1)
		return false
	}
	if pr.max == 0 || p.exempt(pr, a) {
		return true
	}
	k, bits := p.source(pr, a)
	if p.rates.Load().Hit(k, now) <= pr.max {
		return true
	}
	p.over.Add(1)
	p.bans.Ban(k, bits, now, now+pr.ban, Flood)
	return false
}

// source returns the key a is counted and banned as, and its prefix
// length: an IPv4 address (32); an IPv6 address's prefix (ipv6_prefix),
// or the address alone (128) when that prefix holds an exempt address.
func (p *Pike) source(pr *params, a netip.Addr) (Key, int) {
	a = a.Unmap()
	if a.Is4() {
		return KeyOf(a, 128), 32
	}
	k := KeyOf(a, p.v6bits)
	if p.v6bits < 128 && slices.Contains(pr.shared, k) {
		return KeyOf(a, 128), 128
	}
	return k, p.v6bits
}

// refused reports whether a ban in force refuses a: a ban of a itself, or
// of its IPv6 prefix unless a is exempt (a prefix's ban never cuts off a
// trusted peer in it). count: a refusal is counted (the receive path).
func (p *Pike) refused(a netip.Addr, now int64, count bool) bool {
	if p.bans.live.Load() == 0 {
		return false
	}
	a = a.Unmap()
	if a.Is4() || p.v6bits >= 128 {
		return p.bans.lookup(KeyOf(a, 128), 128, now, count)
	}
	k := KeyOf(a, p.v6bits)
	if p.bans.lookup(k, p.v6bits, now, false) && !p.Exempt(a) {
		if count {
			p.bans.countRefused(k)
		}
		return true
	}
	return p.bans.single.Load() != 0 && p.bans.lookup(KeyOf(a, 128), 128, now, count)
}

// Admit is the transport's source filter (transport.Config.Admit, through
// Host.AdmitSources): false for a banned source (an exempt address is
// refused only by a ban of the address itself, never by its prefix's).
// With no ban in force it is one atomic load.
func (p *Pike) Admit(a netip.Addr) bool {
	if p.bans.live.Load() == 0 {
		return true
	}
	return !p.refused(a, p.clock.Now(), true)
}

// KeyOf is a's key in pike's tables, for modules that count per source
// as pike does: its IPv6 prefix grouped by ipv6_prefix, or a alone when
// that prefix holds an exempt address (Ban bans the same).
func (p *Pike) KeyOf(a netip.Addr) Key {
	k, _ := p.source(p.params.Load(), a)
	return k
}

// Exempt reports whether a is trusted: listed in exempt, or in the
// permissions module's exempt_group.
func (p *Pike) Exempt(a netip.Addr) bool { return p.exempt(p.params.Load(), a) }

func (p *Pike) exempt(pr *params, a netip.Addr) bool {
	a = a.Unmap()
	for _, e := range pr.exempt {
		if e.Contains(a) {
			return true
		}
	}
	return pr.group != 0 && p.groups != nil && p.groups.InGroup(pr.group, a)
}

// Ban bans a for d, for reason r: the source a is counted as (KeyOf),
// its IPv6 prefix or, when that prefix holds an exempt address, a alone.
// It applies to exempt addresses too, each banned alone (a ban of its
// prefix would not refuse it): callers that ban automatically check
// Exempt first. It reports whether a was not banned already.
func (p *Pike) Ban(a netip.Addr, d time.Duration, r Reason) bool {
	k, bits := p.banKey(a, false)
	now := p.clock.Now()
	return p.bans.Ban(k, bits, now, now+d.Milliseconds(), r)
}

// banKey is the key Ban bans a under; prefix: a's IPv6 prefix whatever
// it holds (pike.ban of a prefix, or of an address not exempt). An exempt
// address is banned alone either way.
func (p *Pike) banKey(a netip.Addr, prefix bool) (Key, int) {
	pr := p.params.Load()
	k, bits := p.source(pr, a)
	switch {
	case k.Is4() || p.v6bits >= 128:
	case p.exempt(pr, a):
		k, bits = KeyOf(a, 128), 128
	case prefix:
		k, bits = KeyOf(a, p.v6bits), p.v6bits
	}
	return k, bits
}

// Banned reports whether a is refused now (Admit would drop it).
func (p *Pike) Banned(a netip.Addr) bool {
	if p.bans.live.Load() == 0 {
		return false
	}
	return p.refused(a, p.clock.Now(), false)
}

// Unban lifts the bans that refuse a, its own and its IPv6 prefix's (not
// the prefix's when a is exempt: that ban does not refuse it), and
// forgets its rate; it reports whether a was banned.
func (p *Pike) Unban(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() || p.v6bits >= 128 {
		return p.unbanKey(KeyOf(a, 128), 128)
	}
	was := p.unbanKey(KeyOf(a, 128), 128)
	if !p.Exempt(a) && p.unbanKey(KeyOf(a, p.v6bits), p.v6bits) {
		was = true
	}
	return was
}

// unbanKey lifts the ban of k (of prefix length bits) and forgets its
// rate; it reports whether k was banned.
func (p *Pike) unbanKey(k Key, bits int) bool {
	p.rates.Load().Forget(k)
	return p.bans.Unban(k, bits, p.clock.Now())
}

// BanTime is the configured ban_time.
func (p *Pike) BanTime() time.Duration {
	return time.Duration(p.params.Load().ban) * time.Millisecond
}

// Bans returns the table of bans (listings, tests).
func (p *Pike) Bans() *Bans { return p.bans }

// Start runs the sweeper: once a second it frees expired bans and logs
// the bans made since its last pass (logging is kept off the receive
// path, and Host.Warn bounds the lines).
func (p *Pike) Start() error {
	p.wg.Add(1)
	go p.sweep()
	return nil
}

// Stop ends the sweeper. Bans are not kept across restarts.
func (p *Pike) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

func (p *Pike) sweep() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := p.clock.Now()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := p.clock.Now()
		p.bans.Sweep(now, last, func(b Ban) {
			if p.host != nil {
				p.host.Warn("source banned", "source", b.Key.String(b.Bits), "reason", b.Reason.String(),
					"for", time.Duration(b.Until-b.Since)*time.Millisecond)
				p.host.Events.Begin(modules.EventPikeBlocked).Str("ip", b.Key.String(b.Bits)).Str("reason", b.Reason.String()).
					Int("since_ms", b.Since).Int("until_ms", b.Until).Raise()
			}
		})
		last = now
	}
}

// CheckReload names ipv6_prefix and max_bans, which take effect at the
// next start (keepRestartKeys), and refuses an exempt list that does not
// parse.
func (p *Pike) CheckReload(v any) error {
	s := *v.(*Settings)
	keys := p.keepRestartKeys(&s)
	if _, err := paramsOf(&s, p.v6bits); err != nil {
		return err
	}
	return modules.NeedRestart(keys...)
}

// keepRestartKeys writes into s the values in force of ipv6_prefix and
// max_bans where s changes them, and returns those keys: the bans in
// force are keyed and bounded by them until the next start.
func (p *Pike) keepRestartKeys(s *Settings) (keys []string) {
	p.mu.Lock()
	old := p.set
	p.mu.Unlock()
	if s.IPv6Prefix != old.IPv6Prefix {
		s.IPv6Prefix = old.IPv6Prefix
		keys = append(keys, "ipv6_prefix")
	}
	keys = modules.KeepInForce(keys, "max_bans", &s.MaxBans, old.MaxBans)
	return keys
}

// Reload applies new settings. The rate table is rebuilt (counts start
// again) when window or max_sources change; ipv6_prefix and max_bans
// keep their values in force (keepRestartKeys).
func (p *Pike) Reload(v any) error {
	s := v.(*Settings)
	p.keepRestartKeys(s)
	pr, err := paramsOf(s, p.v6bits)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.set
	if s.Window != old.Window || s.MaxSources != old.MaxSources {
		prev := p.rates.Swap(NewCounters(s.MaxSources, len(p.bans.shards), s.Window))
		p.hitsBefore.Add(prev.Stats(p.clock.Now()).Hits) // checks_total keeps growing
	}
	p.params.Store(pr)
	p.set = *s
	return nil
}
