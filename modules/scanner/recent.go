package scanner

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"switchboard/parser"
	"switchboard/transport"
)

// uaKept is how much of a blocked request's User-Agent the recent list
// keeps: enough to recognise a tool, bounded whatever was sent.
const uaKept = 64

// block is one blocked request in the recent list; fixed size, so that
// recording one copies bytes into a slot and allocates nothing.
type block struct {
	at     int64 // ms
	src    netip.AddrPort
	proto  transport.Proto
	method parser.Method
	rule   string // pattern or fingerprint
	ua     [uaKept]byte
	uaLen  uint8
}

// recent keeps the last blocked requests in a ring. A writer takes the
// next slot with one atomic add and locks only that slot, so blocked
// requests on several cores do not queue on one lock; the listing reads
// the slots one by one.
type recent struct {
	slots []slot
	next  atomic.Uint64
	want  int // the recent setting it was made for
}

type slot struct {
	mu  sync.Mutex
	seq uint64 // 1 + the order of the block in it; 0: empty
	b   block
}

func newRecent(size int) *recent {
	return &recent{slots: make([]slot, size), want: size}
}

// add records a block; it allocates nothing.
func (r *recent) add(at int64, src netip.AddrPort, proto transport.Proto, method parser.Method, rule string, ua []byte) {
	n := r.next.Add(1)
	s := &r.slots[(n-1)%uint64(len(r.slots))]
	s.mu.Lock()
	if n > s.seq { // a writer lapped by faster ones leaves the newer block
		s.seq = n
		b := &s.b
		b.at, b.src, b.proto, b.method, b.rule = at, src, proto, method, rule
		b.uaLen = uint8(copy(b.ua[:], ua))
	}
	s.mu.Unlock()
}

// list returns the blocks kept, newest first, at most limit (0: all).
func (r *recent) list(limit int) []block {
	type entry struct {
		seq uint64
		b   block
	}
	var all []entry
	for i := range r.slots {
		s := &r.slots[i]
		s.mu.Lock()
		if s.seq != 0 {
			all = append(all, entry{s.seq, s.b})
		}
		s.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.seq, a.seq) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	out := make([]block, len(all))
	for i := range all {
		out[i] = all[i].b
	}
	return out
}
