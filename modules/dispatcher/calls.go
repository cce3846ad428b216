package dispatcher

import (
	"switchboard/routing"
)

// Lease is one call counted in a destination's calls in progress (the
// least_calls algorithm, the calls gauge). Release it once, when the call
// ends or moves to another destination.
type Lease struct {
	st *dstate
}

// Release takes the call off its destination's calls in progress. A
// destination removed from the table since keeps its count to itself.
func (l Lease) Release() {
	if l.st != nil {
		l.st.calls.Add(-1)
	}
}

// Tracker keeps the leases of calls in progress until the calls end. The
// module has its own (a calltrack table: released on a final non-2xx,
// a BYE or a timeout, since the proxy keeps no dialog state); a dialog
// module takes its place with SetTracker, keeping the lease with its
// dialog and releasing it when the dialog ends.
type Tracker interface {
	// Track is called for an initial INVITE each time SelectDst or
	// NextDst sends it to a destination, with that destination's lease.
	// A tracker keeps one lease per call: given another for a call it
	// holds (a fail-over), it releases the one it held. False means the
	// call is not tracked (the table is full, or the Call-ID and From tag
	// are those of a call in progress, tracked by another INVITE): the
	// caller releases the lease at once.
	Track(c *routing.Ctx, l Lease) bool
}

// CallEnded releases the call of a BYE the route relays (in-dialog, after
// loose_route): the call is over whichever side hung up. It does nothing
// for other methods, or when the call is not tracked.
func (d *Dispatcher) CallEnded(c *routing.Ctx) {
	if d != nil {
		d.calls.CallEnded(c)
	}
}

// CallFailed releases the call of an INVITE that will not be answered 2xx:
// from the failure route when no other destination is tried, and from a
// route that refuses or fails to relay an INVITE after SelectDst. Only
// the transaction that SelectDst counted releases its call.
func (d *Dispatcher) CallFailed(c *routing.Ctx) {
	if d != nil {
		d.calls.CallFailed(c)
	}
}

// Reply is for the reply route: a final response that ends an INVITE
// without a failure route running releases its call. The core skips the
// failure route after a 6xx or once the INVITE was canceled, so those are
// caught here.
func (d *Dispatcher) Reply(c *routing.ReplyCtx) {
	if d != nil {
		d.calls.Reply(c)
	}
}
