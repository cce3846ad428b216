package dialog

import (
	"strings"
	"testing"
	"time"

	"switchboard/routing"
)

// recorded is what a subscriber copied of an event.
type recorded struct {
	kind         EventKind
	callID       string
	toTag        string
	code         int
	phrase       string
	reason       Reason
	by           Side
	start, answr int64
	end          int64
	flags        uint32
	values       string
}

// subscribe records every event of e's dialogs.
func subscribe(e *env) *[]recorded {
	var got []recorded
	e.d.Subscribe(func(ev *Event) {
		var vals []string
		ev.Values.Each(func(n, v []byte) { vals = append(vals, string(n)+"="+string(v)) })
		got = append(got, recorded{ev.Kind, string(ev.CallID), string(ev.ToTag), ev.Code, string(ev.Phrase),
			ev.Reason, ev.By, ev.Start, ev.Answer, ev.End, ev.Flags, strings.Join(vals, ",")})
	})
	return &got
}

// ended returns the EventEnded of callID.
func endedEvent(t *testing.T, got []recorded, callID string) recorded {
	t.Helper()
	var out []recorded
	for _, r := range got {
		if r.kind == EventEnded && r.callID == callID {
			out = append(out, r)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s: %d ended events, want 1: %+v", callID, len(out), got)
	}
	return out[0]
}

// TestEvents: what a subscriber (an accounting module) is told of each
// way a call ends: the INVITE's final status and phrase, who ended it,
// the times on the clock, and the flags and values the route set.
func TestEvents(t *testing.T) {
	e := newEnv(t, nil)
	got := subscribe(e)
	t0 := e.clock.Now()

	// Answered, ended by the callee's BYE.
	c := e.invite("ev-bye")
	e.clock.Advance(300 * time.Millisecond)
	c.respond(0, 180, "b")
	e.clock.Advance(200 * time.Millisecond)
	c.respond(0, 200, "b")
	e.clock.Advance(1500 * time.Millisecond)
	c.inDialog("BYE", false, "b", 3)
	if len(*got) != 3 || (*got)[0].kind != EventCreated || (*got)[1].kind != EventAnswered || (*got)[2].kind != EventEnded {
		t.Fatalf("events %+v", *got)
	}
	if r := (*got)[0]; r.code != 0 || r.phrase != "" || r.start != t0 {
		t.Fatalf("created: %+v", r)
	}
	if r := (*got)[1]; r.code != 200 || r.phrase != "OK" || r.answr != t0+500 || r.toTag != "b" {
		t.Fatalf("answered: %+v", r)
	}
	if r := endedEvent(t, *got, "ev-bye"); r.code != 200 || r.phrase != "OK" || r.reason != ReasonBye || r.by != Callee ||
		r.start != t0 || r.answr != t0+500 || r.end != t0+2000 {
		t.Fatalf("ended: %+v", r)
	}

	// Busy: the callee's 486 with its own phrase is relayed: ended by
	// the callee, failed.
	c = e.invite("ev-busy")
	c.respondReason(0, 486, "Busy Here Now", "b")
	if r := endedEvent(t, *got, "ev-busy"); r.code != 486 || r.phrase != "Busy Here Now" || r.reason != ReasonFailed || r.by != Callee || r.answr != 0 {
		t.Fatalf("busy: %+v", r)
	}

	// Canceled by the caller: the callee's 487, ended by the caller.
	c = e.invite("ev-cancel")
	c.respond(0, 180, "b")
	c.send(callerAddr, strings.Replace(strings.Replace(c.invite, "INVITE sip", "CANCEL sip", 1), "10 INVITE", "10 CANCEL", 1))
	c.respond(0, 487, "b")
	if r := endedEvent(t, *got, "ev-cancel"); r.code != 487 || r.phrase != "Request Terminated" || r.reason != ReasonCanceled || r.by != Caller {
		t.Fatalf("canceled: %+v", r)
	}

	// The route's own refusal after CreateDialog: ended by the proxy,
	// with the standard phrase of the code.
	e.beforeRelay = func(c *routing.Ctx) bool {
		c.Reply(403, "")
		return false
	}
	e.invite("ev-refused")
	if r := endedEvent(t, *got, "ev-refused"); r.code != 403 || r.phrase != "Forbidden" || r.reason != ReasonFailed || r.by != Proxy {
		t.Fatalf("refused: %+v", r)
	}

	// No answer: timer C gives the ringing branch up and the proxy
	// answers 408 itself.
	e.beforeRelay = nil
	c = e.invite("ev-noanswer")
	c.respond(0, 180, "b")
	e.clock.Advance(3*time.Minute + time.Second)
	if r := endedEvent(t, *got, "ev-noanswer"); r.code != 408 || r.reason != ReasonFailed || r.by != Proxy {
		t.Fatalf("no answer: %+v", r)
	}

	// Flags and values set by the route travel with every event from
	// then on; a replaced value keeps its place, whether it has the
	// old one's length (written over) or not (the pairs written again).
	e.beforeRelay = func(c *routing.Ctx) bool {
		ok := e.d.SetFlag(c, 1<<3) && e.d.SetFlag(c, 1<<31) &&
			e.d.SetValue(c, "account", []byte("1001")) && e.d.SetValue(c, "plan", []byte("gold")) &&
			e.d.SetValue(c, "account", []byte("1002")) && e.d.SetValue(c, "plan", []byte("platinum")) &&
			e.d.SetValue(c, "tariff", []byte("t1"))
		if !ok {
			t.Error("SetFlag or SetValue refused")
		}
		return true
	}
	c = e.invite("ev-values")
	c.respond(0, 200, "b")
	c.inDialog("BYE", true, "b", 11)
	if r := endedEvent(t, *got, "ev-values"); r.flags != 1<<3|1<<31 || r.values != "account=1002,plan=platinum,tariff=t1" || r.by != Caller {
		t.Fatalf("flags and values: %+v", r)
	}
}

// TestValueLimits: SetValue refuses what passes its bounds, and without
// a dialog.
func TestValueLimits(t *testing.T) {
	e := newEnv(t, nil)
	var results []bool
	e.beforeRelay = func(c *routing.Ctx) bool {
		results = append(results,
			e.d.SetValue(c, "", []byte("x")),                      // no name
			e.d.SetValue(c, "a b", []byte("x")),                   // not a name
			e.d.SetValue(c, strings.Repeat("n", 33), []byte("x")), // name too long
			e.d.SetValue(c, "big", make([]byte, 257)),             // value too long
			e.d.SetValue(c, "v256", make([]byte, 256)),            // fits
		)
		for i := 0; i < 7; i++ {
			results = append(results, e.d.SetValue(c, "k"+itoa(i+1), make([]byte, 80)))
		}
		// 8 pairs now: a ninth is refused, replacing one is not.
		results = append(results, e.d.SetValue(c, "ninth", nil), e.d.SetValue(c, "k1", []byte("y")))
		return true
	}
	e.invite("lim-1")
	want := "false,false,false,false,true,true,true,true,true,true,true,true,false,true"
	if s := strings.Join(boolStrings(results), ","); s != want {
		t.Fatalf("SetValue said %s, want %s", s, want)
	}
	// Without a dialog (the route did not create one): refused.
	e.Route = func(c *routing.Ctx) {
		results = append(results[:0], e.d.SetValue(c, "a", nil), e.d.SetFlag(c, 1))
		c.ReplyStateless(404, "", nil)
	}
	e.invite("lim-2")
	if results[0] || results[1] {
		t.Fatalf("without a dialog: %v", results)
	}
}
