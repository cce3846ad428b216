package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sippEvent is one message of a sipp -trace_msg file: when, sent or
// received, its first line, Call-ID and CSeq method.
type sippEvent struct {
	at     time.Time
	sent   bool
	first  string
	callID string
	method string
}

// sippTrace reads a sipp -trace_msg file. sipp stamps each message with
// the local time to the microsecond.
func sippTrace(t *testing.T, file string) []sippEvent {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []sippEvent
	const sep = "----------------------------------------------- "
	for _, part := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), sep)[1:] {
		stamp, rest, _ := strings.Cut(part, "\n")
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(stamp), time.Local)
		if err != nil {
			t.Fatalf("%s: time %q: %v", file, stamp, err)
		}
		kind, msg, _ := strings.Cut(rest, "\n\n")
		first, hdrs, _ := strings.Cut(msg, "\n")
		ev := sippEvent{at: at, sent: strings.Contains(kind, "sent"), first: first}
		for _, l := range strings.Split(hdrs, "\n") {
			if v, ok := strings.CutPrefix(l, "Call-ID: "); ok {
				ev.callID = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "CSeq: "); ok {
				f := strings.Fields(v)
				ev.method = f[len(f)-1]
			}
		}
		out = append(out, ev)
	}
	return out
}

// when returns the time of the first message sent (or received) whose
// first line starts with prefix and whose CSeq method is method.
func when(t *testing.T, evs []sippEvent, sent bool, prefix, method string) time.Time {
	t.Helper()
	for _, e := range evs {
		if e.sent == sent && strings.HasPrefix(e.first, prefix) && e.method == method {
			return e.at
		}
	}
	t.Fatalf("no %q (%s) sent=%v in the trace: %+v", prefix, method, sent, evs)
	return time.Time{}
}

