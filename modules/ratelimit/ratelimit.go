// Package ratelimit limits the rate of SIP requests through named pipes,
// as the OpenSIPS and Kamailio ratelimit modules do: a pipe has a limit
// per interval and an algorithm (TAILDROP, RED, FEEDBACK), counts either
// all the requests it sees or each key apart (the source address, the From
// user or domain, the method, or a key the route gives), and tells the
// route whether to pass a request or answer it 503 with Retry-After.
//
// Routes get a pipe handle once, when they are built, so the hot path
// never looks a pipe up by name; checking allocates nothing and takes, for
// a keyed pipe, one lock among many shards, for an unkeyed pipe none (a
// compare-and-swap). Limits change at run time through the management
// API (ratelimit.set, ratelimit.reset) and on reload.
package ratelimit

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
)

// Settings are the ratelimit section of the configuration.
type Settings struct {
	// Pipes are the limits, checked in this order by Limited.
	Pipes []PipeSettings `yaml:"pipes"`
	// MaxKeys bounds the keys each keyed pipe keeps (see table).
	MaxKeys int `yaml:"max_keys"`
	// IPv6Prefix is the prefix length by which a source key counts IPv6
	// addresses.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// PipeSettings configure one pipe.
type PipeSettings struct {
	// Name identifies the pipe (letters, digits, '-', '_', '.').
	Name string `yaml:"name" json:"name"`
	// Algorithm is TAILDROP (default), RED or FEEDBACK.
	Algorithm string `yaml:"algorithm" json:"algorithm"`
	// Limit is the number of requests per interval (per key for a keyed
	// pipe); for FEEDBACK the CPU load to hold, in percent.
	Limit int `yaml:"limit" json:"limit"`
	// Interval is the length of a window (default 1s): counters start
	// again at each, RED and FEEDBACK recompute their drop rate.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Key is what the pipe counts apart: none (default), source, user,
	// domain or method.
	Key string `yaml:"key" json:"key"`
	// Methods are the initial requests Limited runs through this pipe
	// ("*": every method). Empty: only a route that checks the pipe by
	// name uses it.
	Methods []string `yaml:"methods" json:"methods"`
}

// Limits of the settings.
const (
	DefaultInterval   = time.Second
	DefaultMaxKeys    = 16384
	DefaultIPv6Prefix = 64
	maxPipes          = 64
	minInterval       = 10 * time.Millisecond
	maxInterval       = time.Hour
	maxMaxKeys        = 1 << 24
	minMaxKeys        = 16
)

// DefaultPipes are on unless the configuration says otherwise: each
// source address may send 300 initial INVITEs and 300 REGISTERs (each
// challenge counted) in 10 seconds, 30 a second, far above what a phone,
// or an office of phones behind one address, sends. They stop one source
// from flooding, not a busy trunk: raise them for a PBX or a gateway that
// places more than 30 calls a second from one address.
func DefaultPipes() []PipeSettings {
	return []PipeSettings{
		{Name: "invite", Algorithm: "TAILDROP", Limit: 300, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}},
		{Name: "register", Algorithm: "TAILDROP", Limit: 300, Interval: 10 * time.Second, Key: "source", Methods: []string{"REGISTER"}},
	}
}

func defaults() any {
	return &Settings{Pipes: DefaultPipes(), MaxKeys: DefaultMaxKeys, IPv6Prefix: DefaultIPv6Prefix}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "ratelimit",
		Doc:      "request rate limits per pipe (TAILDROP, RED, FEEDBACK), keyed by source, user, domain or method",
		Settings: defaults,
		Check:    check,
		New:      newRateLimit,
	})
}

var pipeName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func check(v any) error {
	s := v.(*Settings)
	if len(s.Pipes) > maxPipes {
		return modules.Errorf("pipes", "%d pipes, at most %d", len(s.Pipes), maxPipes)
	}
	seen := map[string]bool{}
	for i, p := range s.Pipes {
		at := "pipes[" + strconv.Itoa(i) + "]."
		if _, err := compilePipe(p); err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				return modules.Errorf(at+fe.field, "%s", fe.msg)
			}
			return err
		}
		if seen[p.Name] {
			return modules.Errorf(at+"name", "%q is the name of an earlier pipe", p.Name)
		}
		seen[p.Name] = true
	}
	if s.MaxKeys < minMaxKeys || s.MaxKeys > maxMaxKeys {
		return modules.Errorf("max_keys", "must be between %d and %d", minMaxKeys, maxMaxKeys)
	}
	if s.IPv6Prefix < 1 || s.IPv6Prefix > 128 {
		return modules.Errorf("ipv6_prefix", "must be between 1 and 128")
	}
	return nil
}

