package pike

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"switchboard/shards"
	"switchboard/transport"
)

func newPike(t testing.TB, s *Settings, groups GroupChecker) (*Pike, *shards.Clock) {
	t.Helper()
	clock := shards.NewManualClock(1_700_000_000_000)
	if s == nil {
		s = DefaultSettings()
	}
	p, err := New(clock, *s, groups, 8)
	if err != nil {
		t.Fatal(err)
	}
	return p, clock
}

// The 31st request within the window bans the source: Check refuses it,
// the transport's filter drops it, others are served; after ban_time it is
// served again.
func TestCheckBansOverLimit(t *testing.T) {
	h := newHarness(t, nil, nil)
	for i := 0; i < 30; i++ {
		h.receive("192.0.2.7:5060")
		h.Clock.Advance(10 * time.Millisecond)
	}
	if got := h.answered("192.0.2.7"); got != 30 {
		t.Fatalf("%d of the first 30 answered", got)
	}
	bad := netip.MustParseAddr("192.0.2.7")
	if h.p.Banned(bad) || !h.p.Admit(bad) {
		t.Fatal("banned at the limit")
	}
	for i := 0; i < 10; i++ {
		h.receive("192.0.2.7:5062") // another port: the same source
	}
	if got := h.answered("192.0.2.7"); got != 30 || h.dropped != 10 {
		t.Fatalf("answered %d, dropped %d: want 30 and 10", got, h.dropped)
	}
	if !h.p.Banned(bad) || h.p.Admit(bad) {
		t.Fatal("not banned over the limit")
	}
	good := netip.MustParseAddr("192.0.2.8")
	h.receive("192.0.2.8:5060")
	if h.answered("192.0.2.8") != 1 || !h.p.Admit(good) {
		t.Fatal("another source refused")
	}
	list := h.p.List()
	if len(list) != 1 || list[0].Source != "192.0.2.7" || list[0].Reason != "flood" || list[0].Remaining != 300 {
		t.Fatalf("bans %+v", list)
	}
	h.Clock.Advance(5*time.Minute - time.Millisecond)
	if h.p.Admit(bad) {
		t.Fatal("ban ended early")
	}
	h.Clock.Advance(time.Millisecond)
	if !h.p.Admit(bad) || h.p.Banned(bad) {
		t.Fatal("ban did not end after ban_time")
	}
	h.receive("192.0.2.7:5060")
	if got := h.answered("192.0.2.7"); got != 31 {
		t.Fatalf("not served after the ban: %d answers", got)
	}
	st := h.p.bans.Stats(h.Clock.Now())
	if st.Made[Flood] != 1 || st.Active != 0 || st.Refused != 9+2 { // 9 by Check after the ban, 2 by Admit above
		t.Fatalf("ban stats %+v", st)
	}
}

// A flood spread over one /64 is one source; the next /64 is another.
func TestIPv6FloodBansPrefix(t *testing.T) {
	p, _ := newPike(t, nil, nil)
	for i := 0; i < 31; i++ {
		p.CheckAddr(netip.MustParseAddr("2001:db8:a:b::" + strconv.FormatInt(int64(i+1), 16)))
	}
	if !p.Banned(netip.MustParseAddr("2001:db8:a:b:1234::1")) {
		t.Fatal("the /64 of a spread flood is not banned")
	}
	if p.Banned(netip.MustParseAddr("2001:db8:a:c::1")) || !p.CheckAddr(netip.MustParseAddr("2001:db8:a:c::1")) {
		t.Fatal("the next /64 is banned")
	}
	if l := p.List(); len(l) != 1 || l[0].Source != "2001:db8:a:b::/64" {
		t.Fatalf("bans %+v", l)
	}
}

type groupSet map[netip.Addr]int

func (g groupSet) InGroup(group int, a netip.Addr) bool { return g[a] == group }

