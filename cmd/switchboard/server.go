package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"switchboard/transport/anycast"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"switchboard/cmd/switchboard/config"
	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/registrar"
	"switchboard/modules/siptrace"
	"switchboard/routing"
	_ "switchboard/routing/calls"
	_ "switchboard/routing/dispatch"
	_ "switchboard/routing/drouting"
	_ "switchboard/routing/provider"
	_ "switchboard/routing/relay"
	"switchboard/shards"
	"switchboard/sipdns"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// server is one running switchboard: the parts in the order a message
// passes them, and what SIGHUP and SIGTERM act on.
type server struct {
	cfgPath string
	sets    []string
	cfg     *config.Config
	log     *slog.Logger
	level   *slog.LevelVar
	// callLogs is where log lines about a call also go (siptrace.logs);
	// nil: nowhere.
	callLogs atomic.Pointer[callLogSink]
	// reloadMu serialises reloads from SIGHUP and the management API.
	reloadMu sync.Mutex

	store   *store.Store
	storage *storageWatch // pings the store; nil until started
	mgmt    *mgmt.Server
	domains *routing.Domains
	router  *routing.Router
	core    *txn.Core
	relay   *anycast.Relay // anycast.relay; nil when not in a group
	tr      *transport.Transport
	clock   *shards.Clock // of every table and the transaction core
	mods    *modules.Set  // the modules of plugins.go (modules.go)
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path, sets := configFlags(fs)
	drain := fs.Duration("drain-timeout", 32*time.Second, "on SIGTERM, the longest wait for open transactions and calls to finish")
	quiet := fs.Duration("drain-quiet", 2*time.Second, "on SIGTERM, exit once no transaction is open and no request came for this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// The signals are ours from now on: a SIGHUP (logrotate, systemctl
	// reload) or a SIGTERM during a slow start (a migration, loading a
	// large table, another process holding the SQLite lock) would
	// otherwise take Go's default action and end the process there. They
	// wait in sig until watchStart takes them.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	cfg, err := loadConfig(*path, *sets)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	s := &server{cfgPath: *path, sets: *sets, cfg: cfg}
	s.level = new(slog.LevelVar)
	s.level.Set(parseLevel(cfg.Log.Level))
	s.log = slog.New(newCallLogHandler(newLogger(stderr, cfg.Log.Format, s.level).Handler(), &s.callLogs))
	early := s.watchStart(sig)
	err = s.start()
	hup, term := early.stop()
	if err != nil {
		fmt.Fprintln(stderr, "switchboard: not started:", err)
		s.stop()
		var ce *config.Error
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	if hup {
		s.reload()
	}
	s.wait(sig, term, *drain, *quiet)
	return 0
}

// startSignals are the signals received while the server starts.
type startSignals struct {
	quit chan struct{}
	done chan struct{}
	hup  bool
	term os.Signal
}

// watchStart takes the signals of sig until stop: a SIGHUP is logged and
// applied once started (one reload for any number of them); a SIGTERM or
// SIGINT is logged and the server stops as soon as it has started, with
// the drain of any stop; a second one ends the process at once, as the
// signal would have without us (nothing is half-started then but what an
// abrupt end leaves anyway: the store is crash-safe).
func (s *server) watchStart(sig <-chan os.Signal) *startSignals {
	w := &startSignals{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.quit:
				return
			case v := <-sig:
				switch {
				case v == syscall.SIGHUP:
					if !w.hup {
						s.log.Info("SIGHUP while starting: the configuration is read again once started")
					}
					w.hup = true
				case w.term == nil:
					w.term = v
					s.log.Info("signal while starting: stopping once started", "signal", v.String())
				default:
					s.log.Warn("second signal while starting: exiting now", "signal", v.String())
					os.Exit(1)
				}
			}
		}
	}()
	return w
}

