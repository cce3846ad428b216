// Package registrar is the location service and registrar (RFC 3261 §10,
// RFC 3327 Path, RFC 5626 instance and reg-id): Save handles a REGISTER,
// Lookup turns a Request-URI of a served domain into the registered
// contacts. Bindings live in memory in a shards table keyed by the
// address-of-record, so Lookup never touches the disk and allocates nothing;
// each record has one timer on its shard's timing wheel for the earliest
// expiry. Every change is written behind to the store through a
// store.LocationWriter, and Load fills the table from the store at start.
//
// OpenSIPS equivalents: save("location") is Save, lookup("location") is
// Lookup, t_next_contacts() in a failure route is NextContacts, and
// registered() is Registered.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// Per-transaction value slots Lookup uses to hand state to the branch and
// failure routes (see routing.Ctx.Value). A route set that calls Lookup
// must leave these two slots alone.
const (
	// SlotAOR holds the hash of the address-of-record that was looked up.
	SlotAOR = txn.NumValues - 2
	// SlotNextQ holds 1 + the q-value (in thousandths) below which the
	// next serial group of contacts starts; 0 when no group is left.
	SlotNextQ = txn.NumValues - 1
)

// Defaults for zero Config fields.
const (
	DefaultExpires     = 3600 * time.Second
	DefaultMinExpires  = 60 * time.Second
	DefaultMaxExpires  = 7200 * time.Second
	DefaultMaxContacts = 10
)

// Config configures a Registrar.
type Config struct {
	// Clock drives expiry. Required.
	Clock *shards.Clock
	// DefaultExpires applies to a contact with neither an expires
	// parameter nor an Expires header; MinExpires is the shortest
	// registration accepted (shorter gets 423 with Min-Expires);
	// MaxExpires caps longer ones.
	DefaultExpires, MinExpires, MaxExpires time.Duration
	// MaxContacts bounds the bindings of one address-of-record; a REGISTER
	// that would exceed it gets 503 and changes nothing.
	MaxContacts int
	// MaxBytes caps the memory the bindings take (0: no cap). A REGISTER
	// that would add bindings past it gets 503; refreshes and removals
	// still work.
	MaxBytes int64
	// Shards is the number of table shards (0: automatic).
	Shards int
	// NATTests decide which contacts of an authenticated REGISTER are
	// behind NAT and reached at the REGISTER's source (0:
	// DefaultNATTests; NATNone: none).
	NATTests NATTests
	// Writer, when set, receives every binding change.
	Writer *store.LocationWriter
	// Persist says whether the 200 waits for the Writer's commit
	// (WriteThrough) or not (WriteBack, the default).
	Persist Persist
	// Logger receives error-path lines. Nil: slog.Default().
	Logger *slog.Logger
	// FlowTimer, when set, goes in the Flow-Timer header of the 200 to a
	// REGISTER done with RFC 5626 outbound over a connection: how often
	// the phone sends its CRLF keep-alive (outbound.go).
	FlowTimer time.Duration
	// Events receives E_UL_CONTACT_INSERT, _UPDATE and _DELETE (nil:
	// none are raised).
	Events *modules.Events
}

// Registrar is the location service. It is safe for concurrent use.
type Registrar struct {
	cfg      Config
	natTests NATTests
	tbl      *shards.Table[record]
	w        *store.LocationWriter
	log      *slog.Logger
	// ownWriter is the writer the module built (newModule) and closes at
	// Stop; nil when the caller of New owns cfg.Writer.
	ownWriter *store.LocationWriter
	scratch   sync.Pool // *scratch

	// counters
	saved, removed, expired, refused, lookups, found atomic.Uint64
	writeDrops, storeBusy, storeErrors               atomic.Uint64
	unreachable                                      atomic.Uint64
	loopContacts, spirals                            atomic.Uint64

	keepalive atomic.Pointer[keepalive]                                  // SetKeepalive
	connOpen  atomic.Pointer[func(transport.Proto, netip.AddrPort) bool] // SetConnCheck
	connGone  atomic.Uint64                                              // WebSocket bindings whose connection closed

	share *sharer // registrar.sharing: redis (share.go); nil otherwise
	// redis is registrar.redis as configured (whether sharing is on or
	// not): the dialog module shares its dialogs with the same settings
	// unless it has its own.
	redis RedisSettings

	flowNames atomic.Pointer[flowNamer] // SetFlowNames
}

