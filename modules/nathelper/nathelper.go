// Package nathelper helps phones behind NAT, as OpenSIPS's and Kamailio's
// nathelper modules do: NATUACTest tells a request (or response) from
// behind NAT (nat_uac_test), FixNATedContact rewrites its Contact to the
// address it came from (fix_nated_contact), FixNATedRegister has the
// registrar reach a phone at the address its REGISTER came from
// (fix_nated_register, add_rcv_param), FixNATedSDP rewrites the media
// addresses of its SDP (fix_nated_sdp), and a keepalive pings the NATed
// contacts of the location service so that their NAT bindings stay open,
// and removes those that stop answering (natping, sipping).
//
// Every header can be forged. What a phone writes decides only whether
// these steps run; the address they write in, the address calls and pings
// go to, is always the source of the packet.
package nathelper

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/registrar"
)

// Transaction flags the NAT steps of a route set keep (routing.Ctx
// SetFlag): a route set that uses nathelper leaves them alone.
const (
	// FlagNAT: the request came from behind NAT (OpenSIPS: setflag(NAT)
	// after nat_uac_test).
	FlagNAT = 63
	// FlagNATReplies: the dialog has a side behind NAT (the caller, or a
	// callee registered behind NAT), so responses from behind NAT get
	// their Contact (and SDP) fixed too (OpenSIPS: the NAT branch flag;
	// Kamailio: the nat=yes Record-Route parameter).
	FlagNATReplies = 62
)

// RouteParam is the Record-Route parameter that marks a dialog with a side
// behind NAT ("nat=yes", as in Kamailio's NAT script), so that its later
// requests set FlagNATReplies. It travels in our signed Record-Route.
const RouteParam = "nat"

// Settings are the nathelper section of the configuration
// (docs/configuration.md).
type Settings struct {
	// Enabled makes the provider route set run the NAT steps (nat_uac_test
	// on REGISTER and initial requests, fix_nated_contact,
	// fix_nated_register, force_rport) and the keepalive.
	Enabled bool `yaml:"enabled"`
	// NATTests are the nat_uac_test flags, by name, the route set tests
	// requests with.
	NATTests []string `yaml:"nat_tests"`
	// PrivateLoopback counts 127.0.0.0/8 and ::1 as private addresses in
	// the tests (a lab where phones are on the proxy's host).
	PrivateLoopback bool `yaml:"private_loopback"`
	// FixSDP are the fix_nated_sdp changes made to the SDP of requests
	// and responses from behind NAT; empty: the SDP is not touched.
	FixSDP []string `yaml:"fix_sdp"`
	// PingInterval is how often each NATed contact is pinged; 0 turns the
	// keepalive off.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingMethod is options (a SIP OPTIONS, whose answer proves the phone
	// is there), crlf (CR LF CR LF) or null (four zero bytes).
	PingMethod string `yaml:"ping_method"`
	// PingTimeout is how long an OPTIONS waits for its answer.
	PingTimeout time.Duration `yaml:"ping_timeout"`
	// PingFailures unanswered OPTIONS in a row remove a contact from the
	// location service; 0 keeps it until it expires.
	PingFailures int `yaml:"ping_failures"`
	// PingFrom is the From URI of the OPTIONS; empty:
	// sip:keepalive@<the contact's domain>.
	PingFrom string `yaml:"ping_from"`
}

// DefaultSettings are the defaults: on, with the usual tests, OPTIONS
// every 30 s, three failures remove a contact, the SDP left alone.
func DefaultSettings() *Settings {
	return &Settings{
		Enabled:      true,
		NATTests:     DefaultFlags.Names(),
		PingInterval: 30 * time.Second,
		PingMethod:   "options",
		PingTimeout:  5 * time.Second,
		PingFailures: 3,
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "nathelper",
		Doc:      "NAT traversal: nat_uac_test, fix_nated_contact/register/sdp, keepalive of NATed contacts",
		After:    []string{"registrar"},
		Settings: func() any { return DefaultSettings() },
		Check:    func(s any) error { return s.(*Settings).check() },
		New:      newModule,
	})
}

