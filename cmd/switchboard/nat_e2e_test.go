package main

import (
	"encoding/json"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// keptBinding is what registrations.list says of a pinged binding.
type keptBinding struct {
	Contact      string `json:"contact"`
	Received     string `json:"received"`
	NAT          bool   `json:"nat"`
	PingFailures int    `json:"ping_failures"`
}

func keptBindings(t *testing.T, srv *testServer, aor string) []keptBinding {
	t.Helper()
	var l []keptBinding
	if err := json.Unmarshal(mgmtCall(t, srv, "registrations.list", `{"aor":"`+aor+`"}`), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitAtLeast waits up to d for a counter to reach want.
func waitAtLeast(t *testing.T, srv *testServer, name string, want float64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for srv.metrics()[name] < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want at least %v", name, srv.metrics()[name], d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2ENATPhone: a phone behind NAT, played by sipp on 127.0.0.2, whose
// Via, Contact and SDP say 192.168.1.10:5062 (an address outbound.allow
// keeps the server from ever sending to). It registers: the answers reach
// it at its source port although its Via has no rport, and the binding
// keeps its real source. The keepalive's OPTIONS reach it there and keep
// it; a call from a subscriber (sipp) reaches it at its source, and the
// caller gets its 200 with the Contact, the SDP's origin and connection
// addresses rewritten to that source (nathelper.fix_sdp), then sends ACK
// and BYE to that Contact through the proxy, which reach the phone. When
// the phone's sipp stops, the binding is removed after ping_failures
// unanswered pings.
func TestE2ENATPhone(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n"+
		"nathelper:\n  ping_interval: 1s\n  ping_timeout: 400ms\n  ping_failures: 2\n  fix_sdp: [rewrite-media-ip, rewrite-origin-ip]\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	addUser(t, srv, "alice@localhost", "alice-pw")
	phonePort := freeSIPPort(t)
	phone := startSipp(t, "-sf", "nat_phone.xml", "-oocsf", "nat_phone_ooc.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(phonePort),
		"-m", "1", "-key", "domain", "localhost", "-key", "user", "bob", "-au", "bob", "-ap", "bob-pw",
		"127.0.0.1:"+strconv.Itoa(srv.Port))

	// Registered: the binding is the private contact, reached at the
	// packet's source.
	source := "udp:127.0.0.2:" + strconv.Itoa(phonePort)
	deadline := time.Now().Add(10 * time.Second)
	var l []keptBinding
	for {
		if l = keptBindings(t, srv, "bob@localhost"); len(l) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob never registered: %+v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l[0].Contact != "sip:bob@192.168.1.10:5062" || l[0].Received != source || !l[0].NAT {
		t.Fatalf("binding %+v, want the private contact reached at %s", l[0], source)
	}
	if n := srv.metrics()["switchboard_nathelper_registers_fixed_total"]; n < 1 {
		t.Fatalf("registers_fixed_total %v", n)
	}

	// Pings reach it and keep it: three intervals answered.
	waitAtLeast(t, srv, "switchboard_nathelper_pings_answered_total", 3, 10*time.Second)
	if l = keptBindings(t, srv, "bob@localhost"); len(l) != 1 || l[0].PingFailures != 0 {
		t.Fatalf("after pings: %+v", l)
	}

	// A call from alice reaches bob at his source; the scenario checks the
	// 200's Contact, SDP and Record-Route.
	r := runSipp(t, 20*time.Second, "-sf", "nat_caller.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1",
		"-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob", "-au", "alice", "-ap", "alice-pw",
		"127.0.0.1:"+strconv.Itoa(srv.Port))
	if r.Code != 0 {
		t.Fatalf("call to the phone behind NAT: exit %d\n%s", r.Code, r.Output)
	}
	m := srv.metrics()
	if m["switchboard_nathelper_contacts_fixed_total"] < 2 || m["switchboard_nathelper_sdp_fixed_total"] < 1 {
		t.Fatalf("contacts_fixed %v, sdp_fixed %v", m["switchboard_nathelper_contacts_fixed_total"], m["switchboard_nathelper_sdp_fixed_total"])
	}
	if m["switchboard_send_errors_total"] != 0 {
		t.Fatalf("%v sends refused or failed: something went to the private address", m["switchboard_send_errors_total"])
	}

	// The phone goes away: after two unanswered pings the binding goes.
	phone.Process.Signal(syscall.SIGKILL)
	phone.Wait()
	start := time.Now()
	deadline = start.Add(10 * time.Second)
	for len(keptBindings(t, srv, "bob@localhost")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the binding of a phone gone for 10 s is still there: %+v\n%v", keptBindings(t, srv, "bob@localhost"), srv.metrics())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("removed %v after the phone stopped", time.Since(start).Round(100*time.Millisecond))
	m = srv.metrics()
	if m["switchboard_nathelper_contacts_removed_total"] != 1 || m["switchboard_nathelper_pings_failed_total"] < 2 {
		t.Fatalf("removed %v, failed %v", m["switchboard_nathelper_contacts_removed_total"], m["switchboard_nathelper_pings_failed_total"])
	}
	if !srv.logged("keepalives unanswered") {
		t.Fatalf("no log line for the removal:\n%s", srv.Log)
	}
	// Now a call gets 480.
	r = runSipp(t, 20*time.Second, "-sf", "uac_auth_call_480.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1",
		"-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob", "-au", "alice", "-ap", "alice-pw",
		"127.0.0.1:"+strconv.Itoa(srv.Port))
	if r.Code != 0 {
		t.Fatalf("call after the removal: exit %d\n%s", r.Code, r.Output)
	}
}