// fieldError is a bad pipe setting.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// pipeConfig is a pipe's compiled settings; a change (reload, ratelimit.set)
// swaps it whole.
type pipeConfig struct {
	alg     algorithm
	limit   uint64
	ivMs    int64
	key     keyKind
	methods uint32 // bit m set: parser.Method m
	retry   []byte // "Retry-After: n\r\n"
	set     PipeSettings
}

func compilePipe(p PipeSettings) (*pipeConfig, error) {
	if !pipeName.MatchString(p.Name) {
		return nil, &fieldError{"name", fmt.Sprintf("%q: 1 to 64 letters, digits, '-', '_' or '.'", p.Name)}
	}
	alg, ok := parseAlgorithm(p.Algorithm)
	if !ok {
		return nil, &fieldError{"algorithm", fmt.Sprintf("%q: must be TAILDROP, RED or FEEDBACK", p.Algorithm)}
	}
	key, ok := parseKey(p.Key)
	if !ok {
		return nil, &fieldError{"key", fmt.Sprintf("%q: must be none, source, user, domain or method", p.Key)}
	}
	switch {
	case alg == feedback && (p.Limit < 1 || p.Limit > 100):
		return nil, &fieldError{"limit", "FEEDBACK takes the CPU load to hold, 1 to 100 (percent)"}
	case alg == feedback && key != keyNone:
		return nil, &fieldError{"key", "a FEEDBACK pipe drops by the machine's load: it has no keys"}
	case p.Limit < 1 || p.Limit > 1<<31:
		return nil, &fieldError{"limit", "must be between 1 and 2147483648 requests per interval"}
	}
	iv := p.Interval
	if iv == 0 {
		iv = DefaultInterval
	}
	if iv < minInterval || iv > maxInterval {
		return nil, &fieldError{"interval", fmt.Sprintf("%s: must be between %s and %s", iv, minInterval, maxInterval)}
	}
	c := &pipeConfig{alg: alg, limit: uint64(p.Limit), ivMs: iv.Milliseconds(), key: key}
	for i, m := range p.Methods {
		if m == "*" {
			c.methods = ^uint32(0)
			continue
		}
		pm := parser.LookupMethod([]byte(strings.ToUpper(m)))
		if pm == parser.MethodOther {
			return nil, &fieldError{"methods[" + strconv.Itoa(i) + "]", fmt.Sprintf("%q is not a SIP method (or \"*\")", m)}
		}
		c.methods |= 1 << pm
	}
	c.retry = []byte("Retry-After: " + strconv.FormatInt((c.ivMs+999)/1000, 10) + "\r\n")
	c.set = p
	c.set.Algorithm, c.set.Key, c.set.Interval = alg.String(), key.String(), iv
	return c, nil
}

// RateLimit is the module instance.
type RateLimit struct {
	h     *modules.Host
	clock *shards.Clock

	mu     sync.Mutex       // pipes, reload, set, reset, the controller
	pipes  map[string]*Pipe // every handle given out, configured or not
	order  []*Pipe          // the configured pipes, in order
	active atomic.Pointer[[]*Pipe]
	byName atomic.Pointer[map[string]*Pipe]
	set    *Settings

	// cpu reads the machine's CPU time counters (/proc/stat); tests
	// replace it.
	cpu  func() (busy, total uint64, err error)
	stop chan struct{}
	done chan struct{}

	logSec atomic.Int64
	logN   atomic.Int32
}

// Pipe is a handle on a named pipe. It stays valid across reloads: a pipe
// removed from the configuration passes every request until it comes
// back.
type Pipe struct {
	name string
	rl   *RateLimit
	cfg  atomic.Pointer[pipeConfig] // nil: not configured
	st   atomic.Pointer[pipeState]
}

// pipeState is what a pipe counts. It survives a change of limit,
// algorithm or interval; a change of what is keyed makes a new one.
type pipeState struct {
	key     keyKind
	maxKeys int
	v6bits  int
	hash    hasher
	nshards int

	win             window // unkeyed pipes
	passed, dropped atomic.Uint64
	table           *table // keyed pipes

	// FEEDBACK: the drop percentage the controller sets, the requests
	// counted, and the controller (under RateLimit.mu).
	drop atomic.Int32
	fbN  atomic.Uint64
	pid  pid
	next int64 // ms: the next controller update
}