// Ping methods.
const (
	pingOptions = iota
	pingCRLF
	pingNull
)

func parseMethod(s string) (int, bool) {
	switch s {
	case "options":
		return pingOptions, true
	case "crlf":
		return pingCRLF, true
	case "null":
		return pingNull, true
	}
	return 0, false
}

func (s *Settings) check() error {
	seen := map[string]bool{}
	for i, n := range s.NATTests {
		key := fmt.Sprintf("nat_tests[%d]", i)
		if _, err := ParseFlags([]string{n}); err != nil {
			return modules.Errorf(key, "unknown test %q; one of %s", n, strings.Join(FlagNames(), ", "))
		}
		if seen[n] {
			return modules.Errorf(key, "%s is listed twice", n)
		}
		seen[n] = true
	}
	for i, n := range s.FixSDP {
		if _, err := ParseSDPFlags([]string{n}); err != nil {
			return modules.Errorf(fmt.Sprintf("fix_sdp[%d]", i), "unknown change %q; one of %s", n, strings.Join(SDPFlagNames(), ", "))
		}
	}
	if s.PingInterval != 0 && (s.PingInterval < time.Second || s.PingInterval > time.Hour) {
		return modules.Errorf("ping_interval", "must be 0 (no keepalive) or between 1s and 1h, not %s", s.PingInterval)
	}
	if _, ok := parseMethod(s.PingMethod); !ok {
		return modules.Errorf("ping_method", "must be options, crlf or null, not %q", s.PingMethod)
	}
	if s.PingTimeout < 100*time.Millisecond || s.PingInterval != 0 && s.PingTimeout >= s.PingInterval {
		return modules.Errorf("ping_timeout", "must be at least 100ms and below nathelper.ping_interval (%s), not %s", s.PingInterval, s.PingTimeout)
	}
	if s.PingFailures < 0 || s.PingFailures > 100 {
		return modules.Errorf("ping_failures", "must be between 0 (never remove) and 100, not %d", s.PingFailures)
	}
	if s.PingFrom != "" {
		if err := checkFromURI(s.PingFrom); err != nil {
			return modules.Errorf("ping_from", "%v", err)
		}
	}
	return nil
}

// checkFromURI: a sip: or sips: URI that can go between angle brackets.
func checkFromURI(s string) error {
	low := strings.ToLower(s)
	if !strings.HasPrefix(low, "sip:") && !strings.HasPrefix(low, "sips:") || len(s) > 255 {
		return fmt.Errorf("%q is not a sip: or sips: URI of at most 255 characters", s)
	}
	if strings.ContainsAny(s, "<>\"\r\n\t ,") {
		return fmt.Errorf("%q holds characters a From URI cannot", s)
	}
	return nil
}

// NATHelper is the module. Its route functions are safe for concurrent use
// and allocate nothing; a nil *NATHelper (the module not compiled in)
// makes each of them do nothing and report false.
type NATHelper struct {
	h   *modules.Host
	reg *registrar.Registrar

	enabled         atomic.Bool
	tests           atomic.Uint32 // Flags
	sdpFlags        atomic.Uint32 // SDPFlags
	privateLoopback atomic.Bool

	sdpWork sync.Pool // *sdpWork

	ka *keeper

	natedTotal, contactsFixed, registersFixed, sdpFixed *metrics.Counter
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	reg, _ := h.Module("registrar").(*registrar.Registrar)
	if reg == nil {
		return nil, fmt.Errorf("nathelper needs the registrar module")
	}
	n := newNATHelper(h, reg)
	if err := n.apply(settings.(*Settings)); err != nil {
		return nil, err
	}
	n.registerCommands(h)
	return n, nil
}

