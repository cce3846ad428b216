package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hiddenTrunksConfig: the provider route set (the default) with
// topohiding.trunks; alice authenticates with MD5 (sipp's only
// algorithm), the PSTN gateway is a sipp UAS on 127.0.0.2.
const hiddenTrunksConfig = "auth:\n  algorithms: [MD5]\n  check_uri: false\n" +
	"drouting:\n  timezone: UTC\n  poll_interval: 50ms\n" +
	"topohiding:\n  trunks: true\n"

// TestE2ETopologyHidingTrunks: a subscriber's call to a PSTN number
// through a drouting gateway, in the provider route set with
// topohiding.trunks. The caller, sipp on 127.0.0.5, authenticates, sends
// a re-INVITE; the gateway, sipp on 127.0.0.2, sends a re-INVITE and hangs
// up. In sipp's traces nothing the gateway received has a Via,
// Record-Route, Route or Contact naming 127.0.0.5, nor what the caller
// received 127.0.0.2; each side's requests came with the proxy's Via alone
// and every Contact it got is the proxy's. Then requests made up with the
// gateway's token: the token of the call that ended gets 481, the token
// with its MAC edited 403, the token on another Call-ID 403. A second
// call is hung up by the caller.
func TestE2ETopologyHidingTrunks(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, hiddenTrunksConfig)
	addUser(t, srv, "alice@localhost", "alice-pw")
	dir := t.TempDir()
	gwPort := freeSIPPort(t)
	drCLI(t, srv, "gw-add", "carrier", "--address", "127.0.0.2:"+strconv.Itoa(gwPort))
	drCLI(t, srv, "rule-add", "--prefix", "+49", "--gwlist", "carrier")
	waitMetric(t, srv, "switchboard_drouting_rules", 1)
	proxy := "127.0.0.1:" + strconv.Itoa(srv.Port)

	call := func(name, uasScenario, uacScenario string) (gwLog, callerLog string) {
		t.Helper()
		gwLog, callerLog = filepath.Join(dir, name+"-gw.log"), filepath.Join(dir, name+"-caller.log")
		gw := startSippPeer(t, "-sf", uasScenario, "-i", "127.0.0.2", "-p", strconv.Itoa(gwPort), "-m", "1", "-d", "1000",
			"-trace_msg", "-message_file", gwLog)
		time.Sleep(200 * time.Millisecond)
		res := runSipp(t, 30*time.Second, "-sf", uacScenario, "-i", "127.0.0.5", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1",
			"-d", "1000", "-key", "domain", "localhost", "-key", "user", "alice", "-au", "alice", "-ap", "alice-pw",
			"-key", "callee", "+4930123", "-trace_msg", "-message_file", callerLog, proxy)
		if res.Code != 0 {
			t.Fatalf("%s: sipp caller exit %d:\n%s\n%s\ngateway:\n%s\n%s", name, res.Code, res.Output, readFile(t, callerLog), gw.out.String(), readFile(t, gwLog))
		}
		if code := gw.wait(10 * time.Second); code != 0 {
			t.Fatalf("%s: sipp gateway exit %d:\n%s\n%s", name, code, gw.out.String(), readFile(t, gwLog))
		}
		checkHidden(t, name+": the gateway", gwLog, "127.0.0.5", proxy)
		checkHidden(t, name+": the caller", callerLog, "127.0.0.2", proxy)
		return gwLog, callerLog
	}

	gwLog, callerLog := call("re-INVITEs, the gateway hangs up", "uas_hidden_gateway.xml", "uac_hidden_trunk_call.xml")
	// What each side received, retransmissions aside: the gateway the
	// INVITE, its ACK, the caller's re-INVITE and ACK, the answers to its
	// own re-INVITE and BYE; the caller the challenge, the answers, the
	// gateway's re-INVITE, its ACK and BYE, at its own Contact.
	got := map[string][]string{}
	for side, log := range map[string]string{"gateway": gwLog, "caller": callerLog} {
		for _, msg := range receivedMessages(t, log) {
			f := strings.Fields(msg)
			switch {
			case f[1] == "100":
			case f[0] == "SIP/2.0": // a response: its code and the method it answers
				cseq := strings.Fields(strings.Join(headerLines(msg, "cseq"), " "))
				got[side] = append(got[side], f[0]+" "+f[1]+" "+cseq[len(cseq)-1])
			default:
				got[side] = append(got[side], f[0]+" "+f[1])
			}
		}
	}
	gw := "sip:+4930123@127.0.0.2:" + strconv.Itoa(gwPort)
	want := map[string][]string{
		"gateway": {"INVITE " + gw, "ACK sip:gw@127.0.0.2:" + strconv.Itoa(gwPort) + ";transport=UDP",
			"INVITE sip:gw@127.0.0.2:" + strconv.Itoa(gwPort) + ";transport=UDP", "ACK sip:gw@127.0.0.2:" + strconv.Itoa(gwPort) + ";transport=UDP",
			"SIP/2.0 200 INVITE", "SIP/2.0 200 BYE"},
	}
	if g := dedup(got["gateway"]); strings.Join(g, "|") != strings.Join(want["gateway"], "|") {
		t.Errorf("the gateway received\n%q, want\n%q", g, want["gateway"])
	}
	callerReqs := 0
	for _, g := range dedup(got["caller"]) {
		if !strings.HasPrefix(g, "SIP/2.0") {
			callerReqs++
			if !strings.HasPrefix(g, "INVITE sip:alice@127.0.0.5:") && !strings.HasPrefix(g, "ACK sip:alice@127.0.0.5:") &&
				!strings.HasPrefix(g, "BYE sip:alice@127.0.0.5:") {
				t.Errorf("the caller received %q, not at its Contact", g)
			}
		}
	}
	if callerReqs != 3 {
		t.Errorf("the caller received %d requests (want the re-INVITE, its ACK, the BYE): %q", callerReqs, got["caller"])
	}
	waitMetric(t, srv, "switchboard_topohiding_calls_total", 1)
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="bye"}`, 1)
	if m := srv.metrics(); m["switchboard_topohiding_requests_total"] < 6 || m["switchboard_dialog_active"] != 0 {
		t.Fatalf("requests %v active %v", m["switchboard_topohiding_requests_total"], m["switchboard_dialog_active"])
	}

	// The gateway's token (in the Contact it got with the INVITE) and the
	// call's Call-ID and tags, from the BYE the caller received.
	var token, callID, gwTag, callerTag string
	for _, msg := range receivedMessages(t, gwLog) {
		if strings.HasPrefix(msg, "INVITE ") {
			if m := regexp.MustCompile(`thinfo=([0-9a-f]+)`).FindStringSubmatch(strings.Join(headerLines(msg, "contact"), " ")); m != nil {
				token = m[1]
			}
			break
		}
	}
	for _, msg := range receivedMessages(t, callerLog) {
		if strings.HasPrefix(msg, "BYE ") {
			callID = strings.Join(headerLines(msg, "call-id"), "")
			gwTag, callerTag = tagOf(strings.Join(headerLines(msg, "from"), "")), tagOf(strings.Join(headerLines(msg, "to"), ""))
		}
	}
	if len(token) != 33 || token[0] != 'e' || callID == "" || gwTag == "" || callerTag == "" {
		t.Fatalf("token %q call-id %q tags %q %q", token, callID, gwTag, callerTag)
	}
	bye := func(tok, cid string) string {
		return fmt.Sprintf("BYE sip:%s;thinfo=%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:LOCALPORT;branch=z9hG4bK-forged-%d\r\n"+
			"From: <sip:+4930123@127.0.0.2>;tag=%s\r\nTo: <sip:alice@localhost>;tag=%s\r\nCall-ID: %s\r\nCSeq: 9 BYE\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", proxy, tok, time.Now().UnixNano(), gwTag, callerTag, cid)
	}
	edited := token[:len(token)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", token[len(token)-1])+1)%16])
	for _, c := range []struct {
		what, tok, callID, want string
	}{
		{"the token of the call that ended", token, callID, "SIP/2.0 481 "},
		{"the token with its MAC edited", edited, callID, "SIP/2.0 403 "},
		{"the token on another Call-ID", token, "other-" + callID, "SIP/2.0 403 "},
	} {
		if r := sendUDPFrom(t, "127.0.0.2", srv.Port, bye(c.tok, c.callID), 3*time.Second); !strings.HasPrefix(r, c.want) {
			t.Errorf("%s: got %q, want %q", c.what, firstLineOf(r), c.want)
		}
	}
	if m := srv.metrics(); m["switchboard_topohiding_forged_total"] != 2 || m["switchboard_topohiding_unmatched_total"] != 1 {
		t.Errorf("forged %v unmatched %v, want 2 and 1", m["switchboard_topohiding_forged_total"], m["switchboard_topohiding_unmatched_total"])
	}

	call("the caller hangs up", "uas_hidden_gateway_bye.xml", "uac_hidden_trunk_bye.xml")
	waitMetric(t, srv, "switchboard_topohiding_calls_total", 2)
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="bye"}`, 2)
}

