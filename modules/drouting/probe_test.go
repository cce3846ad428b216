package drouting

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/store"
)

// probes sends the probes due and returns the new OPTIONS sent (not the
// core's retransmissions of earlier ones), by destination port.
func (e *env) probes() map[uint16]string {
	e.d.probeDue()
	out := map[uint16]string{}
	for _, s := range e.Take() {
		if !strings.HasPrefix(s.Data, "OPTIONS ") {
			continue
		}
		var m parser.Message
		if err := m.Parse([]byte(s.Data)); err != nil {
			e.t.Fatal(err)
		}
		if id := string(m.CallID()); !e.probeIDs[id] {
			e.probeIDs[id] = true
			out[s.Dst.Port()] = s.Data
		}
	}
	return out
}

// reply answers a probe from the gateway at n with code.
func (e *env) reply(n int, req string, code int) {
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		e.t.Fatal(err)
	}
	e.Receive(gwAddr(n).String(), string(parser.AppendResponse(nil, &m, code, nil, []byte("gw"))))
}

// TestProbing: probe_mode 2 gateways get an OPTIONS every probe_interval;
// one that stops answering is marked down after probe_failures probes and
// skipped by new calls; it comes back after probe_successes answers.
// probe_mode 0 is never probed; probe_mode 1 only while down; a 404 counts
// as answered only when listed in probe_reply_codes.
func TestProbing(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.ProbeInterval, s.ProbeFailures, s.ProbeSuccesses, s.ProbeReplyCodes = "UTC", time.Second, 2, 2, []int{501}
	s.ProbeFrom = "sip:pinger@example.com"
	e := newEnv(t, envOptions{settings: s})
	e.gws(store.DRGateway{GWID: "always", Address: gwAddr(1).String(), ProbeMode: 2},
		store.DRGateway{GWID: "never", Address: gwAddr(2).String()},
		store.DRGateway{GWID: "whiledown", Address: gwAddr(3).String(), ProbeMode: 1},
		store.DRGateway{GWID: "off", Address: gwAddr(4).String(), ProbeMode: 2, State: 1})
	e.rules(store.DRRule{Prefix: "1", GWList: "always,never"})
	always := e.d.reg.gws["always"]

	p := e.probes()
	if len(p) != 1 || p[5101] == "" {
		t.Fatalf("probed %v, want only the probe_mode 2 gateway", p)
	}
	if !strings.HasPrefix(p[5101], "OPTIONS sip:127.0.0.1:5101 SIP/2.0\r\n") || !strings.Contains(p[5101], "From: <sip:pinger@example.com>;tag=") {
		t.Fatalf("probe:\n%s", p[5101])
	}
	e.reply(1, p[5101], 200)
	if len(e.probes()) != 0 {
		t.Fatal("probed again before probe_interval")
	}
	// Probes unanswered: each fails when the next is due; two down it.
	for i := range 3 {
		e.clock.Advance(time.Second)
		if p = e.probes(); p[5101] == "" {
			t.Fatalf("probe %d not sent", i+2)
		}
		if i < 2 && always.state() != "up" {
			t.Fatalf("down after %d failed probes", i)
		}
	}
	if always.state() != "down" || e.metric(`switchboard_drouting_gateway_up{gwid="always"}`) != 0 {
		t.Fatalf("after two failed probes: %s", always.state())
	}
	if !strings.Contains(e.log.String(), "gateway down") {
		t.Error("no log line for the gateway going down")
	}
	if call := e.invite("1555"); call.dst != gwAddr(2) {
		t.Fatalf("call while down went to %v", call.dst)
	}
	// A 404 is no answer (not in probe_reply_codes); 501 is, and two
	// bring it back.
	e.reply(1, p[5101], 404)
	e.clock.Advance(time.Second)
	p = e.probes()
	e.reply(1, p[5101], 501)
	if always.state() != "down" {
		t.Fatal("up after one answer, probe_successes is 2")
	}
	e.clock.Advance(time.Second)
	p = e.probes()
	e.reply(1, p[5101], 200)
	if always.state() != "up" || e.metric(`switchboard_drouting_gateway_up{gwid="always"}`) != 1 {
		t.Fatalf("after two answers: %s", always.state())
	}
	if !strings.Contains(e.log.String(), "gateway up") {
		t.Error("no log line for the gateway coming back")
	}
	if call := e.invite("1555"); call.dst != gwAddr(1) {
		t.Fatalf("call once up went to %v", call.dst)
	}
	if e.metric(`switchboard_drouting_probes_total{result="failed"}`) != 3 || e.metric(`switchboard_drouting_probes_total{result="answered"}`) != 3 {
		t.Errorf("probes: failed %v answered %v", e.metric(`switchboard_drouting_probes_total{result="failed"}`),
			e.metric(`switchboard_drouting_probes_total{result="answered"}`))
	}
}

