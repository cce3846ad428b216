package main

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gatewayInvite is an INVITE to bob as a PSTN gateway sends it: the
// caller's number "at" our domain in From. via is the host the Via
// claims to come from.
func gatewayInvite(via, from string) string {
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	return "INVITE sip:bob@localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + via + ":LOCALPORT;branch=z9hG4bK-" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <" + from + ">;tag=gw" + id + "\r\n" +
		"To: <sip:bob@localhost>\r\n" +
		"Call-ID: " + id + "@gw\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:gw@" + via + ":LOCALPORT>\r\n" +
		"Content-Length: 0\r\n\r\n"
}

func permissionsCLI(t *testing.T, srv *testServer, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"permissions"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard permissions %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestE2ETrustedGateway: the provider route set with a trusted gateway.
// The gateway (127.0.0.2) is added with `switchboard permissions add`
// while the server runs: its calls to a registered subscriber with a From
// of our domain, challenged before, are relayed without a 407 within the
// poll interval. The same INVITE from 127.0.0.3, with the gateway's From
// and a Via naming the gateway, is still challenged; so are the
// gateway's calls once its entry is deleted.
func TestE2ETrustedGateway(t *testing.T) {
	t.Parallel()
	const poll = 200 * time.Millisecond
	srv := startServer(t, "auth:\n  register: false\npermissions:\n  poll_interval: 200ms\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bob := startRawUAS(t, "127.0.0.1:0")
	bob.register(t, srv, "bob")
	const gwFrom = "sip:+4930123456@localhost"

	if r := sendUDPFrom(t, "127.0.0.2", srv.Port, gatewayInvite("127.0.0.2", gwFrom), 3*time.Second); statusLine(r) != "SIP/2.0 407 Proxy Authentication Required" {
		t.Fatalf("before the gateway is added: %q, want 407", statusLine(r))
	}

	out := permissionsCLI(t, srv, "add", "127.0.0.2", "--group", "1", "--proto", "udp", "--info", "gateway A")
	if !strings.HasPrefix(out, "added id 1: group 1 127.0.0.2/32 proto udp") {
		t.Fatalf("add: %q", out)
	}
	added := time.Now()
	var took time.Duration
	for {
		r := sendUDPFrom(t, "127.0.0.2", srv.Port, gatewayInvite("127.0.0.2", gwFrom), 3*time.Second)
		if statusLine(r) == "SIP/2.0 200 OK" {
			took = time.Since(added)
			break
		}
		if statusLine(r) != "SIP/2.0 407 Proxy Authentication Required" || time.Since(added) > 5*poll {
			t.Fatalf("gateway %s after the add: %q, want bob's 200", time.Since(added), statusLine(r))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("trusted %s after the CLI added it (poll interval %s)", took, poll)
	if took > poll+500*time.Millisecond {
		t.Errorf("trusted only %s after the add; poll interval %s", took, poll)
	}
	if got := bob.next(t, 3*time.Second); !strings.HasPrefix(got, "INVITE sip:bob@127.0.0.1:") || strings.Contains(got, "Proxy-Authorization") {
		t.Fatalf("bob received:\n%s", got)
	}

	// Another source: the gateway's From and a Via naming the gateway do
	// not make it trusted.
	for _, via := range []string{"127.0.0.3", "127.0.0.2"} {
		if r := sendUDPFrom(t, "127.0.0.3", srv.Port, gatewayInvite(via, gwFrom), 3*time.Second); statusLine(r) != "SIP/2.0 407 Proxy Authentication Required" {
			t.Errorf("from 127.0.0.3, Via %s: %q, want 407", via, statusLine(r))
		}
	}

	m := srv.metrics()
	if m[`switchboard_permissions_entries{group="1"}`] != 1 || m["switchboard_permissions_matches_total"] < 1 || m["switchboard_permissions_checks_total"] < 3 {
		t.Errorf("metrics: entries %v, checks %v, matches %v", m[`switchboard_permissions_entries{group="1"}`],
			m["switchboard_permissions_checks_total"], m["switchboard_permissions_matches_total"])
	}

	// The management API: list, check, add to another group (not trusted
	// by the provider), delete; each in effect when the command returns.
	var list []struct {
		ID    int64
		Group int
		IP    string
		Mask  int
		Proto string
		Info  string
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "permissions.list", `{}`), &list); err != nil || len(list) != 1 ||
		list[0].IP != "127.0.0.2" || list[0].Mask != 32 || list[0].Proto != "udp" || list[0].Info != "gateway A" {
		t.Fatalf("permissions.list: %+v, %v", list, err)
	}
	var check struct {
		Match bool
		ID    int64
		Group int
		Info  string
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "permissions.check", `{"ip":"127.0.0.2","port":5060,"proto":"udp"}`), &check); err != nil ||
		!check.Match || check.ID != 1 || check.Group != 1 || check.Info != "gateway A" {
		t.Errorf("permissions.check: %+v, %v", check, err)
	}
	mgmtCall(t, srv, "permissions.add", `{"ip":"127.0.0.3","group":2}`)
	if r := sendUDPFrom(t, "127.0.0.3", srv.Port, gatewayInvite("127.0.0.3", gwFrom), 3*time.Second); statusLine(r) != "SIP/2.0 407 Proxy Authentication Required" {
		t.Errorf("group 2 source: %q, want 407", statusLine(r))
	}
	if code, body := srv.api("permissions.add", `{"ip":"127.0.0.300"}`); code != 400 || !strings.Contains(string(body), "127.0.0.300") {
		t.Errorf("bad address: %d %s", code, body)
	}
	if code, body := srv.api("permissions.del", `{"id":99}`); code != 404 {
		t.Errorf("unknown id: %d %s", code, body)
	}
	mgmtCall(t, srv, "permissions.del", `{"id":1}`)
	if r := sendUDPFrom(t, "127.0.0.2", srv.Port, gatewayInvite("127.0.0.2", gwFrom), 3*time.Second); statusLine(r) != "SIP/2.0 407 Proxy Authentication Required" {
		t.Errorf("gateway after permissions.del: %q, want 407", statusLine(r))
	}
	var reload struct {
		Entries int
		Groups  map[string]int
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "permissions.reload", `{}`), &reload); err != nil || reload.Entries != 1 || reload.Groups["2"] != 1 {
		t.Errorf("permissions.reload: %+v, %v", reload, err)
	}
}

// TestE2EPermissionsCLIErrors: the offline commands name what is wrong
// and exit 2 for a bad command line, 1 for a bad value.
func TestE2EPermissionsCLIErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "")
	for _, c := range []struct {
		args  []string
		code  int
		words string
	}{
		{[]string{"add", "10.0.0.1/8"}, 1, "the subnet is 10.0.0.0/8"},
		{[]string{"add", "10.0.0.0/8", "--proto", "sctp"}, 1, `proto "sctp"`},
		{[]string{"add"}, 2, "usage: switchboard permissions add <ip[/bits]>"},
		{[]string{"add", "10.0.0.0/8", "--group", "0"}, 2, "groups are 1-65535"},
		{[]string{"del", "5"}, 1, "no address entry with id 5"},
	} {
		cmd := exec.Command(switchboardBinary(t), append(append([]string{"permissions"}, c.args...), "-c", srv.Config)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.words) {
			t.Errorf("permissions %v: exit %d, %q; want exit %d mentioning %q", c.args, code, out, c.code, c.words)
		}
	}
	out := permissionsCLI(t, srv, "add", "2001:db8::/32", "--group", "3", "--pattern", `^sip:\+49`)
	if !strings.Contains(out, "group 3 2001:db8::/32") {
		t.Fatalf("add: %q", out)
	}
	if out := permissionsCLI(t, srv, "list", "--group", "3"); !strings.Contains(out, "2001:db8::/32") || !strings.Contains(out, `^sip:\+49`) {
		t.Fatalf("list: %q", out)
	}
}