// accList returns the records of callID (acc, or missed_calls).
func accList(t *testing.T, srv *testServer, callID string, missed bool) []map[string]any {
	t.Helper()
	code, body := srv.api("acc.list", fmt.Sprintf(`{"call_id":%q,"missed":%v}`, callID, missed))
	if code != 200 {
		t.Fatalf("acc.list: %d %s", code, body)
	}
	var r struct {
		Result struct {
			Records []map[string]any `json:"records"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("acc.list: %v: %s", err, body)
	}
	return r.Result.Records
}

// oneRecord waits for the call's record and returns it, failing unless
// there is exactly one, in the table wanted, and none in the other.
func oneRecord(t *testing.T, srv *testServer, callID string, missed bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(accList(t, srv, callID, missed)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second record, if any, would be written by now
	got, other := accList(t, srv, callID, missed), accList(t, srv, callID, !missed)
	if len(got) != 1 || len(other) != 0 {
		t.Fatalf("call %s: %d records (missed %v), %d in the other table, want 1 and 0: %v %v", callID, len(got), missed, len(other), got, other)
	}
	return got[0]
}

// nearMs checks a record's time (ms) against one a sipp end measured.
func nearMs(t *testing.T, what string, ms any, want time.Time) {
	t.Helper()
	got, _ := ms.(float64)
	d := time.UnixMilli(int64(got)).Sub(want)
	t.Logf("%s: record - sipp = %v", what, d)
	if d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("%s: %s in the record, %s measured by sipp: %v apart", what, time.UnixMilli(int64(got)).Format("15:04:05.000"),
			want.Format("15:04:05.000"), d)
	}
}

// TestE2EAccounting: calls through the calls route set between two sipp
// ends, each leaving exactly one record with the times the caller's sipp
// saw (within 50 ms: the INVITE sent, the 200 received, the BYE sent or
// received, the final received), the final status and who ended it: a
// call of 1.5 s ended by the caller, one of 1.2 s ended by the callee,
// one the caller cancels after 1 s of ringing, one the callee refuses
// with 486, and one nobody answers (the proxy's 408 at timer C, 2 s).
// SIGTERM then leaves the five records in the store
// (`switchboard cdr list`).
func TestE2EAccounting(t *testing.T) {
	needSipp(t)
	srv := startServer(t, "routes: calls\ntimers:\n  t1: 100ms\n  t2: 400ms\n  t4: 500ms\n  timer_c: 2s\n")
	dir := t.TempDir()
	type call struct {
		name       string
		uas, uac   []string
		answered   bool
		code       float64
		reason     string
		endReason  string
		by         string
		endSent    bool   // the caller sent what ends the call (BYE, CANCEL)
		endPrefix  string // the first line that ends it, as the caller saw it
		endMethod  string
		minSeconds float64 // the record's duration (answered) or ringing time at least
	}
	calls := []call{
		{name: "caller-bye", uas: []string{"uas_callee.xml"}, uac: []string{"uac_call_hold.xml", "-d", "1500"}, answered: true,
			code: 200, reason: "OK", endReason: "bye", by: "caller", endSent: true, endPrefix: "BYE ", endMethod: "BYE", minSeconds: 1.5},
		{name: "callee-bye", uas: []string{"uas_callee_bye.xml", "-d", "1200"}, uac: []string{"uac_call_proxy_bye.xml"}, answered: true,
			code: 200, reason: "OK", endReason: "bye", by: "callee", endPrefix: "BYE ", endMethod: "BYE", minSeconds: 1.2},
		{name: "cancel", uas: []string{"uas_ring_cancel.xml"}, uac: []string{"uac_cancel.xml", "-d", "1000"},
			code: 487, reason: "Request Terminated", endReason: "canceled", by: "caller", endPrefix: "SIP/2.0 487", endMethod: "INVITE", minSeconds: 1},
		{name: "busy", uas: []string{"uas_busy.xml"}, uac: []string{"uac_busy.xml"},
			code: 486, reason: "Busy Here", endReason: "failed", by: "callee", endPrefix: "SIP/2.0 486", endMethod: "INVITE"},
		{name: "noanswer", uas: []string{"uas_ring_cancel.xml"}, uac: []string{"uac_noanswer.xml"},
			code: 408, reason: "Request Timeout", endReason: "failed", by: "proxy", endPrefix: "SIP/2.0 408", endMethod: "INVITE", minSeconds: 2},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			uas := freeSIPPort(t)
			uacPort := freeSIPPort(t)
			callee := startSippPeer(t, append(append([]string{"-sf"}, c.uas...), "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")...)
			time.Sleep(200 * time.Millisecond)
			trace := filepath.Join(dir, c.name+".log")
			res := runSipp(t, 30*time.Second, append(append([]string{"-sf"}, c.uac...), "-i", "127.0.0.1", "-p", strconv.Itoa(uacPort),
				"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
				"-trace_msg", "-message_file", trace, "127.0.0.1:"+strconv.Itoa(uas))...)
			if res.Code != 0 {
				t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
			}
			if code := callee.wait(10 * time.Second); code != 0 {
				t.Fatalf("sipp callee exit %d:\n%s", code, callee.out.String())
			}
			evs := sippTrace(t, trace)
			callID := evs[0].callID
			r := oneRecord(t, srv, callID, false)
			if r["sip_code"] != c.code || r["sip_reason"] != c.reason || r["end_reason"] != c.endReason || r["ended_by"] != c.by ||
				r["from_user"] != "caller" || r["to_user"] != "callee" || r["caller"] != "127.0.0.1:"+strconv.Itoa(uacPort) ||
				r["to_uri"] != "sip:callee@127.0.0.1:"+strconv.Itoa(uas) {
				t.Fatalf("record %v", r)
			}
			nearMs(t, "start", r["start_ms"], when(t, evs, true, "INVITE ", "INVITE"))
			nearMs(t, "end", r["end_ms"], when(t, evs, c.endSent, c.endPrefix, c.endMethod))
			start, end := r["start_ms"].(float64), r["end_ms"].(float64)
			if c.answered {
				nearMs(t, "answer", r["answer_ms"], when(t, evs, false, "SIP/2.0 200", "INVITE"))
				if d := r["duration_ms"].(float64); d != end-r["answer_ms"].(float64) || d < c.minSeconds*1000-50 {
					t.Errorf("duration %v ms, want end - answer and %v s at least", d, c.minSeconds)
				}
			} else if r["answer_ms"] != float64(0) || r["duration_ms"] != float64(0) || end-start < c.minSeconds*1000-50 {
				t.Errorf("unanswered call: answer %v duration %v, %v ms from start to end", r["answer_ms"], r["duration_ms"], end-start)
			}
		})
	}
	m := srv.metrics()
	if m[`switchboard_acc_queued_total{table="acc"}`] != 5 || m[`switchboard_acc_written_total{sink="store"}`] != 5 ||
		m[`switchboard_acc_dropped_total{reason="queue_full"}`] != 0 {
		t.Fatalf("metrics: queued %v written %v dropped %v", m[`switchboard_acc_queued_total{table="acc"}`],
			m[`switchboard_acc_written_total{sink="store"}`], m[`switchboard_acc_dropped_total{reason="queue_full"}`])
	}
	if !srv.signal(syscall.SIGTERM, 40*time.Second) {
		t.Fatal("no exit on SIGTERM")
	}
	code, out, errs := runCLI(t, "", "cdr", "list", "-o", "json", "-c", srv.Config)
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 5 {
		t.Fatalf("cdr list after SIGTERM: %d %q %q", code, out, errs)
	}
}

// accListArgs returns the records acc.list gives for args.
func accListArgs(t *testing.T, srv *testServer, args string) []map[string]any {
	t.Helper()
	code, body := srv.api("acc.list", args)
	if code != 200 {
		t.Fatalf("acc.list %s: %d %s", args, code, body)
	}
	var r struct {
		Result struct {
			Records []map[string]any `json:"records"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("acc.list: %v: %s", err, body)
	}
	return r.Result.Records
}

// TestE2EProviderMissedCall: the provider route set with accounting (the
// defaults): alice's authenticated call to bob, whose phone is busy, is a
// missed call of bob's (missed_calls, nothing in acc); her next call,
// answered and ended by her BYE, is a record in acc. The challenged
// first INVITEs leave no record.
func TestE2EProviderMissedCall(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	busy := startSippPeer(t, "-sf", "uas_busy.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call_486.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call to busy bob: exit %d\n%s", r.Code, r.Output)
	}
	if code := busy.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob's busy phone: exit %d\n%s", code, busy.out.String())
	}
	var missed []map[string]any
	for deadline := time.Now().Add(5 * time.Second); len(missed) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		missed = accListArgs(t, srv, `{"to":"bob","missed":true}`)
	}
	if len(missed) != 1 || missed[0]["from_user"] != "alice" || missed[0]["sip_code"] != float64(486) || missed[0]["ended_by"] != "callee" {
		t.Fatalf("missed calls of bob: %v", missed)
	}
	if l := accListArgs(t, srv, `{"to":"bob"}`); len(l) != 0 {
		t.Fatalf("the missed call is in acc too: %v", l)
	}

	answer := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call to bob: exit %d\n%s", r.Code, r.Output)
	}
	if code := answer.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob's phone: exit %d\n%s", code, answer.out.String())
	}
	var acc []map[string]any
	for deadline := time.Now().Add(5 * time.Second); len(acc) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		acc = accListArgs(t, srv, `{"from":"alice"}`)
	}
	if len(acc) != 1 || acc[0]["to_user"] != "bob" || acc[0]["sip_code"] != float64(200) || acc[0]["ended_by"] != "caller" || acc[0]["end_reason"] != "bye" {
		t.Fatalf("records of alice's calls: %v", acc)
	}
	if l := accListArgs(t, srv, `{"missed":true}`); len(l) != 1 {
		t.Fatalf("missed calls: %v", l)
	}
}
