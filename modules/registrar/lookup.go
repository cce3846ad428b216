package registrar

import (
	"bytes"
	"net/netip"

	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// Lookup finds the bindings of the Request-URI's address-of-record
// (OpenSIPS: lookup("location")) and prepares the request for Relay:
//
//   - the binding with the highest q rewrites the Request-URI, and the
//     destination becomes the address its REGISTER came from when the phone
//     is behind NAT (its contact is not where it registered from), on a
//     connection, or behind an edge proxy (Path);
//   - the other bindings with that same q become parallel branches
//     (their destination and Path are set by BranchRoute);
//   - bindings with lower q wait for NextContacts in the failure route,
//     one q-group at a time (serial forking).
//
// It returns false when the AOR has no live binding (the route answers
// 480 or 404). Lookup never touches the disk and does not allocate.
//
// A request that carries a Via of ours (txn.Request.Spiral: it has been
// through this server already) gets only the best binding, with no
// parallel branch and no serial group after it. Save refuses contacts
// that lead back here, but a binding stored before, or a host name that
// resolves to us without being a served domain, or another proxy whose
// contacts lead to ours, would make every spiral fork again: with k such
// contacts, each pass through the lookup multiplies the requests by k and
// only Max-Forwards ends it (RFC 5393 §3; 3,208 INVITEs relayed to
// ourselves for one INVITE with Max-Forwards 4 and 8 contacts). With one
// branch per spiral the first lookup forks at most k ways and each branch
// then goes on as a chain, which loop detection ends once the best
// contact's Request-URI comes back (a few hops; Max-Forwards at the
// latest): the requests grow linearly, not exponentially. The price: a
// call we relayed to another proxy that sends it back here (an
// application server that proxies rather than being a B2BUA) rings only
// the callee's best contact.
func (r *Registrar) Lookup(c *routing.Ctx) bool {
	r.lookups.Add(1)
	var kb [maxAOR]byte
	key, ok := aorKey(kb[:0], c.RUser(), c.RDomain())
	if !ok || len(c.RUser()) == 0 {
		return false
	}
	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	e := s.Get(h, key)
	if e == nil {
		s.Unlock()
		return false
	}
	if r.expireClosed(e.Value.b, s.Now()) {
		r.schedule(s, e) // the expiry timer removes them now
	}
	var order [txn.MaxBranches]int16
	n, failed := r.best(c, e.Value.b, s.Now(), 1<<15-1, &order)
	if n == 0 {
		s.Unlock()
		if failed {
			c.SetValue(SlotNextQ, flowsFailed)
		}
		return false
	}
	bs := e.Value.b
	top := bs[order[0]].q
	// A request that has been through here already gets one contact, the
	// best, and no serial forking (see above).
	one := (n > 1 || hasBelow(bs, s.Now(), top)) && c.R.Spiral()
	if one {
		n = 1
		r.spirals.Add(1)
	}
	b := &bs[order[0]]
	c.SetRU(b.contact)
	if id := r.openFlow(c, b); id != 0 {
		c.R.SetFlow(id)
	} else if proto, dst, ok := b.destination(); ok {
		c.SetDestination(proto, dst)
	}
	more := false
	for i := 1; i < n; i++ {
		b := &bs[order[i]]
		if b.q != top {
			more = true
			break
		}
		if c.AppendBranch(b.contact) != nil {
			break
		}
	}
	if !more && !one {
		more = hasBelow(bs, s.Now(), top)
	}
	s.Unlock()
	c.SetValue(SlotAOR, int64(h))
	if more {
		c.SetValue(SlotNextQ, int64(top)+1)
	} else {
		c.SetValue(SlotNextQ, 0)
	}
	r.found.Add(1)
	return true
}

// NextContacts, in a failure route, relays the request to the next group
// of contacts (the next lower q) found by Lookup (OpenSIPS:
// t_next_contacts() followed by t_relay()). It returns false when none is
// left; the failure route then lets the best response go upstream.
func (r *Registrar) NextContacts(c *routing.FailureCtx) bool {
	below := c.Value(SlotNextQ) - 1
	h := uint64(c.Value(SlotAOR))
	if below < 0 || h == 0 {
		return false
	}
	s := r.tbl.Shard(h)
	s.Lock()
	e := s.Find(h, anyEntry)
	if e == nil {
		s.Unlock()
		return false
	}
	var order [txn.MaxBranches]int16
	bs := e.Value.b
	now := s.Now()
	n, _ := r.best(c.Ctx, bs, now, int16(below-1), &order)
	added := 0
	var q int16
	if n > 0 {
		q = bs[order[0]].q
		for i := 0; i < n && bs[order[i]].q == q; i++ {
			if c.AppendBranch(bs[order[i]].contact) != nil {
				break
			}
			added++
		}
	}
	more := added > 0 && hasBelow(bs, now, q)
	s.Unlock()
	if added == 0 {
		c.SetValue(SlotNextQ, 0)
		return false
	}
	if more {
		c.SetValue(SlotNextQ, int64(q)+1)
	} else {
		c.SetValue(SlotNextQ, 0)
	}
	return c.Relay() == nil
}

// BranchRoute, called from the route set's branch route, sends a branch
// that Lookup or NextContacts made to the address its binding registered
// from (NAT, connection, edge proxy) and puts the binding's Path in a
// Route header (RFC 3327). Branches of other origins are left alone.
func (r *Registrar) BranchRoute(c *routing.Ctx, br *routing.Branch) { r.BranchRouteNAT(c, br) }

// BranchRouteNAT is BranchRoute, and reports whether the branch goes to a
// binding behind NAT (OpenSIPS: the NAT branch flag lookup() restores), so
// that the route set fixes the Contact of the callee's responses
// (nathelper).
func (r *Registrar) BranchRouteNAT(c *routing.Ctx, br *routing.Branch) (nat bool) {
	h := uint64(c.Value(SlotAOR))
	tb := br.Txn()
	if h == 0 || tb == nil {
		return false
	}
	uri := tb.URI()
	s := r.tbl.Shard(h)
	s.Lock()
	if e := s.Find(h, anyEntry); e != nil {
		for i := range e.Value.b {
			b := &e.Value.b[i]
			if !bytes.Equal(b.contact, uri) {
				continue
			}
			if id := r.openFlow(c, b); id != 0 {
				tb.SetFlow(id)
			} else if proto, dst, ok := b.destination(); ok {
				tb.SetDestination(proto, dst)
			}
			if len(b.path) > 0 {
				tb.Editor().AddHeaderTop("Route", b.path)
			}
			nat = b.nat
			break
		}
	}
	s.Unlock()
	return nat
}

// Registered reports whether aor ("user@domain") has a live binding
// (OpenSIPS: registered("location")).
func (r *Registrar) Registered(aor []byte) bool {
	h := shards.Sum(aor)
	s := r.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, aor)
	if e == nil {
		return false
	}
	now := s.Now()
	for i := range e.Value.b {
		if e.Value.b[i].expires > now {
			return true
		}
	}
	return false
}

