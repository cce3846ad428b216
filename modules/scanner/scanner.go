// Package scanner recognises SIP scanners and password crackers
// (SIPVicious's svmap, svwar and svcrack, sipcli, VaxSIPUserAgent...) by
// their User-Agent and by the identifiers they make up, and drops their
// requests without an answer: a scanner that hears nothing moves on and
// learns nothing, not even that a SIP server is there.
//
// Routes call Blocked first of all, before anything is answered (OpenSIPS:
// the book's `if ($ua =~ "friendly-scanner") drop;`). The patterns are
// compiled once into one automaton; matching allocates nothing and costs
// one table step per byte of the User-Agent whatever the number of
// patterns. Patterns, fingerprints and the action change on reload
// without a restart.
package scanner

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"switchboard/modules"
	"switchboard/routing"
)

// Settings are the scanner section of the configuration.
type Settings struct {
	// Patterns are matched on the User-Agent, case-insensitively:
	// "text" anywhere, "^text" at the start, "text$" at the end,
	// "^text$" the whole value, "re:<RE2 expression>" a regular
	// expression (case-sensitive unless it starts with (?i)).
	Patterns []string `yaml:"patterns"`
	// Fingerprints are the built-in recognisers of scanning tools by the
	// shape of their identifiers: sipvicious-tag, sipvicious-ids.
	Fingerprints []string `yaml:"fingerprints"`
	// Action is what happens to a blocked request: drop (no answer) or
	// reject (a stateless 403).
	Action string `yaml:"action"`
	// MaxPatterns bounds the patterns list.
	MaxPatterns int `yaml:"max_patterns"`
	// Recent is how many blocked requests scanner.blocks lists.
	Recent int `yaml:"recent"`
}

// DefaultPatterns are User-Agents of scanning and cracking tools. Each is
// specific enough not to match a phone: "sipcli" alone would match
// "SIPClient", hence "^sipcli/".
var DefaultPatterns = []string{
	"friendly-scanner", // SIPVicious svmap, svwar, svcrack
	"friendly-request", // SIPVicious forks
	"sipvicious",
	"^sipcli/",        // SIPCLI password cracker
	"VaxSIPUserAgent", // VaxVoIP SDK, the usual toll-fraud dialler
	"VaxIPUserAgent",
	"sundayddr",
	"^iWar",
	"^SIVuS",
	"siparmyknife",
	"^pplsip",
}

// Actions.
const (
	ActionDrop   = "drop"
	ActionReject = "reject"
)

// Limits of the settings.
const (
	DefaultMaxPatterns = 256
	maxMaxPatterns     = 4096
	DefaultRecent      = 256
	maxRecent          = 65536
)

func defaults() any {
	return &Settings{
		Patterns:     append([]string(nil), DefaultPatterns...),
		Fingerprints: []string{"sipvicious-tag", "sipvicious-ids"},
		Action:       ActionDrop,
		MaxPatterns:  DefaultMaxPatterns,
		Recent:       DefaultRecent,
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "scanner",
		Doc:      "drops requests from SIP scanners, by User-Agent and fingerprint",
		Settings: defaults,
		Check:    check,
		New:      newScanner,
	})
}

func check(v any) error {
	s := v.(*Settings)
	if s.MaxPatterns < 1 || s.MaxPatterns > maxMaxPatterns {
		return modules.Errorf("max_patterns", "must be between 1 and %d", maxMaxPatterns)
	}
	if len(s.Patterns) > s.MaxPatterns {
		return modules.Errorf("patterns", "%d patterns, more than max_patterns (%d)", len(s.Patterns), s.MaxPatterns)
	}
	for i, p := range s.Patterns {
		if _, err := parsePattern(p); err != nil {
			return modules.Errorf("patterns["+strconv.Itoa(i)+"]", "%q: %v", p, err)
		}
	}
	for i, f := range s.Fingerprints {
		if _, ok := lookupFingerprint(f); !ok {
			return modules.Errorf("fingerprints["+strconv.Itoa(i)+"]", "unknown fingerprint %q (known: %s)", f, fingerprintNames())
		}
	}
	switch s.Action {
	case ActionDrop, ActionReject:
	default:
		return modules.Errorf("action", "%q: must be drop or reject", s.Action)
	}
	if s.Recent < 1 || s.Recent > maxRecent {
		return modules.Errorf("recent", "must be between 1 and %d", maxRecent)
	}
	return nil
}

func fingerprintNames() string {
	var b strings.Builder
	for i, f := range fingerprints {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.name)
	}
	return b.String()
}

// Scanner is the module instance. Blocked is safe for concurrent use.
type Scanner struct {
	h     *modules.Host
	rules atomic.Pointer[rules]

	mu       sync.Mutex                // counters
	counters map[string]*atomic.Uint64 // by rule key, kept across reloads

	logSec atomic.Int64
	logN   atomic.Int32
}

// rules is one compiled configuration; Reload swaps it whole, so a
// request sees the old rules or the new ones, never a mix.
type rules struct {
	ua     *uaMatcher
	fps    []fingerprint
	rule   []ruleInfo // patterns first, then fingerprints
	reject bool
	recent *recent
}

