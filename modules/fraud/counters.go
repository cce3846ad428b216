package fraud

import (
	"encoding/binary"

	"switchboard/shards"
)

// window is the span of the calls-per-minute count, in one-second buckets:
// the count is of the calls in the last 60 seconds, sliding (OpenSIPS
// keeps the same per-second window).
const window = 60

// counter is the state of one caller for one profile and matched prefix
// (OpenSIPS keeps its statistics per user and prefix the same way).
type counter struct {
	rule    int64  // ID of the rule matched last: a new rule starts a new interval
	lastSec int64  // Unix second of the last call
	lastNum uint64 // hash of the number called last
	day     int32  // local day of the last call
	cpm     int32  // calls in the window
	total   int32  // calls of the day (since the interval began)
	conc    int32  // calls counted and not yet ended
	seq     int32  // consecutive calls to lastNum
	win     [window]uint16

	// prev and next link the shard's counters from the most recently
	// used to the least (lru), so that a full shard evicts in O(1).
	prev, next *shards.Entry[counter]
}

// lru is one shard's list of counters by last use, guarded by the shard's
// lock (Fraud.lru is indexed by Shard.Index).
type lru struct {
	head, tail *shards.Entry[counter]
}

func (l *lru) pushFront(e *shards.Entry[counter]) {
	e.Value.prev, e.Value.next = nil, l.head
	if l.head != nil {
		l.head.Value.prev = e
	} else {
		l.tail = e
	}
	l.head = e
}

func (l *lru) unlink(e *shards.Entry[counter]) {
	v := &e.Value
	if v.prev != nil {
		v.prev.Value.next = v.next
	} else {
		l.head = v.next
	}
	if v.next != nil {
		v.next.Value.prev = v.prev
	} else {
		l.tail = v.prev
	}
	v.prev, v.next = nil, nil
}

func (l *lru) touch(e *shards.Entry[counter]) {
	if l.head != e {
		l.unlink(e)
		l.pushFront(e)
	}
}

// count records a call to a number (hashed) at sec, on local day, that
// rule r matched. A rule other than the last one matched (another time
// window's rule, or the first call) starts a new interval: the per-minute,
// daily and sequential counts start again, as in OpenSIPS. So does a new
// day for the daily and sequential counts. Concurrent calls are never reset
// here: they end when the calls do.
func (v *counter) count(r *rule, sec int64, day int32, num uint64) {
	if v.rule != r.id {
		v.rule, v.total, v.seq, v.lastNum = r.id, 0, 0, 0
		v.cpm, v.win = 0, [window]uint16{}
	}
	if v.day != day {
		v.day, v.total, v.seq, v.lastNum = day, 0, 0, 0
	}
	if v.seq > 0 && num == v.lastNum {
		v.seq++
	} else {
		v.lastNum, v.seq = num, 1
	}
	v.total++
	v.slide(sec)
	if b := &v.win[sec%window]; *b < 1<<16-1 {
		*b++
		v.cpm++
	}
	v.lastSec = sec
}

// slide empties the buckets of the seconds after lastSec up to sec, which
// have left the window.
func (v *counter) slide(sec int64) {
	gap := sec - v.lastSec
	if gap <= 0 {
		return
	}
	if gap >= window {
		v.cpm, v.win = 0, [window]uint16{}
		return
	}
	for s := v.lastSec + 1; s <= sec; s++ {
		b := &v.win[s%window]
		v.cpm -= int32(*b)
		*b = 0
	}
}

// cpmAt is the per-minute count as it stands at sec, without a call.
func (v *counter) cpmAt(sec int64) int32 {
	var n int32
	for s := max(sec-window+1, v.lastSec-window+1); s <= v.lastSec; s++ {
		n += int32(v.win[s%window])
	}
	return n
}

// judge compares the counts, the call being checked included, with r's
// thresholds: the critical ones first, then the warnings, each in the
// order cpm, calls of the day, concurrent, sequential (OpenSIPS's order).
// A count reaches a threshold when it is equal to it or above.
func (v *counter) judge(r *rule) (Result, param, int32, int32) {
	vals := [numParams]int32{v.cpm, v.total, v.conc + 1, v.seq}
	for p := param(0); p < numParams; p++ {
		if t := r.limits[p].critical; t > 0 && vals[p] >= t {
			return Critical, p, vals[p], t
		}
	}
	for p := param(0); p < numParams; p++ {
		if t := r.limits[p].warning; t > 0 && vals[p] >= t {
			return Warning, p, vals[p], t
		}
	}
	return OK, 0, 0, 0
}

// The key of a counter: the caller's length (2 bytes), the caller, the
// profile (4 bytes) and the matched prefix. Callers longer than
// maxCaller bytes are cut: the longest user@domain a subscriber can have
// (128 + 1 + 253 bytes) fits.
const (
	maxCaller = 400
	maxKey    = 2 + maxCaller + 4 + 64
)

func appendKey(dst, caller []byte, profile int, prefix string) []byte {
	if len(caller) > maxCaller {
		caller = caller[:maxCaller]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(caller)))
	dst = append(dst, caller...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(profile))
	return append(dst, prefix...)
}

// splitKey is appendKey's inverse.
func splitKey(k []byte) (caller []byte, profile int, prefix []byte) {
	n := int(binary.BigEndian.Uint16(k))
	caller = k[2 : 2+n]
	profile = int(binary.BigEndian.Uint32(k[2+n:]))
	return caller, profile, k[2+n+4:]
}

// counterFor returns the caller's counter in s (locked), adding it when
// there is none, and marks it most recently used. A full shard first
// evicts a counter (evictOne).
func (f *Fraud) counterFor(s *shards.Shard[counter], h uint64, key []byte) *shards.Entry[counter] {
	l := &f.lru[s.Index()]
	if e := s.Get(h, key); e != nil {
		l.touch(e)
		return e
	}
	if s.Len() >= f.perShard {
		f.evictOne(s, l)
	}
	e, err := s.Insert(h, key)
	if err != nil {
		return nil
	}
	l.pushFront(e)
	return e
}

// evictLook is how many of the least recently used counters eviction
// looks at for one without calls in progress.
const evictLook = 16

// evictOne removes the least recently used counter without calls in
// progress among the evictLook least recently used, or the least recently
// used of all when each of those has calls in progress (their ends then
// release nothing).
func (f *Fraud) evictOne(s *shards.Shard[counter], l *lru) {
	victim := l.tail
	for e, n := l.tail, 0; e != nil && n < evictLook; e, n = e.Value.prev, n+1 {
		if e.Value.conc == 0 {
			victim = e
			break
		}
	}
	if victim != nil {
		f.removeCounter(s, victim)
		f.evicted.Inc()
	}
}

// removeCounter unlinks e from its shard's list and removes it (s locked).
func (f *Fraud) removeCounter(s *shards.Shard[counter], e *shards.Entry[counter]) {
	f.lru[s.Index()].unlink(e)
	s.Remove(e)
}

// idleFor is how long a counter without calls in progress is kept after
// its last call: past it every count it holds has started again (the
// window, the day), so nothing is lost by dropping it.
const idleFor = 24 * 60 * 60 // seconds

// sweepCounters drops the counters idle for a day.
func (f *Fraud) sweepCounters(nowSec int64) {
	f.counters.Range(func(s *shards.Shard[counter], e *shards.Entry[counter]) bool {
		if v := &e.Value; v.conc == 0 && nowSec-v.lastSec >= idleFor {
			f.removeCounter(s, e)
		}
		return true
	})
}