// TestSilentCallsMarkDown: a probed gateway that sends nothing to calls is
// marked down after probe_failures of them (probe_mode 1: then probed),
// and probing brings it back; an unprobed one is never marked down (it
// could not come back).
func TestSilentCallsMarkDown(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.ProbeInterval, s.ProbeFailures, s.FRTimeout = "UTC", time.Second, 2, time.Second
	e := newEnv(t, envOptions{settings: s})
	e.gws(store.DRGateway{GWID: "gw1", Address: gwAddr(1).String(), ProbeMode: 1}, gwRow("gw2", 2), gwRow("gw3", 3))
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1,gw2,gw3"}, store.DRRule{Prefix: "2", GWList: "gw2,gw3"})
	gw1 := e.d.reg.gws["gw1"]
	for i := range 2 {
		call := e.invite("1555")
		if call.dst != gwAddr(1) {
			t.Fatalf("call %d went to %v", i, call.dst)
		}
		e.clock.Advance(1100 * time.Millisecond)
		call.collect()
		if call.dst != gwAddr(2) {
			t.Fatalf("call %d after gw1's silence went to %v", i, call.dst)
		}
		call.answer(200)
	}
	if gw1.state() != "down" {
		t.Fatalf("gw1 after two silent calls: %s", gw1.state())
	}
	if call := e.invite("1555"); call.dst != gwAddr(2) {
		t.Fatalf("with gw1 down: to %v", call.dst)
	} else {
		call.answer(200)
	}
	p := e.probes()
	if p[5101] == "" {
		t.Fatalf("gw1 (probe_mode 1) not probed while down: %v", p)
	}
	e.reply(1, p[5101], 200)
	if gw1.state() != "up" {
		t.Fatalf("after an answer: %s", gw1.state())
	}
	if len(e.probes()) != 0 {
		t.Fatal("probe_mode 1 probed while up")
	}
	// gw2 is not probed: its silence is counted as failures only.
	for range 3 {
		call := e.invite("2555")
		e.clock.Advance(1100 * time.Millisecond)
		call.collect()
	}
	if st := e.d.reg.gws["gw2"].state(); st != "up" {
		t.Fatalf("unprobed gw2 is %s", st)
	}
	if e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw2"}`) != 3 {
		t.Errorf("gw2 failures: %v", e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw2"}`))
	}
}

// TestProbeStateResetByNewAddress: a gateway moved to another address
// starts up again; a deleted one is not probed.
func TestProbeStateResetByNewAddress(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(store.DRGateway{GWID: "gw1", Address: gwAddr(1).String(), ProbeMode: 2})
	gw1 := e.d.reg.gws["gw1"]
	gw1.down.Store(true)
	if err := e.st.UpdateDRGateway(ctx, store.DRGateway{GWID: "gw1", Address: gwAddr(5).String(), ProbeMode: 2}); err != nil {
		t.Fatal(err)
	}
	e.load(store.DRGatewaysTable)
	if gw1.state() != "up" {
		t.Fatalf("after a new address: %s", gw1.state())
	}
	if p := e.probes(); p[5105] == "" {
		t.Fatalf("not probed at its new address: %v", p)
	}
	if err := e.st.DeleteDRGateway(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	e.load(store.DRGatewaysTable)
	e.clock.Advance(time.Minute)
	if p := e.probes(); len(p) != 0 {
		t.Fatalf("a deleted gateway probed: %v", p)
	}
}

// TestGatewayStateEvents: a gateway going down (silent calls) and up
// again (a probe answered) raises E_DROUTING_STATUS each time.
func TestGatewayStateEvents(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.ProbeInterval, s.ProbeFailures, s.FRTimeout = "UTC", time.Second, 2, time.Second
	ev := modules.NewEvents(nil, nil)
	sub := ev.Subscribe([]string{modules.EventGatewayStatus}, 8)
	e := newEnv(t, envOptions{settings: s, events: ev})
	e.gws(store.DRGateway{GWID: "gw1", Address: gwAddr(1).String(), ProbeMode: 1}, gwRow("gw2", 2))
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1,gw2"})
	for range 2 {
		call := e.invite("1555")
		e.clock.Advance(1100 * time.Millisecond)
		call.collect()
		call.answer(200)
	}
	next := func() map[string]any {
		t.Helper()
		select {
		case m := <-sub.C():
			var v struct {
				Params map[string]any `json:"params"`
			}
			json.Unmarshal(m.JSON, &v)
			return v.Params
		default:
			t.Fatal("no E_DROUTING_STATUS")
		}
		return nil
	}
	if p := next(); p["gwid"] != "gw1" || p["status"] != "down" || p["by"] != "call" || p["address"] != gwAddr(1).String() || p["failures"] != float64(2) {
		t.Fatalf("down: %v", p)
	}
	e.reply(1, e.probes()[5101], 200)
	if p := next(); p["gwid"] != "gw1" || p["status"] != "up" || p["by"] != "probe" || p["code"] != float64(200) {
		t.Fatalf("up: %v", p)
	}
}

// TestProbeLoopIdles: without a gateway to probe, probeDue says so and
// the probe goroutine looks once a second instead of ten times; a
// probe_mode 1 gateway (probed only when down) counts as probing.
func TestProbeLoopIdles(t *testing.T) {
	e := newEnv(t, envOptions{settings: DefaultSettings()})
	e.gws(store.DRGateway{GWID: "plain", Address: gwAddr(1).String()},
		store.DRGateway{GWID: "disabled", Address: gwAddr(2).String(), ProbeMode: 2, State: 1})
	if e.d.probeDue() {
		t.Fatal("probeDue reports probing with no gateway to probe")
	}
	e.gws(store.DRGateway{GWID: "whiledown", Address: gwAddr(3).String(), ProbeMode: 1})
	if !e.d.probeDue() {
		t.Fatal("probeDue does not report a probe_mode 1 gateway")
	}
}
