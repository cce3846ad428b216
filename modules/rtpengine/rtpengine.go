// Package rtpengine relays the media of calls through rtpengine
// (https://github.com/sipwise/rtpengine), as OpenSIPS's and Kamailio's
// rtpengine modules do: the SDP of an offer and of its answer goes to
// rtpengine over its "ng" control protocol (package ng), and the SDP
// rtpengine returns, which names its own address and ports, replaces the
// one in the relayed request or response. Both parties then send their
// media to rtpengine, which forwards it between them: a phone behind NAT
// is heard, and heard from, whatever its SDP said.
//
// The control exchange never blocks a receive loop: a request waits
// suspended (txn Request.Suspend) and a response held (txn
// Request.HoldResponse) while rtpengine answers, on the client's own
// goroutines.
package rtpengine

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
	"switchboard/modules/rtpengine/ng"
)

// Settings are the rtpengine section of the configuration
// (docs/configuration.md).
type Settings struct {
	// Instances are the control sockets, "udp:IP:port", each optionally
	// followed by "=weight" (OpenSIPS rtpengine_sock). Empty: the module
	// is off and the route set relays media untouched.
	Instances []string `yaml:"instances"`
	// Timeout is how long an answer is waited for before a command is
	// sent again (rtpengine_tout).
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many times a command is sent again to one instance
	// before it counts as down and the next one is tried (rtpengine_retr).
	Retries int `yaml:"retries"`
	// DisableTimeout is how long an instance that stopped answering stays
	// out before it is pinged again (rtpengine_disable_tout).
	DisableTimeout time.Duration `yaml:"disable_timeout"`
	// PingInterval: each instance in service is pinged (and its session
	// count read) this often; 0: only down instances are pinged.
	PingInterval time.Duration `yaml:"ping_interval"`
	// Flags are the offer and answer flags of the provider route set's
	// rtpengine_manage, in OpenSIPS's form.
	Flags string `yaml:"flags"`
	// OnUnavailable says what a call gets when no instance answers:
	// "reject" (503 Media Relay Unavailable) or "relay" (relayed with its
	// own SDP, no media relay).
	OnUnavailable string `yaml:"on_unavailable"`
}

// DefaultSettings: no instance (off), OpenSIPS's timings, the NAT script's
// flags.
func DefaultSettings() *Settings {
	return &Settings{
		Timeout:        time.Second,
		Retries:        2,
		DisableTimeout: time.Minute,
		PingInterval:   10 * time.Second,
		Flags:          "replace-origin replace-session-connection ICE=remove",
		OnUnavailable:  "reject",
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "rtpengine",
		Doc:      "media relay through rtpengine: rtpengine_offer/answer/delete/manage over the ng protocol",
		Settings: func() any { return DefaultSettings() },
		Check:    func(s any) error { return s.(*Settings).check() },
		New:      newModule,
	})
}

func (s *Settings) check() error {
	seen := map[string]bool{}
	for i, in := range s.Instances {
		key := fmt.Sprintf("instances[%d]", i)
		x, err := ng.ParseInstance(in)
		if err != nil {
			return modules.Errorf(key, "%q: %v", in, err)
		}
		if seen[x.Addr.String()] {
			return modules.Errorf(key, "%s is listed twice", x.Addr)
		}
		seen[x.Addr.String()] = true
	}
	if len(s.Instances) > 64 {
		return modules.Errorf("instances", "at most 64, not %d", len(s.Instances))
	}
	if s.Timeout < 10*time.Millisecond || s.Timeout > 30*time.Second {
		return modules.Errorf("timeout", "must be between 10ms and 30s, not %s", s.Timeout)
	}
	if s.Retries < 0 || s.Retries > 10 {
		return modules.Errorf("retries", "must be between 0 and 10, not %d", s.Retries)
	}
	if s.DisableTimeout < time.Second || s.DisableTimeout > time.Hour {
		return modules.Errorf("disable_timeout", "must be between 1s and 1h, not %s", s.DisableTimeout)
	}
	if s.PingInterval != 0 && (s.PingInterval < time.Second || s.PingInterval > time.Hour) {
		return modules.Errorf("ping_interval", "must be 0 (ping only down instances) or between 1s and 1h, not %s", s.PingInterval)
	}
	if _, err := ParseFlags(s.Flags); err != nil {
		return modules.Errorf("flags", "%v", err)
	}
	if s.OnUnavailable != "reject" && s.OnUnavailable != "relay" {
		return modules.Errorf("on_unavailable", "must be reject or relay, not %q", s.OnUnavailable)
	}
	return nil
}

