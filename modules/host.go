package modules

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// Host is what the server gives a module's New function: shared services,
// and the places a module plugs into (management commands, metrics, the
// transport's source filter).
type Host struct {
	// Store is the server's store (subscribers, domains, location, and
	// the modules' own tables).
	Store *store.Store
	// Clock is the coarse clock every table and timer wheel runs on.
	Clock *shards.Clock
	// Metrics is the set /metrics serves; name metrics
	// switchboard_<module>_... .
	Metrics *metrics.Set
	// DataDir is storage.dir: where files a module keeps (keys, caches)
	// belong.
	DataDir string
	// Shards is limits.shards (0: automatic), for modules with sharded
	// tables.
	Shards int
	// Domains are the domains the server serves.
	Domains *routing.Domains
	// Originator sends requests of the proxy's own (a registrant's
	// REGISTER, OPTIONS probes) from Start on; never nil.
	Originator *Originator
	// Events raises events to their subscribers (E_UL_CONTACT_INSERT,
	// E_PIKE_BLOCKED...); never nil. See Events.Begin.
	Events *Events

	name     string
	logger   *slog.Logger
	mgmt     *mgmt.Server
	built    map[string]Instance
	commands map[string]string // command name -> module, shared by the set
	after    []string
	admit    *[]func(netip.Addr) bool
	warnMu   sync.Mutex
	warnSec  int64
	warnN    int
	dropped  int
}

// Logger returns the module's logger (its lines carry module=<name>).
func (h *Host) Logger() *slog.Logger { return h.logger }

// Command registers a management API command (and `switchboard ctl`
// command). Name it "<module>.<verb>" ("pike.bans", "permissions.add"),
// or after the family operators know the module's tables by
// ("registrations.list", "users.add"). A name another module registered
// already is a programming error: Command panics, at the first start.
func (h *Host) Command(name string, c mgmt.Command) {
	if owner, dup := h.commands[name]; dup {
		panic(fmt.Sprintf("modules: %s registers command %q, which %s registered", h.name, name, owner))
	}
	h.commands[name] = h.name
	if h.mgmt != nil {
		h.mgmt.Register(name, c)
	}
}

// Stream registers a stream of the management API at
// /api/v1/stream/<name> (mgmt.Server.Stream): the events module's
// Server-Sent Events.
func (h *Host) Stream(name string, handler http.Handler) {
	if h.mgmt != nil {
		h.mgmt.Stream(name, handler)
	}
}

// Module returns a module built before this one; it must be named in the
// Definition's After or Uses (nil otherwise, or when it is not built).
func (h *Host) Module(name string) Instance {
	for _, a := range h.after {
		if a == name {
			return h.built[name]
		}
	}
	return nil
}

// AdmitSources adds a filter the transport asks about every datagram
// before parsing it and every TCP/TLS connection before accepting it:
// false drops the datagram (counted, never answered) or refuses the
// connection. It runs on the receive path for every packet: it must be
// cheap, allocation-free and safe for concurrent use.
func (h *Host) AdmitSources(f func(netip.Addr) bool) {
	*h.admit = append(*h.admit, f)
}

// Degraded reports on /readyz that part of the module ("registrar.redis")
// works on a fallback for reason, or is back to normal (reason ""). /readyz
// stays 200 and lists the part: the node still serves.
func (h *Host) Degraded(part, reason string) {
	if h.mgmt != nil {
		h.mgmt.SetDegraded(part, reason)
	}
}

// warnPerSecond bounds the warning lines a module logs for events an
// attacker can cause (a ban, a blocked scanner, a limit hit).
const warnPerSecond = 10

// Warn logs msg at Warn level unless warnPerSecond lines were already
// logged this second; the lines dropped are counted and reported with the
// next line let through. For events peers can trigger at will.
func (h *Host) Warn(msg string, args ...any) {
	sec := h.Clock.Now() / 1000
	h.warnMu.Lock()
	if sec != h.warnSec {
		h.warnSec, h.warnN = sec, 0
	}
	if h.warnN >= warnPerSecond {
		h.dropped++
		h.warnMu.Unlock()
		return
	}
	h.warnN++
	dropped := h.dropped
	h.dropped = 0
	h.warnMu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	h.logger.Warn(msg, args...)
}