// record is the value of one address-of-record in the table.
type record struct {
	b     []binding   // live bindings; inner buffers are kept across reuse
	gone  []tombstone // requests whose bindings went, for goneFor (tombstone.go)
	timer shards.Timer
	ping  shards.Timer // NAT keepalive of its NATed UDP bindings (keepalive.go)
}

// binding is one registered contact. Byte slices are owned by the record.
type binding struct {
	contact   []byte // contact URI
	params    []byte // contact header parameters other than expires and q
	callID    []byte
	instance  []byte
	path      []byte
	ua        []byte
	src       netip.AddrPort // where the REGISTER came from
	socket    netip.AddrPort // the listener it came in on
	proto     transport.Proto
	flow      transport.ConnID // the connection it registered over (memory only; 0: UDP, or loaded)
	outbound  bool             // RFC 5626 outbound: only its flow reaches it (outbound.go)
	nat       bool             // reached at src (see natted)
	pingFails uint8            // NAT keepalives unanswered in a row (memory only)
	hop       netip.AddrPort   // the first Path hop, when it is an IP address
	hopProto  transport.Proto  // and its transport
	q         int16
	regID     uint32
	cseq      uint32
	branch    uint64 // hash of the REGISTER's Via branch; 0 when loaded from the store
	expires   int64  // clock ms
	modified  int64  // clock ms
	// node is the node that holds the phone's flow, from Redis
	// (registrar.sharing: redis; "" for a binding made here); remote is
	// true when that is another node, which then sends its keepalives.
	node   string
	remote bool
	// flowName is the flow of a binding read from Redis as the holder
	// named it (txn.Core.FlowName); flow is what it names here once the
	// core is known (SetFlowNames).
	flowName string
}

// Timer kinds of a record.
const (
	timerExpire = 1
	timerPing   = 2
)

// bytes is the memory the record's bindings hold beyond the entry.
func (v *record) bytes() int {
	n := cap(v.b)*int(unsafe.Sizeof(binding{})) + cap(v.gone)*int(unsafe.Sizeof(tombstone{}))
	for i := range v.b[:cap(v.b)] {
		b := &v.b[:cap(v.b)][i]
		n += cap(b.contact) + cap(b.params) + cap(b.callID) + cap(b.instance) + cap(b.path) + cap(b.ua) + len(b.flowName)
	}
	return n
}

