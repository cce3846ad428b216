package dialog

import (
	"net/netip"

	"switchboard/shards"
)

// EventKind is what happened to a dialog.
type EventKind uint8

const (
	// EventCreated: CreateDialog made the dialog (the INVITE is about
	// to be relayed): the call's start.
	EventCreated EventKind = iota + 1
	// EventAnswered: a 2xx went upstream: the call is answered.
	EventAnswered
	// EventEnded: the dialog ended (Reason, By): a BYE, a timeout, a
	// failed or canceled INVITE, the management API.
	EventEnded
)

var eventNames = [...]string{"", "created", "answered", "ended"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is what a subscriber (Subscribe) is told. The byte slices are
// views into the dialog, valid only during the call: copy what is kept.
type Event struct {
	Kind EventKind
	ID   uint64
	// CallID, FromTag and ToTag identify the dialog (ToTag empty before
	// it is answered); From and To are the INVITE's header values.
	CallID, FromTag, ToTag, From, To []byte
	// Caller is where the INVITE came from.
	Caller netip.AddrPort
	// Start, Answer and End are milliseconds since the Unix epoch on the
	// server's coarse clock (Answer 0 when never answered; End set for
	// EventEnded).
	Start, Answer, End int64
	// Code and Phrase are the status and reason phrase of the INVITE's
	// final response: the 2xx for EventAnswered and for EventEnded of an
	// answered call, the failure (300 and above) for EventEnded with
	// ReasonFailed or ReasonCanceled; 0 and empty for EventCreated and a
	// dialog never answered. The phrase is the one relayed, or the
	// standard one for a response of the proxy's own.
	Code   int
	Phrase []byte
	// Reason and By say why and by whom an ended dialog ended: By is the
	// side that sent the BYE; the caller for a CANCEL; the callee whose
	// final response (486, 603...) was relayed; the proxy for its own
	// final response (a route's refusal, a 408 of timer C), a timeout and
	// the management API.
	Reason Reason
	By     Side
	// Flags are the bits routes set with SetFlag (OpenSIPS dialog flags);
	// Values the pairs stored with SetValue, read with EachValue.
	Flags  uint32
	Values Values
}

// Subscribe adds fn to the functions told of every dialog's events, for
// an accounting module (CDRs: start, answer, end with the reason and who
// hung up). Call it from New (list the dialog module in the
// Definition's After), before Start. fn runs with the dialog's shard
// locked, on the goroutine that saw the event (a transport reader, the
// ticker, a management request): it must be quick, must not block (queue
// the record and write it elsewhere) and must not call the dialog
// module.
func (d *Dialog) Subscribe(fn func(*Event)) {
	d.subs = append(d.subs, fn)
}

// emit builds the event of e and calls the subscribers. The shard is
// locked.
func (d *Dialog) emit(s *shards.Shard[dlg], e *shards.Entry[dlg], kind EventKind, why Reason, by Side) {
	d.emitAt(s, e, kind, why, by, s.Now())
}

// emitAt is emit with the time of an end.
func (d *Dialog) emitAt(s *shards.Shard[dlg], e *shards.Entry[dlg], kind EventKind, why Reason, by Side, at int64) {
	g := &e.Value
	// The event goes to functions the compiler cannot see: built on the
	// stack it would escape, one allocation per event. Pooled instead.
	ev, _ := d.events.Get().(*Event)
	if ev == nil {
		ev = new(Event)
	}
	*ev = Event{
		Kind: kind, ID: g.id, CallID: e.Key(), FromTag: g.get(g.fromTag), ToTag: g.get(g.toTag),
		From: g.get(g.from), To: g.get(g.to), Caller: g.hop[toCaller].AddrPort(),
		Start: g.start, Answer: g.answer, Reason: why, By: by,
		Flags: g.flags, Values: Values(g.get(g.vals)),
	}
	if kind != EventCreated {
		ev.Code, ev.Phrase = int(g.code), g.get(g.phrase)
	}
	if kind == EventEnded {
		ev.End = at
	}
	for _, fn := range d.subs {
		fn(ev)
	}
	*ev = Event{} // no view into the dialog outlives the call
	d.events.Put(ev)
}
