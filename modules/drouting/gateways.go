package drouting

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/store"
	"switchboard/transport"
)

// Gateways and carriers are known by name (gwid, carrierid) to the lists
// that use them. Each name gets a slot that lives across reloads: rules
// and carriers point to slots, a slot points to the gateway's (or
// carrier's) current definition. So a change to the gateway table swaps
// the definitions of the changed gateways without rebuilding a million
// rules, the probe state and the counters of a gateway carry on, and a
// list may name a gateway that is added later. A slot whose name is in no
// table and no list is dropped at the next reload.

// gwSlot is a gateway name and its state.
type gwSlot struct {
	id  string
	cfg atomic.Pointer[gateway] // nil: no such gateway (deleted, or not yet added)

	// down is set by probing (or by calls that got no answer) and
	// cleared by probing; a down gateway is skipped.
	down atomic.Bool

	// Probe state, under mu (the probe goroutine and the core's callback).
	mu        sync.Mutex
	inFlight  bool
	probeGen  uint64 // the probe in flight: a late answer to an older one is ignored
	lastProbe int64  // ms
	fails     int    // failed probes (or silent calls) in a row
	oks       int    // answered probes in a row

	// Metrics, registered while the gateway is in the table.
	calls, failures *metrics.Counter
	metricNames     []string
}

// gateway is one gateway's definition, immutable once loaded.
type gateway struct {
	slot      *gwSlot
	gtype     int
	proto     transport.Proto
	addr      netip.AddrPort
	hostport  string // "192.0.2.10:5060", "[2001:db8::1]:5060"
	param     string // "" or ";transport=tcp"
	probeURI  string // sip:hostport;transport=...
	strip     int
	prefix    string
	attrs     string
	probeMode int
	disabled  bool
}

// usable reports whether calls may go to the gateway now.
func (s *gwSlot) usable() *gateway {
	g := s.cfg.Load()
	if g == nil || g.disabled || s.down.Load() {
		return nil
	}
	return g
}

// state is the gateway's state as management shows it.
func (s *gwSlot) state() string {
	g := s.cfg.Load()
	switch {
	case g == nil:
		return "deleted"
	case g.disabled:
		return "disabled"
	case s.down.Load():
		return "down"
	}
	return "up"
}

func newGateway(slot *gwSlot, r *store.DRGateway) (*gateway, error) {
	ap, err := store.ParseDRAddress(r.Address)
	if err != nil {
		return nil, err
	}
	g := &gateway{slot: slot, gtype: r.Type, addr: ap, strip: r.Strip, prefix: r.PriPrefix, attrs: r.Attrs,
		probeMode: r.ProbeMode, disabled: r.State != 0, hostport: ap.String()}
	switch r.Transport {
	case "tcp":
		g.proto, g.param = transport.TCP, ";transport=tcp"
	case "tls":
		g.proto, g.param = transport.TLS, ";transport=tls"
	default:
		g.proto = transport.UDP
	}
	g.probeURI = "sip:" + g.hostport + g.param
	return g, nil
}

// listItem is one entry of a rule's or a carrier's list: a gateway or a
// carrier, and its weight.
type listItem struct {
	gw     *gwSlot
	cr     *crSlot
	weight int32
}

// crSlot is a carrier name.
type crSlot struct {
	id  string
	cfg atomic.Pointer[carrier]
}

// carrier is one carrier's definition, immutable once loaded.
type carrier struct {
	list     []listItem // gateways only
	sort     byte       // 'N', 'W', 'R'
	useFirst bool
	disabled bool
	attrs    string
}

// registry holds the slots by name. Only loads use it (under
// Drouting.loadMu); the call path follows pointers.
type registry struct {
	gws map[string]*gwSlot
	crs map[string]*crSlot
	// Slots named by the lists loaded last: kept while named.
	ruleRefs, carrierRefs map[*gwSlot]bool
	ruleCarriers          map[*crSlot]bool
}

func (r *registry) gw(id string) *gwSlot {
	s := r.gws[id]
	if s == nil {
		s = &gwSlot{id: id}
		r.gws[id] = s
	}
	return s
}

func (r *registry) cr(id string) *crSlot {
	s := r.crs[id]
	if s == nil {
		s = &crSlot{id: id}
		r.crs[id] = s
	}
	return s
}

// addrIndex finds gateways by the address calls come from (is_from_gw)
// and go to (goes_to_gw). Rebuilt whole at each gateway reload.
type addrIndex struct {
	byIP   map[netip.Addr][]*gwSlot
	byDest map[netip.AddrPort]*gwSlot
}

// metricName is a per-gateway metric; gwids are letters, digits and
// "_-." (store.IsDRID), nothing a label needs escaped.
func metricName(base, gwid string) string {
	return base + `{gwid="` + gwid + `"}`
}
