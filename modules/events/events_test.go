package events

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/txn"
)

func build(t *testing.T, s *Settings) (*Module, *metrics.Set) {
	t.Helper()
	if err := checkSettings(s); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	ms, err := modules.Build(modules.Services{Clock: shards.NewManualClock(1_700_000_000_000), Metrics: set},
		map[string]any{"events": s}, "events")
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ms.Stop)
	return ms.Get("events").(*Module), set
}

func TestSettingsErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		s   Settings
		key string
	}{
		{Settings{MaxSubscribers: 0, StreamQueue: 10}, "max_subscribers"},
		{Settings{MaxSubscribers: 5, StreamQueue: 0}, "stream_queue"},
		{Settings{MaxSubscribers: 5, StreamQueue: 10, Webhooks: []WebhookSettings{{URL: "ftp://x"}}}, "webhooks[0].url"},
		{Settings{MaxSubscribers: 5, StreamQueue: 10, Webhooks: []WebhookSettings{{URL: "http://u:p@x/"}}}, "webhooks[0].url"},
		{Settings{MaxSubscribers: 5, StreamQueue: 10, Webhooks: []WebhookSettings{{URL: "http://x/", Events: []string{"ul_insert"}}}}, "webhooks[0].events"},
		{Settings{MaxSubscribers: 5, StreamQueue: 10, Webhooks: []WebhookSettings{{URL: "http://x/"}, {URL: "http://x/y"}}}, "webhooks[1].name"},
		{Settings{MaxSubscribers: 5, StreamQueue: 10, Webhooks: []WebhookSettings{{URL: "http://x/", RetryMin: time.Second, RetryMax: time.Millisecond}}}, "webhooks[0].retry_max"},
	} {
		err := checkSettings(&c.s)
		ke, ok := err.(*modules.KeyError)
		if !ok || ke.Key != c.key {
			t.Errorf("%+v: error %v, want one for %s", c.s, err, c.key)
		}
	}
}

// receiver answers with the status code in code, recording bodies.
type receiver struct {
	mu     sync.Mutex
	bodies []string
	code   atomic.Int32
	got    chan string
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	r := &receiver{got: make(chan string, 100)}
	r.code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		code := int(r.code.Load())
		if code == 200 {
			r.got <- string(b)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case b := <-r.got:
		var v map[string]any
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			t.Fatalf("not JSON: %s", b)
		}
		return v
	case <-time.After(3 * time.Second):
		t.Fatal("no event delivered")
	}
	return nil
}

func TestWebhookRetriesUntilAccepted(t *testing.T) {
	rcv, hs := newReceiver(t)
	rcv.code.Store(503)
	m, set := build(t, &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{
		{Name: "w", URL: hs.URL, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}}})
	m.ev.Begin("E_TEST").Int("n", 1).Raise()
	time.Sleep(100 * time.Millisecond)
	rcv.code.Store(200)
	if v := rcv.next(t); v["event"] != "E_TEST" {
		t.Fatalf("got %v", v)
	}
	if n := set.GetOrCreateCounter(`switchboard_events_webhook_retries_total{webhook="w"}`).Get(); n < 2 {
		t.Errorf("retries = %d", n)
	}
	var info []subscriberInfo
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if info = m.list()["subscribers"].([]subscriberInfo); len(info) == 1 && info[0].Delivered == 1 {
			break
		}
	}
	if len(info) != 1 || info[0].Delivered != 1 || info[0].LastStatus != 200 {
		t.Errorf("events.list: %+v", info)
	}
}

