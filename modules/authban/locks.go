package authban

import (
	"sync"
	"sync/atomic"

	"switchboard/modules/pike"
)

// locks is the table of locked accounts: fixed in size (max_accounts),
// sharded and bucketed like pike's tables. Each slot keeps the account's
// name (cut at nameCap bytes) for listings, so that locking allocates
// nothing. A new lock that finds its bucket full of live locks takes the
// slot of the one that ends soonest.
type locks struct {
	shards     []lockShard
	shardMask  uint64
	bucketMask uint64
	live       atomic.Int64 // occupied slots; 0 lets Locked answer at once
}

const (
	lockShards = 16
	lockWays   = 8
	nameCap    = 96
)

type lockShard struct {
	mu     sync.Mutex
	slots  []lockSlot
	made   uint64
	evicts uint64
}

type lockSlot struct {
	key   pike.Key
	until int64 // ms; 0: free
	since int64
	n     uint8
	name  [nameCap]byte
}

func newLocks(slots int) *locks {
	perShard := pow2(max((slots+lockShards-1)/lockShards, lockWays))
	t := &locks{
		shards:     make([]lockShard, lockShards),
		shardMask:  lockShards - 1,
		bucketMask: uint64(perShard/lockWays - 1),
	}
	all := make([]lockSlot, lockShards*perShard)
	for i := range t.shards {
		t.shards[i].slots = all[i*perShard : (i+1)*perShard : (i+1)*perShard]
	}
	return t
}

func (t *locks) locate(k pike.Key) (*lockShard, []lockSlot) {
	h := k.Hi ^ k.Lo>>7 // the key is a keyed hash already
	sh := &t.shards[h&t.shardMask]
	b := int((h>>8)&t.bucketMask) * lockWays
	return sh, sh.slots[b : b+lockWays : b+lockWays]
}

// lock locks k until the given time; a lock in force is extended, never
// shortened. name is copied. It reports whether k was not locked.
func (t *locks) lock(k pike.Key, name []byte, now, until int64) bool {
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var victim *lockSlot
	for i := range bucket {
		s := &bucket[i]
		if s.until != 0 && s.key == k {
			if s.until > now {
				s.until = max(s.until, until)
				return false
			}
			victim = s
			break
		}
		if victim == nil || s.until < victim.until {
			victim = s
		}
	}
	switch {
	case victim.until == 0:
		t.live.Add(1)
	case victim.until > now && victim.key != k:
		sh.evicts++
	}
	victim.key, victim.until, victim.since = k, until, now
	victim.n = uint8(copy(victim.name[:], name))
	sh.made++
	return true
}

func (t *locks) locked(k pike.Key, now int64) bool {
	if t.live.Load() == 0 {
		return false
	}
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range bucket {
		if s := &bucket[i]; s.key == k && s.until > now {
			return true
		}
	}
	return false
}

func (t *locks) unlock(k pike.Key, now int64) bool {
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range bucket {
		if s := &bucket[i]; s.until != 0 && s.key == k {
			was := s.until > now
			s.until, s.n = 0, 0
			t.live.Add(-1)
			return was
		}
	}
	return false
}

// Lock is one entry of a listing.
type Lock struct {
	Account      string
	Since, Until int64 // ms
}

// sweep frees expired slots, counts the locks in force and calls f for
// those made at or after since (when f is not nil); clear also lifts the
// live ones.
func (t *locks) sweep(now, since int64, clear bool, f func(Lock)) (n int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			s := &sh.slots[j]
			switch {
			case s.until == 0:
			case s.until <= now || clear:
				if s.until > now {
					n++
				}
				s.until, s.n = 0, 0
				t.live.Add(-1)
			default:
				n++
				if f != nil && s.since >= since {
					f(Lock{string(s.name[:s.n]), s.since, s.until})
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// lockStats are the table's figures.
type lockStats struct {
	Slots, Active int
	Made, Evicted uint64
}

func (t *locks) stats(now int64) lockStats {
	var st lockStats
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		st.Slots += len(sh.slots)
		for j := range sh.slots {
			if sh.slots[j].until > now {
				st.Active++
			}
		}
		st.Made += sh.made
		st.Evicted += sh.evicts
		sh.mu.Unlock()
	}
	return st
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
