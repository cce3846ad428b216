package dispatcher

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/cespare/xxhash/v2"

	"switchboard/routing"
)

// Algorithm is how SelectDst chooses a destination of a set.
type Algorithm uint8

// The algorithms, with the OpenSIPS (O) and Kamailio (K) number of their
// nearest equivalent.
const (
	// CallID hashes the Call-ID (O 0, K 0): every request of a call, and
	// its retransmissions, go to the same destination.
	CallID Algorithm = iota
	// FromUser hashes the user part of the From URI (O 1 and K 1 with the
	// user-only flag): a caller's calls go to the same destination.
	FromUser
	// RURI hashes the user and host of the Request-URI (O 3, K 3): calls
	// to one number or conference go to the same destination.
	RURI
	// RoundRobin takes the destinations in turn (K 4; O 4 without
	// weights).
	RoundRobin
	// Weight takes the destinations in proportion to their weights, in a
	// fixed interleaved order (K 9).
	Weight
	// LeastCalls takes the destination with the fewest calls in progress
	// relative to its weight (K 10, call load distribution).
	LeastCalls
	// Priority takes the active destination of highest priority (O 8,
	// K 8): primary and backups.
	Priority
	numAlgorithms
)

var algorithmNames = [numAlgorithms]string{"call_id", "from_user", "ruri", "round_robin", "weight", "least_calls", "priority"}

func (a Algorithm) String() string {
	if a < numAlgorithms {
		return algorithmNames[a]
	}
	return "unknown"
}

// ParseAlgorithm parses an algorithm name: call_id, from_user, ruri,
// round_robin, weight, least_calls or priority.
func ParseAlgorithm(s string) (Algorithm, error) {
	for i, n := range algorithmNames {
		if strings.EqualFold(s, n) {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not an algorithm: want one of %s", s, strings.Join(algorithmNames[:], ", "))
}

// pick returns the index in s of the destination alg chooses for the
// request, or -1 when no destination of s is active.
func (s *set) pick(c *routing.Ctx, alg Algorithm) int {
	switch alg {
	case CallID:
		return s.rendezvous(xxhash.Sum64(c.CallID()))
	case FromUser:
		u := c.FUser()
		if len(u) == 0 {
			u = c.FU()
		}
		return s.rendezvous(xxhash.Sum64(u))
	case RURI:
		return s.rendezvous(ruriHash(c))
	case RoundRobin:
		return s.roundRobin()
	case Weight:
		return s.weighted()
	case LeastCalls:
		return s.leastCalls()
	case Priority:
		return s.first()
	}
	return -1
}

// ruriHash hashes user@host of the Request-URI, the host in lower case
// (hosts are case-insensitive), in a stack buffer: a longer URI is hashed
// on its first 256 bytes, so hashing never allocates.
func ruriHash(c *routing.Ctx) uint64 {
	user, host := c.RUser(), c.RDomain()
	var buf [256]byte
	user = user[:min(len(user), len(buf)-1)]
	host = host[:min(len(host), len(buf)-1-len(user))]
	b := append(buf[:0], user...)
	b = append(b, '@')
	for _, ch := range host {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	return xxhash.Sum64(b)
}

// mix64 is the finaliser of SplitMix64: a well spread 64-bit value from
// another, for rendezvous scores.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// rendezvous returns the active destination with the highest score for
// key h (rendezvous, or highest-random-weight, hashing; weighted with
// score -ln(u)/w, the lowest winning). Unlike hash-modulo-n, when a
// destination goes down only its own keys move, spread over the others in
// proportion to their weights, and they come back when it does: a caller
// or a conference keeps its server while others fail.
func (s *set) rendezvous(h uint64) int {
	best := -1
	if s.uniform {
		var top uint64
		for i := range s.dests {
			if !s.dests[i].up() {
				continue
			}
			if v := mix64(h ^ s.dests[i].seed); best < 0 || v > top {
				best, top = i, v
			}
		}
		return best
	}
	low := math.Inf(1)
	for i := range s.dests {
		d := &s.dests[i]
		if !d.up() {
			continue
		}
		// u in (0, 1]: 53 random bits, never 0 (ln 0 is -Inf).
		if v := negLn53(mix64(h^d.seed)>>11+1) * d.invWeight; best < 0 || v < low {
			best, low = i, v
		}
	}
	return best
}

// lnTable holds ln(1 + i/lnSteps) for i = 0..lnSteps.
const lnSteps = 1024

var lnTable = func() (t [lnSteps + 1]float64) {
	for i := range t {
		t[i] = math.Log1p(float64(i) / lnSteps)
	}
	return t
}()

// negLn53 returns -ln(x / 2^53) for x in [1, 2^53], by table and linear
// interpolation: within 2e-7 of math.Log, monotonic, and several times
// quicker, which is what a weighted rendezvous score taken for every
// destination of a set needs (only the order of scores matters).
func negLn53(x uint64) float64 {
	lz := bits.LeadingZeros64(x) // 10 for 2^53, up to 63 for 1
	f := x << lz << 1            // x = 2^(63-lz) * (1 + f/2^64)
	i := f >> (64 - 10)          // lnSteps = 2^10
	frac := float64(f<<10>>11) / (1 << 53)
	ln1f := lnTable[i] + (lnTable[i+1]-lnTable[i])*frac
	// ln(x/2^53) = ln(1 + f/2^64) + (63 - lz - 53)·ln 2
	return -(ln1f + float64(10-lz)*math.Ln2)
}

// roundRobin takes the next destination in set order, skipping those not
// active.
func (s *set) roundRobin() int {
	n := uint64(len(s.dests))
	start := s.ctr.rr.Add(1) - 1
	for k := uint64(0); k < n; k++ {
		if i := int((start + k) % n); s.dests[i].up() {
			return i
		}
	}
	return -1
}

// weighted walks the set's weighted order. When the slot's destination
// is not active, the call goes to an active one chosen by weight from the
// counter (rendezvous), so a destination that is down gives its share to
// the others in proportion to their weights.
func (s *set) weighted() int {
	x := s.ctr.w.Add(1) - 1
	if i := int(s.slots[x%uint64(len(s.slots))]); s.dests[i].up() {
		return i
	}
	return s.rendezvous(mix64(x))
}

// leastCalls takes the active destination with the fewest calls in
// progress per unit of weight (calls/weight compared by cross
// multiplication); ties go round, starting from a rotating position.
func (s *set) leastCalls() int {
	n := uint64(len(s.dests))
	start := s.ctr.rr.Add(1) - 1
	best := -1
	var bc int64
	var bw uint32
	for k := uint64(0); k < n; k++ {
		i := int((start + k) % n)
		d := &s.dests[i]
		if !d.up() {
			continue
		}
		c := d.st.calls.Load()
		if best < 0 || c*int64(bw) < bc*int64(d.weight) {
			best, bc, bw = i, c, d.weight
		}
	}
	return best
}

// first takes the first active destination in set order (highest
// priority).
func (s *set) first() int {
	for i := range s.dests {
		if s.dests[i].up() {
			return i
		}
	}
	return -1
}
