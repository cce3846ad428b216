// Package events is the events module: the subscribers of the server's
// event interface (modules.Events; OpenSIPS event_interface with
// event_jsonrpc/event_routing's webhooks, subscribe_event and
// raise_event). Events go to HTTP webhooks (configured, or added at run
// time with events.subscribe) and to management API streams
// (Server-Sent Events at /api/v1/stream/events). Routes raise their own
// with Raise. See README.md and docs/events.md.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/routing"
)

func init() {
	modules.Register(modules.Definition{
		Name: "events",
		Doc:  "event interface: webhooks and management API streams of registrations, dialogs, bans, gateway state and route events",
		// The dialog module's state changes become E_DLG_STATE_CHANGED
		// when it is compiled in.
		Uses:     []string{"dialog"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
	})
}

// Module is the events module. Its route function is Raise.
type Module struct {
	ev    *modules.Events
	h     *modules.Host
	set   *metrics.Set
	log   *slog.Logger
	clock interface{ Now() int64 }

	mu       sync.Mutex
	cfg      Settings
	hooks    map[string]*webhook                // by name
	streams  map[*modules.Subscription][]string // the event names each stream asked for
	started  bool
	stopped  chan struct{}
	stopOnce sync.Once

	streamSent, streamOpened *metrics.Counter
	streamDropped            uint64 // of closed streams; open ones add theirs
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	st := settings.(*Settings)
	m := &Module{ev: h.Events, h: h, set: h.Metrics, log: h.Logger(), clock: h.Clock, cfg: *st,
		hooks: map[string]*webhook{}, streams: map[*modules.Subscription][]string{}, stopped: make(chan struct{})}
	for _, w := range st.Webhooks {
		m.addWebhook(w, false, 0)
	}
	m.streamSent = h.Metrics.GetOrCreateCounter("switchboard_events_stream_sent_total")
	m.streamOpened = h.Metrics.GetOrCreateCounter("switchboard_events_streams_opened_total")
	h.Metrics.GetOrCreateGauge("switchboard_events_streams", func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(len(m.streams))
	})
	h.Metrics.GetOrCreateGauge("switchboard_events_stream_dropped_total", func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		n := m.streamDropped
		for s := range m.streams {
			n += s.Dropped()
		}
		return float64(n)
	})
	if d, ok := h.Module("dialog").(*dialog.Dialog); ok && d != nil {
		d.Subscribe(m.dialogEvent)
	}
	h.Stream("events", httpHandler(m.serveStream))
	m.registerCommands(h)
	return m, nil
}

// Start starts the webhooks' deliveries and the expiry of subscriptions
// added at run time with an expiry.
func (m *Module) Start() error {
	m.mu.Lock()
	m.started = true
	for _, w := range m.hooks {
		w.start()
	}
	m.mu.Unlock()
	go m.expireLoop()
	return nil
}

// Stop ends the deliveries (queued events are lost: events are not
// stored) and the streams.
func (m *Module) Stop() {
	m.stopOnce.Do(func() { close(m.stopped) })
	m.mu.Lock()
	hooks := make([]*webhook, 0, len(m.hooks))
	for _, w := range m.hooks {
		hooks = append(hooks, w)
		m.ev.Unsubscribe(w.sub)
	}
	m.started = false
	m.mu.Unlock()
	for _, w := range hooks {
		w.stop()
	}
}

// OutboundChanged makes every webhook dial anew for its next POST: the
// address dialled is checked against outbound.allow, which a reload
// changed, and a connection opened under the old list is not used again.
func (m *Module) OutboundChanged() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.hooks {
		w.resetConns()
	}
	return nil
}

// CheckReload accepts every settings that passed Check: the webhooks are
// replaced at once (Reload).
func (m *Module) CheckReload(any) error { return nil }

// Reload applies new settings: the webhooks of the configuration are
// replaced (their queues lost), as is one added at run time under a name
// the configuration now uses; the others added at run time stay.
func (m *Module) Reload(settings any) error {
	st := settings.(*Settings)
	named := map[string]bool{}
	for _, w := range st.Webhooks {
		named[w.Name] = true
	}
	m.mu.Lock()
	var old []*webhook
	for name, w := range m.hooks {
		if !w.runtime || named[name] {
			old = append(old, w)
			m.ev.Unsubscribe(w.sub)
			m.unregisterMetrics(w)
			delete(m.hooks, name)
		}
	}
	m.cfg = *st
	m.mu.Unlock()
	for _, w := range old {
		w.stop()
	}
	for _, w := range st.Webhooks {
		m.addWebhook(w, false, 0)
	}
	return nil
}

// addWebhook subscribes w and, once the module started, starts it.
func (m *Module) addWebhook(cfg WebhookSettings, runtime bool, expires int64) *webhook {
	sub := m.ev.Subscribe(cfg.Events, cfg.Queue)
	w := newWebhook(cfg, sub, m.set, m.log, m.h.Originator.Allowed)
	w.runtime, w.expires = runtime, expires
	m.mu.Lock()
	m.hooks[cfg.Name] = w
	if m.started {
		w.start()
	}
	m.mu.Unlock()
	return w
}

