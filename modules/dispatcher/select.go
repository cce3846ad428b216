package dispatcher

import (
	"net/netip"

	"switchboard/modules/internal/calltrack"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/txn"
)

// Per-transaction value slots SelectDst uses to hand its choice to the
// failure route (NextDst, MarkDst) and the reply route (see
// routing.Ctx.Value). The registrar uses the last two; a route set that
// calls SelectDst must leave these two alone.
const (
	// SlotSet holds the set, the index of the first destination chosen,
	// the fail-over candidates taken and the table generation.
	SlotSet = txn.NumValues - 4
	// SlotDest holds 1 + the index of the destination the request went
	// to last, and flags; 0 when SelectDst chose nothing.
	SlotDest = txn.NumValues - 3
)

// Layout of the slots. SlotSet: set (16 bits), first (16), taken (16),
// generation (15: enough to find a table among the recent ones). SlotDest:
// index+1 (16), then a flag.
const (
	noFirst     = 0xffff
	genMask     = 0x7fff
	flagFailed  = 1 << 16 // this attempt's failure is counted already
	destIdxMask = 0xffff
)

func packSet(set, first, taken int, gen uint64) int64 {
	return int64(set) | int64(first)<<16 | int64(taken)<<32 | int64(gen&genMask)<<48
}

func unpackSet(v int64) (set, first, taken int, gen uint64) {
	return int(v & 0xffff), int(v >> 16 & 0xffff), int(v >> 32 & 0xffff), uint64(v>>48) & genMask
}

// tableOf returns the snapshot of generation gen (15 bits) when it is
// still among the recent ones, else nil.
func (d *Dispatcher) tableOf(gen uint64) *table {
	for i := range d.recent {
		if t := d.recent[i].Load(); t != nil && t.gen&genMask == gen {
			return t
		}
	}
	return nil
}

// SelectDst chooses a destination of set by alg and sends the request
// there: it sets the destination ($du) and leaves the Request-URI alone
// (OpenSIPS and Kamailio ds_select_dst(set, alg)). An initial INVITE is
// counted in the destination's calls in progress until it ends (see
// CallEnded, CallFailed, Reply). It returns false when the set does not
// exist or none of its destinations is active; the route answers (503).
// It returns false too, sending the request nowhere, for an initial
// INVITE with the Call-ID and From tag of a call in progress that another
// INVITE started (not that INVITE passing through the proxy again, a
// spiral): its call could not be counted apart from the first, and the
// route answers it 482 Loop Detected (CallInUse).
// It allocates nothing and takes no lock but a call table shard's for an
// INVITE.
func (d *Dispatcher) SelectDst(c *routing.Ctx, set int, alg Algorithm) bool {
	t := d.tab.Load()
	s := t.sets[set]
	if s == nil {
		d.noDest.Inc()
		return false
	}
	i := s.pick(c, alg)
	if i < 0 {
		d.noDest.Inc()
		return false
	}
	if !d.use(c, s, i) {
		return false
	}
	c.SetValue(SlotSet, packSet(set, i, 0, t.gen))
	return true
}

// use sends the request to destination i of s and records it in
// SlotDest. An initial INVITE's lease goes to the tracker, which holds
// one per call: given the lease of a fail-over, it releases the one of
// the destination that failed. False, nothing set, for an INVITE whose
// Call-ID and From tag another call in progress holds (InUse).
func (d *Dispatcher) use(c *routing.Ctx, s *set, i int) bool {
	ds := &s.dests[i]
	if c.IsMethod(parser.MethodInvite) && !c.HasToTag() {
		l := ds.st.lease()
		switch d.track(c, l) {
		case calltrack.Tracked:
		case calltrack.InUse:
			l.Release()
			return false
		default:
			l.Release()
		}
	}
	c.SetDestination(ds.proto, ds.addr)
	ds.st.selected.Inc()
	c.SetValue(SlotDest, int64(i+1))
	return true
}

// track hands l to the tracker. The module's own table also says when c
// has the Call-ID and From tag of another call in progress (InUse); a
// dialog module counts each dialog on its own. The dispatcher knows no
// caller (nothing authenticates before it), so any request that passed
// through a call's INVITE is its spiral, sent on uncounted: a callee's
// copy of our Via takes a call out of least_calls, which limits nothing.
func (d *Dispatcher) track(c *routing.Ctx, l Lease) calltrack.Tracking {
	if d.tracker == Tracker(d.calls) {
		return d.calls.Claim(c, l, nil)
	}
	if d.tracker.Track(c, l) {
		return calltrack.Tracked
	}
	return calltrack.NotTracked
}

// CallInUse reports whether c, an initial INVITE, has the Call-ID and
// From tag of a call in progress that another INVITE started, c not being
// that INVITE passing through the proxy again (a spiral): SelectDst
// returns false for it, and the route answers 482 Loop Detected (RFC 3261
// §8.2.2.2) instead of its 503. A caller reused them for a second call
// while the first was up, or the request is a merged copy of the first.
func (d *Dispatcher) CallInUse(c *routing.Ctx) bool {
	return d != nil && d.tracker == Tracker(d.calls) && d.calls.InUse(c, nil)
}