// stop ends the watch and returns what it took: whether a SIGHUP came,
// and the SIGTERM or SIGINT (nil: none). Signals from then on stay in the
// channel for wait.
func (w *startSignals) stop() (hup bool, term os.Signal) {
	close(w.quit)
	<-w.done
	return w.hup, w.term
}

func (s *server) start() error {
	cfg := s.cfg
	var err error
	// write-through promises a 200 only for a binding on disk: every
	// commit waits for the disk (a power loss keeps it too).
	if cfg.Storage.Driver != store.DriverSQLite {
		// The secrets stay in files (auth.secret, mgmt.token, route.secret).
		if err := store.PrepareDir(cfg.Storage.Dir); err != nil {
			return fmt.Errorf("storage.dir %s: %w", cfg.Storage.Dir, err)
		}
	}
	s.store, err = openStorage(cfg)
	if err != nil {
		return err
	}
	token, err := s.mgmtToken()
	if err != nil {
		return err
	}
	s.mgmt = mgmt.New(mgmt.Config{Listen: cfg.Mgmt.Listen, Token: token, AllowedHosts: cfg.Mgmt.AllowedHosts, Version: version, Logger: s.log})
	if err := s.mountPanel(); err != nil {
		return err
	}

	rs, err := routing.Lookup(cfg.Routes)
	if err != nil {
		return &config.Error{Key: "routes", Msg: err.Error()}
	}
	s.domains = routing.NewDomains(s.localNames())
	env := &routing.Env{Domains: s.domains, Logger: s.log, Metrics: s.mgmt.Metrics()}
	if err := s.startModules(env); err != nil {
		return err
	}
	s.router, err = routing.NewRouter(rs, env)
	if err != nil {
		return fmt.Errorf("route set %s: %w", rs.Name, err)
	}

	var h coreHandler
	s.tr, err = transport.New(s.transportConfig(), &h)
	if err != nil {
		return err
	}
	var resolver *sipdns.Resolver
	if cfg.Outbound.Resolver != "" {
		resolver = sipdns.New(sipdns.Config{Server: cfg.Outbound.Resolver})
	}
	// The key of our Record-Route signatures: on disk, so that calls up
	// across a restart can still be ended, and copied to every node that
	// shares calls.
	routeSecret, err := store.LoadSecret(filepath.Join(cfg.Storage.Dir, "route.secret"), "route secret")
	if err != nil {
		return err
	}
	s.warnReadableSecrets()
	txnMemory, txnMemorySource := cfg.Limits.TransactionMemory()
	s.core, err = txn.New(txn.Config{
		Sender:          s.tr,
		Listeners:       s.tr,
		Router:          s.router,
		Clock:           s.clock, // one ticker for every table
		T1:              cfg.Timers.T1.D(),
		T2:              cfg.Timers.T2.D(),
		T4:              cfg.Timers.T4.D(),
		TimerC:          cfg.Timers.TimerC.D(),
		Wait:            cfg.Timers.Wait.D(),
		FR:              cfg.Timers.FR.D(),
		Shards:          cfg.Limits.Shards,
		MaxTransactions: cfg.Limits.MaxTransactions,
		MaxBytes:        txnMemory,
		AllowOutbound:   cfg.Outbound.AllowPrefixes(),
		Resolver:        resolver,
		RouteSecret:     routeSecret,
		ForeignResponse: s.foreignResponse(),
		Logger:          s.log,
	})
	if err != nil {
		return err
	}
	h.core = s.core
	s.mods.SetCore(s.core)
	if reg, ok := s.mods.Get("registrar").(*registrar.Registrar); ok {
		// A browser phone is reached only over its WebSocket: once that
		// is closed, its binding goes.
		reg.SetConnCheck(s.tr.HasConn)
	}
	if err := s.startAnycast(); err != nil {
		return err
	}
	if err := s.tr.Start(); err != nil {
		return err
	}
	if s.relay != nil {
		s.relay.Start() // after the transport: it writes hand-offs on its connections
	}
	// The bound addresses (port 0 resolved) are ours too.
	s.domains.Replace(s.localNames())
	if err := s.startedModules(); err != nil {
		return err
	}
	if st, ok := s.mods.Get("siptrace").(*siptrace.SipTrace); ok {
		var sink callLogSink = st
		s.callLogs.Store(&sink)
	}
	registerMetrics(s.mgmt.Metrics(), s.tr, s.core)
	s.storage = newStorageWatch(s.store, s.mgmt, s.log, cfg.Storage.Timeout.D())
	s.storage.start()
	s.registerCommands()
	if cfg.Mgmt.Listen != "" {
		if err := s.mgmt.Start(); err != nil {
			return err
		}
	}
	s.mgmt.SetReady(true)
	for _, l := range s.tr.Listeners() {
		s.log.Info("listening", "proto", l.Proto.String(), "addr", l.Local.String(), "advertise", l.AdvertisedHost+":"+strconv.Itoa(int(l.AdvertisedPort)))
	}
	s.log.Info("transaction memory cap", "mib", txnMemory>>20, "from", txnMemorySource)
	s.log.Info("switchboard started", "version", version, "routes", cfg.Routes, "domains", strings.Join(cfg.Domains, ","), "mgmt", s.mgmt.Addr(), "data", cfg.Storage.Dir, "storage", cfg.Storage.Driver)
	return nil
}