// Exempt addresses and the trusted group are never counted or refused by
// Check.
func TestExemptSources(t *testing.T) {
	s := DefaultSettings()
	s.Exempt = []string{"10.0.0.0/8", "2001:db8::1"}
	s.MaxRequests = 5
	groups := groupSet{netip.MustParseAddr("192.0.2.50"): 1, netip.MustParseAddr("192.0.2.51"): 2}
	p, _ := newPike(t, s, groups)
	for _, a := range []string{"10.1.2.3", "2001:db8::1", "192.0.2.50", "::ffff:10.9.9.9"} {
		for i := 0; i < 100; i++ {
			if !p.CheckAddr(netip.MustParseAddr(a)) {
				t.Fatalf("exempt %s refused", a)
			}
		}
	}
	for _, a := range []string{"192.0.2.51", "2001:db8::2", "11.0.0.1"} {
		ok := true
		for i := 0; i < 6; i++ {
			ok = p.CheckAddr(netip.MustParseAddr(a))
		}
		if ok {
			t.Fatalf("%s (not exempt) not refused over the limit", a)
		}
	}
	s.ExemptGroup = 0
	p2, _ := newPike(t, s, groups)
	for i := 0; i < 6; i++ {
		p2.CheckAddr(netip.MustParseAddr("192.0.2.50"))
	}
	if !p2.Banned(netip.MustParseAddr("192.0.2.50")) {
		t.Fatal("exempt_group 0 still exempts group 1")
	}
}

