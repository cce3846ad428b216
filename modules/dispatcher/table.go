package dispatcher

import (
	"errors"
	"math/bits"
	"net/netip"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// State is a destination's state, numbered as OpenSIPS's state column.
type State uint32

// The states of a destination.
const (
	// Active destinations are selected.
	Active State = store.DispatcherActive
	// Inactive destinations were disabled by an operator (or a route's
	// MarkDst): never selected nor probed until activated again.
	Inactive State = store.DispatcherInactive
	// Probing destinations are considered down: not selected, probed
	// with OPTIONS until they answer probe_successes times in a row.
	Probing State = store.DispatcherProbing

	// removed is the state of a destination that left the table: the
	// snapshots a fail-over in progress may still walk keep it, and
	// skip it as they skip any destination not active. Nothing moves a
	// state out of it (a probe in flight, a route's MarkDst); a
	// destination added again gets a new state.
	removed State = 0xff
)

func (s State) String() string {
	if int(s) < len(store.DispatcherStateNames) {
		return store.DispatcherStateNames[s]
	}
	if s == removed {
		return "removed"
	}
	return "unknown"
}

// stateKey identifies a destination across reloads: its set and its
// canonical URI (row ids change when a table is imported again).
type stateKey struct {
	set int
	uri string
}

// dstate is the run-time state of one destination, shared by every table
// snapshot that has it: a reload keeps its state, its calls in progress
// and its counters.
type dstate struct {
	key    stateKey
	state  atomic.Uint32
	stored State // the state in the store when last loaded (under reloadMu)

	calls atomic.Int64 // calls in progress sent here (leases held)
	fails atomic.Int32 // failures in a row: probes, MarkDst(Probing)
	oks   atomic.Int32 // answered probes in a row while probing

	lastProbe atomic.Int64 // clock ms of the last probe's end; 0: never
	lastCode  atomic.Int32 // its final response code; 0: none came (timeout, error)

	selected, failures, probeFailures *metrics.Counter
	metricNames                       []string
}

func (st *dstate) load() State { return State(st.state.Load()) }

// lease counts one call here; the tracker releases it.
func (st *dstate) lease() Lease {
	st.calls.Add(1)
	return Lease{st: st}
}

// dest is a destination in one snapshot: what the row says, and its
// shared state.
type dest struct {
	id          int64
	uri         string
	proto       transport.Proto
	addr        netip.AddrPort
	weight      uint32
	invWeight   float64 // 1/weight: the rendezvous score's divisor
	priority    int
	socket      string
	source      netip.Addr // the socket's address: where probes leave from
	probeAlways bool
	attrs, desc string
	seed        uint64 // hash of the URI: the destination's key in rendezvous hashing
	st          *dstate
}

func (d *dest) up() bool { return d.st.state.Load() == uint32(Active) }

// setCounters are a set's round-robin and weight counters, kept across
// reloads; each on its own cache line, since every core adds to them.
type setCounters struct {
	rr atomic.Uint64
	_  [56]byte
	w  atomic.Uint64
	_  [56]byte
}

// set is one destination set in a snapshot, ordered by priority (highest
// first), then id: the order of fail-over and of the priority algorithm.
type set struct {
	id      int
	dests   []dest
	slots   []uint16 // weighted order: dests[slots[n % len]] for the weight algorithm
	uniform bool     // every weight equal: rendezvous hashing needs no logarithm
	ctr     *setCounters
}

// addrEntry is a destination under its address, for IsInList.
type addrEntry struct {
	set  int
	port uint16
}

// table is one immutable snapshot of the dispatcher table.
type table struct {
	gen     uint64
	sets    map[int]*set
	addrs   map[[16]byte][]addrEntry
	dests   int
	skipped int
}

// recentTables is how many snapshots stay reachable by generation for
// fail-overs in progress (a power of two).
const recentTables = 8

// Summary is what a reload loaded.
type Summary struct {
	Destinations int         `json:"destinations"`
	Sets         map[int]int `json:"sets"`
	Skipped      int         `json:"skipped"`
}

func (t *table) summary() Summary {
	s := Summary{Destinations: t.dests, Sets: map[int]int{}, Skipped: t.skipped}
	for id, st := range t.sets {
		s.Sets[id] = len(st.dests)
	}
	return s
}

// build makes a snapshot of rows, keeping the state of destinations
// already known, and swaps it in. Rows that do not validate (written to
// the database by hand) are skipped and logged. Called under reloadMu.
func (d *Dispatcher) build(rows []store.DispatcherDest) *table {
	d.gen++
	t := &table{gen: d.gen, sets: map[int]*set{}, addrs: map[[16]byte][]addrEntry{}}
	seen := make(map[stateKey]bool, len(rows))
	logged := 0
	for _, r := range rows {
		ds, err := d.toDest(r, seen)
		if err != nil {
			if logged < 10 {
				d.log.Warn("dispatcher: destination skipped (it is not used until corrected)", "id", r.ID, "err", err)
			}
			logged++
			t.skipped++
			continue
		}
		s := t.sets[r.SetID]
		if s == nil {
			s = &set{id: r.SetID, ctr: d.counters[r.SetID]}
			if s.ctr == nil {
				s.ctr = new(setCounters)
				d.counters[r.SetID] = s.ctr
			}
			t.sets[r.SetID] = s
		}
		s.dests = append(s.dests, ds)
		k := ds.addr.Addr().Unmap().As16()
		t.addrs[k] = append(t.addrs[k], addrEntry{set: r.SetID, port: ds.addr.Port()})
		t.dests++
	}
	for id, s := range t.sets {
		sort.SliceStable(s.dests, func(i, j int) bool {
			a, b := &s.dests[i], &s.dests[j]
			if a.priority != b.priority {
				return a.priority > b.priority
			}
			return a.id < b.id
		})
		s.slots, s.uniform = weightSlots(s.dests)
		t.sets[id] = s
	}
	for k, st := range d.states {
		if !seen[k] {
			d.dropState(st)
		}
	}
	for id := range d.counters {
		if t.sets[id] == nil {
			delete(d.counters, id)
		}
	}
	d.skipped.Store(int64(t.skipped))
	d.recent[t.gen%recentTables].Store(t)
	d.tab.Store(t)
	return t
}

var errDuplicate = errors.New("the same destination twice in one set")

// toDest validates a row and joins it to its state: the one it had, or a
// new one in the row's state. A state the store changed (an operator's
// set_state, an edited row) replaces the run-time one.
func (d *Dispatcher) toDest(r store.DispatcherDest, seen map[stateKey]bool) (dest, error) {
	if err := store.CheckDispatcherDest(&r); err != nil {
		return dest{}, err
	}
	t, _, _ := store.ParseDispatcherURI(r.Destination)
	proto, _ := transport.ParseProto(t.Proto)
	k := stateKey{set: r.SetID, uri: r.Destination}
	if seen[k] {
		return dest{}, errDuplicate
	}
	seen[k] = true
	st := d.states[k]
	switch {
	case st == nil:
		st = d.newState(k, State(r.State))
	case st.stored != State(r.State):
		st.stored = State(r.State)
		st.fails.Store(0)
		st.oks.Store(0)
		st.state.Store(uint32(r.State))
	}
	ds := dest{id: r.ID, uri: r.Destination, proto: proto, addr: t.Addr, weight: uint32(r.Weight), invWeight: 1 / float64(r.Weight), priority: r.Priority,
		socket: r.Socket, probeAlways: r.ProbeMode == 1, attrs: r.Attrs, desc: r.Description,
		seed: shards.SumString(r.Destination), st: st}
	if r.Socket != "" {
		_, a, _, _ := store.ParseDispatcherSocket(r.Socket)
		ds.source = a.Addr()
	}
	return ds, nil
}

// newState makes the state of a destination seen for the first time,
// with its metrics.
func (d *Dispatcher) newState(k stateKey, s State) *dstate {
	st := &dstate{key: k, stored: s}
	st.state.Store(uint32(s))
	labels := `{set="` + strconv.Itoa(k.set) + `",destination="` + k.uri + `"}`
	name := func(n string) string {
		st.metricNames = append(st.metricNames, n+labels)
		return n + labels
	}
	st.selected = d.set.GetOrCreateCounter(name("switchboard_dispatcher_selected_total"))
	st.failures = d.set.GetOrCreateCounter(name("switchboard_dispatcher_failures_total"))
	st.probeFailures = d.set.GetOrCreateCounter(name("switchboard_dispatcher_probe_failures_total"))
	d.set.GetOrCreateGauge(name("switchboard_dispatcher_state"), func() float64 { return float64(st.state.Load()) })
	d.set.GetOrCreateGauge(name("switchboard_dispatcher_calls"), func() float64 { return float64(st.calls.Load()) })
	d.states[k] = st
	return st
}

// dropState forgets a destination that left the table, and marks it
// removed: a fail-over that began before the reload walks the snapshot
// it began with, where the destination still is, and must not send the
// call there (it was active until now). Leases of its calls in progress
// still point to it and release harmlessly.
func (d *Dispatcher) dropState(st *dstate) {
	st.state.Store(uint32(removed))
	for _, n := range st.metricNames {
		d.set.UnregisterMetric(n)
	}
	delete(d.states, st.key)
}

// maxSlots bounds the weighted order of one set; weights are scaled down
// past it (each destination keeps at least one slot).
const maxSlots = 4096

// weightSlots returns the weighted order of ds: each destination appears
// as often as its weight (reduced by the weights' greatest common
// divisor, scaled down past maxSlots), spread out evenly ("stride"
// order: destination i's k-th slot at virtual time (k+½)/w_i), so that a
// counter walking the slots gives every destination its share over any
// stretch of calls, not in bursts. uniform reports equal weights.
func weightSlots(ds []dest) ([]uint16, bool) {
	g, total := uint32(0), 0
	uniform := true
	for i := range ds {
		g = gcd(g, ds[i].weight)
		total += int(ds[i].weight)
		uniform = uniform && ds[i].weight == ds[0].weight
	}
	w := make([]int, len(ds))
	scaled := 0
	for i := range ds {
		w[i] = int(ds[i].weight / g)
		if total/int(g) > maxSlots {
			w[i] = max(1, int(ds[i].weight)*maxSlots/total)
		}
		scaled += w[i]
	}
	type slot struct {
		at  float64
		idx uint16
	}
	all := make([]slot, 0, scaled)
	for i, n := range w {
		for k := 0; k < n; k++ {
			all = append(all, slot{at: (float64(k) + 0.5) / float64(n), idx: uint16(i)})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].at != all[j].at {
			return all[i].at < all[j].at
		}
		return all[i].idx < all[j].idx
	})
	out := make([]uint16, len(all))
	for i, s := range all {
		out[i] = s.idx
	}
	return out, uniform
}

func gcd(a, b uint32) uint32 {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	shift := bits.TrailingZeros32(a | b)
	a >>= bits.TrailingZeros32(a)
	for b != 0 {
		b >>= bits.TrailingZeros32(b)
		if a > b {
			a, b = b, a
		}
		b -= a
	}
	return a << shift
}
