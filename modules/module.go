// Package modules is the plug-in point of the services that route sets
// call (registrar, auth, pike, permissions, ratelimit...). Each module is a
// package under modules/ that registers a Definition from its init
// function, the way a CoreDNS plugin registers its setup or a Caddy module
// its provision, validate and cleanup steps:
//
//	func init() {
//	    modules.Register(modules.Definition{
//	        Name:     "pike",
//	        Doc:      "flood detection and source bans",
//	        Settings: func() any { return &Settings{Window: 2 * time.Second, ...} },
//	        Check:    checkSettings,
//	        New:      newPike,
//	    })
//	}
//
// The server imports every module package for its side effect (one line
// each in modules/all) and then, for each registered module
// in dependency order:
//
//  1. decodes the configuration file's section named after the module into
//     the value Settings returned (its defaults stand for keys left out;
//     unknown keys are errors naming file, line and key);
//  2. calls Check, whose *KeyError names the key at fault (relative to the
//     section: the server prefixes the section name and finds the line);
//  3. calls New with a Host (the store, the clock, the logger, metrics, the
//     management API, the modules built before) and the checked settings;
//     the result goes into routing.Env.Modules under the module's name;
//  4. calls Start on each instance once the transport listens, and Stop in
//     reverse order at shutdown, after the transport and the transaction
//     core have stopped.
//
// `switchboard check-config` runs steps 1 and 2. A module whose settings
// can change without a restart implements Reloader; a SIGHUP (or the
// reload management command) checks the new settings of every module
// whose section changed first (Reloader.CheckReload, Set.CheckReload), and
// hands them over (Reloader.Reload, Set.Reload) only once none was
// refused; a key only a restart applies is listed, not refused.
package modules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"sync"

	"switchboard/store"
)

// Definition describes a module to the server.
type Definition struct {
	// Name is the module's configuration section, its key in
	// routing.Env.Modules and the prefix of its metrics
	// (switchboard_<name>_...) and management commands (<name>.list...).
	Name string
	// Doc is one line for `switchboard modules` and the docs.
	Doc string
	// After names modules this one uses: they are built (and started)
	// before it, and Host.Module returns them. A name that is not
	// registered is an error at start.
	After []string
	// Uses names modules this one works with when they are compiled in:
	// those present are built (and started) before it and Host.Module
	// returns them; absent ones are skipped. For an optional partner,
	// e.g. pike exempting the permissions module's trusted addresses.
	Uses []string
	// Settings returns the module's settings with their defaults, as a
	// pointer to a struct with yaml tags. Field types: string, int,
	// int64, float64, bool, time.Duration ("500ms", "4s"), slices and
	// nested structs of those. Nil: the module takes no settings (a
	// section in the file is then an error).
	Settings func() any
	// Check validates decoded settings (ranges, combinations) and returns
	// a *KeyError for the key at fault. Nil: nothing to check.
	Check func(settings any) error
	// CheckOutbound checks the addresses checked settings make the module
	// send to against outbound.allow (allowed reports whether the server
	// may send to an address), at config load after Check, so that
	// check-config, a start and a reload refuse a destination the server
	// would never reach, with a *KeyError naming the key. Nil: nothing to
	// check (a module that sends only through the transaction core, which
	// applies the list itself).
	CheckOutbound func(settings any, allowed func(netip.Addr) bool) error
	// StoreOptions adjusts the options the server opens the store with,
	// from the module's checked settings (the registrar's write-through
	// mode makes every commit wait for the disk). Nil: nothing to adjust.
	StoreOptions func(settings any, o *store.Options)
	// New builds the module from checked settings. It may register
	// management commands and metrics on h, read the store, and use the
	// modules named in After; it must not start goroutines that send SIP
	// (the transport is not listening yet): Start does that.
	New func(h *Host, settings any) (Instance, error)
	// CLIName is the name of the offline subcommands when it is not Name:
	// the acc module's records are `switchboard cdr list`.
	CLIName string
	// CLI are the module's offline subcommands for its tables,
	// `switchboard <name> <verb> [args] [-c config]`, run on the store of
	// that configuration whether the server runs or not (a running server
	// picks the change up from the store's change log, as it does for
	// `switchboard user`). Nil: none; the management commands (ctl) are
	// registered by New.
	CLI map[string]CLICommand
}

// CLICommand is one offline subcommand of a module.
type CLICommand struct {
	// Usage shows the arguments after the verb: "<ip[/bits]> [--group N]".
	Usage string
	// Help is one line.
	Help string
	// Run does the work; args are what follows the verb, with -c and its
	// value removed. An error is printed with the usage and exits 1
	// (*KeyError or an error wrapping flag.ErrHelp: exit 2).
	Run func(ctx context.Context, st *store.Store, args []string, out io.Writer) error
	// RunEnv, when set, is called instead of Run, with what the
	// subcommand may need of the configuration besides its store.
	RunEnv func(ctx context.Context, env CLIEnv, args []string, out io.Writer) error
}

// CLIEnv is what an offline subcommand learns of its configuration.
type CLIEnv struct {
	Store *store.Store
	// Settings are the module's checked settings.
	Settings any
	// OutboundAllowed reports whether the server may send to an address
	// (outbound.allow): a row the server would refuse is refused here
	// first.
	OutboundAllowed func(netip.Addr) bool
}

// Instance is a built module.
type Instance interface {
	// Start begins the module's background work (timers, pollers, probes)
	// once the transport listens.
	Start() error
	// Stop ends it and releases what the module holds (writes queued
	// changes, closes files). Called once, after the transport and the
	// transaction core stopped, in the reverse order of Start.
	Stop()
}

