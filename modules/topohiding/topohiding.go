// Package topohiding hides each party of a call from the other: OpenSIPS's
// topology_hiding() and topology_hiding_match(), Kamailio's topoh and
// topos. A route calls TopologyHiding on an initial INVITE after the
// dialog module's CreateDialog. From then on what each party receives
// carries no Via, Record-Route or Contact of the other side: a relayed
// request has the proxy's Via alone, no Record-Route, and a Contact of
// the proxy's own whose token names the dialog; a response going back has
// its requester's own Vias and Record-Route and the proxy's Contact. The
// parties' in-dialog requests come back to the proxy's Contact: Match
// verifies the token (an HMAC of the dialog id and the Call-ID, keyed
// with topohiding.secret), finds the dialog (dialog.MatchDialogID, with
// the request's tags), and sends the request on to the other party's
// real Contact along its real route set, kept in the dialog. See
// README.md.
package topohiding

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/routing"
	"switchboard/store"
)

// Settings are the topohiding section of the configuration.
type Settings struct {
	// Param is the URI parameter of the proxy's Contact that carries the
	// token (OpenSIPS th_contact_encode_param).
	Param string `yaml:"param"`
	// ContactUser is the user part of the proxy's Contact; empty: none.
	ContactUser string `yaml:"contact_user"`
	// Calls makes the calls and provider route sets hide every call they
	// relay.
	Calls bool `yaml:"calls"`
	// Trunks makes the provider route set hide the calls to and from its
	// trunks: to the gateways of the drouting module, from trusted
	// gateways.
	Trunks bool `yaml:"trunks"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{Param: "thinfo"}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	if !validToken(s.Param, 32) || s.Param == "transport" || s.Param == "lr" || s.Param == "maddr" || s.Param == "user" {
		return modules.Errorf("param", "%q: want 1 to 32 letters, digits, '-' or '_', not a parameter SIP gives a meaning (transport, lr, maddr, user)", s.Param)
	}
	if s.ContactUser != "" && !validToken(s.ContactUser, 64) {
		return modules.Errorf("contact_user", "%q: want up to 64 letters, digits, '-' or '_'", s.ContactUser)
	}
	return nil
}

func validToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func init() {
	modules.Register(modules.Definition{
		Name:     "topohiding",
		Doc:      "topology hiding: each party of a call sees the proxy's Via, Contact and no Record-Route of the other (OpenSIPS topology_hiding)",
		After:    []string{"dialog"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
	})
}

// TopoHiding is the module instance. Its methods are safe for concurrent
// use; they are nil-safe (false, NotHidden) when the module is not built.
type TopoHiding struct {
	h      *modules.Host
	log    *slog.Logger
	dlg    *dialog.Dialog
	param  string
	user   string
	calls  bool
	trunks bool

	macs sync.Pool // *signer

	// The Rewriters of requests from each party (rewrite.go).
	fromCaller, fromCallee rewriter

	hidden, matched, forged, unmatched *metrics.Counter
	fetched                            *metrics.Counter // requests suspended while their dialog is read (Fetch)
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	d, _ := h.Module("dialog").(*dialog.Dialog)
	if d == nil {
		return nil, errors.New("topohiding needs the dialog module")
	}
	th := &TopoHiding{h: h, log: h.Logger(), dlg: d, param: s.Param, user: s.ContactUser, calls: s.Calls, trunks: s.Trunks}
	// The token key: on disk like the Record-Route secret, so that the
	// calls set up before a restart, or on another node sharing the
	// file, still match.
	secret := make([]byte, 32)
	if h.DataDir != "" {
		k, err := store.LoadSecret(filepath.Join(h.DataDir, "topohiding.secret"), "topohiding secret")
		if err != nil {
			return nil, err
		}
		secret = k
	} else if _, err := rand.Read(secret); err != nil { // no data directory (tests): this process only
		return nil, err
	}
	key := sha256.Sum256(append([]byte("switchboard topohiding tokens\x00"), secret...))
	th.macs.New = func() any { return &signer{mac: hmac.New(sha256.New, key[:])} }
	th.fromCaller = rewriter{th: th, from: dialog.Caller}
	th.fromCallee = rewriter{th: th, from: dialog.Callee}
	m := h.Metrics
	th.hidden = m.NewCounter("switchboard_topohiding_calls_total")
	th.matched = m.NewCounter("switchboard_topohiding_requests_total")
	th.forged = m.NewCounter("switchboard_topohiding_forged_total")
	th.unmatched = m.NewCounter("switchboard_topohiding_unmatched_total")
	th.fetched = m.NewCounter("switchboard_topohiding_fetched_total")
	return th, nil
}

// Start does nothing: the module has no background work.
func (th *TopoHiding) Start() error { return nil }

// Stop does nothing.
func (th *TopoHiding) Stop() {}

// Reload keeps every key's value in force until the next start
// (keepRestartKeys): a new param or contact_user would stop the calls in
// progress from matching, and the route sets read calls and trunks when
// they are built.
func (th *TopoHiding) Reload(v any) error {
	th.keepRestartKeys(v.(*Settings))
	return nil
}

// CheckReload names the keys that changed: each takes effect at the next
// start (keepRestartKeys).
func (th *TopoHiding) CheckReload(v any) error {
	s := *v.(*Settings)
	return modules.NeedRestart(th.keepRestartKeys(&s)...)
}

// keepRestartKeys writes into s the value in force of each key s
// changes, and returns those keys: all of them take effect at the next
// start.
func (th *TopoHiding) keepRestartKeys(s *Settings) (keys []string) {
	keys = modules.KeepInForce(keys, "param", &s.Param, th.param)
	keys = modules.KeepInForce(keys, "contact_user", &s.ContactUser, th.user)
	keys = modules.KeepInForce(keys, "calls", &s.Calls, th.calls)
	keys = modules.KeepInForce(keys, "trunks", &s.Trunks, th.trunks)
	return keys
}

// HideCalls reports whether topohiding.calls is on: the calls and
// provider route sets hide every call. False on a nil *TopoHiding.
func (th *TopoHiding) HideCalls() bool { return th != nil && th.calls }

// HideTrunks reports whether topohiding.trunks is on: the provider route
// set hides the calls to and from its trunks. False on a nil *TopoHiding.
func (th *TopoHiding) HideTrunks() bool { return th != nil && th.trunks }

// Hidden reports whether the request's call is hidden: TopologyHiding or
// a Match set one of the module's Rewriters on it. A failure route that
// re-sends the INVITE (uac_auth) asks it, to leave our Record-Route off.
func (th *TopoHiding) Hidden(c *routing.Ctx) bool {
	if th == nil {
		return false
	}
	w := c.R.Rewriter()
	return w == &th.fromCaller || w == &th.fromCallee
}

// signer computes token MACs; one per goroutine at a time, from a pool,
// so that signing allocates nothing.
type signer struct {
	mac hash.Hash
	in  [9]byte
	sum [sha256.Size]byte
}