// checkHidden checks what one side received (sipp's -trace_msg file log):
// no Via, Record-Route, Route or Contact names other; every request came
// with the proxy's Via alone; every Contact received is the proxy's, with
// a token.
func checkHidden(t *testing.T, side, log, other, proxy string) {
	t.Helper()
	msgs := receivedMessages(t, log)
	for _, msg := range msgs {
		for _, h := range []string{"via", "record-route", "route", "contact"} {
			for _, v := range headerLines(msg, h) {
				if strings.Contains(v, other) {
					t.Errorf("%s received a %s naming the other side (%s): %q in\n%s", side, h, other, v, msg)
				}
			}
		}
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			continue
		}
		if vias := headerLines(msg, "via"); len(vias) != 1 || !strings.Contains(vias[0], proxy) {
			t.Errorf("%s received a request with Vias %q", side, vias)
		}
	}
	for _, c := range headerLines(strings.Join(msgs, "\n"), "contact") {
		if !strings.Contains(c, proxy+";thinfo=") {
			t.Errorf("%s received Contact %q, not the proxy's", side, c)
		}
	}
}

func tagOf(v string) string {
	if m := regexp.MustCompile(`;\s*tag=([^;>\s]+)`).FindStringSubmatch(v); m != nil {
		return m[1]
	}
	return ""
}
