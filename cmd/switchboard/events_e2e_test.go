package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules/siptrace"
)

// hookReceiver is a webhook receiver on loopback: it records every event
// POSTed to it with the time it arrived. hang makes it hold requests
// without answering, as a stuck receiver does.
type hookReceiver struct {
	t    *testing.T
	addr string
	ln   net.Listener
	srv  *http.Server

	mu     sync.Mutex
	events []hookEvent
	got    chan struct{}
	hang   chan struct{} // closed: requests are answered; open: they hang
}

type hookEvent struct {
	at     time.Time
	name   string
	seq    uint64
	params map[string]any
	auth   string
}

func startReceiver(t *testing.T, addr string) *hookReceiver {
	t.Helper()
	r := &hookReceiver{t: t, got: make(chan struct{}, 1000), hang: make(chan struct{})}
	close(r.hang)
	r.listen(addr)
	t.Cleanup(r.stop)
	return r
}

func (r *hookReceiver) listen(addr string) {
	r.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var err error
	for i := 0; i < 50; i++ { // the port of a receiver just closed may linger
		if r.ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = r.ln.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go r.srv.Serve(r.ln)
}

func (r *hookReceiver) stop() {
	r.mu.Lock()
	select {
	case <-r.hang:
	default:
		close(r.hang)
	}
	r.mu.Unlock()
	r.srv.Close()
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	hang := r.hang
	r.mu.Unlock()
	select {
	case <-hang:
	case <-req.Context().Done():
		return
	}
	body, _ := io.ReadAll(req.Body)
	var v struct {
		Event  string         `json:"event"`
		Seq    uint64         `json:"seq"`
		Params map[string]any `json:"params"`
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &v) != nil {
		r.t.Errorf("webhook got %s %s: %s", req.Method, req.Header.Get("Content-Type"), body)
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	r.events = append(r.events, hookEvent{at: time.Now(), name: v.Event, seq: v.Seq, params: v.Params, auth: req.Header.Get("Authorization")})
	r.mu.Unlock()
	r.got <- struct{}{}
	w.WriteHeader(204)
}

// wait returns the first event named name whose params[key] is val, or
// fails after d.
func (r *hookReceiver) wait(name, key, val string, d time.Duration) hookEvent {
	r.t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e.name == name && fmt.Sprint(e.params[key]) == val {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			r.t.Fatalf("no %s with %s=%s within %s; got %+v", name, key, val, d, r.all())
		}
	}
}

func (r *hookReceiver) all() []hookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookEvent(nil), r.events...)
}

// TestE2EEventsWebhookRegistration: a sipp REGISTER against the real
// binary reaches a webhook as E_UL_CONTACT_INSERT within 100 ms of sipp
// getting its 200, with the binding's fields and the webhook's token.
func TestE2EEventsWebhookRegistration(t *testing.T) {
	needSipp(t)
	rcv := startReceiver(t, "")
	srv := startServer(t, fmt.Sprintf(`auth:
  algorithms: [MD5]
  check_uri: false
events:
  webhooks:
    - name: crm
      url: http://%s/hook
      events: [E_UL_CONTACT_INSERT, E_UL_CONTACT_DELETE]
      token: s3cret
`, rcv.addr))
	addUser(t, srv, "alice@localhost", "alice-pw")
	port := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", port, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register: exit %d\n%s", r.Code, r.Output)
	}
	answered := time.Now() // sipp exits once it has the 200
	ev := rcv.wait("E_UL_CONTACT_INSERT", "aor", "alice@localhost", 2*time.Second)
	if late := ev.at.Sub(answered); late > 100*time.Millisecond {
		t.Errorf("event arrived %s after the 200", late)
	}
	if ev.params["uri"] != "sip:alice@127.0.0.1:"+strconv.Itoa(port) || ev.params["expires"] != float64(300) || ev.auth != "Bearer s3cret" {
		t.Errorf("event %+v", ev)
	}
	if r := sippUA(t, srv, "unregister.xml", port, "alice", "alice-pw", "expires", "0"); r.Code != 0 {
		t.Fatalf("unregister: exit %d\n%s", r.Code, r.Output)
	}
	rcv.wait("E_UL_CONTACT_DELETE", "reason", "unregistered", 2*time.Second)
	// The receiver records an event before it answers, and the server counts a
	// delivery only once it has the answer: give the counter a moment.
	const delivered = `switchboard_events_webhook_delivered_total{webhook="crm"}`
	var got float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = srv.metrics()[delivered]; got >= 2 {
			break
		}
	}
	if got < 2 {
		t.Errorf("delivered metric: %v", got)
	}
}