// mgmtToken is the management API's bearer token: mgmt.token of the
// configuration, else the token file in the data directory, created with
// a random token at the first start so that the API is never open.
func (s *server) mgmtToken() (string, error) {
	if s.cfg.Mgmt.Token != "" || s.cfg.Mgmt.Listen == "" {
		return s.cfg.Mgmt.Token, nil
	}
	path := filepath.Join(s.cfg.Storage.Dir, mgmt.TokenFile)
	tok, created, err := mgmt.LoadOrCreateToken(path)
	if err != nil {
		return "", fmt.Errorf("mgmt: %w", err)
	}
	if created {
		s.log.Info("management API token created; switchboard ctl reads it from there", "file", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		s.log.Warn("the management API token can be read by every user of this host: chmod o-rwx it", "file", path)
	}
	return tok, nil
}

// secretFiles are the keys the server and its modules keep in the data
// directory, which the docs ask operators to copy between nodes.
var secretFiles = []string{"route.secret", "auth.secret", "uac.secret", "topohiding.secret"}

// warnReadableSecrets warns of a secret file other users of the host may
// read: created 0600, a copy made with cp is usually 0644, and with the
// Record-Route key anyone there can sign routes through the proxy.
func (s *server) warnReadableSecrets() {
	for _, name := range secretFiles {
		path := filepath.Join(s.cfg.Storage.Dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			s.log.Warn("a secret file can be read by other users of this host: chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
		}
	}
}

// coreHandler passes received messages to the transaction layer, which is
// created after the transport it sends through.
type coreHandler struct{ core *txn.Core }

func (h *coreHandler) HandleMessage(p *transport.Packet) { h.core.HandleMessage(p) }

func (s *server) transportConfig() transport.Config {
	cfg := s.cfg
	tc := transport.Config{
		MaxMessageSize:  cfg.Limits.MaxMessageSize,
		MaxConns:        cfg.Limits.MaxConnections,
		MaxConnsPerIP:   cfg.Limits.MaxConnectionsPerIP,
		OutboundReserve: cfg.Limits.OutboundReserved(),
		IdleTimeout:     cfg.Limits.IdleTimeout.D(),
		MessageTimeout:  cfg.Limits.MessageTimeout.D(),
		SocketBuffer:    cfg.Limits.UDPSocketBuffer,
		Admit:           s.mods.Admit(), // bans (modules/pike): dropped before parsing
		// Anycast nodes may share a host (the tests' "anycast in a box"):
		// their stream listeners share the address like the UDP ones.
		StreamReusePort: cfg.Anycast.Relay != "",
	}
	setTLS(&tc, cfg.TLS)
	for _, l := range cfg.Listen {
		p, _ := transport.ParseProto(l.Proto)
		lc := transport.ListenerConfig{Proto: p, Addr: l.Address}
		if p.WebSocket() {
			lc.WSPath, lc.WSOrigins = l.Path, l.Origins
			lc.WSMaxFrameSize, lc.WSMaxMessageSize = l.MaxFrameSize, l.MaxMessageSize
		}
		if l.Advertise != "" {
			host, port := splitHostPort(l.Advertise)
			lc.AdvertisedHost, lc.AdvertisedPort = host, port
		}
		tc.Listeners = append(tc.Listeners, lc)
	}
	return tc
}

// setTLS sets the TLS fields of tc from the tls section (at start, and
// for transport.ReloadTLS).
func setTLS(tc *transport.Config, t config.TLS) {
	tc.TLSCertFile, tc.TLSKeyFile = t.Cert, t.Key
	tc.TLSMinVersion = tlsVersion(t.MinVersion)
	tc.TLSClientCAFile, tc.TLSRequireClientCert = t.ClientCA, t.ClientCA != ""
	tc.TLSRootCAFile = t.CA
	tc.TLSInsecureSkipVerify = !t.VerifyServer
}

// localNames is what is_myself recognises: the served domains, the
// listeners' addresses and their advertised hosts.
func (s *server) localNames() []string {
	names := append([]string(nil), s.cfg.Domains...)
	for _, l := range s.cfg.Listen {
		names = append(names, l.AddrPort().Addr().String())
		if a := l.AddrPort().Addr(); a.Is6() {
			names = append(names, "["+a.String()+"]")
		}
		if l.Advertise != "" {
			h, _ := splitHostPort(l.Advertise)
			names = append(names, h)
		}
	}
	if s.tr != nil {
		for _, l := range s.tr.Listeners() {
			names = append(names, l.AdvertisedHost)
		}
	}
	return names
}

func splitHostPort(hp string) (string, uint16) {
	if ap, err := netip.ParseAddrPort(hp); err == nil {
		return ap.Addr().String(), ap.Port()
	}
	if i := strings.LastIndexByte(hp, ':'); i > 0 && !strings.HasSuffix(hp, "]") && strings.Count(hp, ":") == 1 {
		if p, err := strconv.ParseUint(hp[i+1:], 10, 16); err == nil {
			return hp[:i], uint16(p)
		}
	}
	return hp, 0
}

func tlsVersion(v string) uint16 {
	if v == "1.3" {
		return 0x0304
	}
	return 0x0303
}

// wait serves until SIGTERM or SIGINT (or at once with term, one received
// while starting), reloading on SIGHUP, then drains.
func (s *server) wait(sig <-chan os.Signal, term os.Signal, drain, quiet time.Duration) {
	for term == nil {
		if v := <-sig; v == syscall.SIGHUP {
			s.reload()
		} else {
			term = v
		}
	}
	s.log.Info("shutting down: refusing new requests, letting open transactions and calls finish",
		"signal", term.String(), "quiet", quiet.String(), "bound", drain.String())
	s.mgmt.SetReady(false)
	s.router.SetDraining(true)
	if s.drainModules(sig) {
		s.drain(sig, drain, quiet)
	}
	s.stop()
	s.log.Info("stopped")
}

// drainModules lets the modules do what a drain asks of them while the
// transport and the core still run (the dialog module, with
// dialog.drain_timeout, ends the calls still up with a BYE each way). A
// second SIGTERM or SIGINT ends the wait at once: false.
func (s *server) drainModules(sig <-chan os.Signal) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.mods.Drain(ctx)
		close(done)
	}()
	for {
		select {
		case <-done:
			return true
		case v := <-sig:
			if v == syscall.SIGHUP {
				s.reload() // e.g. a dialog.drain_timeout set for a node being retired
				continue
			}
			s.log.Warn("second signal: stopping now", "signal", v.String())
			cancel()
			<-done
			return false
		}
	}
}