// newNATHelper builds the module on h (its metrics, clock, originator)
// and the registrar whose contacts it pings.
func newNATHelper(h *modules.Host, reg *registrar.Registrar) *NATHelper {
	n := &NATHelper{h: h, reg: reg}
	n.sdpWork.New = func() any { return new(sdpWork) }
	set := h.Metrics
	n.natedTotal = set.NewCounter("switchboard_nathelper_nated_total")
	n.contactsFixed = set.NewCounter("switchboard_nathelper_contacts_fixed_total")
	n.registersFixed = set.NewCounter("switchboard_nathelper_registers_fixed_total")
	n.sdpFixed = set.NewCounter("switchboard_nathelper_sdp_fixed_total")
	n.ka = newKeeper(h, reg)
	return n
}

// apply takes checked settings (at start and on reload).
func (n *NATHelper) apply(s *Settings) error {
	tests, err := ParseFlags(s.NATTests)
	if err != nil {
		return err
	}
	sf, err := ParseSDPFlags(s.FixSDP)
	if err != nil {
		return err
	}
	method, _ := parseMethod(s.PingMethod)
	n.enabled.Store(s.Enabled)
	n.tests.Store(uint32(tests))
	n.sdpFlags.Store(uint32(sf))
	n.privateLoopback.Store(s.PrivateLoopback)
	interval := s.PingInterval
	if !s.Enabled {
		interval = 0
	}
	n.ka.configure(keepSettings{interval: interval, method: method, timeout: s.PingTimeout, failures: s.PingFailures, from: s.PingFrom})
	return nil
}

// Enabled reports whether the route set should run the NAT steps
// (nathelper.enabled).
func (n *NATHelper) Enabled() bool { return n != nil && n.enabled.Load() }

// Tests are the configured nat_uac_test flags (nathelper.nat_tests).
func (n *NATHelper) Tests() Flags {
	if n == nil {
		return 0
	}
	return Flags(n.tests.Load())
}

// SDPFlags are the configured fix_nated_sdp changes (nathelper.fix_sdp); 0
// when the SDP is to be left alone.
func (n *NATHelper) SDPFlags() SDPFlags {
	if n == nil {
		return 0
	}
	return SDPFlags(n.sdpFlags.Load())
}

// Start starts the keepalive (its sender needs the transaction core,
// handed over before Start).
func (n *NATHelper) Start() error {
	n.ka.start()
	return nil
}

// Stop stops the keepalive.
func (n *NATHelper) Stop() { n.ka.stop() }

// Reload applies changed settings: tests, SDP changes and the keepalive's
// interval, method and limits, from the next request and the next ping.
func (n *NATHelper) Reload(settings any) error { return n.apply(settings.(*Settings)) }

// CheckReload checks what apply parses; every key applies at once.
func (n *NATHelper) CheckReload(settings any) error {
	s := settings.(*Settings)
	if _, err := ParseFlags(s.NATTests); err != nil {
		return modules.Errorf("nat_tests", "%v", err)
	}
	if _, err := ParseSDPFlags(s.FixSDP); err != nil {
		return modules.Errorf("fix_sdp", "%v", err)
	}
	return nil
}

func (n *NATHelper) registerCommands(h *modules.Host) {
	h.Command("nathelper.ping", mgmt.Command{
		Help: `NAT keepalive state, or {"enable":false} to pause it and {"enable":true} to resume (OpenSIPS nh_enable_ping)`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Enable *bool `json:"enable"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Enable != nil {
				n.ka.paused.Store(!*args.Enable)
			}
			return n.ka.status(), nil
		}})
	h.Command("nathelper.contacts", mgmt.Command{ReadOnly: true,
		Help: `the NATed UDP contacts the keepalive pings, with their unanswered pings in a row: {"aor":"alice@example.com"} for one AOR`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				AOR string `json:"aor"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			out := []registrar.Info{}
			for _, b := range n.reg.List(args.AOR) {
				if b.NAT && strings.HasPrefix(b.Received, "udp:") && b.Path == "" {
					out = append(out, b)
				}
			}
			return out, nil
		}})
}