// registerNoAuth is a REGISTER for user@localhost that a server with
// auth.register false saves at once.
func registerNoAuth(user string, seq int) string {
	return "REGISTER sip:localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-ev" + strconv.Itoa(seq) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@localhost>;tag=t1\r\n" +
		"To: <sip:" + user + "@localhost>\r\n" +
		"Call-ID: ev-" + user + "@test\r\n" +
		"CSeq: " + strconv.Itoa(seq) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@127.0.0.1:5999>;expires=300\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// TestE2EEventsRetriesAndStuckReceiver: an event raised while the
// receiver is down reaches it once it is back (retries with backoff); a
// receiver that hangs holds up nothing: REGISTERs keep being answered at
// once, the webhook's queue fills and the events beyond it are dropped
// and counted.
func TestE2EEventsRetriesAndStuckReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	rcv := startReceiver(t, "")
	addr := rcv.addr
	srv := startServer(t, fmt.Sprintf(`auth:
  register: false
events:
  webhooks:
    - name: ops
      url: http://%s/
      queue: 8
      timeout: 300ms
      retries: 50
      retry_min: 20ms
      retry_max: 100ms
`, addr))
	if r := sendUDP(t, srv.Port, registerNoAuth("ann", 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %q", r)
	}
	rcv.wait("E_UL_CONTACT_INSERT", "aor", "ann@localhost", 2*time.Second)

	// The receiver goes away; an event raised meanwhile arrives once it
	// listens again on the same address.
	rcv.srv.Close()
	if r := sendUDP(t, srv.Port, registerNoAuth("ben", 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Fatalf("REGISTER while the receiver is down: %q", r)
	}
	time.Sleep(300 * time.Millisecond) // several attempts fail
	rcv.listen(addr)
	rcv.wait("E_UL_CONTACT_INSERT", "aor", "ben@localhost", 3*time.Second)
	if m := srv.metrics(); m[`switchboard_events_webhook_retries_total{webhook="ops"}`] < 1 {
		t.Errorf("no retry counted: %v", m[`switchboard_events_webhook_retries_total{webhook="ops"}`])
	}

	// Now it hangs: every REGISTER is still answered quickly.
	rcv.mu.Lock()
	rcv.hang = make(chan struct{})
	rcv.mu.Unlock()
	var slowest time.Duration
	for i := 0; i < 40; i++ {
		start := time.Now()
		if r := sendUDP(t, srv.Port, registerNoAuth("cat"+strconv.Itoa(i), 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
			t.Fatalf("REGISTER %d while the receiver hangs: %q", i, r)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 200*time.Millisecond {
		t.Errorf("slowest REGISTER took %s while the receiver hung", slowest)
	}
	m := srv.metrics()
	if d := m[`switchboard_events_webhook_dropped_total{webhook="ops"}`]; d < 40-8-1 {
		t.Errorf("dropped %v events, want at least %d", d, 40-8-1)
	}
	if m["switchboard_events_dropped_total"] < 40-8-1 {
		t.Errorf("switchboard_events_dropped_total = %v", m["switchboard_events_dropped_total"])
	}
}

// TestE2EEventsStream: the management API streams events as Server-Sent
// Events to a client with the token, refuses one without; subscriptions
// added at run time get events too, and events.raise raises one.
func TestE2EEventsStream(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "auth:\n  register: false\n")

	resp, err := http.Get("http://" + srv.Mgmt + "/api/v1/stream/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without a token: %s", resp.Status)
	}

	req, _ := http.NewRequest("GET", "http://"+srv.Mgmt+"/api/v1/stream/events?events=E_UL_CONTACT_INSERT,E_MAINTENANCE", nil)
	req.Header.Set("Authorization", "Bearer "+srv.token())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(name string) map[string]any {
		t.Helper()
		timeout := time.After(3 * time.Second)
		var event string
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %s", name)
				}
				if v, ok := strings.CutPrefix(l, "event: "); ok {
					event = v
				}
				if v, ok := strings.CutPrefix(l, "data: "); ok && event == name {
					var ev struct {
						Params map[string]any `json:"params"`
					}
					if err := json.Unmarshal([]byte(v), &ev); err != nil {
						t.Fatalf("data is not JSON: %s", v)
					}
					return ev.Params
				}
			case <-timeout:
				t.Fatalf("no %s on the stream", name)
			}
		}
	}

	rcv := startReceiver(t, "")
	mgmtCall(t, srv, "events.subscribe", `{"name":"late","url":"http://`+rcv.addr+`/x","events":["E_UL_CONTACT_INSERT"]}`)

	if r := sendUDP(t, srv.Port, registerNoAuth("dan", 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %q", r)
	}
	if p := next("E_UL_CONTACT_INSERT"); p["aor"] != "dan@localhost" {
		t.Fatalf("stream event %v", p)
	}
	rcv.wait("E_UL_CONTACT_INSERT", "aor", "dan@localhost", 2*time.Second)

	mgmtCall(t, srv, "events.raise", `{"event":"E_MAINTENANCE","params":{"node":"a","n":1}}`)
	if p := next("E_MAINTENANCE"); p["node"] != "a" || p["n"] != float64(1) {
		t.Fatalf("raised event %v", p)
	}

	var list struct {
		Subscribers []struct {
			Kind, Name string
			Events     []string
		}
	}
	json.Unmarshal(mgmtCall(t, srv, "events.list", ""), &list)
	if len(list.Subscribers) != 2 || list.Subscribers[0].Name != "late" || list.Subscribers[1].Kind != "stream" ||
		strings.Join(list.Subscribers[1].Events, ",") != "E_UL_CONTACT_INSERT,E_MAINTENANCE" {
		t.Fatalf("events.list: %+v", list)
	}
	mgmtCall(t, srv, "events.unsubscribe", `{"name":"late"}`)
	if code, body := srv.api("events.unsubscribe", `{"name":"late"}`); code != 404 {
		t.Fatalf("second unsubscribe: %d %s", code, body)
	}
	if code, body := srv.api("events.raise", `{"event":"bad name"}`); code != 400 {
		t.Fatalf("bad event name: %d %s", code, body)
	}
	if code, body := srv.api("events.raise", `{"event":"E_BIG","params":{"x":"`+strings.Repeat("a", 70000)+`"}}`); code != 400 {
		t.Fatalf("params over 64 KiB: %d %s", code, body)
	}
}

// TestE2EEventsDialogStates: a sipp call through the calls route set
// raises E_DLG_STATE_CHANGED for its creation, its answer and its end,
// with OpenSIPS's state numbers.
func TestE2EEventsDialogStates(t *testing.T) {
	t.Parallel()
	needSipp(t)
	rcv := startReceiver(t, "")
	srv := startServer(t, fmt.Sprintf("routes: calls\nevents:\n  webhooks:\n    - {name: dlg, url: \"http://%s/\", events: [E_DLG_STATE_CHANGED]}\n", rcv.addr))
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "200", "-m", "1",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	callee.wait(5 * time.Second)
	created := rcv.wait("E_DLG_STATE_CHANGED", "change", "created", 2*time.Second)
	answered := rcv.wait("E_DLG_STATE_CHANGED", "change", "answered", 2*time.Second)
	ended := rcv.wait("E_DLG_STATE_CHANGED", "change", "ended", 2*time.Second)
	if created.params["new_state"] != float64(1) || answered.params["old_state"] != float64(1) || answered.params["new_state"] != float64(4) ||
		ended.params["old_state"] != float64(4) || ended.params["new_state"] != float64(5) || ended.params["reason"] != "bye" || ended.params["by"] != "caller" {
		t.Fatalf("events:\n%v\n%v\n%v", created.params, answered.params, ended.params)
	}
	if ended.params["callid"] == "" || ended.params["callid"] != created.params["callid"] || answered.params["code"] != float64(200) {
		t.Fatalf("identifiers: %v / %v", created.params, ended.params)
	}
	if !(created.seq < answered.seq && answered.seq < ended.seq) {
		t.Fatalf("out of order: %d %d %d", created.seq, answered.seq, ended.seq)
	}
}

// TestE2ETraceCommand: trace.start follows one Call-ID through the real
// binary's core (received, route, sent, with call_id and addresses) and
// nothing else; trace.stop ends it; log.level changes the level at run
// time.
func TestE2ETraceCommand(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "auth:\n  register: false\n")
	mgmtCall(t, srv, "log.level", `{"level":"info"}`) // trace lines are info
	if code, body := srv.api("trace.start", `{}`); code != 400 {
		t.Fatalf("trace.start without a filter: %d %s", code, body)
	}
	mgmtCall(t, srv, "trace.start", `{"call_id":"ev-traced@test","duration":"1m"}`)
	for _, u := range []string{"traced", "other"} {
		if r := sendUDP(t, srv.Port, registerNoAuth(u, 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
			t.Fatalf("REGISTER %s: %q", u, r)
		}
	}
	var st struct {
		On     bool
		CallID string `json:"call_id"`
		Lines  int
	}
	json.Unmarshal(mgmtCall(t, srv, "trace.status", ""), &st)
	if !st.On || st.CallID != "ev-traced@test" || st.Lines != 3 {
		t.Fatalf("trace.status: %+v", st)
	}
	mgmtCall(t, srv, "trace.stop", "")
	if r := sendUDP(t, srv.Port, registerNoAuth("traced", 2), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Fatalf("REGISTER after stop: %q", r)
	}
	wants := []string{
		`msg="trace: received" trace=true call_id=ev-traced@test method=REGISTER first_line="REGISTER sip:localhost SIP/2.0"`,
		`msg="trace: route" trace=true call_id=ev-traced@test method=REGISTER src=127.0.0.1:`,
		`msg="trace: sent" trace=true call_id=ev-traced@test first_line="SIP/2.0 200 OK"`,
		`msg="trace: stopped" trace=true lines=3`,
	}
	srv.logged(wants...) // the log trails the answers through a pipe
	log := srv.Log.String()
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %s", want)
		}
	}
	if strings.Contains(log, "call_id=ev-other@test") || strings.Count(log, "call_id=ev-traced@test") != 4 { // started, received, route, sent
		t.Errorf("traced more than the one REGISTER:\n%s", log)
	}
	var lv struct{ Level string }
	json.Unmarshal(mgmtCall(t, srv, "log.level", `{"level":"debug"}`), &lv)
	if lv.Level != "debug" {
		t.Fatalf("log.level: %+v", lv)
	}
	if code, body := srv.api("log.level", `{"level":"loud"}`); code != 400 {
		t.Fatalf("bad level: %d %s", code, body)
	}
}