// New creates a registrar. Call Load to fill it from the store and Close
// when done.
func New(cfg Config) (*Registrar, error) {
	if cfg.Clock == nil {
		return nil, errors.New("registrar: Config.Clock is required")
	}
	if cfg.DefaultExpires == 0 {
		cfg.DefaultExpires = DefaultExpires
	}
	if cfg.MinExpires == 0 {
		cfg.MinExpires = DefaultMinExpires
	}
	if cfg.MaxExpires == 0 {
		cfg.MaxExpires = DefaultMaxExpires
	}
	if cfg.MaxContacts == 0 {
		cfg.MaxContacts = DefaultMaxContacts
	}
	if cfg.MinExpires > cfg.MaxExpires || cfg.DefaultExpires < cfg.MinExpires || cfg.DefaultExpires > cfg.MaxExpires {
		return nil, fmt.Errorf("registrar: need min_expires (%s) <= default_expires (%s) <= max_expires (%s)", cfg.MinExpires, cfg.DefaultExpires, cfg.MaxExpires)
	}
	if cfg.MaxContacts < 1 || cfg.MaxContacts > 1000 {
		return nil, fmt.Errorf("registrar: max_contacts must be between 1 and 1000, not %d", cfg.MaxContacts)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registrar{cfg: cfg, w: cfg.Writer, log: cfg.Logger, natTests: cfg.NATTests}
	if r.natTests == 0 {
		r.natTests = DefaultNATTests
	}
	r.scratch.New = func() any { return new(scratch) }
	tbl, err := shards.New(shards.Config[record]{
		Clock:     cfg.Clock,
		Shards:    cfg.Shards,
		MaxBytes:  cfg.MaxBytes,
		MaxKeyLen: maxAOR,
		OnTimer:   r.onTimer,
		Reset: func(v *record) {
			v.b = v.b[:0]
			v.gone = v.gone[:0]
		},
	})
	if err != nil {
		return nil, err
	}
	r.tbl = tbl
	return r, nil
}

// Close detaches the table from the clock. The writer belongs to the
// caller, who closes it after the registrar.
func (r *Registrar) Close() { r.tbl.Close() }

// maxAOR bounds an address-of-record "user@domain".
const maxAOR = 320

// maxBadLogged bounds the stored rows Load names in the log one by one.
const maxBadLogged = 20

// Load fills the table with the unexpired bindings in st (server start).
// It returns how many were loaded. A stored row that is no binding (a
// value out of range, written by hand or another tool: store.LoadBindings'
// bad) or whose AOR is too long is logged and left out; the others load.
func (r *Registrar) Load(ctx context.Context, st *store.Store) (int, error) {
	now := r.tbl.Now()
	bs, bad, err := st.LoadBindings(ctx, time.UnixMilli(now))
	if err != nil {
		return 0, err
	}
	for i := range bs {
		if sb := &bs[i]; len(sb.AOR) > maxAOR {
			bad = append(bad, fmt.Errorf("binding %s of %.40s...: AOR longer than %d bytes", sb.Contact, sb.AOR, maxAOR))
		}
	}
	for i, err := range bad {
		if i == maxBadLogged {
			r.log.Warn("registrar: more stored bindings not loaded", "more", len(bad)-i)
			break
		}
		r.log.Warn("registrar: stored binding not loaded", "err", err)
	}
	n := 0
	for i := range bs {
		sb := &bs[i]
		if len(sb.AOR) > maxAOR {
			continue
		}
		b := fromStore(sb)
		key := []byte(sb.AOR)
		h := shards.Sum(key)
		s := r.tbl.Shard(h)
		s.Lock()
		e, _, err := s.GetOrInsert(h, key)
		if err == nil {
			e.Value.b = append(e.Value.b, b)
			s.Account(e, e.Value.bytes())
			r.schedule(s, e)
			n++
		}
		s.Unlock()
	}
	return n, nil
}

// fromStore turns a stored binding into the table's.
func fromStore(sb *store.Binding) binding {
	var b binding
	b.contact = []byte(sb.Contact)
	b.callID = []byte(sb.CallID)
	b.instance = []byte(sb.Instance)
	b.path = []byte(sb.Path)
	b.ua = []byte(sb.UserAgent)
	b.regID = sb.RegID
	b.cseq = sb.CSeq
	b.q = int16(sb.Q)
	b.expires = sb.Expires * 1000
	b.modified = sb.LastModified * 1000
	b.proto, b.src = parseAddr(sb.Received)
	_, b.socket = parseAddr(sb.Socket)
	b.nat = sb.Flags&flagNAT != 0
	b.hopProto, b.hop, _ = pathHop(b.path)
	b.params = []byte(storedParams(sb))
	return b
}

// Stored flags.
const flagNAT = 1

// storedParams rebuilds the contact parameters that matter on the wire
// (+sip.instance, reg-id) from their store columns; the parameters
// themselves are not stored.
func storedParams(sb *store.Binding) string {
	p := ""
	if sb.Instance != "" {
		p = `+sip.instance="` + sb.Instance + `"`
		if sb.RegID != 0 {
			p += ";reg-id=" + strconv.FormatUint(uint64(sb.RegID), 10)
		}
	}
	return p
}

// parseAddr parses "udp:198.51.100.7:5062".
func parseAddr(s string) (transport.Proto, netip.AddrPort) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			p, _ := transport.ParseProto(s[:i])
			ap, _ := netip.ParseAddrPort(s[i+1:])
			return p, ap
		}
	}
	return transport.UDP, netip.AddrPort{}
}

