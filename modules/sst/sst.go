// Package sst is SIP session timers (RFC 4028) at the proxy, what the
// sst modules of Kamailio and OpenSIPS give a provider: the dialog of a
// call that negotiated a session timer is ended, with a BYE each way, when
// the session expires without a refresh (both phones gone, a network that
// went away without a BYE), and an INVITE asking for an interval shorter
// than the proxy's minimum is refused with 422. See README.md.
package sst

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/txn"
)

// Settings are the sst section of the configuration.
type Settings struct {
	// Enabled turns session timers on in the route sets that use them
	// (the provider's). Off by default: ending calls is a policy a
	// provider chooses.
	Enabled bool `yaml:"enabled"`
	// MinSE is the shortest session interval, in seconds, the proxy
	// keeps a call on (Kamailio and OpenSIPS min_se): the Min-SE of its
	// 422, the floor of the intervals it times calls by. RFC 4028 §4: at
	// least 90.
	MinSE int `yaml:"min_se"`
	// Interval is the Session-Expires, in seconds, the proxy adds to an
	// initial INVITE that carries none (RFC 4028 §8.1 allows a proxy to);
	// 0 adds none.
	Interval int `yaml:"interval"`
	// RejectTooSmall answers 422 to an INVITE whose Session-Expires is
	// below MinSE, when its caller says Supported: timer (Kamailio
	// reject_to_small).
	RejectTooSmall bool `yaml:"reject_too_small"`
	// Grace is how long past the session's expiry the proxy waits before
	// it ends the call: the phones end it themselves before the expiry
	// (RFC 4028 §10), and a refresh sent late but in time is still
	// retransmitted and answered within 64·T1.
	Grace time.Duration `yaml:"grace"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{MinSE: rfcMinSE, RejectTooSmall: true, Grace: 32 * time.Second}
}

const (
	// rfcMinSE is RFC 4028 §4's floor of every Min-SE.
	rfcMinSE = 90
	// maxSeconds bounds min_se and interval: a week, the longest a
	// dialog lasts.
	maxSeconds = 7 * 24 * 3600
	maxGrace   = 10 * time.Minute
)

// SlotSST is the per-transaction value (routing.Ctx.Value) where Manage
// keeps what the INVITE was relayed with, for its 2xx: the
// Session-Expires in seconds, and whether the caller said Supported:
// timer (bit 32). The dialog module has the slot above it.
const SlotSST = txn.NumValues - 7

const supportedBit = 1 << 32

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.MinSE < rfcMinSE || s.MinSE > maxSeconds:
		return &modules.KeyError{Key: "min_se", Msg: "must be 90 (RFC 4028's minimum) to 604800 seconds"}
	case s.Interval != 0 && (s.Interval < s.MinSE || s.Interval > maxSeconds):
		return &modules.KeyError{Key: "interval", Msg: "must be 0 (add none) or min_se to 604800 seconds"}
	case s.Grace < 0 || s.Grace > maxGrace:
		return &modules.KeyError{Key: "grace", Msg: "must be 0 to 10m"}
	}
	return nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "sst",
		Doc:      "SIP session timers (RFC 4028): calls whose session expires are ended by their dialog, too-short intervals refused with 422 (Kamailio/OpenSIPS sst)",
		After:    []string{"dialog"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
	})
}

// config is the settings as the receive path reads them, swapped whole by
// a reload.
type config struct {
	minSE, interval uint32
	reject          bool
	grace           time.Duration
	// The values written into messages, made once: a splice keeps a view
	// of its value until the message is sent.
	minSEValue, intervalValue []byte
	minSEHeader               []byte // "Min-SE: N\r\n", for the 422
}

func compile(s *Settings) *config {
	c := &config{minSE: uint32(s.MinSE), interval: uint32(s.Interval), reject: s.RejectTooSmall, grace: s.Grace}
	c.minSEValue = strconv.AppendUint(nil, uint64(c.minSE), 10)
	if c.interval > 0 {
		c.intervalValue = strconv.AppendUint(nil, uint64(c.interval), 10)
	}
	c.minSEHeader = append(append([]byte("Min-SE: "), c.minSEValue...), "\r\n"...)
	return c
}

// SST is the module instance. Its methods are safe for concurrent use, and
// those of a nil SST do nothing (the module not compiled in).
type SST struct {
	enabled bool
	dlg     *dialog.Dialog
	cfg     atomic.Pointer[config]

	sessions, refreshes, stopped, expired   *metrics.Counter
	tooSmall, raised, inserted, uacRefresh  *metrics.Counter
	badRequests, badAnswers, withoutDialogs *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	m := &SST{enabled: s.Enabled}
	m.cfg.Store(compile(s))
	m.dlg, _ = h.Module("dialog").(*dialog.Dialog)
	set := h.Metrics
	m.sessions = set.NewCounter("switchboard_sst_sessions_total")
	m.refreshes = set.NewCounter("switchboard_sst_refreshes_total")
	m.stopped = set.NewCounter("switchboard_sst_stopped_total")
	m.expired = set.NewCounter("switchboard_sst_expired_total")
	m.tooSmall = set.NewCounter("switchboard_sst_too_small_total")
	m.raised = set.NewCounter("switchboard_sst_raised_total")
	m.inserted = set.NewCounter("switchboard_sst_inserted_total")
	m.uacRefresh = set.NewCounter("switchboard_sst_uac_refresher_total")
	m.badRequests = set.NewCounter(`switchboard_sst_malformed_total{in="request"}`)
	m.badAnswers = set.NewCounter(`switchboard_sst_malformed_total{in="answer"}`)
	m.withoutDialogs = set.NewCounter("switchboard_sst_unenforced_total")
	if m.enabled && m.dlg != nil {
		if m.dlg.Shared() {
			h.Logger().Warn("sst: dialog.sharing is on: session timers are negotiated but not enforced (a refresh through another node would not reach the call's owner)")
		}
		m.dlg.Subscribe(m.dialogEvent)
	}
	return m, nil
}

// dialogEvent counts the calls the dialog module ended at their timeout
// while a session timer was in force. It runs under the dialog's lock.
func (m *SST) dialogEvent(ev *dialog.Event) {
	if ev.Kind == dialog.EventEnded && ev.Reason == dialog.ReasonTimeout && ev.Flags&dialog.FlagSessionTimer != 0 {
		m.expired.Inc()
	}
}

// Start does nothing: the module works on the receive path only.
func (m *SST) Start() error { return nil }

// Stop does nothing.
func (m *SST) Stop() {}

// CheckReload names a changed enabled as needing a restart
// (keepRestartKeys); it refuses nothing.
func (m *SST) CheckReload(v any) error {
	s := *v.(*Settings)
	return modules.NeedRestart(m.keepRestartKeys(&s)...)
}

// keepRestartKeys writes the enabled in force into s where s changes it,
// and returns that key: the route set is built with it.
func (m *SST) keepRestartKeys(s *Settings) (keys []string) {
	keys = modules.KeepInForce(keys, "enabled", &s.Enabled, m.enabled)
	return keys
}

// Reload applies min_se, interval, reject_too_small and grace to the
// calls from now on; enabled keeps its value in force until the next
// start (keepRestartKeys).
func (m *SST) Reload(v any) error {
	s := v.(*Settings)
	m.keepRestartKeys(s)
	m.cfg.Store(compile(s))
	return nil
}

// Enabled reports whether sst.enabled is on (false for a nil SST).
func (m *SST) Enabled() bool { return m != nil && m.enabled && m.dlg != nil }

// CheckMin checks the session timer headers of an initial INVITE
// (Kamailio and OpenSIPS sstCheckMin(1)): a Session-Expires or Min-SE
// that is not a number of seconds, or more than one of either, gets 400;
// a Session-Expires below min_se gets 422 Session Interval Too Small with
// Min-SE (the larger of min_se and the request's own Min-SE) when
// reject_too_small is on and the caller said Supported: timer. A caller
// that did not say it cannot read a 422 (RFC 4028 §8.1: the proxy MUST
// NOT send it): Manage raises its interval instead. Returns false when it
// answered; the route stops there. Call it before CreateDialog, so that a
// refused INVITE leaves no dialog nor record. It allocates nothing.
func (m *SST) CheckMin(c *routing.Ctx) bool {
	if !m.Enabled() || !c.IsMethod(parser.MethodInvite) || c.HasToTag() {
		return true
	}
	msg := c.Msg()
	se, ok := SessionExpires(msg)
	if !ok {
		m.badRequests.Inc()
		c.ReplyStateless(400, "Bad Session-Expires", nil)
		return false
	}
	mse, ok := MinSE(msg)
	if !ok {
		m.badRequests.Inc()
		c.ReplyStateless(400, "Bad Min-SE", nil)
		return false
	}
	cfg := m.cfg.Load()
	if !se.Present || se.Seconds >= cfg.minSE || !cfg.reject || !msg.HasToken(parser.HdrSupported, "timer") {
		return true
	}
	m.tooSmall.Inc()
	if !mse.Present || mse.Seconds <= cfg.minSE {
		c.ReplyStateless(422, "Session Interval Too Small", cfg.minSEHeader)
		return false
	}
	var b [32]byte
	h := append(strconv.AppendUint(append(b[:0], "Min-SE: "...), uint64(mse.Seconds), 10), "\r\n"...)
	c.ReplyStateless(422, "Session Interval Too Small", h)
	return false
}

// Manage prepares an initial INVITE whose dialog CreateDialog made (the
// part of Kamailio's sst dialog callback that edits the request): a
// Session-Expires below min_se from a caller that did not say Supported:
// timer, which cannot read a 422, is raised to min_se, and Min-SE with it
// (RFC 4028 §8.1); one from a caller that did, let through with
// reject_too_small off, is relayed as it is (its 2xx is timed by min_se
// at least). An INVITE without one gets Session-Expires: interval and
// Min-SE: min_se when interval is set. What the INVITE is relayed with is
// kept for its 2xx (SlotSST). It allocates nothing but a value other than
// min_se and interval copied into the transaction.
func (m *SST) Manage(c *routing.Ctx) {
	if !m.Enabled() || !c.IsMethod(parser.MethodInvite) || c.HasToTag() {
		return
	}
	msg := c.Msg()
	se, ok := SessionExpires(msg)
	mse, ok2 := MinSE(msg)
	if !ok || !ok2 {
		return // CheckMin answers those; without it they go on untouched
	}
	cfg := m.cfg.Load()
	supported := msg.HasToken(parser.HdrSupported, "timer")
	relayed := se.Seconds
	switch {
	case se.Present && se.Seconds >= cfg.minSE:
	case se.Present && supported:
		// reject_too_small is off: relayed as it is; its 2xx is timed
		// by min_se at least (Reply).
	case se.Present:
		relayed = max(cfg.minSE, mse.Seconds)
		ed := c.R.Editor()
		ed.Replace(se.Digits, m.value(c, cfg, relayed))
		m.raiseMinSE(c, cfg, mse, relayed)
		m.raised.Inc()
	case cfg.interval > 0:
		relayed = max(cfg.interval, mse.Seconds)
		c.R.Editor().AddHeader("Session-Expires", m.value(c, cfg, relayed))
		m.raiseMinSE(c, cfg, mse, cfg.minSE)
		m.inserted.Inc()
	default:
		return // no session timer asked for
	}
	v := int64(relayed)
	if supported {
		v |= supportedBit
	}
	c.SetValue(SlotSST, v)
}

// raiseMinSE makes the relayed Min-SE at least floor: a UAS must not
// answer with an interval below it.
func (m *SST) raiseMinSE(c *routing.Ctx, cfg *config, mse Interval, floor uint32) {
	switch {
	case !mse.Present:
		c.R.Editor().AddHeader("Min-SE", m.value(c, cfg, floor))
	case mse.Seconds < floor:
		c.R.Editor().Replace(mse.Digits, m.value(c, cfg, floor))
	}
}

// value is n in decimal, in memory that lives as long as the request's
// edits: the configured values as they are, another copied into the
// transaction.
func (m *SST) value(c *routing.Ctx, cfg *config, n uint32) []byte {
	switch n {
	case cfg.minSE:
		return cfg.minSEValue
	case cfg.interval:
		return cfg.intervalValue
	}
	var b [10]byte
	return c.R.Own(strconv.AppendUint(b[:0], uint64(n), 10))
}

// Reply is the reply route's part (Kamailio's sst response callback): on a
// 2xx to an INVITE, re-INVITE or UPDATE of a dialog, the Session-Expires
// it carries is the interval the parties agreed on, and the dialog is
// timed by it, at least min_se, plus grace, from now
// (dialog.SetSessionTimer; never past the dialog's own timeout). A 2xx
// without one: when the request went with a Session-Expires from a caller
// that said Supported: timer, the callee does not do session timers and
// the caller refreshes (RFC 4028 §8.2 and §9): the proxy adds
// Session-Expires with refresher=uac and Require: timer to the 2xx and
// times the dialog by it; otherwise there is no session timer, and one in
// force stops (the dialog's own timeout again). A Session-Expires that is
// not a number, or more than one, changes nothing (counted). It allocates
// nothing.
func (m *SST) Reply(c *routing.ReplyCtx) {
	if !m.Enabled() {
		return
	}
	code := c.Status()
	if code < 200 || code >= 300 || c.Req.Value(dialog.SlotDialog) == 0 {
		return
	}
	msg := c.Msg()
	if meth := msg.CSeq().Method; meth != parser.MethodInvite && meth != parser.MethodUpdate {
		return
	}
	cfg := m.cfg.Load()
	se, ok := SessionExpires(msg)
	if !ok {
		m.badAnswers.Inc()
		return
	}
	refresh := c.Req.HasToTag()
	if se.Present {
		m.arm(c, cfg, se.Seconds, refresh)
		return
	}
	asked, supported := m.asked(c.Req)
	if asked > 0 && supported {
		var b [48]byte
		v := append(strconv.AppendUint(b[:0], uint64(asked), 10), ";refresher=uac"...)
		ed := c.Editor()
		ed.AddHeader("Session-Expires", c.Own(v))
		ed.AddHeader("Require", timerTag)
		m.uacRefresh.Inc()
		m.arm(c, cfg, asked, refresh)
		return
	}
	if refresh && m.dlg.SetSessionTimer(c.Req, 0) {
		m.stopped.Inc()
	}
}

var timerTag = []byte("timer")

// arm times the dialog by a session interval of secs.
func (m *SST) arm(c *routing.ReplyCtx, cfg *config, secs uint32, refresh bool) {
	t := time.Duration(max(secs, cfg.minSE))*time.Second + cfg.grace
	if !m.dlg.SetSessionTimer(c.Req, t) {
		m.withoutDialogs.Inc()
		return
	}
	if refresh {
		m.refreshes.Inc()
	} else {
		m.sessions.Inc()
	}
}

// asked returns the Session-Expires the request was relayed with and
// whether its sender said Supported: timer: for an initial INVITE what
// Manage kept, for a request inside the dialog its own headers (the proxy
// changes none).
func (m *SST) asked(r *routing.Ctx) (uint32, bool) {
	if !r.HasToTag() {
		v := r.Value(SlotSST)
		return uint32(v), v&supportedBit != 0
	}
	msg := r.Msg()
	se, ok := SessionExpires(msg)
	if !ok || !se.Present || se.Seconds == 0 {
		return 0, false
	}
	return se.Seconds, msg.HasToken(parser.HdrSupported, "timer")
}
