package modules

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/shards"
)

// Events is the server's event interface (OpenSIPS raise_event and
// subscribe_event): modules and routes raise named events with a JSON
// payload, subscribers (the events module's webhooks and management API
// streams) receive them on bounded queues.
//
// Raising is built for the paths that handle SIP: when nobody subscribed
// to an event, Begin returns nil and every Builder method on nil does
// nothing, so
//
//	h.Events.Begin(modules.EventContactInsert).Bytes("aor", key).Raise()
//
// costs a map lookup and allocates nothing. With subscribers the event is
// encoded once (a pooled buffer, then one copy shared by every
// subscriber) and offered to each queue without waiting: a full queue
// drops the event for that subscriber and counts it. A slow receiver
// never holds up the raiser.
type Events struct {
	clock *shards.Clock
	subs  atomic.Pointer[subTable]
	mu    sync.Mutex // serialises changes to subs
	seq   atomic.Uint64
	pool  sync.Pool

	raised, dropped *metrics.Counter
}

// The events the server raises, named as OpenSIPS names them where it has
// one. docs/events.md lists their payloads.
const (
	EventContactInsert = "E_UL_CONTACT_INSERT" // registrar: a binding added
	EventContactUpdate = "E_UL_CONTACT_UPDATE" // registrar: a binding refreshed
	EventContactDelete = "E_UL_CONTACT_DELETE" // registrar: a binding removed or expired
	EventDialogState   = "E_DLG_STATE_CHANGED" // dialog: created, answered, ended
	EventPikeBlocked   = "E_PIKE_BLOCKED"      // pike: a source banned
	EventAuthBanned    = "E_AUTHBAN_LOCKED"    // authban: an account locked
	EventGatewayStatus = "E_DROUTING_STATUS"   // drouting: a gateway up or down
	EventDestStatus    = "E_DISPATCHER_STATUS" // dispatcher: a destination's state changed
	EventScanner       = "E_SCANNER_BLOCKED"   // scanner: a request from a scanner refused
	EventFraudWarning  = "E_FRD_WARNING"       // fraud: a warning threshold reached
	EventFraudCritical = "E_FRD_CRITICAL"      // fraud: a critical threshold reached
)

// KnownEvents are the events the server raises itself, in the order of
// the docs.
var KnownEvents = []string{
	EventContactInsert, EventContactUpdate, EventContactDelete, EventDialogState,
	EventPikeBlocked, EventAuthBanned, EventScanner, EventGatewayStatus, EventDestStatus,
	EventFraudWarning, EventFraudCritical,
}

// AllEvents subscribes to every event, raised by the server or by routes.
const AllEvents = "*"

// Event is one raised event, shared read-only by every subscriber.
type Event struct {
	Name string
	Seq  uint64 // increasing per server, from 1
	Time int64  // ms since the Unix epoch (the coarse clock)
	// JSON is the whole event: {"event":..., "seq":..., "time_ms":...,
	// "params":{...}}.
	JSON []byte
}

// Subscription is one subscriber's queue of events.
type Subscription struct {
	names   map[string]bool // nil: every event
	c       chan *Event
	dropped atomic.Uint64
}

// C is the queue; it is never closed (Unsubscribe stops the offers).
func (s *Subscription) C() <-chan *Event { return s.c }

// Dropped counts the events this subscriber lost to a full queue.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Wants reports whether the subscription takes events named name.
func (s *Subscription) Wants(name string) bool { return s.names == nil || s.names[name] }

// subTable is the subscriptions by event name, replaced whole on every
// change so that raising reads it without a lock.
type subTable struct {
	byName map[string][]*Subscription
	all    []*Subscription // subscribed to AllEvents
	list   []*Subscription
}

// NewEvents returns an event interface on clock, its counters in set.
func NewEvents(clock *shards.Clock, set *metrics.Set) *Events {
	e := &Events{clock: clock}
	e.subs.Store(&subTable{})
	if set == nil {
		set = metrics.NewSet()
	}
	e.raised = set.GetOrCreateCounter("switchboard_events_raised_total")
	e.dropped = set.GetOrCreateCounter("switchboard_events_dropped_total")
	e.pool.New = func() any { return &Builder{buf: make([]byte, 0, 512)} }
	return e
}