func formatAddr(p transport.Proto, ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	var name string
	switch p {
	case transport.TCP:
		name = "tcp"
	case transport.TLS:
		name = "tls"
	case transport.WS:
		name = "ws"
	case transport.WSS:
		name = "wss"
	default:
		name = "udp"
	}
	return name + ":" + ap.String()
}

// schedule starts the record's timer for its earliest expiry (of a
// binding or a tombstone), or removes the record when it has neither
// left. The shard is locked.
func (r *Registrar) schedule(s *shards.Shard[record], e *shards.Entry[record]) {
	v := &e.Value
	if len(v.b) == 0 && len(v.gone) == 0 {
		s.StopTimer(&v.timer)
		s.StopTimer(&v.ping)
		s.Remove(e)
		return
	}
	first := int64(math.MaxInt64)
	for i := range v.b {
		first = min(first, v.b[i].expires)
	}
	for i := range v.gone {
		first = min(first, v.gone[i].until)
	}
	if !v.timer.Active() || v.timer.When() != first {
		s.StartTimerAt(e, &v.timer, timerExpire, first)
	}
	r.schedulePing(s, e)
}

// onTimer removes the expired bindings and tombstones of a record. The
// store is not written: a stored binding carries its own expiry, is never
// loaded once past it, and the writer's periodic cleanup deletes it.
func (r *Registrar) onTimer(s *shards.Shard[record], e *shards.Entry[record], t *shards.Timer) {
	if t.Kind == timerPing {
		r.onPing(s, e)
		return
	}
	now := s.Now()
	v := &e.Value
	n := 0
	for i := range v.b {
		if v.b[i].expires > now {
			if n != i {
				v.b[n], v.b[i] = v.b[i], v.b[n]
			}
			n++
		} else {
			r.raiseContact(modules.EventContactDelete, e.Key(), &v.b[i], now, goneExpired)
		}
	}
	r.expired.Add(uint64(len(v.b) - n))
	v.b = v.b[:n]
	v.sweepGone(now)
	r.schedule(s, e)
}

// Stats are the registrar's counters.
type Stats struct {
	AORs, Bindings int
	Saved          uint64 // bindings added or refreshed
	Removed        uint64 // bindings removed by REGISTER or the management API
	Expired        uint64 // bindings removed by expiry
	Refused        uint64 // REGISTERs answered with an error
	Lookups, Found uint64
	WriteDrops     uint64 // changes the store cannot hold (malformed for it); they stay in memory only
	StoreBusy      uint64 // REGISTERs answered 503 because the store's queue had no room
	StoreErrors    uint64 // write-through REGISTERs answered 500 because the commit failed
	Unreachable    uint64 // NATed bindings removed after unanswered keepalives (RemoveUnreachable; also in Removed)
	ConnClosed     uint64 // WebSocket bindings expired by Lookup because their connection had closed (also in Expired)
	Tombstones     int    // requests remembered for goneFor after their bindings went (tombstone.go)
	LoopContacts   uint64 // REGISTERs refused (403) for a contact that leads back to this server (also in Refused)
	Spirals        uint64 // lookups of a request that had been through here already, kept to one branch
}

// Stats returns the counters and the table's size.
func (r *Registrar) Stats() Stats {
	st := Stats{
		Saved: r.saved.Load(), Removed: r.removed.Load(), Expired: r.expired.Load(),
		Refused: r.refused.Load(), Lookups: r.lookups.Load(), Found: r.found.Load(),
		WriteDrops: r.writeDrops.Load(), StoreBusy: r.storeBusy.Load(), StoreErrors: r.storeErrors.Load(),
		Unreachable: r.unreachable.Load(), ConnClosed: r.connGone.Load(),
		LoopContacts: r.loopContacts.Load(), Spirals: r.spirals.Load(),
	}
	r.tbl.Range(func(_ *shards.Shard[record], e *shards.Entry[record]) bool {
		if len(e.Value.b) > 0 { // not a record kept for its tombstones alone
			st.AORs++
		}
		st.Bindings += len(e.Value.b)
		st.Tombstones += len(e.Value.gone)
		return true
	})
	return st
}