// Engine is the module. Its route functions are safe for concurrent use;
// a nil *Engine (the module not compiled in) and one without instances
// do nothing (Enabled is false).
type Engine struct {
	h      *modules.Host
	client *ng.Client

	enabled       atomic.Bool
	flags         atomic.Pointer[Flags]
	relayOnFail   atomic.Bool
	pingEvery     time.Duration
	bufs          sync.Pool // *[]byte, command buffers
	stop          chan struct{}
	stopped       sync.WaitGroup
	sessionsByURL sync.Map // URL → *atomic.Int64 (rtpengine's own count)
	answering     sync.Map // pendingKey → struct{}: responses held for an answer

	commands map[string]*metrics.Counter
	errors   map[string]*metrics.Counter
	latency  *metrics.Histogram
	held     *metrics.Counter
	dedup    *metrics.Counter
	downs    *metrics.Counter
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	s := settings.(*Settings)
	e := &Engine{h: h, stop: make(chan struct{}), pingEvery: s.PingInterval,
		commands: map[string]*metrics.Counter{}, errors: map[string]*metrics.Counter{}}
	e.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	set := h.Metrics
	for _, c := range []string{"offer", "answer", "delete", "ping", "statistics", "query"} {
		e.commands[c] = set.NewCounter(`switchboard_rtpengine_commands_total{command="` + c + `"}`)
	}
	for _, r := range []string{"timeout", "no_instance", "error", "bad_sdp", "malformed"} {
		e.errors[r] = set.NewCounter(`switchboard_rtpengine_errors_total{reason="` + r + `"}`)
	}
	e.latency = set.NewHistogram("switchboard_rtpengine_ng_latency_seconds")
	e.held = set.NewCounter("switchboard_rtpengine_responses_held_total")
	e.dedup = set.NewCounter("switchboard_rtpengine_retransmissions_dropped_total")
	e.downs = set.NewCounter("switchboard_rtpengine_instance_down_total")
	set.NewGauge("switchboard_rtpengine_sessions", func() float64 {
		var n int64
		e.sessionsByURL.Range(func(_, v any) bool { n += v.(*atomic.Int64).Load(); return true })
		return float64(n)
	})
	set.NewGauge("switchboard_rtpengine_instances_up", func() float64 {
		n := 0
		if e.client != nil {
			for _, in := range e.client.Instances() {
				if in.Up() {
					n++
				}
			}
		}
		return float64(n)
	})
	insts, err := parseInstances(s.Instances, nil)
	if err != nil {
		return nil, err
	}
	e.client, err = ng.New(ng.Config{
		Timeout: s.Timeout, Retries: s.Retries, DisableFor: s.DisableTimeout,
		PingInterval: s.PingInterval, Observe: e.observe, StateChanged: e.stateChanged,
	}, insts)
	if err != nil {
		return nil, fmt.Errorf("rtpengine: control socket: %w", err)
	}
	e.apply(s, insts)
	e.registerCommands(h)
	return e, nil
}

// parseInstances builds the instance list, keeping the state (down,
// disabled) of those already known by URL.
func parseInstances(urls []string, old []*ng.Instance) ([]*ng.Instance, error) {
	out := make([]*ng.Instance, 0, len(urls))
	for _, u := range urls {
		in, err := ng.ParseInstance(u)
		if err != nil {
			return nil, err
		}
		for _, o := range old {
			if o.Addr == in.Addr {
				o.Weight = in.Weight
				in = o
			}
		}
		out = append(out, in)
	}
	return out, nil
}

func (e *Engine) apply(s *Settings, insts []*ng.Instance) {
	f, _ := ParseFlags(s.Flags) // checked
	e.flags.Store(f)
	e.relayOnFail.Store(s.OnUnavailable == "relay")
	e.client.SetInstances(insts)
	e.enabled.Store(len(insts) > 0)
}

// Start starts reading rtpengine's session counts.
func (e *Engine) Start() error {
	if e.pingEvery > 0 {
		e.stopped.Add(1)
		go e.poll()
	}
	return nil
}

// Stop closes the control socket; commands in flight end with an error
// (their requests get the on_unavailable answer).
func (e *Engine) Stop() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.stopped.Wait()
	e.client.Close()
}

// Reload applies changed instances (a new one joins, a removed one
// leaves; those kept keep their state), flags and on_unavailable. The
// timings take effect at the next start.
func (e *Engine) Reload(settings any) error {
	s := settings.(*Settings)
	insts, err := parseInstances(s.Instances, e.client.Instances())
	if err != nil {
		return err
	}
	e.apply(s, insts)
	return nil
}

// Enabled reports whether media goes through rtpengine: the module is
// there and has instances (rtpengine.instances).
func (e *Engine) Enabled() bool { return e != nil && e.enabled.Load() }