// current returns the snapshot, set and index of the destination the
// request went to last, or ok false.
func (d *Dispatcher) current(c *routing.Ctx) (t *table, s *set, i int, ok bool) {
	dv := c.Value(SlotDest)
	if dv == 0 {
		return nil, nil, 0, false
	}
	setID, _, _, gen := unpackSet(c.Value(SlotSet))
	if t = d.tableOf(gen); t == nil {
		return nil, nil, 0, false
	}
	s = t.sets[setID]
	i = int(dv&destIdxMask) - 1
	if s == nil || i < 0 || i >= len(s.dests) {
		return nil, nil, 0, false
	}
	return t, s, i, true
}

// NextDst, in a failure route, sends the request to the next destination
// of the set SelectDst chose from (OpenSIPS ds_next_dst): the others in
// set order (priority, highest first), skipping the first one chosen and
// those not active now; then the route relays again:
//
//	if ds.NextDst(fc) { fc.Relay() }
//
// The destination that failed is counted in its failures metric. It
// returns false when no candidate is left (or SelectDst chose nothing).
// A fail-over that began before a reload goes on in the set it began
// with, as long as that table is among the last eight loaded, skipping
// the destinations the reload removed (their state is removed, never
// active again); past that it goes on in the table in use, where it may
// try a destination twice.
func (d *Dispatcher) NextDst(fc *routing.FailureCtx) bool {
	c := fc.Ctx
	dv := c.Value(SlotDest)
	if dv == 0 {
		return false
	}
	setID, first, taken, gen := unpackSet(c.Value(SlotSet))
	t := d.tableOf(gen)
	if t != nil {
		if s := t.sets[setID]; s != nil {
			if i := int(dv&destIdxMask) - 1; i >= 0 && i < len(s.dests) && dv&flagFailed == 0 {
				s.dests[i].st.failures.Inc()
			}
		}
	} else {
		// The table of the first choice is gone: go on with the table in
		// use, from the position reached.
		t, first = d.tab.Load(), noFirst
	}
	s := t.sets[setID]
	if s == nil {
		return false
	}
	n := len(s.dests)
	for taken < n {
		i := fallback(first, taken)
		taken++
		if i < n && i != first && s.dests[i].up() {
			c.SetValue(SlotSet, packSet(setID, first, taken, t.gen))
			if d.use(c, s, i) {
				return true
			}
			break // another INVITE holds the Call-ID and From tag now: nothing more is tried
		}
	}
	c.SetValue(SlotSet, packSet(setID, first, taken, t.gen))
	c.SetValue(SlotDest, dv|flagFailed)
	return false
}

// fallback is the index of the k-th fail-over candidate (k from 0): the
// set in order without the first choice.
func fallback(first, k int) int {
	if k < first {
		return k
	}
	return k + 1
}

// MarkDst sets the state of the destination the request went to last
// (OpenSIPS ds_mark_dst): Inactive takes it out until an operator (or
// MarkDst(Active)) puts it back; Probing counts one failure, and takes it
// out for the probes to bring back once probe_failures failures were
// counted in a row (OpenSIPS ds_probing_threshold); Active puts it back.
// It reports whether there was a destination to mark. Typically in a
// failure route on a 408 (the destination did not answer):
//
//	if fc.Status() == 408 { ds.MarkDst(fc.Ctx, dispatcher.Probing) }
func (d *Dispatcher) MarkDst(c *routing.Ctx, state State) bool {
	_, s, i, ok := d.current(c)
	if !ok {
		return false
	}
	st := s.dests[i].st
	if state == Probing {
		if dv := c.Value(SlotDest); dv&flagFailed == 0 {
			st.failures.Inc()
			c.SetValue(SlotDest, dv|flagFailed)
		}
	}
	d.mark(st, state)
	return true
}

// IsInList reports whether addr is a destination of set (-1: of any set)
// (OpenSIPS ds_is_in_list(ip, port, set)); port 0 in addr matches any
// port, and an invalid addr stands for the request's source address and
// port (ds_is_in_list($si, $sp)). Over TCP and TLS a destination's
// requests come from another port than the one it listens on: ask with
// port 0 (netip.AddrPortFrom(c.SrcIP(), 0)). Every state counts, as in
// OpenSIPS without active_only. It allocates nothing.
func (d *Dispatcher) IsInList(c *routing.Ctx, addr netip.AddrPort, set int) bool {
	if !addr.IsValid() {
		addr = netip.AddrPortFrom(c.SrcIP(), c.SrcPort())
	}
	es := d.tab.Load().addrs[addr.Addr().Unmap().As16()]
	for _, e := range es {
		if (set < 0 || e.set == set) && (addr.Port() == 0 || e.port == addr.Port()) {
			return true
		}
	}
	return false
}

// Attrs returns the attributes of the destination the request went to
// last (OpenSIPS attrs_avp), "" when there is none.
func (d *Dispatcher) Attrs(c *routing.Ctx) string {
	_, s, i, ok := d.current(c)
	if !ok {
		return ""
	}
	return s.dests[i].attrs
}