// anyEntry matches the entry found by hash alone: the 64-bit hash of the
// AOR identifies it (the key was compared when Lookup found it).
func anyEntry(*shards.Entry[record]) bool { return true }

// best fills order with the indexes of the live bindings whose q is at
// most maxQ, highest q first, most recently refreshed first among equals,
// keeping the first len(order). It returns how many it kept, and whether
// any was left out because its flow closed (outbound.go).
func (r *Registrar) best(c *routing.Ctx, bs []binding, now int64, maxQ int16, order *[txn.MaxBranches]int16) (int, bool) {
	n, failed := 0, false
	for i := range bs {
		b := &bs[i]
		if b.expires <= now || b.q > maxQ {
			continue
		}
		if !r.flowUsable(c, b) {
			failed = true
			continue
		}
		// insertion into the sorted prefix
		j := n
		if j == len(order) {
			j--
			if !before(b, &bs[order[j]]) {
				continue
			}
		} else {
			n++
		}
		for j > 0 && before(b, &bs[order[j-1]]) {
			order[j] = order[j-1]
			j--
		}
		order[j] = int16(i)
	}
	return n, failed
}

func before(a, b *binding) bool {
	if a.q != b.q {
		return a.q > b.q
	}
	return a.modified > b.modified
}

// hasBelow reports whether a live binding has a q below q.
func hasBelow(bs []binding, now int64, q int16) bool {
	for i := range bs {
		if bs[i].expires > now && bs[i].q < q {
			return true
		}
	}
	return false
}

// SetConnCheck gives the registrar open(proto, addr), which reports
// whether the stream connection a binding registered over is still open
// (transport.HasConn). A WebSocket phone (RFC 7118 §5) can be reached
// only over the connection it registered on: once that is closed, Lookup
// expires the binding instead of routing a call nowhere, and the expiry
// timer removes it. Nil (the default) never expires one.
func (r *Registrar) SetConnCheck(open func(transport.Proto, netip.AddrPort) bool) {
	if open == nil {
		r.connOpen.Store(nil)
		return
	}
	r.connOpen.Store(&open)
}

// expireClosed marks the WebSocket bindings of bs whose connection is
// closed as expired at now, and reports whether it marked any. The shard
// is locked.
func (r *Registrar) expireClosed(bs []binding, now int64) (marked bool) {
	f := r.connOpen.Load()
	if f == nil {
		return false
	}
	for i := range bs {
		b := &bs[i]
		// Behind an edge proxy (Path) the connection is the proxy's; a
		// binding another node of an anycast group took is on that
		// node's connection, which it checks itself.
		if !b.proto.WebSocket() || len(b.path) > 0 || !b.src.IsValid() || b.expires <= now || b.remote {
			continue
		}
		if !(*f)(b.proto, b.src) {
			b.expires = now
			r.connGone.Add(1)
			marked = true
		}
	}
	return marked
}