// DefaultFlags are the configured flags (rtpengine.flags).
func (e *Engine) DefaultFlags() *Flags {
	if e == nil {
		return nil
	}
	return e.flags.Load()
}

// Client is the ng client (tests, benchmarks).
func (e *Engine) Client() *ng.Client { return e.client }

func (e *Engine) observe(in *ng.Instance, cmd string, rtt time.Duration, err error) {
	if c := e.commands[cmd]; c != nil {
		c.Inc()
	}
	switch {
	case err == ng.ErrTimeout:
		e.errors["timeout"].Inc()
	case err != nil:
		e.errors["malformed"].Inc()
	default:
		e.latency.Update(rtt.Seconds())
	}
}

func (e *Engine) stateChanged(in *ng.Instance, up bool) {
	if up {
		e.h.Logger().Info("rtpengine instance back in service", "instance", in.URL)
		return
	}
	e.downs.Inc()
	e.h.Warn("rtpengine instance not answering: out of service", "instance", in.URL)
}

// poll reads each instance's session count (ng "statistics") every
// ping_interval, for switchboard_rtpengine_sessions.
func (e *Engine) poll() {
	defer e.stopped.Done()
	t := time.NewTicker(e.pingEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			for _, in := range e.client.Instances() {
				if !in.Up() {
					continue
				}
				in := in
				e.client.DoOn(in, "statistics", cmdStatistics, func(_ *ng.Instance, v ng.Value, err error) {
					n, ok := v.Get("statistics").Get("currentstatistics").Get("sessionsown").Int()
					if err == nil && ok {
						c, _ := e.sessionsByURL.LoadOrStore(in.URL, new(atomic.Int64))
						c.(*atomic.Int64).Store(n)
					}
				})
			}
		}
	}
}

var cmdStatistics = []byte("d7:command10:statisticse")

// InstanceInfo is one instance as rtpengine.list shows it.
type InstanceInfo struct {
	URL       string `json:"url"`
	Weight    int    `json:"weight"`
	State     string `json:"state"` // up, down, disabled
	DownUntil string `json:"down_until,omitempty"`
	Sessions  int64  `json:"sessions"`
}

// List describes the instances (rtpengine.list; OpenSIPS rtpengine_show).
func (e *Engine) List() []InstanceInfo {
	out := []InstanceInfo{}
	for _, in := range e.client.Instances() {
		i := InstanceInfo{URL: in.URL, Weight: in.Weight, State: "up"}
		if down, until := in.Down(); down {
			i.State, i.DownUntil = "down", until.UTC().Format(time.RFC3339)
		}
		if in.Disabled() {
			i.State = "disabled"
		}
		if c, ok := e.sessionsByURL.Load(in.URL); ok {
			i.Sessions = c.(*atomic.Int64).Load()
		}
		out = append(out, i)
	}
	return out
}

// SetDisabled takes the instance named by url out of service or puts it
// back (rtpengine.disable, rtpengine.enable; OpenSIPS rtpengine_enable).
func (e *Engine) SetDisabled(url string, disabled bool) error {
	for _, in := range e.client.Instances() {
		if in.URL == url || in.Addr.String() == strings.TrimPrefix(url, "udp:") {
			e.client.SetDisabled(in, disabled)
			return nil
		}
	}
	return fmt.Errorf("%w: no rtpengine instance %q", mgmt.ErrNotFound, url)
}

func (e *Engine) registerCommands(h *modules.Host) {
	h.Command("rtpengine.list", mgmt.Command{ReadOnly: true,
		Help: "the rtpengine instances: weight, state (up, down until a recheck, disabled) and sessions (OpenSIPS rtpengine_show)",
		Run:  func(context.Context, json.RawMessage) (any, error) { return e.List(), nil }})
	for _, verb := range []string{"enable", "disable"} {
		disable := verb == "disable"
		h.Command("rtpengine."+verb, mgmt.Command{
			Help: `{"instance":"udp:127.0.0.1:2223"}: ` + map[bool]string{true: "take an instance out of service until enabled", false: "put an instance back in service (pinged at once)"}[disable] + " (OpenSIPS rtpengine_enable)",
			Run: func(_ context.Context, raw json.RawMessage) (any, error) {
				var args struct {
					Instance string `json:"instance"`
				}
				if err := mgmt.DecodeArgs(raw, &args); err != nil {
					return nil, err
				}
				if args.Instance == "" {
					return nil, &mgmt.ArgError{Msg: "instance is required"}
				}
				if err := e.SetDisabled(args.Instance, disable); err != nil {
					return nil, err
				}
				return e.List(), nil
			}})
	}
}