// drain waits until no transaction is at work and no request has arrived
// for the quiet period, or until the bound. The quiet period lets a call
// that is up send its BYE through this node (its Record-Route names it)
// before the node exits; calls still up after it are left to the next
// start (dialog.persist restores their dialogs) or were ended by the
// dialog module's drain (dialog.drain_timeout). A second SIGTERM or
// SIGINT ends the wait at once.
func (s *server) drain(sig <-chan os.Signal, bound, quiet time.Duration) {
	deadline := time.Now().Add(bound)
	lastReqs := s.core.Stats().Requests
	lastChange := time.Now()
	for time.Now().Before(deadline) {
		if reqs := s.core.Stats().Requests; reqs != lastReqs {
			lastReqs, lastChange = reqs, time.Now()
		}
		if s.core.Pending() == 0 && time.Since(lastChange) >= quiet {
			return
		}
		select {
		case v := <-sig:
			if v != syscall.SIGHUP {
				s.log.Warn("second signal: stopping now", "signal", v.String())
				return
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := s.core.Pending(); n > 0 {
		s.log.Warn("drain bound reached; stopping with transactions open", "open", n)
	}
}

func (s *server) stop() {
	if s.tr != nil {
		s.tr.Close()
	}
	if s.relay != nil {
		s.relay.Close()
	}
	if s.core != nil {
		s.core.Close()
	}
	if s.mgmt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.mgmt.Close(ctx)
		cancel()
	}
	s.stopModules()
	if s.storage != nil {
		s.storage.close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// reload re-reads the configuration file and applies what can change while
// running: log.level, domains, the tls section (the files are read again
// even when it did not change, for certificates renewed in place),
// outbound.allow, and the sections of the modules that can take theirs
// (Reloader). Every other key that changed needs a restart, the server's
// (restartKeys) and the modules' alike ("listen", "dialog.persist": their
// values in force stay until the next start), and the "reloaded" line and
// the result list them; the rest of the file is applied all the same.
//
// It is all or nothing as far as can be known beforehand: a file with an
// error, or a module refusing its new settings (a table in the store over
// a new limit, a zone that does not load: modules.Set.CheckReload),
// changes nothing at all, and the error names every module and key at
// fault. Only then are the server's keys and the modules' sections
// applied, the modules in their dependency order; what fails then (a
// certificate file removed since it was read, a collector's socket that
// does not open) keeps its old settings, is logged as an error and
// returned with the rest applied, and the "reloaded" line lists what was.
func (s *server) reload() (applied, restart []string, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := loadConfig(s.cfgPath, s.sets)
	if err != nil {
		s.log.Error("reload: configuration not applied", "err", err)
		return nil, nil, err
	}
	differ := func(name string) bool {
		return fmt.Sprint(cfg.Modules[name]) != fmt.Sprint(s.cfg.Modules[name])
	}
	modsReload, modsRestart, err := s.mods.CheckReload(cfg.Modules, differ)
	if err != nil {
		err = fmt.Errorf("nothing applied: %w", err)
		s.log.Error("reload: configuration not applied", "err", err)
		return nil, nil, err
	}
	if cfg.Log.Level != s.cfg.Log.Level {
		s.level.Set(parseLevel(cfg.Log.Level))
		s.cfg.Log.Level = cfg.Log.Level
		applied = append(applied, "log.level")
	}
	if strings.Join(cfg.Domains, ",") != strings.Join(s.cfg.Domains, ",") {
		s.cfg.Domains = cfg.Domains
		s.domains.Replace(s.localNames())
		applied = append(applied, "domains")
	}
	tlsApplied, tlsErr := s.reloadTLS(cfg)
	applied = append(applied, tlsApplied...)
	var errs []error
	if tlsErr != nil {
		errs = append(errs, tlsErr)
	}
	// outbound.allow is checked at every send: the core takes the new list
	// at once (the modules' configured destinations were checked against
	// it when cfg was loaded); the modules that send on sockets of their
	// own check theirs again once their sections are applied, below.
	allowChanged := fmt.Sprint(cfg.Outbound.Allow) != fmt.Sprint(s.cfg.Outbound.Allow)
	if allowChanged {
		s.core.SetAllowOutbound(cfg.Outbound.AllowPrefixes())
		o := cfg.Outbound
		o.Resolver = s.cfg.Outbound.Resolver // at the next start
		s.cfg.Outbound = o
		applied = append(applied, "outbound.allow")
	}
	restart = restartKeys(s.cfg, cfg)
	// The modules whose sections passed CheckReload take them, keeping
	// the keys it listed in modsRestart as they are (written back into
	// cfg.Modules, the sections in force from now on).
	modsApplied, modsErrs := s.mods.Reload(cfg.Modules, modsReload, differ)
	if allowChanged {
		modsErrs = append(modsErrs, s.mods.OutboundChanged()...)
	}
	for _, err := range modsErrs {
		s.log.Error("reload: module settings not applied", "err", err)
	}
	errs = append(errs, modsErrs...)
	for _, name := range modsApplied {
		s.cfg.Modules[name] = cfg.Modules[name]
	}
	applied = append(applied, modsApplied...)
	restart = append(restart, modsRestart...)
	s.log.Info("reloaded", "applied", strings.Join(applied, ","), "need_restart", strings.Join(restart, ","))
	return applied, restart, errors.Join(errs...)
}

// reloadTLS puts the tls section of cfg in force in the transport, new
// paths included, for the next handshakes in and out; it returns what to
// list as applied: "tls" when the section changed, "tls certificates"
// when only the files were read again. Without a tls or wss listener the
// section is not used (a listener added needs a restart, which takes it).
// An error is logged and returned, and leaves the settings in force as
// they were.
func (s *server) reloadTLS(cfg *config.Config) ([]string, error) {
	changed := cfg.TLS != s.cfg.TLS
	var tc transport.Config
	setTLS(&tc, cfg.TLS)
	err := s.tr.ReloadTLS(tc)
	switch {
	case errors.Is(err, transport.ErrNoTLS):
		if !changed {
			return nil, nil
		}
	case err != nil:
		s.log.Error("reload: tls not applied; the certificates and settings in force stay", "err", err)
		return nil, fmt.Errorf("tls: %w", err)
	}
	s.cfg.TLS = cfg.TLS
	if changed {
		return []string{"tls"}, nil
	}
	return []string{"tls certificates"}, nil
}

// restartKeys lists the keys that differ between the configuration in
// force and cfg among those only a restart applies: every section of
// config.Config but those reload applies (log.level, domains, tls,
// outbound.allow) and the modules' (which say for themselves).
// TestRestartKeysCoverEveryKey keeps it complete.
func restartKeys(old, cfg *config.Config) []string {
	var keys []string
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"listen", fmt.Sprint(cfg.Listen) != fmt.Sprint(old.Listen)},
		{"routes", cfg.Routes != old.Routes},
		{"timers", cfg.Timers != old.Timers},
		{"limits", cfg.Limits != old.Limits},
		{"storage", cfg.Storage != old.Storage},
		{"log.format", cfg.Log.Format != old.Log.Format},
		{"mgmt", fmt.Sprint(cfg.Mgmt) != fmt.Sprint(old.Mgmt)},
		{"outbound.resolver", cfg.Outbound.Resolver != old.Outbound.Resolver},
		{"anycast", fmt.Sprint(cfg.Anycast) != fmt.Sprint(old.Anycast)},
		{"provider", cfg.Provider != old.Provider},
	} {
		if k.changed {
			keys = append(keys, k.key)
		}
	}
	return keys
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	l.UnmarshalText([]byte(strings.ToUpper(s)))
	return l
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
