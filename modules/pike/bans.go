package pike

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Reason says why a source was banned; modules that ban through pike
// register their own with RegisterReason.
type Reason uint8

// maxReasons bounds RegisterReason: the per-reason counters are arrays.
const maxReasons = 8

// The reasons pike itself bans for.
const (
	// Flood: the source sent more than max_requests within the window.
	Flood Reason = iota
	// Manual: the pike.ban management command.
	Manual
)

var (
	reasonMu    sync.Mutex
	reasonNames = []string{"flood", "manual"}
)

// RegisterReason adds a ban reason (its name labels the bans_total metric
// and the listing) and returns it; the same name returns the same Reason.
// Call it from init or New. It panics past eight reasons.
func RegisterReason(name string) Reason {
	reasonMu.Lock()
	defer reasonMu.Unlock()
	for i, n := range reasonNames {
		if n == name {
			return Reason(i)
		}
	}
	if len(reasonNames) == maxReasons {
		panic("pike: too many ban reasons")
	}
	reasonNames = append(reasonNames, name)
	return Reason(len(reasonNames) - 1)
}

func (r Reason) String() string {
	reasonMu.Lock()
	defer reasonMu.Unlock()
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Bans is the ban table: a fixed number of slots, sharded and bucketed
// like Counters, under a bucket hash seeded at random when it is made. A
// ban expires by itself (Banned compares its end with the clock); a
// sweeper frees the slots of expired bans.
//
// When a new ban finds its bucket full of live bans, it takes the slot of
// the ban that ends soonest (counted in Evictions): the newest offender is
// the one sending now, and a long manual ban outlasts the automatic ones
// around it. Filling the table takes max_bans offenders each over the
// limit, and costs them only the oldest bans of their own buckets. An
// attacker cannot aim at one ban: without the seed, no address can be
// chosen to share its bucket, and flushing it takes about as many bans
// as the table has slots, each over the limit.
type Bans struct {
	shards     []banShard
	shardMask  uint64
	bucketMask uint64
	seed       maphash.Seed // of the bucket hash, random
	// live counts occupied slots (bans in force, and expired ones the
	// sweeper has not freed yet). Zero, the usual case, lets Admit answer
	// without hashing or locking.
	live atomic.Int64
	// single counts the occupied slots that ban one IPv6 address (bits
	// 128): while it is zero, an IPv6 source banned by prefix needs no
	// second lookup.
	single atomic.Int64
}

type banShard struct {
	mu      sync.Mutex
	slots   []banSlot
	refused uint64 // sources refused (Admit and Check)
	evicts  uint64
	made    [maxReasons]uint64
	_       [64 - (8+24+16+8*maxReasons)%64]byte
}

type banSlot struct {
	key    Key
	until  int64 // ms; 0: free
	since  int64 // ms
	bits   uint8 // prefix length of an IPv6 key (128: one address)
	reason Reason
}

// is reports whether s bans k (of prefix length bits). An IPv6 prefix
// and the first address in it have the same Key: the length tells them
// apart. An IPv4 key is one address whatever the length.
func (s *banSlot) is(k Key, bits uint8) bool {
	return s.until != 0 && s.key == k && (s.bits == bits || k.Is4())
}

// isSingle reports whether s is occupied by the ban of one IPv6 address.
func (s *banSlot) isSingle() bool { return s.until != 0 && s.bits == 128 && !s.key.Is4() }

// put stores v in s (banSlot{} frees it), keeping live and single.
func (t *Bans) put(s *banSlot, v banSlot) {
	var live, single int64
	if s.until != 0 {
		live--
	}
	if s.isSingle() {
		single--
	}
	if v.until != 0 {
		live++
	}
	if v.isSingle() {
		single++
	}
	*s = v
	if live != 0 {
		t.live.Add(live)
	}
	if single != 0 {
		t.single.Add(single)
	}
}

// NewBans makes a ban table of at least slots entries in shards shards.
func NewBans(slots, shards int) *Bans {
	shards = pow2(max(shards, 1))
	perShard := pow2(max((slots+shards-1)/shards, ways))
	t := &Bans{
		shards:     make([]banShard, shards),
		shardMask:  uint64(shards - 1),
		bucketMask: uint64(perShard/ways - 1),
		seed:       maphash.MakeSeed(),
	}
	all := make([]banSlot, shards*perShard)
	for i := range t.shards {
		t.shards[i].slots = all[i*perShard : (i+1)*perShard : (i+1)*perShard]
	}
	return t
}

// Slots is the table's size.
func (t *Bans) Slots() int { return len(t.shards) * len(t.shards[0].slots) }

func (t *Bans) locate(k Key) (*banShard, []banSlot) {
	h := k.hash(t.seed)
	sh := &t.shards[h&t.shardMask]
	b := int((h>>32)&t.bucketMask) * ways
	return sh, sh.slots[b : b+ways : b+ways]
}

// Ban bans k, an IPv6 prefix of length bits (128: one address) or an
// IPv4 address, until the given time (ms). A ban already in force is
// extended, never shortened. It reports whether k was not banned before.
func (t *Bans) Ban(k Key, bits int, now, until int64, r Reason) bool {
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var victim *banSlot
	for i := range bucket {
		s := &bucket[i]
		if s.is(k, uint8(bits)) {
			if s.until > now {
				if until > s.until {
					s.until, s.reason = until, r
				}
				return false
			}
			victim = s // expired, not swept yet: a new ban
			break
		}
		if victim == nil || s.until < victim.until {
			victim = s // free (0) or ending soonest
		}
	}
	if victim.until > now && !victim.is(k, uint8(bits)) {
		sh.evicts++
	}
	t.put(victim, banSlot{key: k, until: until, since: now, bits: uint8(bits), reason: r})
	sh.made[r]++
	return true
}

// Banned reports whether k (of prefix length bits) is banned at now.
func (t *Bans) Banned(k Key, bits int, now int64) bool {
	return t.lookup(k, bits, now, false)
}

// lookup is Banned; count: a ban found counts a refused source (the
// receive path).
func (t *Bans) lookup(k Key, bits int, now int64, count bool) bool {
	if t.live.Load() == 0 {
		return false
	}
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	b := false
	for i := range bucket {
		if s := &bucket[i]; s.is(k, uint8(bits)) && s.until > now {
			b = true
			break
		}
	}
	if b && count {
		sh.refused++
	}
	sh.mu.Unlock()
	return b
}

// countRefused counts a source refused for k's ban after a lookup that
// did not count it.
func (t *Bans) countRefused(k Key) {
	sh, _ := t.locate(k)
	sh.mu.Lock()
	sh.refused++
	sh.mu.Unlock()
}

// Unban lifts k's ban (of prefix length bits); it reports whether k was
// banned.
func (t *Bans) Unban(k Key, bits int, now int64) bool {
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range bucket {
		if s := &bucket[i]; s.is(k, uint8(bits)) {
			was := s.until > now
			t.put(s, banSlot{})
			return was
		}
	}
	return false
}

// Clear lifts every ban and returns how many were in force.
func (t *Bans) Clear(now int64) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			if s := &sh.slots[j]; s.until != 0 {
				if s.until > now {
					n++
				}
				t.put(s, banSlot{})
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Ban is one entry of a listing.
type Ban struct {
	Key    Key
	Bits   int // IPv6 prefix length (128: one address)
	Reason Reason
	Since  int64 // ms
	Until  int64 // ms
}

// Sweep frees the slots of expired bans and calls f (when not nil) for
// every ban in force made at or after since (ms), so that the caller can
// log new bans off the receive path. It returns the number in force.
func (t *Bans) Sweep(now, since int64, f func(Ban)) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			s := &sh.slots[j]
			switch {
			case s.until == 0:
			case s.until <= now:
				t.put(s, banSlot{})
			default:
				n++
				if f != nil && s.since >= since {
					f(Ban{s.key, int(s.bits), s.reason, s.since, s.until})
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// List returns the bans in force.
func (t *Bans) List(now int64) []Ban {
	var out []Ban
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			if s := &sh.slots[j]; s.until > now {
				out = append(out, Ban{s.key, int(s.bits), s.reason, s.since, s.until})
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// BanStats are the ban table's figures.
type BanStats struct {
	Slots     int
	Active    int                // bans in force
	Refused   uint64             // requests, datagrams and connections refused
	Evictions uint64             // bans displaced by newer ones (table full)
	Made      [maxReasons]uint64 // bans made, by Reason
}

// Stats walks the table (for metrics scrapes).
func (t *Bans) Stats(now int64) BanStats {
	st := BanStats{Slots: t.Slots()}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			if sh.slots[j].until > now {
				st.Active++
			}
		}
		st.Refused += sh.refused
		st.Evictions += sh.evicts
		for r, n := range sh.made {
			st.Made[r] += n
		}
		sh.mu.Unlock()
	}
	return st
}
