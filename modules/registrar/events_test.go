package registrar

import (
	"encoding/json"
	"testing"
	"time"

	"switchboard/modules"
)

// takeEvent reads the next event of s as its name and params.
func takeEvent(t *testing.T, s *modules.Subscription) (string, map[string]any) {
	t.Helper()
	select {
	case ev := <-s.C():
		var v struct {
			Event  string         `json:"event"`
			Params map[string]any `json:"params"`
		}
		if err := json.Unmarshal(ev.JSON, &v); err != nil {
			t.Fatalf("event not JSON: %v: %s", err, ev.JSON)
		}
		return v.Event, v.Params
	default:
		t.Fatal("no event raised")
	}
	return "", nil
}

func TestContactEvents(t *testing.T) {
	ev := modules.NewEvents(nil, nil)
	sub := ev.Subscribe([]string{modules.EventContactInsert, modules.EventContactUpdate, modules.EventContactDelete}, 16)
	h := newHarness(t, Config{Events: ev})

	h.request("127.0.0.1:5062", register("alice", "c1", 1, "Contact: <sip:alice@127.0.0.1:5062>\r\nExpires: 600\r\n"))
	name, p := takeEvent(t, sub)
	if name != modules.EventContactInsert || p["aor"] != "alice@example.com" || p["uri"] != "sip:alice@127.0.0.1:5062" ||
		p["received"] != "127.0.0.1:5062" || p["expires"] != float64(600) || p["callid"] != "c1" || p["cseq"] != float64(1) || p["transport"] != "UDP" {
		t.Fatalf("insert: %s %v", name, p)
	}
	h.request("127.0.0.1:5062", register("alice", "c1", 2, "Contact: <sip:alice@127.0.0.1:5062>\r\nExpires: 300\r\n"))
	if name, p = takeEvent(t, sub); name != modules.EventContactUpdate || p["expires"] != float64(300) || p["cseq"] != float64(2) {
		t.Fatalf("update: %s %v", name, p)
	}
	h.request("127.0.0.1:5062", register("alice", "c1", 3, "Contact: <sip:alice@127.0.0.1:5062>\r\nExpires: 0\r\n"))
	if name, p = takeEvent(t, sub); name != modules.EventContactDelete || p["reason"] != "unregistered" {
		t.Fatalf("delete: %s %v", name, p)
	}
	// Expiry.
	h.request("127.0.0.1:5064", register("bob", "c2", 1, "Contact: <sip:bob@127.0.0.1:5064>\r\nExpires: 60\r\n"))
	takeEvent(t, sub)
	h.clock.Advance(61 * time.Second)
	if name, p = takeEvent(t, sub); name != modules.EventContactDelete || p["reason"] != "expired" || p["aor"] != "bob@example.com" {
		t.Fatalf("expiry: %s %v", name, p)
	}
	// A refresh with a new Call-ID is one update, and nothing more.
	h.request("127.0.0.1:5064", register("bob", "c3", 1, "Contact: <sip:bob@127.0.0.1:5064>\r\nExpires: 60\r\n"))
	takeEvent(t, sub)
	if len(sub.C()) != 0 {
		t.Fatalf("%d events more than expected", len(sub.C()))
	}
}

// TestSaveRefreshWithEventsAllocatesNothing: a server's registrar has
// the event interface; with nobody subscribed to its events (a
// subscriber of another event), a refresh still allocates nothing.
func TestSaveRefreshWithEventsAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ev := modules.NewEvents(nil, nil)
	ev.Subscribe([]string{modules.EventPikeBlocked}, 1)
	h := newHarness(t, Config{Events: ev})
	h.keep = false
	r := newRefresher(500)
	for i := 0; i < 5000; i++ {
		r.next(h)
	}
	if n := testing.AllocsPerRun(2000, func() { r.next(h) }); n != 0 {
		t.Fatalf("a REGISTER refresh allocated %.2f times", n)
	}
}