type ruleInfo struct {
	name  string // pattern as configured, or fingerprint name
	kind  string // contains, prefix, suffix, exact, regexp, fingerprint
	count *atomic.Uint64
}

func newScanner(h *modules.Host, v any) (modules.Instance, error) {
	s := &Scanner{h: h, counters: map[string]*atomic.Uint64{}}
	if err := s.apply(v.(*Settings)); err != nil {
		return nil, err
	}
	s.registerMetrics()
	s.registerCommands()
	return s, nil
}

// apply compiles settings and makes them current.
func (s *Scanner) apply(st *Settings) error {
	if err := check(st); err != nil {
		return err
	}
	r := &rules{reject: st.Action == ActionReject}
	pats := make([]pattern, len(st.Patterns))
	for i, p := range st.Patterns {
		pats[i], _ = parsePattern(p)
		r.rule = append(r.rule, ruleInfo{name: p, kind: kindNames[pats[i].kind], count: s.counter("p:" + p)})
	}
	r.ua = newUAMatcher(pats)
	for _, name := range st.Fingerprints {
		f, _ := lookupFingerprint(name)
		r.fps = append(r.fps, f)
		r.rule = append(r.rule, ruleInfo{name: name, kind: "fingerprint", count: s.counter("f:" + name)})
	}
	if old := s.rules.Load(); old != nil && old.recent.want == st.Recent {
		r.recent = old.recent
	} else {
		r.recent = newRecent(st.Recent)
	}
	s.rules.Store(r)
	return nil
}

// counter returns the block counter of a rule, the same one across
// reloads while the rule stays configured.
func (s *Scanner) counter(key string) *atomic.Uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters[key]
	if c == nil {
		c = new(atomic.Uint64)
		s.counters[key] = c
	}
	return c
}

// Start implements modules.Instance; the scanner has no background work.
func (s *Scanner) Start() error { return nil }

// Stop implements modules.Instance.
func (s *Scanner) Stop() {}

// Reload implements modules.Reloader: new patterns, fingerprints and
// action apply to the next request. The block counters of rules that stay
// keep counting.
func (s *Scanner) Reload(v any) error { return s.apply(v.(*Settings)) }

// CheckReload implements modules.Reloader: the patterns and fingerprints
// are checked as at start; every key applies at once.
func (s *Scanner) CheckReload(v any) error { return check(v.(*Settings)) }

// Match returns the rule (pattern or fingerprint, as configured) that the
// request matches, and whether one does. It only looks.
func (s *Scanner) Match(c *routing.Ctx) (string, bool) {
	r := s.rules.Load()
	if i := r.match(c); i >= 0 {
		return r.rule[i].name, true
	}
	return "", false
}

func (r *rules) match(c *routing.Ctx) int {
	if i := r.ua.match(c.UserAgent()); i >= 0 {
		return i
	}
	m := c.Msg()
	for k, f := range r.fps {
		if f.match(m) {
			return len(r.rule) - len(r.fps) + k
		}
	}
	return -1
}

// Blocked reports whether the request comes from a scanner, and then deals
// with it: by default dropped without an answer (action reject: a
// stateless 403), counted, listed in scanner.blocks and logged (a few
// lines a second at most). The route must do nothing more with a blocked
// request:
//
//	if sc.Blocked(c) { return }
//
// OpenSIPS: if ($ua =~ "friendly-scanner") drop;. It allocates nothing.
func (s *Scanner) Blocked(c *routing.Ctx) bool {
	r := s.rules.Load()
	i := r.match(c)
	if i < 0 {
		return false
	}
	ri := &r.rule[i]
	ri.count.Add(1)
	now := s.h.Clock.Now()
	ua := c.UserAgent()
	r.recent.add(now, c.R.Src, c.Proto(), c.Method(), ri.name, ua)
	s.h.Events.Begin(modules.EventScanner).AddrPort("src", c.R.Src).Str("rule", ri.name).
		Bytes("method", c.Msg().MethodBytes()).Bytes("user_agent", ua).Raise()
	if s.mayLog(now) {
		s.h.Warn("scanner blocked", "source", c.SrcIP().String(), "rule", ri.name, "method", string(c.Msg().MethodBytes()), "user_agent", string(ua[:min(len(ua), uaKept)]),
			"call_id", string(c.Msg().CallID()), "src", c.R.Src.String(), "route", "request")
	}
	if r.reject {
		c.ReplyStateless(403, "Forbidden", nil)
	} else {
		c.Drop()
	}
	return true
}

// logPerSecond bounds the lines Blocked logs, before any argument is
// built: a flood of blocked requests costs no allocation for logging.
// Host.Warn bounds them again (and counts what it suppresses).
const logPerSecond = 5

func (s *Scanner) mayLog(now int64) bool {
	sec := now / 1000
	if old := s.logSec.Load(); old != sec && s.logSec.CompareAndSwap(old, sec) {
		s.logN.Store(0)
	}
	return s.logN.Add(1) <= logPerSecond
}