// removeWebhook unsubscribes and stops the webhook called name.
func (m *Module) removeWebhook(name string) bool {
	m.mu.Lock()
	w, ok := m.hooks[name]
	if ok {
		m.ev.Unsubscribe(w.sub)
		m.unregisterMetrics(w)
		delete(m.hooks, name)
	}
	m.mu.Unlock()
	if ok {
		w.stop()
	}
	return ok
}

func (m *Module) unregisterMetrics(w *webhook) {
	for _, n := range w.metricNames {
		m.set.UnregisterMetric(n)
	}
}

// subscribers is the webhooks and streams, m.mu held.
func (m *Module) subscribers() int { return len(m.hooks) + len(m.streams) }

func (m *Module) addStream(names []string) (*modules.Subscription, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subscribers() >= m.cfg.MaxSubscribers {
		return nil, false
	}
	sub := m.ev.Subscribe(names, m.cfg.StreamQueue)
	if len(names) == 0 {
		names = []string{modules.AllEvents}
	}
	m.streams[sub] = names
	m.streamOpened.Inc()
	return sub, true
}

func (m *Module) removeStream(sub *modules.Subscription) {
	m.ev.Unsubscribe(sub)
	m.mu.Lock()
	delete(m.streams, sub)
	m.streamDropped += sub.Dropped()
	m.mu.Unlock()
}

// expireLoop removes runtime subscriptions past their expiry, every
// second.
func (m *Module) expireLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stopped:
			return
		case <-t.C:
		}
		now := m.clock.Now()
		var gone []string
		m.mu.Lock()
		for name, w := range m.hooks {
			if w.expires > 0 && w.expires <= now {
				gone = append(gone, name)
			}
		}
		m.mu.Unlock()
		for _, name := range gone {
			m.removeWebhook(name)
		}
	}
}

// Raise starts an event of a route's own (OpenSIPS raise_event) with the
// request's call_id, method and src already in its params; add fields
// and call Raise on the result:
//
//	ev.Raise(c, "E_CALL_BLOCKED").Str("reason", "blacklist").Raise()
//
// It returns nil, and costs no allocation, when nobody subscribed to
// name. Name it E_ followed by capitals, digits and '_', so that it can
// be subscribed to.
func (m *Module) Raise(c *routing.Ctx, name string) *modules.Builder {
	b := m.ev.Begin(name)
	if b == nil {
		return nil
	}
	if c != nil && c.Msg() != nil {
		msg := c.Msg()
		b.Bytes("call_id", msg.CallID()).Bytes("method", msg.MethodBytes()).AddrPort("src", c.R.Src)
	}
	return b
}

// Dialog states as OpenSIPS numbers them in E_DLG_STATE_CHANGED.
const (
	dlgUnconfirmed = 1
	dlgConfirmed   = 4
	dlgDeleted     = 5
)

// dialogEvent turns a dialog event into E_DLG_STATE_CHANGED. It runs with
// the dialog's shard locked: raising never waits.
func (m *Module) dialogEvent(e *dialog.Event) {
	b := m.ev.Begin(modules.EventDialogState)
	if b == nil {
		return
	}
	var from, to int64
	switch e.Kind {
	case dialog.EventCreated:
		from, to = 0, dlgUnconfirmed
	case dialog.EventAnswered:
		from, to = dlgUnconfirmed, dlgConfirmed
	case dialog.EventEnded:
		from, to = dlgUnconfirmed, dlgDeleted
		if e.Answer != 0 {
			from = dlgConfirmed
		}
	}
	b.Int("id", int64(e.ID)).Bytes("callid", e.CallID).Bytes("from_tag", e.FromTag).Bytes("to_tag", e.ToTag).
		Int("old_state", from).Int("new_state", to).Str("change", e.Kind.String()).
		Bytes("from", e.From).Bytes("to", e.To).AddrPort("caller", e.Caller).
		Int("start_ms", e.Start).Int("answer_ms", e.Answer)
	if e.Kind == dialog.EventEnded {
		b.Int("end_ms", e.End).Str("reason", e.Reason.String()).Str("by", e.By.String())
	}
	if e.Code != 0 {
		b.Int("code", int64(e.Code)).Bytes("phrase", e.Phrase)
	}
	b.Raise()
}

// list is events.list: the known events and every subscriber.
func (m *Module) list() map[string]any {
	m.mu.Lock()
	subs := make([]subscriberInfo, 0, len(m.hooks)+len(m.streams))
	hooks := make([]*webhook, 0, len(m.hooks))
	for _, w := range m.hooks {
		hooks = append(hooks, w)
	}
	for s, names := range m.streams {
		subs = append(subs, subscriberInfo{Kind: "stream", Name: "stream", Events: names,
			Queued: len(s.C()), Queue: m.cfg.StreamQueue, Dropped: s.Dropped()})
	}
	m.mu.Unlock()
	for _, w := range hooks {
		subs = append(subs, w.info())
	}
	sort.Slice(subs, func(i, j int) bool {
		if subs[i].Kind != subs[j].Kind {
			return subs[i].Kind > subs[j].Kind // webhooks first
		}
		return subs[i].Name < subs[j].Name
	})
	return map[string]any{"events": modules.KnownEvents, "subscribers": subs}
}

