package siptrace

import "sync/atomic"

// txSet remembers the transactions a route chose to trace (mode route),
// by a 64-bit key of Call-ID and CSeq number: a fixed table of
// txSetSize words in sets of txWays, allocated once, read and written
// with atomics (no lock on the SIP path). Each word holds the key's top
// 48 bits and the second (mod 65536) it was added; a new key takes a free
// word of its set, else the oldest. So the table remembers at least the
// last txSetSize/txWays transactions traced per set: with many traced
// transactions alive at once, the oldest of a set stop being traced.
// Two keys sharing 48 bits are taken for one (1 in 2^48).
type txSet struct {
	words []atomic.Uint64
	sets  uint64 // number of sets - 1 (a power of two minus one)
}

const (
	txWays    = 4
	txSetSize = 1 << 16 // 512 KiB
	tagMask   = ^uint64(0xffff)
)

func newTxSet(size int) *txSet {
	return &txSet{words: make([]atomic.Uint64, size), sets: uint64(size/txWays - 1)}
}

// tag is the part of a key stored; never zero (zero is a free word).
func tag(key uint64) uint64 {
	if t := key & tagMask; t != 0 {
		return t
	}
	return 1 << 16
}

func (s *txSet) set(key uint64) []atomic.Uint64 {
	i := (key >> 16 & s.sets) * txWays
	return s.words[i : i+txWays]
}

// has reports whether key was added (and not pushed out since).
func (s *txSet) has(key uint64) bool {
	tg := tag(key)
	ws := s.set(key)
	for i := range ws {
		if ws[i].Load()&tagMask == tg {
			return true
		}
	}
	return false
}

// add adds key at second sec and reports whether it was new.
func (s *txSet) add(key uint64, sec int64) bool {
	tg := tag(key)
	ws := s.set(key)
	now := uint64(sec) & 0xffff
	oldest, age := 0, uint64(0)
	for i := range ws {
		w := ws[i].Load()
		if w&tagMask == tg {
			ws[i].Store(tg | now)
			return false
		}
		a := uint64(1 << 17) // a free word beats any age
		if w != 0 {
			a = (now - w&0xffff) & 0xffff
		}
		if a > age || i == 0 {
			oldest, age = i, a
		}
	}
	ws[oldest].Store(tg | now)
	return true
}