// An exempt IPv6 peer is not cut off by a flood from its neighbours. A
// trunk 2001:db8:1:2::10 in pike.exempt shares its /64 with addresses
// anyone can spoof over UDP: 31 requests from 2001:db8:1:2::666 banned
// the /64, and the transport dropped the trunk's datagrams for ban_time.
// A prefix holding an exempt address is counted and banned address by
// address instead: the flooder is banned alone, its other neighbours and
// the trunk are served. (The price: in that prefix one host may send
// max_requests from each of its addresses, as with ipv6_prefix 128.)
func TestExemptIPv6PeerNotBannedByNeighbour(t *testing.T) {
	clock := shards.NewManualClock(1_700_000_000_000)
	s := *DefaultSettings()
	s.Exempt = []string{"127.0.0.1", "::1", "2001:db8:1:2::10"}
	p, err := New(clock, s, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	trunk := netip.MustParseAddr("2001:db8:1:2::10")
	spoofed := netip.MustParseAddr("2001:db8:1:2::666")
	for i := 0; i < s.MaxRequests+1; i++ {
		p.CheckAddr(spoofed)
	}
	if !p.Exempt(trunk) {
		t.Fatal("trunk not exempt")
	}
	if !p.Admit(trunk) || !p.CheckAddr(trunk) || p.Banned(trunk) {
		t.Fatalf("exempt trunk %v is refused: 31 spoofed packets from %v banned its /64", trunk, spoofed)
	}
	if !p.Banned(spoofed) || p.Admit(spoofed) {
		t.Fatal("the flooder in the trunk's /64 is not banned")
	}
	other := netip.MustParseAddr("2001:db8:1:2::667")
	if p.Banned(other) || !p.Admit(other) || !p.CheckAddr(other) {
		t.Fatal("another address of the trunk's /64 is refused")
	}
	if l := p.List(); len(l) != 1 || l[0].Source != "2001:db8:1:2::666" || l[0].Reason != "flood" {
		t.Fatalf("bans %+v", l)
	}
	for i := 0; i < s.MaxRequests+1; i++ { // spread over the /64: each its own source
		p.CheckAddr(netip.MustParseAddr("2001:db8:1:2::1:" + strconv.FormatInt(int64(i+1), 16)))
	}
	if len(p.List()) != 1 {
		t.Fatalf("a flood spread over the trunk's /64 banned %+v", p.List())
	}
	// Another /64 is still one source.
	for i := 0; i < s.MaxRequests+1; i++ {
		p.CheckAddr(netip.MustParseAddr("2001:db8:1:3::" + strconv.FormatInt(int64(i+1), 16)))
	}
	if !p.Banned(netip.MustParseAddr("2001:db8:1:3::ffff")) {
		t.Fatal("a /64 without an exempt address is no longer banned whole")
	}
	if !p.Unban(spoofed) || p.Banned(spoofed) || p.bans.single.Load() != 0 {
		t.Fatal("Unban of an address banned alone")
	}
}

// A prefix ban never refuses an exempt address in it: one made by hand
// (pike.ban of the prefix), one made before the address was exempted,
// and one of a prefix holding a member of the permissions group, whose
// addresses pike cannot list to count the prefix address by address. A
// ban of the exempt address itself does refuse it.
func TestPrefixBanSparesExemptAddresses(t *testing.T) {
	s := DefaultSettings()
	s.Exempt = []string{"127.0.0.1", "::1", "2001:db8:1:2::10"}
	gw := netip.MustParseAddr("2001:db8:5:6::1")
	p, _ := newPike(t, s, groupSet{gw: 1})
	trunk := netip.MustParseAddr("2001:db8:1:2::10")
	neighbour := netip.MustParseAddr("2001:db8:1:2::666")
	p.bans.Ban(KeyOf(trunk, 64), 64, p.clock.Now(), p.clock.Now()+3_600_000, Manual)
	if !p.Banned(neighbour) || p.Admit(neighbour) || p.CheckAddr(neighbour) {
		t.Fatal("a ban of the trunk's /64 does not refuse its neighbours")
	}
	if p.Banned(trunk) || !p.Admit(trunk) || !p.CheckAddr(trunk) {
		t.Fatal("a ban of the trunk's /64 refuses the exempt trunk")
	}
	// The permissions group: its gateway's /64 is banned whole for a
	// neighbour's flood, the gateway is still served.
	for i := 0; i < s.MaxRequests+1; i++ {
		p.CheckAddr(netip.MustParseAddr("2001:db8:5:6::666"))
	}
	if !p.Banned(netip.MustParseAddr("2001:db8:5:6::777")) {
		t.Fatal("the gateway's /64 is not banned for a neighbour's flood")
	}
	if p.Banned(gw) || !p.Admit(gw) || !p.CheckAddr(gw) {
		t.Fatal("the exempt gateway is refused for its neighbour's flood")
	}
	// A ban of the exempt address itself: Ban bans it alone.
	if !p.Ban(trunk, time.Hour, Manual) || !p.Banned(trunk) || p.Admit(trunk) || p.CheckAddr(trunk) {
		t.Fatal("a ban of the exempt trunk itself does not refuse it")
	}
	if !p.Banned(neighbour) || p.Banned(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("the trunk's own ban and its /64's are confused")
	}
	// Unban of the trunk lifts its own ban, not the /64's, which does
	// not refuse it; Unban of a neighbour lifts the /64's.
	if !p.Unban(trunk) || !p.Admit(trunk) || p.Admit(neighbour) {
		t.Fatal("Unban of the exempt trunk")
	}
	if !p.Unban(neighbour) || !p.Admit(neighbour) || p.Unban(neighbour) {
		t.Fatal("Unban of the /64 through a neighbour")
	}
}

// An IPv6 prefix and the first address in it have the same Key: their
// bans are told apart by the prefix length.
func TestBanPrefixAndItsFirstAddressApart(t *testing.T) {
	p, clock := newPike(t, nil, nil)
	first := netip.MustParseAddr("2001:db8:7::")
	now := clock.Now()
	if !p.bans.Ban(KeyOf(first, 64), 64, now, now+60_000, Manual) || !p.bans.Ban(KeyOf(first, 128), 128, now, now+120_000, Manual) {
		t.Fatal("the two bans are one")
	}
	if p.bans.live.Load() != 2 || p.bans.single.Load() != 1 || len(p.List()) != 2 {
		t.Fatalf("live %d single %d, bans %+v", p.bans.live.Load(), p.bans.single.Load(), p.List())
	}
	if !p.bans.Unban(KeyOf(first, 64), 64, now) || !p.bans.Banned(KeyOf(first, 128), 128, now) || p.bans.Banned(KeyOf(first, 64), 64, now) {
		t.Fatal("Unban of the prefix")
	}
	clock.Advance(3 * time.Minute)
	if n := p.bans.Sweep(clock.Now(), 0, nil); n != 0 || p.bans.live.Load() != 0 || p.bans.single.Load() != 0 {
		t.Fatalf("after the sweep: %d in force, live %d, single %d", n, p.bans.live.Load(), p.bans.single.Load())
	}
}

// The ban table never holds more than max_bans, whatever the number of
// offenders; a long ban outlasts the short ones it shares a bucket with.
func TestBanTableBounded(t *testing.T) {
	s := DefaultSettings()
	s.MaxBans = 1024
	p, clock := newPike(t, s, nil)
	long := netip.MustParseAddr("203.0.113.9")
	p.Ban(long, 24*time.Hour, Manual)
	for i := 0; i < 100_000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.Ban(a, time.Minute+time.Duration(i)*time.Millisecond, Flood)
		if i%1000 == 0 {
			clock.Advance(time.Millisecond)
		}
	}
	st := p.bans.Stats(clock.Now())
	if st.Slots != 1024 || st.Active != 1024 || st.Evictions != 100_001-1024 {
		t.Fatalf("stats %+v", st)
	}
	if !p.Banned(long) {
		t.Fatal("the day-long ban was displaced by minute-long ones")
	}
	// The newest offender is banned (it displaced the oldest of its bucket).
	if !p.Banned(netip.AddrFrom4([4]byte{10, 1, 0x86, 0x9f})) { // i = 99999
		t.Fatal("the newest ban is missing")
	}
	clock.Advance(25 * time.Hour)
	if n := p.bans.Sweep(clock.Now(), 0, nil); n != 0 || p.bans.live.Load() != 0 {
		t.Fatalf("after expiry: %d in force, %d slots held", n, p.bans.live.Load())
	}
	if !p.Admit(long) {
		t.Fatal("expired ban still refused")
	}
}