// maxRaiseParams bounds the params of events.raise.
const maxRaiseParams = 64 << 10

type subscribeArgs struct {
	WebhookSettings
	Expires int64 `json:"expires"` // seconds; 0: until events.unsubscribe or a restart
}

func (m *Module) registerCommands(h *modules.Host) {
	h.Command("events.list", mgmt.Command{
		Help:     "the events the server raises and every subscriber (webhooks, streams) with its queue, deliveries, retries and drops",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return m.list(), nil
		},
	})
	h.Command("events.subscribe", mgmt.Command{
		Help: `add a webhook (OpenSIPS subscribe_event): {"url":"http://127.0.0.1:8080/hook","events":["E_UL_CONTACT_INSERT"],"name":"crm","token":"...","expires":3600}; lost at restart: configure lasting ones in events.webhooks`,
		Run:  func(_ context.Context, raw json.RawMessage) (any, error) { return m.subscribe(raw) },
	})
	h.Command("events.unsubscribe", mgmt.Command{
		Help: `remove a webhook: {"name":"crm"}`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				Name string `json:"name"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.Name == "" {
				return nil, &mgmt.ArgError{Msg: "name: missing"}
			}
			if !m.removeWebhook(a.Name) {
				return nil, fmt.Errorf("webhook %q: %w", a.Name, mgmt.ErrNotFound)
			}
			return map[string]string{"removed": a.Name}, nil
		},
	})
	h.Command("events.raise", mgmt.Command{
		Help: `raise an event (OpenSIPS MI raise_event): {"event":"E_MAINTENANCE","params":{"node":"a"}}`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				Event  string          `json:"event"`
				Params json.RawMessage `json:"params"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if !validEvent(a.Event) {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("event: %q is not an event name (E_ followed by capitals, digits and '_')", a.Event)}
			}
			if len(a.Params) > maxRaiseParams {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("params: larger than %d bytes: every subscriber's queue would hold a copy", maxRaiseParams)}
			}
			var params map[string]json.RawMessage
			if len(a.Params) > 0 {
				if err := json.Unmarshal(a.Params, &params); err != nil {
					return nil, &mgmt.ArgError{Msg: "params: must be a JSON object"}
				}
			}
			b := m.ev.Begin(a.Event)
			keys := make([]string, 0, len(params))
			for k := range params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				b.RawJSON(k, compact(params[k]))
			}
			b.Raise()
			return map[string]any{"event": a.Event, "delivered_to": m.countFor(a.Event)}, nil
		},
	})
}

// countFor is the subscribers that take events named name.
func (m *Module) countFor(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, w := range m.hooks {
		if w.sub.Wants(name) {
			n++
		}
	}
	for s := range m.streams {
		if s.Wants(name) {
			n++
		}
	}
	return n
}

// subscribe is events.subscribe.
func (m *Module) subscribe(raw json.RawMessage) (any, error) {
	var a subscribeArgs
	if err := decodeSubscribe(raw, &a); err != nil {
		return nil, err
	}
	if err := a.normalize(); err != nil {
		return nil, &mgmt.ArgError{Msg: err.Error()}
	}
	if a.Expires < 0 {
		return nil, &mgmt.ArgError{Msg: "expires: must be 0 (none) or seconds"}
	}
	var exp int64
	if a.Expires > 0 {
		exp = m.clock.Now() + a.Expires*1000
	}
	w, err := m.addRuntimeWebhook(a.WebhookSettings, exp)
	if err != nil {
		return nil, err
	}
	return w.info(), nil
}

// addRuntimeWebhook adds a webhook of events.subscribe, within
// max_subscribers and under a name not taken.
func (m *Module) addRuntimeWebhook(cfg WebhookSettings, expires int64) (*webhook, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.hooks[cfg.Name]; dup {
		return nil, &mgmt.ArgError{Msg: fmt.Sprintf("name: a webhook called %q exists: events.unsubscribe it first, or give another name", cfg.Name)}
	}
	if m.subscribers() >= m.cfg.MaxSubscribers {
		return nil, &mgmt.ArgError{Msg: fmt.Sprintf("too many subscribers (events.max_subscribers: %d)", m.cfg.MaxSubscribers)}
	}
	w := newWebhook(cfg, m.ev.Subscribe(cfg.Events, cfg.Queue), m.set, m.log, m.h.Originator.Allowed)
	w.runtime, w.expires = true, expires
	m.hooks[cfg.Name] = w
	if m.started {
		w.start()
	}
	return w, nil
}