// Subscribe returns a queue of queue events for the events named in names
// (AllEvents, or an empty list: every one).
func (e *Events) Subscribe(names []string, queue int) *Subscription {
	s := &Subscription{c: make(chan *Event, max(queue, 1))}
	for _, n := range names {
		if n == AllEvents {
			s.names = nil
			break
		}
		if s.names == nil {
			s.names = map[string]bool{}
		}
		s.names[n] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.subs.Load().list
	e.rebuild(append(append(make([]*Subscription, 0, len(old)+1), old...), s))
	return s
}

// Unsubscribe stops the events to s; what its queue holds stays there.
func (e *Events) Unsubscribe(s *Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.subs.Load().list
	list := make([]*Subscription, 0, len(old))
	for _, x := range old {
		if x != s {
			list = append(list, x)
		}
	}
	e.rebuild(list)
}

// rebuild stores the table of list. e.mu is held.
func (e *Events) rebuild(list []*Subscription) {
	t := &subTable{byName: map[string][]*Subscription{}, list: list}
	for _, s := range list {
		if s.names == nil {
			t.all = append(t.all, s)
			continue
		}
		for n := range s.names {
			t.byName[n] = append(t.byName[n], s)
		}
	}
	e.subs.Store(t)
}

// Subscribed reports whether any subscriber takes events named name.
func (e *Events) Subscribed(name string) bool {
	if e == nil {
		return false
	}
	t := e.subs.Load()
	if len(t.list) == 0 { // no subscriber at all: no map lookup
		return false
	}
	return len(t.all) > 0 || len(t.byName[name]) > 0
}

// Begin starts an event named name, or returns nil when nobody subscribed
// to it (a nil *Builder ignores every call). Add the payload's fields and
// call Raise; a Builder is used once.
func (e *Events) Begin(name string) *Builder {
	if !e.Subscribed(name) {
		return nil
	}
	b := e.pool.Get().(*Builder)
	b.ev, b.name = e, name
	b.buf = append(b.buf[:0], `{"event":`...)
	b.buf = AppendJSONString(b.buf, name)
	b.seq = e.seq.Add(1)
	b.now = e.now()
	b.buf = append(b.buf, `,"seq":`...)
	b.buf = strconv.AppendUint(b.buf, b.seq, 10)
	b.buf = append(b.buf, `,"time_ms":`...)
	b.buf = strconv.AppendInt(b.buf, b.now, 10)
	b.buf = append(b.buf, `,"params":{`...)
	b.n = 0
	return b
}

func (e *Events) now() int64 {
	if e.clock == nil {
		return 0
	}
	return e.clock.Now()
}

// Builder encodes one event's params. Every method is a no-op on nil.
type Builder struct {
	ev   *Events
	name string
	seq  uint64
	now  int64
	n    int // fields written
	buf  []byte
}

func (b *Builder) key(k string) {
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	b.n++
	b.buf = AppendJSONString(b.buf, k)
	b.buf = append(b.buf, ':')
}

// Str adds a string field.
func (b *Builder) Str(k, v string) *Builder {
	if b != nil {
		b.key(k)
		b.buf = AppendJSONString(b.buf, v)
	}
	return b
}

// Bytes adds a string field from bytes (a view into a message: no copy
// is made unless the event is raised).
func (b *Builder) Bytes(k string, v []byte) *Builder {
	if b != nil {
		b.key(k)
		b.buf = appendJSONBytes(b.buf, v)
	}
	return b
}

// Int adds a number field.
func (b *Builder) Int(k string, v int64) *Builder {
	if b != nil {
		b.key(k)
		b.buf = strconv.AppendInt(b.buf, v, 10)
	}
	return b
}

// Bool adds a true/false field.
func (b *Builder) Bool(k string, v bool) *Builder {
	if b != nil {
		b.key(k)
		b.buf = strconv.AppendBool(b.buf, v)
	}
	return b
}

// AddrPort adds "ip:port" (the zero value: "").
func (b *Builder) AddrPort(k string, v netip.AddrPort) *Builder {
	if b != nil {
		b.key(k)
		b.buf = append(b.buf, '"')
		if v.IsValid() {
			b.buf = v.AppendTo(b.buf)
		}
		b.buf = append(b.buf, '"')
	}
	return b
}

// Addr adds an IP address ("" for the zero value).
func (b *Builder) Addr(k string, v netip.Addr) *Builder {
	if b != nil {
		b.key(k)
		b.buf = append(b.buf, '"')
		if v.IsValid() {
			b.buf = v.AppendTo(b.buf)
		}
		b.buf = append(b.buf, '"')
	}
	return b
}

// RawJSON adds a field whose value is already valid JSON (the caller
// checked it: the management API's events.raise does).
func (b *Builder) RawJSON(k string, v []byte) *Builder {
	if b != nil {
		b.key(k)
		b.buf = append(b.buf, v...)
	}
	return b
}

// Raise ends the event and offers it to every subscriber without
// waiting; the Builder goes back to its pool.
func (b *Builder) Raise() {
	if b == nil {
		return
	}
	e := b.ev
	b.buf = append(b.buf, "}}"...)
	ev := &Event{Name: b.name, Seq: b.seq, Time: b.now, JSON: append([]byte(nil), b.buf...)}
	if cap(b.buf) <= 64<<10 {
		b.ev, b.name = nil, ""
		e.pool.Put(b)
	}
	e.raised.Inc()
	t := e.subs.Load()
	for _, s := range t.byName[ev.Name] {
		e.offer(s, ev)
	}
	for _, s := range t.all {
		e.offer(s, ev)
	}
}

func (e *Events) offer(s *Subscription, ev *Event) {
	select {
	case s.c <- ev:
	default:
		s.dropped.Add(1)
		e.dropped.Inc()
	}
}

// AppendJSONString appends s as a JSON string (for the event payloads and
// the modules' own line formats, without reflection or allocation). Bytes that are not UTF-8
// become U+FFFD, so that a forged header cannot break the document.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			dst = appendASCII(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// appendJSONBytes is AppendJSONString for bytes, read in place (not copied
// into a string).
func appendJSONBytes(dst, s []byte) []byte {
	if len(s) == 0 {
		return append(dst, `""`...)
	}
	return AppendJSONString(dst, unsafe.String(&s[0], len(s)))
}

const hexDigits = "0123456789abcdef"

func appendASCII(dst []byte, c byte) []byte {
	switch {
	case c == '"' || c == '\\':
		return append(dst, '\\', c)
	case c == '\n':
		return append(dst, '\\', 'n')
	case c == '\r':
		return append(dst, '\\', 'r')
	case c == '\t':
		return append(dst, '\\', 't')
	case c < 0x20 || c == 0x7f:
		return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(dst, c)
}