// TestE2EHEPLogLines: with siptrace.logs, the log lines of a traced call
// reach the HEP collector as protocol type 100 packets correlated to its
// Call-ID; the lines of another call do not.
func TestE2EHEPLogLines(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	coll, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	srv := startServer(t, fmt.Sprintf("auth:\n  register: false\nsiptrace:\n  collectors: [%q]\n  logs: true\n", coll.LocalAddr().String()))
	mgmtCall(t, srv, "log.level", `{"level":"info"}`)
	mgmtCall(t, srv, "trace.start", `{"call_id":"ev-hep@test"}`)
	for _, u := range []string{"hep", "nohep"} {
		if r := sendUDP(t, srv.Port, registerNoAuth(u, 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
			t.Fatalf("REGISTER %s: %q", u, r)
		}
	}
	var logs []siptrace.Record
	sip := 0
	coll.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65536)
	for len(logs) < 4 { // started, received, route, sent
		n, err := coll.Read(buf)
		if err != nil {
			t.Fatalf("%d log lines, %d SIP messages by the deadline: %+v", len(logs), sip, logs)
		}
		var r siptrace.Record
		if err := siptrace.ParseHEP3(append([]byte(nil), buf[:n]...), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type != siptrace.ProtoTypeLog {
			sip++
			continue
		}
		if string(r.CallID) != "ev-hep@test" {
			t.Fatalf("a log line of another call: %q %q", r.CallID, r.Payload)
		}
		logs = append(logs, r)
	}
	var lines []string
	for _, r := range logs {
		lines = append(lines, string(r.Payload))
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{`msg="trace: received" trace=true call_id=ev-hep@test method=REGISTER`, `msg="trace: sent" trace=true call_id=ev-hep@test first_line="SIP/2.0 200 OK"`} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s in the HEP log lines:\n%s", want, all)
		}
	}
	if logs[1].Src.Addr().String() != "127.0.0.1" {
		t.Errorf("the received line's source: %v", logs[1].Src)
	}
}
