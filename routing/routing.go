// Package routing is the Go routing vocabulary of Switchboard: route sets
// written as plain Go functions, compiled into the binary, called by the
// transaction layer at the same points where OpenSIPS runs its script
// routes (route, branch_route, onreply_route, failure_route).
//
// A route set is registered by name (usually from an init function) and the
// configuration key `routes` picks one. Route functions receive a context
// whose methods carry the names an OpenSIPS script writer knows: each
// method's comment names its OpenSIPS equivalent. See docs/routing.md.
package routing

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// RouteSet is a named routing program.
type RouteSet struct {
	// Name is what the configuration key `routes` refers to.
	Name string
	// Doc is one line describing the route set.
	Doc string
	// New builds the route functions once at start, with the services of
	// the running server. Errors stop the start.
	New func(env *Env) (*Routes, error)
}

// Routes are the route functions of a route set. Only Request is required.
type Routes struct {
	// Request runs for every new request (OpenSIPS: route{}), and for an
	// ACK to a 2xx or an ACK without transaction.
	Request func(c *Ctx)
	// Branch runs before each branch is sent (OpenSIPS: branch_route).
	Branch func(c *Ctx, b *Branch)
	// Reply runs for every response received on a branch (OpenSIPS:
	// onreply_route). Returning false drops a provisional response.
	Reply func(c *ReplyCtx) bool
	// Failure runs when every branch ended without a 2xx (OpenSIPS:
	// failure_route). It may add branches and Relay again (serial
	// forking) or Reply; doing nothing forwards the best response.
	Failure func(c *FailureCtx)
	// Local runs for each CANCEL or ACK the proxy itself generates
	// (OpenSIPS: local_route), before it is sent; it may only look.
	Local func(c *LocalCtx)
	// Error runs when a request route function panics (OpenSIPS:
	// error_route): it gets the request and the panic value, logs or
	// answers. A request it leaves unanswered gets 500 from the core.
	Error func(c *Ctx, err any)
}

// Env is what route functions may use beside the message: the served
// domains, logging and metrics. Modules (registrar, auth, ...) add their
// services here as they join.
type Env struct {
	Domains *Domains
	Logger  *slog.Logger
	Metrics *metrics.Set
	// Modules holds the services of modules/ by name ("registrar",
	// "auth"). A route set takes the ones it uses once, when it is built,
	// and keeps them typed; nothing is looked up per message.
	Modules map[string]any

	// replyCounters counts the replies route functions send, by class.
	replyCounters *[7]*metrics.Counter
}

func (e *Env) countReply(code int) {
	if e == nil || e.replyCounters == nil {
		return
	}
	if class := code / 100; class >= 1 && class <= 6 {
		e.replyCounters[class].Inc()
	}
}

var (
	regMu sync.Mutex
	sets  = map[string]RouteSet{}
)

// Register makes a route set available by name. It panics on a duplicate
// name, which is a programming error caught at start.
func Register(rs RouteSet) {
	regMu.Lock()
	defer regMu.Unlock()
	if rs.Name == "" || rs.New == nil {
		panic("routing: RouteSet needs Name and New")
	}
	if _, dup := sets[rs.Name]; dup {
		panic("routing: route set " + rs.Name + " registered twice")
	}
	sets[rs.Name] = rs
}

// Lookup returns the route set registered under name.
func Lookup(name string) (RouteSet, error) {
	regMu.Lock()
	defer regMu.Unlock()
	rs, ok := sets[name]
	if !ok {
		return RouteSet{}, fmt.Errorf("no route set named %q; compiled in: %s", name, strings.Join(namesLocked(), ", "))
	}
	return rs, nil
}

// Names lists the registered route sets.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	return namesLocked()
}

func namesLocked() []string {
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