func TestWebhookGivesUpAfterRetries(t *testing.T) {
	rcv, hs := newReceiver(t)
	rcv.code.Store(500)
	m, set := build(t, &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{
		{Name: "w", URL: hs.URL, Retries: 2, RetryMin: time.Millisecond}}})
	failed := set.GetOrCreateCounter(`switchboard_events_webhook_failed_total{webhook="w"}`)
	m.ev.Begin("E_TEST").Raise()
	deadline := time.Now().Add(3 * time.Second)
	for failed.Get() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if failed.Get() != 1 {
		t.Fatalf("failed = %d after the retries", failed.Get())
	}
	if n := set.GetOrCreateCounter(`switchboard_events_webhook_retries_total{webhook="w"}`).Get(); n != 2 {
		t.Errorf("retries = %d, want 2", n)
	}
}

// TestStuckWebhookNeverBlocksRaising: a receiver that never answers
// holds one request; raising goes on at once and drops what the queue
// cannot hold.
func TestStuckWebhookNeverBlocksRaising(t *testing.T) {
	hang := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hs.Close()
	defer close(hang)
	m, set := build(t, &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{
		{Name: "w", URL: hs.URL, Queue: 4, Timeout: time.Minute}}})
	start := time.Now()
	for range 1000 {
		m.ev.Begin("E_TEST").Raise()
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("raising 1000 events took %s", d)
	}
	// 4 queued and at most one taken by the sender: the rest dropped.
	var b strings.Builder
	set.WritePrometheus(&b)
	if out := b.String(); !strings.Contains(out, `switchboard_events_webhook_dropped_total{webhook="w"} 995`) &&
		!strings.Contains(out, `switchboard_events_webhook_dropped_total{webhook="w"} 996`) {
		t.Fatalf("dropped not counted:\n%s", out)
	}
}

func TestRouteRaiseCarriesTheRequest(t *testing.T) {
	m, _ := build(t, &Settings{MaxSubscribers: 4, StreamQueue: 10})
	sub := m.ev.Subscribe([]string{"E_CALL_BLOCKED"}, 4)
	h := routetest.New(t, shards.NewManualClock(1_700_000_000_000))
	msg := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: blocked-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	h.InRoute(t, "192.0.2.9:5060", msg, func(c *routing.Ctx) {
		m.Raise(c, "E_CALL_BLOCKED").Str("reason", "blacklist").Raise()
		if m.Raise(c, "E_NOBODY_LISTENS") != nil {
			t.Error("Raise of an event nobody subscribed to is not nil")
		}
	})
	ev := <-sub.C()
	var v struct {
		Params map[string]any `json:"params"`
	}
	json.Unmarshal(ev.JSON, &v)
	if v.Params["call_id"] != "blocked-1" || v.Params["method"] != "INVITE" || v.Params["src"] != "192.0.2.9:5060" || v.Params["reason"] != "blacklist" {
		t.Fatalf("params %v", v.Params)
	}
}

func TestSubscribeAtRunTimeAndBounds(t *testing.T) {
	rcv, hs := newReceiver(t)
	m, _ := build(t, &Settings{MaxSubscribers: 1, StreamQueue: 10})
	sub := func(args string) (any, error) { return m.subscribe(json.RawMessage(args)) }
	if _, err := sub(`{"url":"` + hs.URL + `","name":"a","events":["E_TEST"],"expires":60}`); err != nil {
		t.Fatal(err)
	}
	if _, err := sub(`{"url":"` + hs.URL + `","name":"b"}`); err == nil || !strings.Contains(err.Error(), "max_subscribers") {
		t.Fatalf("beyond max_subscribers: %v", err)
	}
	m.ev.Begin("E_TEST").Raise()
	rcv.next(t)
	if !m.removeWebhook("a") || m.ev.Subscribed("E_TEST") {
		t.Fatal("unsubscribe left the subscription")
	}
}

