package events

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
)

// webhook POSTs the events of its subscription to one URL, one at a
// time and in order, from its own goroutine: a receiver that is slow or
// down holds up only this webhook's queue (which drops what does not fit
// and counts it), never the code that raised the event.
type webhook struct {
	cfg     WebhookSettings
	runtime bool  // added with events.subscribe
	expires int64 // ms on the clock; 0: never (runtime subscriptions)
	sub     *modules.Subscription
	// client POSTs the events; resetConns swaps it for a fresh one, so
	// that no connection opened before is used again.
	client    atomic.Pointer[http.Client]
	newClient func() *http.Client
	log       *slog.Logger

	delivered, failed, retries, dropped *metrics.Counter
	metricNames                         []string

	mu       sync.Mutex
	lastErr  string
	lastCode int

	cancel context.CancelFunc
	done   chan struct{}
}

// newWebhook makes the webhook; allowed is the outbound allow-list,
// checked on every address the client connects to (after DNS), so that a
// webhook, like every other send, goes only where outbound.allow lets.
func newWebhook(cfg WebhookSettings, sub *modules.Subscription, set *metrics.Set, log *slog.Logger, allowed func(netip.Addr) bool) *webhook {
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !allowed(ap.Addr().Unmap()) {
			return fmt.Errorf("%s is outside outbound.allow", address)
		}
		return nil
	}}
	w := &webhook{cfg: cfg, sub: sub, log: log, done: make(chan struct{}), newClient: func() *http.Client {
		tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
			TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout}
		return &http.Client{Timeout: cfg.Timeout, Transport: tr}
	}}
	w.client.Store(w.newClient())
	label := `{webhook="` + cfg.Name + `"}`
	counter := func(name string) *metrics.Counter {
		w.metricNames = append(w.metricNames, name+label)
		return set.GetOrCreateCounter(name + label)
	}
	w.delivered = counter("switchboard_events_webhook_delivered_total")
	w.failed = counter("switchboard_events_webhook_failed_total")
	w.retries = counter("switchboard_events_webhook_retries_total")
	name := "switchboard_events_webhook_dropped_total" + label
	w.metricNames = append(w.metricNames, name)
	set.GetOrCreateGauge(name, func() float64 { return float64(sub.Dropped()) })
	return w
}

// start runs the delivery loop until stop.
func (w *webhook) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
}

// stop ends the loop: an attempt in flight is abandoned, what is queued
// is lost (events are not stored).
func (w *webhook) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
	w.client.Load().CloseIdleConnections()
}

// resetConns makes the next POST dial anew, where outbound.allow (checked
// at each dial) now lets: the connections opened before are closed when
// idle, or when the POST on one ends, and never used again.
func (w *webhook) resetConns() {
	old := w.client.Swap(w.newClient())
	old.CloseIdleConnections()
}

func (w *webhook) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.sub.C():
			w.deliver(ctx, ev)
		}
	}
}

// deliver POSTs ev until a 2xx, retrying with a doubling wait up to
// cfg.Retries times.
func (w *webhook) deliver(ctx context.Context, ev *modules.Event) {
	wait := w.cfg.RetryMin
	for attempt := 0; ; attempt++ {
		code, err := w.post(ctx, ev)
		w.mu.Lock()
		w.lastCode = code
		if err != nil {
			w.lastErr = err.Error()
		} else {
			w.lastErr = ""
		}
		w.mu.Unlock()
		if err == nil {
			w.delivered.Inc()
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= w.cfg.Retries {
			w.failed.Inc()
			w.log.Warn("events: webhook gave up an event", "webhook", w.cfg.Name, "event", ev.Name, "seq", ev.Seq, "attempts", attempt+1, "err", err)
			return
		}
		w.retries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, w.cfg.RetryMax)
	}
}

type statusError int

func (e statusError) Error() string { return "answered " + http.StatusText(int(e)) }

func (w *webhook) post(ctx context.Context, ev *modules.Event) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(ev.JSON))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard-events")
	req.Header.Set("X-Switchboard-Event", ev.Name)
	if w.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.Token)
	}
	client := w.client.Load()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read a little of the body so that the connection is reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if client != w.client.Load() {
		client.CloseIdleConnections() // reset meanwhile: not to be reused
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, statusError(resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// info is the webhook's line in events.list.
func (w *webhook) info() subscriberInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	events := w.cfg.Events
	if len(events) == 0 {
		events = []string{modules.AllEvents}
	}
	return subscriberInfo{
		Kind: "webhook", Name: w.cfg.Name, URL: w.cfg.URL, Events: events, Runtime: w.runtime,
		Queued: len(w.sub.C()), Queue: w.cfg.Queue, Delivered: w.delivered.Get(), Failed: w.failed.Get(),
		Retries: w.retries.Get(), Dropped: w.sub.Dropped(), LastStatus: w.lastCode, LastError: w.lastErr,
		ExpiresMs: w.expires,
	}
}

// subscriberInfo is one subscriber in events.list.
type subscriberInfo struct {
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	URL        string   `json:"url,omitempty"`
	Events     []string `json:"events"`
	Runtime    bool     `json:"runtime,omitempty"`
	Queued     int      `json:"queued"`
	Queue      int      `json:"queue"`
	Delivered  uint64   `json:"delivered"`
	Failed     uint64   `json:"failed"`
	Retries    uint64   `json:"retries"`
	Dropped    uint64   `json:"dropped"`
	LastStatus int      `json:"last_status,omitempty"`
	LastError  string   `json:"last_error,omitempty"`
	ExpiresMs  int64    `json:"expires_ms,omitempty"`
}