// An attacker who wants a ban lifted cannot aim at its bucket. With the
// unseeded xxhash the tables used, it could compute offline 8 addresses
// in the banned address's bucket and flood from each, spoofed over UDP:
// 8 × 31 packets evicted the ban (authban's 30-minute ban for 10 wrong
// passwords among them). The attacker here knows the code and the table's
// size, not the seed: it floods from 8 addresses that collide with the
// banned one under the unseeded hash, and the ban stays. Had it known
// the seed, the same flood would have evicted it (the control below).
func TestBanNotEvictedByCraftedCollisions(t *testing.T) {
	clock := shards.NewManualClock(1_700_000_000_000)
	s := *DefaultSettings()
	p, err := New(clock, s, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cracker := netip.MustParseAddr("198.51.100.7")
	for i := 0; i < s.MaxRequests+1; i++ {
		p.CheckAddr(cracker)
	}
	if !p.Banned(cracker) {
		t.Fatal("flooder not banned")
	}
	// colliding returns ways addresses in 203.0.0.0/8 whose hash puts them
	// in cracker's shard and bucket.
	colliding := func(hash func(Key) uint64) []netip.Addr {
		bucketOf := func(a netip.Addr) (uint64, uint64) {
			h := hash(KeyOf(a, 64))
			return h & p.bans.shardMask, (h >> 32) & p.bans.bucketMask
		}
		ts, tb := bucketOf(cracker)
		var same []netip.Addr
		for i := uint32(1); len(same) < ways; i++ {
			a := netip.AddrFrom4([4]byte{203, byte(i >> 16), byte(i >> 8), byte(i)})
			if s2, b2 := bucketOf(a); s2 == ts && b2 == tb {
				same = append(same, a)
			}
		}
		return same
	}
	flood := func(from []netip.Addr) {
		for _, a := range from {
			clock.Advance(time.Millisecond) // each ban ends after cracker's
			for i := 0; i < s.MaxRequests+1; i++ {
				p.CheckAddr(a)
			}
		}
	}
	unseeded := func(k Key) uint64 { // what an attacker can compute
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], k.Hi)
		binary.LittleEndian.PutUint64(b[8:], k.Lo)
		return xxhash.Sum64(b[:])
	}
	flood(colliding(unseeded))
	if !p.Banned(cracker) {
		t.Fatal("ban evicted by addresses crafted to collide under the unseeded hash")
	}
	flood(colliding(func(k Key) uint64 { return k.hash(p.bans.seed) }))
	if p.Banned(cracker) {
		t.Fatal("control: addresses in the ban's bucket under the table's own seed did not evict it")
	}
}

// A ban is extended, never shortened, and Unban lifts it (and forgets the
// rate, so the source starts afresh).
func TestBanExtendAndUnban(t *testing.T) {
	p, clock := newPike(t, nil, nil)
	a := netip.MustParseAddr("192.0.2.20")
	if !p.Ban(a, time.Hour, Manual) || p.Ban(a, time.Minute, Flood) {
		t.Fatal("Ban's report of a new ban is wrong")
	}
	clock.Advance(30 * time.Minute)
	if !p.Banned(a) {
		t.Fatal("a shorter ban shortened the longer one")
	}
	if l := p.List(); len(l) != 1 || l[0].Reason != "manual" {
		t.Fatalf("bans %+v", l)
	}
	if !p.Unban(a) || p.Banned(a) || p.Unban(a) {
		t.Fatal("Unban")
	}
	if p.bans.live.Load() != 0 {
		t.Fatalf("live %d after unban", p.bans.live.Load())
	}
	if n := RegisterReason("unit-test"); n.String() != "unit-test" || RegisterReason("unit-test") != n {
		t.Fatal("RegisterReason")
	}
}

