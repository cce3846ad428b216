package modules

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/shards"
)

func TestEventsNoSubscriberAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := NewEvents(shards.NewManualClock(1000), metrics.NewSet())
	other := e.Subscribe([]string{EventPikeBlocked}, 4) // subscribed to another event
	_ = other
	key := []byte("alice@example.com")
	src := netip.MustParseAddrPort("192.0.2.1:5060")
	allocs := testing.AllocsPerRun(1000, func() {
		e.Begin(EventContactInsert).Bytes("aor", key).AddrPort("received", src).Int("expires", 3600).Raise()
	})
	if allocs != 0 {
		t.Fatalf("raising an event nobody subscribed to allocates %v times", allocs)
	}
}

func TestEventsRaisedAllocatesOnlyTheEvent(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := NewEvents(shards.NewManualClock(1000), metrics.NewSet())
	s := e.Subscribe([]string{EventContactInsert}, 4)
	key := []byte("alice@example.com")
	allocs := testing.AllocsPerRun(1000, func() {
		e.Begin(EventContactInsert).Bytes("aor", key).Int("expires", 3600).Raise()
		<-s.C()
	})
	if allocs > 2 { // the Event and its bytes
		t.Fatalf("raising an event allocates %v times, want at most 2", allocs)
	}
}

func TestEventsPayloadIsJSONWhateverTheInput(t *testing.T) {
	e := NewEvents(shards.NewManualClock(1234), metrics.NewSet())
	s := e.Subscribe(nil, 4)
	nasty := []byte("a\"b\\c\r\nd\x00e\xff\xfe<tag>é")
	e.Begin("E_TEST").Bytes("v", nasty).Str("s", "x\x01").Int("n", -5).Bool("b", true).
		Addr("ip", netip.MustParseAddr("::1")).AddrPort("none", netip.AddrPort{}).Raise()
	ev := <-s.C()
	var got struct {
		Event  string         `json:"event"`
		Seq    uint64         `json:"seq"`
		Time   int64          `json:"time_ms"`
		Params map[string]any `json:"params"`
	}
	if err := json.Unmarshal(ev.JSON, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, ev.JSON)
	}
	if got.Event != "E_TEST" || got.Seq != 1 || got.Time != 1234 {
		t.Errorf("header = %+v", got)
	}
	if v := got.Params["v"]; v != "a\"b\\c\r\nd\x00e\ufffd\ufffd<tag>é" {
		t.Errorf("v = %q", v)
	}
	if got.Params["n"] != float64(-5) || got.Params["b"] != true || got.Params["ip"] != "::1" || got.Params["none"] != "" {
		t.Errorf("params = %v", got.Params)
	}
}

func TestEventsFullQueueDropsAndCounts(t *testing.T) {
	set := metrics.NewSet()
	e := NewEvents(shards.NewManualClock(1), set)
	slow := e.Subscribe([]string{EventPikeBlocked}, 2)
	fast := e.Subscribe([]string{AllEvents}, 10)
	for range 5 {
		e.Begin(EventPikeBlocked).Str("ip", "192.0.2.1").Raise() // never blocks
	}
	if slow.Dropped() != 3 || len(slow.C()) != 2 {
		t.Errorf("slow: dropped %d, queued %d; want 3 and 2", slow.Dropped(), len(slow.C()))
	}
	if fast.Dropped() != 0 || len(fast.C()) != 5 {
		t.Errorf("fast: dropped %d, queued %d; want 0 and 5", fast.Dropped(), len(fast.C()))
	}
	if got := set.GetOrCreateCounter("switchboard_events_dropped_total").Get(); got != 3 {
		t.Errorf("switchboard_events_dropped_total = %d", got)
	}
	e.Unsubscribe(fast)
	e.Begin(EventContactInsert).Raise()
	if e.Subscribed(EventContactInsert) || len(fast.C()) != 5 {
		t.Errorf("unsubscribed queue still offered events")
	}
}

func TestEventsNilIsSilent(t *testing.T) {
	var e *Events
	e.Begin("E_X").Str("a", "b").Raise()
}

func BenchmarkRaise(b *testing.B) {
	key := []byte("alice@example.com")
	src := netip.MustParseAddrPort("192.0.2.1:5060")
	raise := func(e *Events) {
		e.Begin(EventContactInsert).Bytes("aor", key).AddrPort("received", src).Int("expires", 3600).Raise()
	}
	b.Run("no_subscriber", func(b *testing.B) {
		e := NewEvents(shards.NewManualClock(1), metrics.NewSet())
		b.ReportAllocs()
		for b.Loop() {
			raise(e)
		}
	})
	b.Run("other_event_subscribed", func(b *testing.B) {
		e := NewEvents(shards.NewManualClock(1), metrics.NewSet())
		e.Subscribe([]string{EventPikeBlocked}, 1)
		b.ReportAllocs()
		for b.Loop() {
			raise(e)
		}
	})
	b.Run("one_subscriber", func(b *testing.B) {
		e := NewEvents(shards.NewManualClock(1), metrics.NewSet())
		s := e.Subscribe([]string{EventContactInsert}, 1024)
		b.ReportAllocs()
		for b.Loop() {
			raise(e)
			<-s.C()
		}
	})
}
