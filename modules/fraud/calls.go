package fraud

import (
	"switchboard/modules/dialog"
	"switchboard/modules/internal/calltrack"
	"switchboard/routing"
	"switchboard/shards"
)

// Lease is one call counted in its caller's concurrent calls. Release it
// once, when the call ends. A lease whose counter was dropped since
// (fraud.reset, eviction) releases nothing.
type Lease struct {
	ref shards.Ref[counter]
}

// Release takes the call off its caller's concurrent calls.
func (l Lease) Release() {
	s := l.ref.Shard()
	if s == nil {
		return
	}
	s.Lock()
	if e := l.ref.Entry(); e != nil && e.Value.conc > 0 {
		e.Value.conc--
	}
	s.Unlock()
}

// Tracker keeps the leases of calls in progress until the calls end. The
// module has its own (a calltrack table: released on a final non-2xx,
// a BYE the route says ended the call, or a timeout); a dialog
// module can take its place with SetTracker, keeping the lease with its
// dialog and releasing it when the dialog ends.
type Tracker interface {
	// Track is called by Check for an initial INVITE it let through,
	// after counting it. False means the call is not tracked (the table is
	// full, or the call is counted already): Check releases the lease at
	// once.
	Track(c *routing.Ctx, l Lease) bool
}

// SetTracker replaces the module's call table as the keeper of leases;
// call it while the server is being built (a module's New), before calls
// arrive. The table's release functions (CallEnded, CallFailed, Reply)
// then find nothing to release.
func (f *Fraud) SetTracker(t Tracker) { f.tracker = t }

// track hands l, a call of user, to the tracker. The module's own table
// also says when c has the Call-ID and From tag of another call in
// progress (InUse); a dialog module counts each dialog on its own. The
// table takes c for a spiral of a call (its INVITE passing through the
// proxy again, counted once) only when user is the call's: the callee of
// a call still ringing has our Via in its INVITE to copy.
func (f *Fraud) track(c *routing.Ctx, l Lease, user []byte) calltrack.Tracking {
	if f.tracker == Tracker(f.calls) {
		return f.calls.Claim(c, l, user)
	}
	if f.tracker.Track(c, l) {
		return calltrack.Tracked
	}
	return calltrack.NotTracked
}

// CallInUse reports whether c, an initial INVITE of user (as given to
// Check), has the Call-ID and From tag of a call in progress that another
// INVITE started, c not being that INVITE passing through the proxy again
// (a spiral, which has the call's user): Check returns Critical for it,
// and the route answers 482 Loop Detected (RFC 3261 §8.2.2.2) instead of
// its 403. A caller reused them for a second call while the first was
// up, the request is a merged copy of the first, or another user copied
// them, and our Via, from the call's INVITE as it reached him.
func (f *Fraud) CallInUse(c *routing.Ctx, user []byte) bool {
	return f != nil && f.tracker == Tracker(f.calls) && f.calls.InUse(c, user)
}

// CountsConcurrent reports whether a rule of profile has a
// concurrent_calls threshold (warning or critical) in the rules loaded
// now. A route that keeps dialogs gives the calls Check counts under
// such a profile one, and frees a call's place only when a BYE ended
// its dialog (OpenSIPS's fraud_detection counts a call until the dialog
// module says it ended): without a dialog, nothing tells a BYE that
// reaches the other party from one the caller addressed to herself,
// with another To tag, or sent while the call still rings, and any of
// them would free her place while the call goes on. False for a nil
// *Fraud. It allocates nothing.
func (f *Fraud) CountsConcurrent(profile int) bool {
	if f == nil {
		return false
	}
	t := f.rules.Load().profiles[profile]
	return t != nil && t.concurrent
}

// BindDialog binds the call of c, an initial INVITE Check counted, to
// its dialog, which d, the dialog module this one was built with, made
// of it (CreateDialog, after Check): the dialog's end releases the call,
// whatever ended it (a BYE of either party, the dialog's timeout, the
// session timer, a failed ping, dialog.end, a drain), once, as OpenSIPS's
// fraud_detection releases it from the dialog's end callbacks. A BYE
// (CallEnded) then releases it no more: the dialog module tells a BYE
// that ended the call from one sent elsewhere, with another To tag, or
// on the signed Route of another call with the same Call-ID; the table
// cannot. The INVITE's failure (CallFailed, Reply) still releases it.
// A 2xx the dialog cannot keep (its end "failed" with the 2xx's code)
// ends the dialog and not the call, which stays counted until
// call_timeout. False, nothing bound: c's transaction counted no call
// (a spiral, the table full, Critical), c has no dialog, or d is not the
// module's (the call is then released by a BYE, as without a dialog).
// It allocates nothing.
func (f *Fraud) BindDialog(c *routing.Ctx, d *dialog.Dialog) bool {
	if f == nil || d == nil || d != f.dlg || f.tracker != Tracker(f.calls) {
		return false
	}
	return f.calls.Bind(c, uint64(c.Value(dialog.SlotDialog)))
}

// dialogEvent is the dialog module's subscriber: a dialog's end releases
// the call bound to it. It runs with the dialog's shard locked and takes
// the call table's lock, then the counter's: neither is ever held while
// the dialog module is called.
func (f *Fraud) dialogEvent(ev *dialog.Event) {
	if ev.Kind != dialog.EventEnded {
		return
	}
	if ev.Reason == dialog.ReasonFailed && ev.Code < 300 {
		// A 2xx the dialog could not keep (a To tag over 1 KiB): the
		// dialog is gone, the call goes on. Released, a callee
		// answering so would keep its caller's calls uncounted.
		return
	}
	f.calls.EndDialog(ev.CallID, ev.FromTag, ev.ID)
}

// CallEnded releases the call of a BYE the route relays (in-dialog, after
// loose_route): the call is over whichever side hung up. It is for calls
// without a dialog: one bound to its dialog (BindDialog) is released by
// the dialog's end, and CallEnded leaves it. A route that keeps dialogs
// calls it only for a BYE that ended the call's dialog or names none
// (see CountsConcurrent): the table keeps no To tags nor targets, and
// cannot tell that BYE from one sent elsewhere, with another To tag, or
// while the call rings. It does nothing for other methods, or when the
// call is not tracked.
func (f *Fraud) CallEnded(c *routing.Ctx) {
	if f != nil {
		f.calls.CallEnded(c)
	}
}

// CallFailed releases the call of an INVITE that will not be answered 2xx:
// called from the failure route when no other branch is tried, and by a
// route that refuses or fails to relay an INVITE after Check let it
// through. Only the transaction that Check counted releases its call.
func (f *Fraud) CallFailed(c *routing.Ctx) {
	if f != nil {
		f.calls.CallFailed(c)
	}
}

// Reply is for the reply route: a final response that ends an INVITE
// without a failure route running releases its call. The core skips the
// failure route after a 6xx or once the INVITE was canceled, so those are
// caught here (a 200 that crosses the CANCEL makes a call that is no longer
// counted; its BYE then finds nothing to release).
func (f *Fraud) Reply(c *routing.ReplyCtx) {
	if f != nil {
		f.calls.Reply(c)
	}
}

// sweep releases calls past their timeout and, once a minute, drops
// counters idle for a day.
func (f *Fraud) sweep() {
	now := f.clock.Now()
	f.calls.Sweep(now)
	if now-f.lastCounterSweep >= 60_000 {
		f.lastCounterSweep = now
		f.sweepCounters(now / 1000)
	}
}