func TestReloadReplacesConfiguredWebhooks(t *testing.T) {
	rcv, hs := newReceiver(t)
	m, set := build(t, &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{{Name: "a", URL: hs.URL}}})
	if _, err := m.subscribe(json.RawMessage(`{"url":"` + hs.URL + `","name":"rt"}`)); err != nil {
		t.Fatal(err)
	}
	next := &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{{Name: "b", URL: hs.URL, Events: []string{"E_B"}}}}
	if err := checkSettings(next); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(next); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range m.list()["subscribers"].([]subscriberInfo) {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "b,rt" {
		t.Fatalf("after reload: %v", names)
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if strings.Contains(b.String(), `webhook="a"`) {
		t.Error("metrics of the removed webhook still exported")
	}
	m.ev.Begin("E_B").Raise()
	rcv.next(t)
	rcv.next(t) // b and rt both take E_B
}

// TestWebhookKeepsToOutboundAllow: a webhook connects only to addresses
// inside outbound.allow, like every other send of the server.
func TestWebhookKeepsToOutboundAllow(t *testing.T) {
	rcv, hs := newReceiver(t)
	h := routetest.NewWith(t, shards.NewManualClock(1_700_000_000_000), func(c *txn.Config) {
		c.AllowOutbound = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	o := &modules.Originator{}
	o.SetCore(h.Core())
	s := &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{{Name: "w", URL: hs.URL, Retries: -1}}}
	if err := checkSettings(s); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	ms, err := modules.Build(modules.Services{Clock: shards.NewManualClock(1), Metrics: set, Originator: o}, map[string]any{"events": s}, "events")
	if err != nil {
		t.Fatal(err)
	}
	ms.Start()
	defer ms.Stop()
	m := ms.Get("events").(*Module)
	m.ev.Begin("E_TEST").Raise()
	failed := set.GetOrCreateCounter(`switchboard_events_webhook_failed_total{webhook="w"}`)
	for deadline := time.Now().Add(3 * time.Second); failed.Get() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	info := m.list()["subscribers"].([]subscriberInfo)
	if failed.Get() != 1 || len(rcv.got) != 0 || !strings.Contains(info[0].LastError, "outside outbound.allow") {
		t.Fatalf("failed %d, delivered %d, %+v", failed.Get(), len(rcv.got), info)
	}
}

// TestWebhookDropsConnectionsWhenOutboundNarrows: a reload that takes the
// receiver out of outbound.allow (the core's list, then
// Set.OutboundChanged) stops the webhook at once: its keep-alive
// connection, opened under the old list, is not used again, and the next
// dial is refused.
func TestWebhookDropsConnectionsWhenOutboundNarrows(t *testing.T) {
	rcv, hs := newReceiver(t)
	h := routetest.NewWith(t, shards.NewManualClock(1_700_000_000_000), func(c *txn.Config) {
		c.AllowOutbound = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	o := &modules.Originator{}
	o.SetCore(h.Core())
	s := &Settings{MaxSubscribers: 4, StreamQueue: 10, Webhooks: []WebhookSettings{{Name: "w", URL: hs.URL, Retries: -1, Timeout: 2 * time.Second}}}
	if err := checkSettings(s); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	ms, err := modules.Build(modules.Services{Clock: shards.NewManualClock(1), Metrics: set, Originator: o}, map[string]any{"events": s}, "events")
	if err != nil {
		t.Fatal(err)
	}
	ms.Start()
	defer ms.Stop()
	m := ms.Get("events").(*Module)
	m.ev.Begin("E_TEST").Raise()
	rcv.next(t) // delivered; the connection stays open for the next one

	h.Core().SetAllowOutbound([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	if errs := ms.OutboundChanged(); len(errs) != 0 {
		t.Fatal(errs)
	}
	m.ev.Begin("E_TEST").Raise()
	failed := set.GetOrCreateCounter(`switchboard_events_webhook_failed_total{webhook="w"}`)
	for deadline := time.Now().Add(3 * time.Second); failed.Get() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	info := m.list()["subscribers"].([]subscriberInfo)
	if failed.Get() != 1 || len(rcv.got) != 0 || !strings.Contains(info[0].LastError, "outside outbound.allow") {
		t.Fatalf("after outbound.allow left the receiver out: failed %d, delivered %d more, %+v", failed.Get(), len(rcv.got), info)
	}
}
