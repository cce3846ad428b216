package rtpengine

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"switchboard/parser"
)

// provisionalOffers remembers the offers reliable provisional responses
// carried (RFC 3262 §5: an INVITE without SDP gets the offer in its first
// reliable 1xx with SDP, and the PRACK of that response carries the
// answer), so that a PRACK's SDP is taken for an answer only when it
// acknowledges such a response: any other PRACK's SDP is an offer of its
// own, answered in the 2xx to the PRACK (RFC 6337 §2.1). The PRACK names
// the response it acknowledges in RAck (its RSeq, the INVITE's CSeq); an
// early dialog is its Call-ID and the tags of the INVITE's sender and of
// the response's.
//
// An entry goes once its PRACK came, or after provisionalOfferTTL: the
// callee resends a reliable 1xx for 64·T1 (32 s) and then gives up on the
// INVITE, so a PRACK cannot answer it later. At most maxProvisionalOffers
// are kept; past that, those expired or answered go first, then any, so
// that the newest calls keep theirs.
type provisionalOffers struct {
	mu sync.Mutex
	m  map[offerID]provisionalOffer
	// fullSweep is when a full table was last scanned for offers to drop
	// (unix ms): at most once per fullSweepEvery, since a callee can keep
	// it full of live offers, and a scan of all of them under mu for each
	// new one stalled every PRACK and reliable 1xx behind it.
	fullSweep int64
}

// offerID names an early dialog: a 128-bit hash of its Call-ID and tags
// with seeds chosen at random at start. Kept as their copy, the table's
// size was the caller's to choose (60 KB Call-IDs, 65,536 of them); hashed,
// an entry is the same size whatever their length, and no one can choose
// values that collide with another call's.
type offerID [16]byte

type provisionalOffer struct {
	rseq, cseq uint32
	answered   bool
	at         int64 // unix ms
}

const (
	maxProvisionalOffers = 65536
	provisionalOfferTTL  = 3 * time.Minute
	fullSweepEvery       = time.Second
)

var (
	rseqHeader = []byte("RSeq")
	rackHeader = []byte("RAck")
)

var offerSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func offerKey(callID, senderTag, responderTag []byte) offerID {
	var id offerID
	for i, seed := range offerSeeds {
		var h maphash.Hash
		h.SetSeed(seed)
		for _, part := range [...][]byte{callID, senderTag, responderTag} {
			var n [4]byte
			binary.LittleEndian.PutUint32(n[:], uint32(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
		binary.LittleEndian.PutUint64(id[8*i:], h.Sum64())
	}
	return id
}

// offered records that resp, a provisional response to the INVITE req,
// carries the callee's offer, when resp is reliable (it has an RSeq). A
// repeat of it, or a later reliable 1xx with SDP of the same INVITE, is
// not a new offer (RFC 3262 §5: the first one carries it): the first is
// kept.
func (p *provisionalOffers) offered(req, resp *parser.Message) {
	rseq, ok := parseUint32(resp.GetByName(rseqHeader))
	if !ok {
		return // unreliable: no PRACK answers it (the answer comes in the ACK)
	}
	p.remember(offerKey(req.CallID(), req.FromTag(), resp.ToTag()), rseq, req.CSeq().Num, time.Now().UnixMilli())
}

func (p *provisionalOffers) remember(key offerID, rseq, cseq uint32, now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[offerID]provisionalOffer{}
	}
	o, known := p.m[key]
	if known && o.cseq == cseq && now-o.at < provisionalOfferTTL.Milliseconds() {
		return
	}
	if !known && len(p.m) >= maxProvisionalOffers {
		if now-p.fullSweep >= fullSweepEvery.Milliseconds() {
			p.fullSweep = now
			p.sweepLocked(now, true)
		}
		for k := range p.m {
			if len(p.m) < maxProvisionalOffers {
				break
			}
			delete(p.m, k)
		}
	}
	p.m[key] = provisionalOffer{rseq: rseq, cseq: cseq, at: now}
}

// answers reports whether the SDP of prack answers an offer: the reliable
// provisional it acknowledges (RAck) carried one not answered yet. It is
// then answered: another PRACK naming the same response answers nothing.
func (p *provisionalOffers) answers(prack *parser.Message) bool {
	rseq, cseq, method, ok := parseRAck(prack.GetByName(rackHeader))
	if !ok || !parser.EqualFold(method, []byte("INVITE")) {
		return false
	}
	key := offerKey(prack.CallID(), prack.FromTag(), prack.ToTag())
	now := time.Now().UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	o, found := p.m[key]
	if !found || o.answered || o.rseq != rseq || o.cseq != cseq || now-o.at >= provisionalOfferTTL.Milliseconds() {
		return false
	}
	o.answered = true
	p.m[key] = o
	return true
}

// sweep forgets the offers past provisionalOfferTTL.
func (p *provisionalOffers) sweep() {
	p.mu.Lock()
	p.sweepLocked(time.Now().UnixMilli(), false)
	p.mu.Unlock()
}

func (p *provisionalOffers) sweepLocked(now int64, answeredToo bool) {
	for k, o := range p.m {
		if now-o.at >= provisionalOfferTTL.Milliseconds() || answeredToo && o.answered {
			delete(p.m, k)
		}
	}
}

// parseRAck reads "response-num CSeq-num Method" (RFC 3262 §7.2).
func parseRAck(v []byte) (rseq, cseq uint32, method []byte, ok bool) {
	var fields [3][]byte
	n := 0
	for i := 0; i < len(v); {
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		if i == len(v) {
			break
		}
		if n == len(fields) {
			return 0, 0, nil, false
		}
		j := i
		for j < len(v) && !isLWS(v[j]) {
			j++
		}
		fields[n] = v[i:j]
		n++
		i = j
	}
	if n != 3 {
		return 0, 0, nil, false
	}
	r, ok1 := parseUint32(fields[0])
	c, ok2 := parseUint32(fields[1])
	return r, c, fields[2], ok1 && ok2
}

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// parseUint32 reads 1 to 10 decimal digits, surrounding LWS allowed, of a
// value below 2^32 (RSeq and CSeq numbers, RFC 3262 §7.1).
func parseUint32(v []byte) (uint32, bool) {
	for len(v) > 0 && isLWS(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isLWS(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	if len(v) == 0 || len(v) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}
