package registrar

import "switchboard/shards"

// Tombstones: what the registrar remembers of requests whose bindings
// are gone.
//
// RFC 3261 §10.3 step 7 refuses a REGISTER older than the binding it
// touches by the binding's Call-ID and CSeq; once the binding is removed
// they go with it, and the old request would be applied as new. That
// matters because such a request can come back: REGISTER is answered
// statelessly, so the auth module accepts the same bytes from the same
// source within 32 s as a retransmission (its nonce-count already used),
// and a late UDP duplicate or a replay from a spoofed source of REGISTER
// #1, sent after the phone's "Contact: *" (#2), brought the binding back.
//
// So when a binding goes by a REGISTER (expires=0, "*"), by the management
// API or for unanswered keepalives, or is taken over by a REGISTER of
// another Call-ID, the record keeps, for goneFor, a tombstone of the last
// request of the binding's Call-ID and of the removing request's: the
// hash of the Call-ID, the highest CSeq, and the Via branch of the request
// with that CSeq. Save checks a request against the tombstone of its
// Call-ID as against a binding (order): a lower CSeq, or the same CSeq in
// another request, gets 400 Out of Order CSeq; the same CSeq and branch is
// a retransmission of a request already applied and is answered with the
// current bindings, changing nothing. A record whose last binding went
// stays in the table, without bindings, until its tombstones expire.
//
// Bounds: at most maxGone tombstones a record (MaxContacts+1, what one
// "*" can leave; past it the one expiring first is replaced), each of
// fixed size and counted in the record's bytes against max_memory, and
// none lives longer than goneFor. Memory only: a restart forgets them, as
// the auth module forgets its nonce-counts.

// goneFor is how long a tombstone lives, in clock ms: 64·T1 (32 s, the
// client's Timer F and the auth module's retransmission window), plus the
// second that window may reach past it by counting whole seconds.
const goneFor = 33_000

// tombstone is the newest request of one Call-ID whose bindings went.
type tombstone struct {
	callID uint64 // shards.Sum of the Call-ID
	branch uint64 // hash of that request's Via branch
	cseq   uint32
	until  int64 // clock ms
}

// order compares a request (its Call-ID's hash known to match) with t,
// as binding.order does (a binding loaded from the store had no branch).
func (t *tombstone) order(cseq uint32, branch uint64) int {
	switch {
	case cseq > t.cseq:
		return newer
	case cseq == t.cseq && (branch == t.branch || t.branch == 0):
		return repeated
	}
	return older
}

// tomb returns the live tombstone of the Call-ID whose hash is id, nil
// when there is none.
func (v *record) tomb(id uint64, now int64) *tombstone {
	for i := range v.gone {
		if t := &v.gone[i]; t.callID == id && t.until > now {
			return t
		}
	}
	return nil
}

// bury remembers, until until, that the request (Call-ID, cseq, branch)
// is the newest of its Call-ID whose bindings went; an older one of the
// same Call-ID is replaced. With max tombstones already, the one that
// expires first makes room. The shard is locked; the caller accounts the
// record's bytes.
func (v *record) bury(callID []byte, cseq uint32, branch uint64, until int64, max int) {
	id := shards.Sum(callID)
	for i := range v.gone {
		t := &v.gone[i]
		if t.callID != id {
			continue
		}
		if cseq > t.cseq || cseq == t.cseq && branch != t.branch {
			t.cseq, t.branch = cseq, branch
		}
		t.until = until
		return
	}
	if len(v.gone) < max {
		v.gone = append(v.gone, tombstone{})
	} else {
		first := 0
		for i := range v.gone {
			if v.gone[i].until < v.gone[first].until {
				first = i
			}
		}
		v.gone[first], v.gone[len(v.gone)-1] = v.gone[len(v.gone)-1], v.gone[first]
	}
	v.gone[len(v.gone)-1] = tombstone{callID: id, branch: branch, cseq: cseq, until: until}
}

// buryBinding remembers the last request of b, which goes or is taken over
// by a request of another Call-ID.
func (r *Registrar) buryBinding(v *record, b *binding, now int64) {
	v.bury(b.callID, b.cseq, b.branch, now+goneFor, r.maxGone())
}

// maxGone bounds the tombstones of one record: what one "*" leaves (a
// binding each and the request).
func (r *Registrar) maxGone() int { return r.cfg.MaxContacts + 1 }

// sweepGone drops the tombstones expired at now.
func (v *record) sweepGone(now int64) {
	n := 0
	for i := range v.gone {
		if v.gone[i].until > now {
			v.gone[n] = v.gone[i]
			n++
		}
	}
	v.gone = v.gone[:n]
}