func newRateLimit(h *modules.Host, v any) (modules.Instance, error) {
	r := &RateLimit{h: h, clock: h.Clock, pipes: map[string]*Pipe{}, cpu: readProcStat}
	if err := r.apply(v.(*Settings)); err != nil {
		return nil, err
	}
	r.registerMetrics()
	r.registerCommands()
	return r, nil
}

// apply makes settings current: a pipe that stays keeps its counts, unless
// what it keys on or how many keys it keeps changed.
func (r *RateLimit) apply(s *Settings) error {
	if err := check(s); err != nil {
		return err
	}
	nshards := r.h.Shards
	if nshards <= 0 {
		nshards = 64
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	order := make([]*Pipe, 0, len(s.Pipes))
	keep := map[*Pipe]bool{}
	for _, ps := range s.Pipes {
		cfg, _ := compilePipe(ps)
		p := r.handle(ps.Name)
		st := p.st.Load()
		if st == nil || st.key != cfg.key || st.maxKeys != s.MaxKeys || st.v6bits != s.IPv6Prefix || st.nshards != nshards {
			st = newState(cfg.key, s.MaxKeys, s.IPv6Prefix, nshards)
			p.st.Store(st)
		}
		p.cfg.Store(cfg)
		order = append(order, p)
		keep[p] = true
	}
	for _, p := range r.order {
		if !keep[p] {
			p.cfg.Store(nil)
		}
	}
	r.order, r.set = order, s
	r.publish()
	return nil
}

func newState(k keyKind, maxKeys, v6bits, nshards int) *pipeState {
	st := &pipeState{key: k, maxKeys: maxKeys, v6bits: v6bits, nshards: nshards, hash: newHasher()}
	if k != keyNone {
		st.table = newTable(maxKeys, nshards)
	}
	return st
}

// handle returns the handle named name, making an unconfigured one. r.mu
// must be held.
func (r *RateLimit) handle(name string) *Pipe {
	p := r.pipes[name]
	if p == nil {
		p = &Pipe{name: name, rl: r}
		r.pipes[name] = p
	}
	return p
}

// publish makes the lists the hot path reads. r.mu must be held.
func (r *RateLimit) publish() {
	active := make([]*Pipe, 0, len(r.order))
	for _, p := range r.order {
		if cfg := p.cfg.Load(); cfg != nil && cfg.methods != 0 {
			active = append(active, p)
		}
	}
	names := make(map[string]*Pipe, len(r.pipes))
	for n, p := range r.pipes {
		names[n] = p
	}
	r.active.Store(&active)
	r.byName.Store(&names)
}

// Start runs the FEEDBACK controller.
func (r *RateLimit) Start() error {
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go r.control()
	return nil
}

// Stop ends the controller.
func (r *RateLimit) Stop() {
	if r.stop != nil {
		close(r.stop)
		<-r.done
		r.stop = nil
	}
}

// Reload implements modules.Reloader: the pipes of the file replace the
// current ones, and the limits set through the management API with them.
func (r *RateLimit) Reload(v any) error { return r.apply(v.(*Settings)) }

// CheckReload implements modules.Reloader: the pipes are checked as at
// start; every key applies at once.
func (r *RateLimit) CheckReload(v any) error { return check(v.(*Settings)) }

// Pipe returns the handle of the pipe named name, for a route to keep. A
// name that is not configured gets a handle that passes every request
// until a reload configures it.
func (r *RateLimit) Pipe(name string) *Pipe {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pipes[name]
	if !ok {
		p = r.handle(name)
		r.publish()
	}
	return p
}

// Name is the pipe's name.
func (p *Pipe) Name() string { return p.name }

// Configured reports whether the pipe is in the configuration now.
func (p *Pipe) Configured() bool { return p.cfg.Load() != nil }

// Check counts the request in the pipe and reports whether it may pass
// (OpenSIPS and Kamailio rl_check): false means the route should refuse it
// (Refuse). A keyed pipe counts the key its key setting names, taken from
// the request. It allocates nothing.
func (p *Pipe) Check(c *routing.Ctx) bool {
	cfg := p.cfg.Load()
	if cfg == nil {
		return true
	}
	return p.check(c, cfg, nil)
}

// CheckKey is Check with a key the route chose (after authentication, the
// authenticated user, say): a keyed pipe counts it apart; an unkeyed pipe
// ignores it. The key is hashed, not kept (but for its first bytes, shown
// by ratelimit.list).
func (p *Pipe) CheckKey(c *routing.Ctx, key []byte) bool {
	cfg := p.cfg.Load()
	if cfg == nil {
		return true
	}
	if key == nil {
		key = []byte{}
	}
	return p.check(c, cfg, key)
}

// Refuse answers the request 503 with a Retry-After of the pipe's
// interval, statelessly (OpenSIPS: sl_send_reply(503, ...) after a failed
// rl_check).
func (p *Pipe) Refuse(c *routing.Ctx) {
	retry := defaultRetryHeader
	if cfg := p.cfg.Load(); cfg != nil {
		retry = cfg.retry
	}
	c.ReplyStateless(503, "Rate Limit Exceeded", retry)
}

func (p *Pipe) check(c *routing.Ctx, cfg *pipeConfig, given []byte) bool {
	st := p.st.Load()
	now := p.rl.clock.Now()
	var ok bool
	switch {
	case cfg.alg == feedback:
		n := st.fbN.Add(1)
		ok = int32(spread[n%100]) >= st.drop.Load()
		st.count(ok)
	case st.table == nil:
		cur, prev := st.win.count(now / cfg.ivMs)
		ok = pass(cfg.alg, cfg.limit, cur, prev)
		st.count(ok)
	default:
		var h uint64
		if given != nil {
			h = st.hash.bytes(given)
		} else {
			h = st.requestKey(c, st.key, st.v6bits)
		}
		w := now / cfg.ivMs
		s := st.table.shard(h)
		s.mu.Lock()
		e, added := s.get(h)
		if added {
			if given != nil {
				showGiven(e, given)
			} else {
				show(e, c, st.key, st.v6bits)
			}
		}
		cur, prev := e.count(w)
		ok = pass(cfg.alg, cfg.limit, cur, prev)
		s.tally(w, ok)
		s.mu.Unlock()
	}
	if !ok && p.rl.mayLog(now) {
		p.rl.h.Warn("rate limit exceeded", "pipe", p.name, "source", c.SrcIP().String(), "method", string(c.Msg().MethodBytes()),
			"call_id", string(c.Msg().CallID()), "src", c.R.Src.String(), "route", "request")
	}
	return ok
}

func (st *pipeState) count(ok bool) {
	if ok {
		st.passed.Add(1)
	} else {
		st.dropped.Add(1)
	}
}

// Limited runs an initial request through every pipe whose methods
// include its method, in the configured order, and when one refuses it
// answers 503 with Retry-After (statelessly) and returns true: the route
// must then stop. Kamailio: rl_check() with queues mapping methods to
// pipes. It allocates nothing.
//
//	if rl.Limited(c) { return }
func (r *RateLimit) Limited(c *routing.Ctx) bool {
	bit := uint32(1) << c.Method()
	for _, p := range *r.active.Load() {
		cfg := p.cfg.Load()
		if cfg == nil || cfg.methods&bit == 0 {
			continue
		}
		if !p.check(c, cfg, nil) {
			c.ReplyStateless(503, "Rate Limit Exceeded", cfg.retry)
			return true
		}
	}
	return false
}

// Check is rl_check by pipe name: it counts the request in the pipe
// (under key when not nil) and reports whether it may pass. A name that is
// not configured passes. Routes that check on every request should keep
// the handle (Pipe) instead of looking the name up each time.
func (r *RateLimit) Check(c *routing.Ctx, pipe string, key []byte) bool {
	p := (*r.byName.Load())[pipe]
	if p == nil {
		return true
	}
	if key != nil {
		return p.CheckKey(c, key)
	}
	return p.Check(c)
}

// defaultRetryHeader is the Retry-After of a pipe refused while it is
// not configured.
var defaultRetryHeader = []byte("Retry-After: 1\r\n")

// logPerSecond bounds the lines logged for refused requests before any
// argument is built, so that a flood costs no allocation for logging;
// Host.Warn bounds them again and counts what it suppresses.
const logPerSecond = 5

func (r *RateLimit) mayLog(now int64) bool {
	sec := now / 1000
	if old := r.logSec.Load(); old != sec && r.logSec.CompareAndSwap(old, sec) {
		r.logN.Store(0)
	}
	return r.logN.Add(1) <= logPerSecond
}