// Check, Admit and the ban decision allocate nothing.
func TestCheckAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p, clock := newPike(t, nil, groupSet{})
	ok := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::5")
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		p.CheckAddr(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})) // new sources, ban decisions
		p.CheckAddr(ok)
		p.CheckAddr(v6)
		clock.Advance(time.Millisecond)
	}); a != 0 {
		t.Fatalf("CheckAddr: %.1f allocations", a)
	}
	if p.Banned(ok) == false && p.Banned(v6) == false {
		t.Fatal("the allocation test did not reach the over-limit path")
	}
	if a := testing.AllocsPerRun(1000, func() {
		p.Admit(ok)
		p.Admit(netip.MustParseAddr("192.0.2.99"))
	}); a != 0 {
		t.Fatalf("Admit: %.1f allocations", a)
	}
	// A /64 that holds an exempt address: its other addresses counted and
	// banned one by one, the exempt one admitted under the /64's ban.
	s := DefaultSettings()
	s.Exempt = append(s.Exempt, "2001:db8:1:2::10")
	p, clock = newPike(t, s, groupSet{})
	trunk := netip.MustParseAddr("2001:db8:1:2::10")
	flooder := netip.MustParseAddr("2001:db8:1:2::666")
	b := trunk.As16()
	if a := testing.AllocsPerRun(1000, func() {
		i++
		b[14], b[15] = byte(i>>8), byte(i)
		p.CheckAddr(netip.AddrFrom16(b)) // new sources
		p.CheckAddr(flooder)             // banned alone
		p.Admit(trunk)
		p.CheckAddr(trunk)
		clock.Advance(time.Millisecond)
	}); a != 0 {
		t.Fatalf("a /64 with an exempt address: %.1f allocations", a)
	}
	p.bans.Ban(KeyOf(trunk, 64), 64, clock.Now(), clock.Now()+3_600_000, Manual)
	if a := testing.AllocsPerRun(1000, func() {
		p.Admit(trunk)
		p.Admit(flooder)
		p.CheckAddr(trunk)
	}); a != 0 {
		t.Fatalf("a /64 banned with an exempt address: %.1f allocations", a)
	}
	if !p.Admit(trunk) || !p.Banned(flooder) || p.bans.single.Load() != 1 {
		t.Fatal("the allocation test did not reach the exempt path")
	}
}

// Through the real core and router, a request checked by pike and answered
// costs no allocation, and neither does one refused.
func TestCheckInRouteAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := newHarness(t, nil, nil)
	h.Keep = false
	msgs := make([][]byte, 4096)
	for i := range msgs {
		msgs[i] = []byte(options(100000 + i))
	}
	pkt := &transport.Packet{Listener: h.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	i := 0
	send := func(src netip.AddrPort) {
		i++
		pkt.Data, pkt.Src = msgs[i%len(msgs)], src
		h.Handle(pkt)
	}
	good := netip.MustParseAddrPort("192.0.2.1:5060")
	for j := 0; j < 100; j++ {
		send(good) // warm the pools
		h.Clock.Advance(100 * time.Millisecond)
	}
	if a := testing.AllocsPerRun(1000, func() {
		send(good)
		h.Clock.Advance(100 * time.Millisecond) // 20 per window: under the limit
	}); a != 0 {
		t.Fatalf("a checked and answered request: %.1f allocations", a)
	}
	// A banned source's request (one on a connection opened before the
	// ban: UDP ones never reach the core) is dropped. Dropping keeps the
	// transaction for 64·T1 to absorb retransmissions: the clock moves
	// so that their pool is reused rather than grown.
	bad := netip.MustParseAddrPort("192.0.2.66:5060")
	h.p.Ban(bad.Addr(), 24*time.Hour, Manual)
	banned := func() {
		send(bad)
		h.Clock.Advance(100 * time.Millisecond)
	}
	for j := 0; j < 1000; j++ {
		banned()
	}
	before := h.dropped
	if a := testing.AllocsPerRun(1000, banned); a != 0 {
		t.Fatalf("a banned source's request: %.1f allocations", a)
	}
	if h.dropped-before != 1001 {
		t.Fatalf("%d of 1001 requests from a banned source dropped", h.dropped-before)
	}
}