// Reloader is implemented by an Instance whose settings can change while
// the server runs. A reload is all or nothing as far as can be known
// before anything changes (Kamailio's and OpenSIPS's expectation, Caddy's
// provision and validate before the new config is put in force): the
// server calls CheckReload of every module whose section changed, and
// Reload of each only when none refused, so that a refusal leaves every
// module (and the server's own keys) as they were. A key whose new value
// only a restart puts in force is no refusal, as the server's own listen
// or storage are not: it is listed as needing a restart ("dialog.persist")
// and the rest of the file is applied.
type Reloader interface {
	// CheckReload reports, changing nothing, the keys of settings that
	// passed Check whose new value only a restart puts in force
	// (NeedRestart), and why the settings cannot be put in force now: a
	// table in the store over a new size limit, a zone that does not
	// load. A *KeyError (or several, errors.Join) names each key; one
	// that is not a NeedRestart's refuses the whole reload.
	CheckReload(settings any) error
	// Reload puts settings that CheckReload did not refuse in force. The
	// keys CheckReload named as needing a restart keep their value in
	// force, written into settings so that they describe what runs (the
	// server keeps them as the section in force, and a later reload of
	// the same file names those keys again); the others are applied. It
	// fails only on what could not be checked beforehand (a socket that
	// cannot be opened, a table grown past its limit since the check);
	// the module then keeps its old settings, all of them.
	Reload(settings any) error
}

// NeedRestart is what CheckReload returns for the keys (of those named)
// whose new value only a restart puts in force: a *KeyError marked
// Restart for each, joined; nil when keys is empty.
func NeedRestart(keys ...string) error {
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = &KeyError{Key: k, Msg: "changed, and takes effect only at the next start (a restart)", Restart: true}
	}
	return errors.Join(errs...)
}

// KeepInForce is one line of a module's list of the keys only a restart
// applies: when the new settings change key name (*v), it puts the value
// in force (inForce) back into them, for Reload to apply the others, and
// appends name to keys, for CheckReload to list it (NeedRestart).
func KeepInForce[T comparable](keys []string, name string, v *T, inForce T) []string {
	if *v == inForce {
		return keys
	}
	*v = inForce
	return append(keys, name)
}

// OutboundWatcher is implemented by an Instance that sends on sockets of
// its own to destinations it checked against outbound.allow when it took
// them (Originator.Allowed): a reload that changed the list calls
// OutboundChanged, once the transaction core answers from the new one, for
// the module to check them again and stop sending to those now outside
// (and take up those now inside). An error is logged.
type OutboundWatcher interface {
	OutboundChanged() error
}

// Drainer is implemented by an Instance with work to do when the server
// drains (SIGTERM), while the transport and the transaction core still
// run and new requests are refused: the dialog module ends the calls up
// on a node being retired (dialog.drain_timeout). Drain returns when the
// work is done, or when ctx ends (a second signal).
type Drainer interface {
	Drain(ctx context.Context)
}

// KeyError is a settings error: the key (relative to the module's
// section, e.g. "window" or "rules[2].prefix") and what is wrong.
type KeyError struct {
	Key string
	Msg string
	// Restart marks a changed key whose new value only a restart puts in
	// force (NeedRestart): a reload lists it and applies the rest.
	Restart bool
}

func (e *KeyError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errorf returns a *KeyError for key.
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var (
	mu   sync.Mutex
	defs = map[string]Definition{}
)

// Register adds a module definition. It panics on a duplicate or unnamed
// module: that is a programming error found at the first start.
func Register(d Definition) {
	if d.Name == "" || d.New == nil {
		panic("modules: a definition needs a Name and a New function")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := defs[d.Name]; dup {
		panic("modules: " + d.Name + " registered twice")
	}
	defs[d.Name] = d
}

// Lookup returns the definition registered under name.
func Lookup(name string) (Definition, bool) {
	mu.Lock()
	defer mu.Unlock()
	d, ok := defs[name]
	return d, ok
}

// LookupCLI returns the definition whose offline subcommands are called
// name: its CLIName, or its Name when it has none.
func LookupCLI(name string) (Definition, bool) {
	mu.Lock()
	defer mu.Unlock()
	for _, d := range defs {
		if d.CLIName == name || d.CLIName == "" && d.Name == name {
			return d, len(d.CLI) > 0
		}
	}
	return Definition{}, false
}

// CommandName returns the name of d's offline subcommands.
func (d Definition) CommandName() string {
	if d.CLIName != "" {
		return d.CLIName
	}
	return d.Name
}

// Ordered returns every registered definition, each after the ones it
// names in After (ties by name, so the order is the same on every start).
func Ordered() ([]Definition, error) {
	mu.Lock()
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	all := make(map[string]Definition, len(defs))
	for n, d := range defs {
		all[n] = d
	}
	mu.Unlock()
	sort.Strings(names)
	var out []Definition
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, from string) error
	visit = func(n, from string) error {
		d, ok := all[n]
		if !ok {
			return fmt.Errorf("modules: %s needs %s, which is not compiled in", from, n)
		}
		switch state[n] {
		case 1:
			return errors.New("modules: dependency cycle through " + n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, dep := range d.After {
			if err := visit(dep, n); err != nil {
				return err
			}
		}
		for _, dep := range d.Uses {
			if _, ok := all[dep]; !ok {
				continue
			}
			if err := visit(dep, n); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, d)
		return nil
	}
	for _, n := range names {
		if err := visit(n, n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
