package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2ETopologyHiding: routes: calls with topohiding.calls. The sipp
// caller (on 127.0.0.2) calls the sipp callee (on 127.0.0.3) through the
// proxy (127.0.0.1); the call is answered, the caller sends a re-INVITE,
// the callee hangs up: both scenarios pass. Read from sipp's own message
// traces (-trace_msg), no message the callee received carries a Via,
// Record-Route or Contact naming the caller's address, nor one the
// caller received the callee's; each in-dialog request was addressed to
// the proxy's Contact (its token), never to the other party's.
func TestE2ETopologyHiding(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ntopohiding:\n  calls: true\n")
	dir := t.TempDir()
	callerLog, calleeLog := filepath.Join(dir, "caller.log"), filepath.Join(dir, "callee.log")
	uas := strconv.Itoa(freeSIPPort(t))
	callee := startSippPeer(t, "-sf", "uas_hidden_callee.xml", "-i", "127.0.0.3", "-p", uas, "-m", "1", "-d", "1000",
		"-trace_msg", "-message_file", calleeLog)
	time.Sleep(200 * time.Millisecond)
	uac := strconv.Itoa(freeSIPPort(t))
	res := runSipp(t, 30*time.Second, "-sf", "uac_hidden_call.xml", "-i", "127.0.0.2", "-p", uac,
		"-key", "ruri", "sip:callee@127.0.0.3:"+uas, "-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
		"-trace_msg", "-message_file", callerLog, "127.0.0.3:"+uas)
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s\n%s", res.Code, res.Output, readFile(t, callerLog))
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d:\n%s\n%s", code, callee.out.String(), readFile(t, calleeLog))
	}

	proxy := "127.0.0.1:" + strconv.Itoa(srv.Port)
	got := map[string][]string{}
	for side, log := range map[string]string{"callee": calleeLog, "caller": callerLog} {
		other := "127.0.0.2"
		if side == "caller" {
			other = "127.0.0.3"
		}
		for _, msg := range receivedMessages(t, log) {
			first, _, _ := strings.Cut(msg, "\n")
			got[side] = append(got[side], strings.Fields(first)[0]+" "+strings.Fields(first)[1])
			for _, line := range strings.Split(msg, "\n") {
				name, value, ok := strings.Cut(line, ":")
				if !ok {
					continue
				}
				switch strings.ToLower(strings.TrimSpace(name)) {
				case "via", "v", "record-route", "contact", "m", "route":
					if strings.Contains(value, other) {
						t.Errorf("the %s received a header naming the other side (%s): %q in\n%s", side, other, line, msg)
					}
				}
			}
			if strings.HasPrefix(first, "SIP/2.0 ") {
				continue
			}
			// A request: from the proxy's Via alone, addressed to the
			// proxy's Contact (in-dialog) or to the callee (the INVITE).
			if vias := headerLines(msg, "via"); len(vias) != 1 || !strings.Contains(vias[0], proxy) {
				t.Errorf("the %s received a request with Vias %q", side, vias)
			}
			if ruri := strings.Fields(first)[1]; !strings.HasPrefix(ruri, "sip:callee@127.0.0.3:") &&
				!strings.HasPrefix(ruri, "sip:caller@127.0.0.2:") {
				t.Errorf("the %s received a request for %q", side, ruri)
			}
		}
		// Every Contact it received with a token is the proxy's.
		for _, c := range headerLines(strings.Join(receivedMessages(t, log), "\n"), "contact") {
			if !strings.Contains(c, proxy+";thinfo=") {
				t.Errorf("the %s received Contact %q, not the proxy's", side, c)
			}
		}
	}
	// What each side received, retransmissions aside: the callee the
	// INVITE, its ACK, the re-INVITE and its ACK at its own Contact, the
	// 200 to its BYE; the caller the answers, and the BYE at its Contact.
	want := map[string][]string{
		"callee": {"INVITE sip:callee@127.0.0.3:" + uas, "ACK sip:callee@127.0.0.3:" + uas + ";transport=UDP",
			"INVITE sip:callee@127.0.0.3:" + uas + ";transport=UDP", "ACK sip:callee@127.0.0.3:" + uas + ";transport=UDP", "SIP/2.0 200"},
		"caller": {"SIP/2.0 100", "SIP/2.0 180", "SIP/2.0 200", "SIP/2.0 100", "SIP/2.0 200", "BYE sip:caller@127.0.0.2:" + uac + ";transport=UDP"},
	}
	for side, w := range want {
		if g := dedup(got[side]); strings.Join(g, "|") != strings.Join(w, "|") {
			t.Errorf("the %s received\n%q, want\n%q", side, g, w)
		}
	}
	waitMetric(t, srv, "switchboard_topohiding_calls_total", 1)
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="bye"}`, 1)
	m := srv.metrics()
	if m["switchboard_topohiding_requests_total"] < 4 || m["switchboard_topohiding_forged_total"] != 0 || m["switchboard_dialog_active"] != 0 {
		t.Fatalf("requests %v forged %v active %v", m["switchboard_topohiding_requests_total"], m["switchboard_topohiding_forged_total"], m["switchboard_dialog_active"])
	}
}

// receivedMessages returns the messages sipp logged as received in its
// -trace_msg file, lines ending in "\n".
func receivedMessages(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	// Each entry: a line of dashes and the time, "UDP message received
	// [n] bytes :", an empty line, the message.
	blocks := strings.Split(strings.ReplaceAll(readFile(t, path), "\r\n", "\n"), "----------------------------------------------- ")
	for _, b := range blocks {
		_, rest, _ := strings.Cut(b, "\n")
		head, msg, ok := strings.Cut(rest, "\n")
		if !ok || !strings.Contains(head, "message received") {
			continue
		}
		out = append(out, strings.TrimSpace(msg)+"\n")
	}
	if len(out) == 0 {
		t.Fatalf("no received message in %s:\n%s", path, readFile(t, path))
	}
	return out
}

// headerLines returns the values of the header lines called name (long
// or compact form) in msg.
func headerLines(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == name || name == "via" && k == "v" || name == "contact" && k == "m" {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

// dedup drops an entry equal to the one before it (a retransmission).
func dedup(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
