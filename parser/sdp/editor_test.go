package sdp

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var testBodies = []string{"yealink.sdp", "polycom.sdp", "linphone.sdp", "baresip-srtp.sdp", "baresip-ice.sdp", "chrome-webrtc.sdp", "freeswitch-answer.sdp", "rfc8866.sdp"}

func edit(t *testing.T, body string, f func(e *Editor, s *Session)) string {
	t.Helper()
	var s Session
	if err := s.Parse([]byte(body)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var e Editor
	e.Reset(&s)
	f(&e, &s)
	out := string(e.AppendTo(nil))
	var s2 Session
	if err := s2.Parse([]byte(out)); err != nil {
		t.Fatalf("edited body does not parse: %v\n%s", err, out)
	}
	return out
}

func TestEditNone(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.sdp")
	if len(files) < len(testBodies) {
		t.Fatal("testdata missing")
	}
	extra := []string{
		"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 0", // no final line end
		string(withHead("m=audio 5000 RTP/AVP 0")) + "\r\n\r\n",                                 // line ends after the body
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, string(b))
	}
	for _, body := range extra {
		if got := edit(t, body, func(*Editor, *Session) {}); got != body {
			t.Errorf("AppendTo without edits changed the body:\n%q\n%q", body, got)
		}
	}
}

// TestEditFixNated is nathelper's fix_nated_sdp on a phone behind NAT:
// every c= and the o= address rewritten to the source address, a=direction:active
// and a=nortpproxy:yes added; nothing else moves.
func TestEditFixNated(t *testing.T) {
	body := string(mustRead(t, "yealink.sdp"))
	got := edit(t, body, func(e *Editor, s *Session) {
		ip := []byte("203.0.113.7")
		if !e.SetConnections([]byte("IP4"), ip) || !e.SetOriginAddress([]byte("IP4"), ip) ||
			!e.AddAttribute(0, "direction", []byte("active")) || !e.AddAttribute(SessionLevel, "nortpproxy", []byte("yes")) {
			t.Fatal("edit refused")
		}
	})
	want := strings.NewReplacer(
		"o=- 20018 20018 IN IP4 192.168.1.20", "o=- 20018 20018 IN IP4 203.0.113.7",
		"c=IN IP4 192.168.1.20\r\nt=0 0\r\n", "c=IN IP4 203.0.113.7\r\nt=0 0\r\na=nortpproxy:yes\r\n",
	).Replace(body) + "a=direction:active\r\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestEditRelay is what a media relay does to an offer: new address and
// ports for each section, RTCP next to RTP, ICE removed.
func TestEditRelay(t *testing.T) {
	body := string(mustRead(t, "baresip-ice.sdp"))
	ip := []byte("198.51.100.9")
	got := edit(t, body, func(e *Editor, s *Session) {
		ok := e.SetConnections([]byte("IP4"), ip) && e.SetOriginAddress([]byte("IP4"), ip) && e.RemoveICE()
		for i := 0; i < s.NumMedia(); i++ {
			ok = ok && e.SetPort(i, 30000+10*i) && e.SetRTCP(i, 30001+10*i, []byte("IP4"), ip)
		}
		if !ok {
			t.Fatal("edit refused")
		}
	})
	var want []string
	for _, l := range strings.SplitAfter(body, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=candidate:"), strings.HasPrefix(l, "a=ice-"):
			continue
		case strings.HasPrefix(l, "m=audio 15668 "):
			l = strings.Replace(l, "15668", "30000", 1)
		case strings.HasPrefix(l, "m=video 15156 "):
			l = strings.Replace(l, "15156", "30010", 1)
		case l == "a=rtcp:15669 IN IP4 192.168.1.40\r\n":
			l = "a=rtcp:30001 IN IP4 198.51.100.9\r\n"
		case l == "a=rtcp:15157 IN IP4 192.168.1.40\r\n":
			l = "a=rtcp:30011 IN IP4 198.51.100.9\r\n"
		}
		l = strings.Replace(l, "IN IP4 192.168.1.40", "IN IP4 198.51.100.9", 1)
		want = append(want, l)
	}
	if got != strings.Join(want, "") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, ""))
	}
	var s Session
	mustParse(t, &s, []byte(got))
	for i := 0; i < s.NumMedia(); i++ {
		m := s.Media(i)
		if it := m.Candidates(); it.Next() || m.ICEUfrag() != nil || m.ICEPwd() != nil {
			t.Errorf("media %d keeps ICE", i)
		}
		if f, ok := m.Fingerprint(); !ok || len(f.Value) != 95 {
			t.Errorf("media %d lost the fingerprint", i)
		}
	}
}

func TestEditChromeRemoveICE(t *testing.T) {
	body := string(mustRead(t, "chrome-webrtc.sdp"))
	got := edit(t, body, func(e *Editor, s *Session) {
		if !e.RemoveICE() {
			t.Fatal("RemoveICE refused")
		}
		// each section's 4 candidates and 3 ICE lines are adjacent: one
		// splice per section
		if e.n != 3 {
			t.Errorf("%d splices", e.n)
		}
	})
	var want strings.Builder
	for _, l := range strings.SplitAfter(body, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") && !strings.HasPrefix(l, "a=ice-") {
			want.WriteString(l)
		}
	}
	if got != want.String() {
		t.Errorf("got\n%s", got)
	}
}

func TestEditCandidatesOnly(t *testing.T) {
	body := string(withHead("a=ice-ufrag:F7gI", "m=audio 5000 RTP/AVP 0",
		"a=candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host", "a=ptime:20",
		"a=candidate:1 2 UDP 2130706430 192.0.2.1 5001 typ host", "a=end-of-candidates", "a=remote-candidates:1 192.0.2.2 6000",
		"m=video 5002 RTP/AVP 31", "a=candidate:1 1 UDP 2130706431 192.0.2.1 5002 typ host"))
	got := edit(t, body, func(e *Editor, s *Session) {
		if !e.RemoveCandidates(0) {
			t.Fatal("refused")
		}
	})
	want := string(withHead("a=ice-ufrag:F7gI", "m=audio 5000 RTP/AVP 0", "a=ptime:20",
		"m=video 5002 RTP/AVP 31", "a=candidate:1 1 UDP 2130706431 192.0.2.1 5002 typ host"))
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEditConnection(t *testing.T) {
	ip4, ip6 := []byte("IP4"), []byte("IP6")
	tests := []struct {
		name string
		body []byte
		f    func(e *Editor) bool
		want []byte
	}{
		{"replace a media c=", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.9"),
			func(e *Editor) bool { return e.SetConnection(0, ip6, []byte("2001:db8::9")) },
			withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 2001:db8::9")},
		{"replace a multicast c=, TTL and count go", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 233.252.0.1/127/3"),
			func(e *Editor) bool { return e.SetConnection(0, ip4, []byte("192.0.2.8")) },
			withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.8")},
		{"add a media c= after m= and i=", withHead("m=audio 5000 RTP/AVP 0", "i=voice", "b=AS:64", "a=sendrecv"),
			func(e *Editor) bool { return e.SetConnection(0, ip4, []byte("192.0.2.8")) },
			withHead("m=audio 5000 RTP/AVP 0", "i=voice", "c=IN IP4 192.0.2.8", "b=AS:64", "a=sendrecv")},
		{"add a c= to a section of one line", withHead("m=audio 5000 RTP/AVP 0", "m=video 5002 RTP/AVP 31"),
			func(e *Editor) bool { return e.SetConnection(0, ip4, []byte("192.0.2.8")) },
			withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.8", "m=video 5002 RTP/AVP 31")},
		{"add a session c= before t=", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "i=x", "t=0 0", "m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			func(e *Editor) bool { return e.SetConnection(SessionLevel, ip4, []byte("192.0.2.8")) },
			sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "i=x", "c=IN IP4 192.0.2.8", "t=0 0", "m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.1")},
		{"SetConnections rewrites session and media", withHead("m=audio 5000 RTP/AVP 0", "m=video 5002 RTP/AVP 31", "c=IN IP4 192.0.2.3"),
			func(e *Editor) bool { return e.SetConnections(ip4, []byte("192.0.2.8")) },
			sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.8", "t=0 0", "m=audio 5000 RTP/AVP 0", "m=video 5002 RTP/AVP 31", "c=IN IP4 192.0.2.8")},
		{"origin", withHead(), func(e *Editor) bool { return e.SetOriginAddress(ip6, []byte("::1")) },
			sdp("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := string(tt.want)
			got := edit(t, string(tt.body), func(e *Editor, s *Session) {
				if !tt.f(e) {
					t.Fatal("refused")
				}
			})
			if got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestEditPortAndRTCP(t *testing.T) {
	ip := []byte("192.0.2.8")
	tests := []struct {
		name string
		body []byte
		f    func(e *Editor) bool
		want []byte
	}{
		{"port", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetPort(0, 40000) },
			withHead("m=audio 40000 RTP/AVP 0")},
		{"port with a count", withHead("m=video 5000/2 RTP/AVP 31"), func(e *Editor) bool { return e.SetPort(0, 6) },
			withHead("m=video 6/2 RTP/AVP 31")},
		{"port 0 disables", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetPort(0, 0) },
			withHead("m=audio 0 RTP/AVP 0")},
		{"rtcp port only", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP4 192.0.2.1"), func(e *Editor) bool { return e.SetRTCP(0, 40001, nil, nil) },
			withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:40001 IN IP4 192.0.2.1")},
		{"rtcp address only", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP4 192.0.2.1"), func(e *Editor) bool { return e.SetRTCP(0, -1, []byte("IP6"), []byte("2001:db8::8")) },
			withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP6 2001:db8::8")},
		{"rtcp address added", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001", "a=sendrecv"), func(e *Editor) bool { return e.SetRTCP(0, 40001, []byte("IP4"), ip) },
			withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:40001 IN IP4 192.0.2.8", "a=sendrecv")},
		{"rtcp added", withHead("m=audio 5000 RTP/AVP 0", "a=sendrecv", "m=video 0 RTP/AVP 31"), func(e *Editor) bool { return e.SetRTCP(0, 40001, []byte("IP4"), ip) },
			withHead("m=audio 5000 RTP/AVP 0", "a=sendrecv", "a=rtcp:40001 IN IP4 192.0.2.8", "m=video 0 RTP/AVP 31")},
		{"rtcp added, port only", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetRTCP(0, 40001, nil, nil) },
			withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:40001")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := edit(t, string(tt.body), func(e *Editor, s *Session) {
				if !tt.f(e) {
					t.Fatal("refused")
				}
			})
			if got != string(tt.want) {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestEditAttributes(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		f    func(e *Editor) bool
		want []byte
	}{
		{"direction replaced", withHead("m=audio 5000 RTP/AVP 0", "a=sendrecv", "a=ptime:20"), func(e *Editor) bool { return e.SetDirection(0, Inactive) },
			withHead("m=audio 5000 RTP/AVP 0", "a=inactive", "a=ptime:20")},
		{"direction duplicates removed", withHead("m=audio 5000 RTP/AVP 0", "a=sendonly", "a=ptime:20", "a=sendonly"), func(e *Editor) bool { return e.SetDirection(0, RecvOnly) },
			withHead("m=audio 5000 RTP/AVP 0", "a=recvonly", "a=ptime:20")},
		{"direction added", withHead("m=audio 5000 RTP/AVP 0", "a=ptime:20"), func(e *Editor) bool { return e.SetDirection(0, SendOnly) },
			withHead("m=audio 5000 RTP/AVP 0", "a=ptime:20", "a=sendonly")},
		{"session direction added before m=", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetDirection(SessionLevel, SendOnly) },
			withHead("a=sendonly", "m=audio 5000 RTP/AVP 0")},
		{"direction removed", withHead("a=inactive", "m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetDirection(SessionLevel, DirNone) },
			withHead("m=audio 5000 RTP/AVP 0")},
		{"attribute replaced, duplicates removed", withHead("m=audio 5000 RTP/AVP 0", "a=ptime:20", "a=x", "a=ptime:30"), func(e *Editor) bool { return e.SetAttribute(0, "ptime", []byte("40")) },
			withHead("m=audio 5000 RTP/AVP 0", "a=ptime:40", "a=x")},
		{"attribute set to a property", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp-mux:yes"), func(e *Editor) bool { return e.SetAttribute(0, "rtcp-mux", nil) },
			withHead("m=audio 5000 RTP/AVP 0", "a=rtcp-mux")},
		{"attribute added by SetAttribute", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool { return e.SetAttribute(0, "ptime", []byte("20")) },
			withHead("m=audio 5000 RTP/AVP 0", "a=ptime:20")},
		{"attribute removed", withHead("a=x:1", "a=y", "a=x:2", "m=audio 5000 RTP/AVP 0", "a=x:3"), func(e *Editor) bool { return e.RemoveAttribute(SessionLevel, "x") },
			withHead("a=y", "m=audio 5000 RTP/AVP 0", "a=x:3")},
		{"added to the middle section", withHead("m=audio 5000 RTP/AVP 0", "a=a", "m=video 5002 RTP/AVP 31", "a=b", "m=text 5004 RTP/AVP 98", "a=c"),
			func(e *Editor) bool { return e.AddAttribute(1, "label", []byte("2")) },
			withHead("m=audio 5000 RTP/AVP 0", "a=a", "m=video 5002 RTP/AVP 31", "a=b", "a=label:2", "m=text 5004 RTP/AVP 98", "a=c")},
		{"two additions keep their order", withHead("m=audio 5000 RTP/AVP 0"), func(e *Editor) bool {
			return e.AddAttribute(0, "one", nil) && e.AddAttribute(0, "two", nil)
		}, withHead("m=audio 5000 RTP/AVP 0", "a=one", "a=two")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := edit(t, string(tt.body), func(e *Editor, s *Session) {
				if !tt.f(e) {
					t.Fatal("refused")
				}
			})
			if got != string(tt.want) {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestEditLineEnds(t *testing.T) {
	lf := "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0\nc=IN IP4 192.0.2.1\n"
	add := func(e *Editor, s *Session) {
		if !e.AddAttribute(0, "sendonly", nil) || !e.SetConnection(SessionLevel, []byte("IP4"), []byte("192.0.2.2")) {
			t.Fatal("refused")
		}
	}
	if got := edit(t, lf, add); got != "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.2\nt=0 0\nm=audio 5000 RTP/AVP 0\nc=IN IP4 192.0.2.1\na=sendonly\n" {
		t.Errorf("LF body: %q", got)
	}
	if got := edit(t, strings.TrimSuffix(lf, "\n"), add); got != "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.2\nt=0 0\nm=audio 5000 RTP/AVP 0\nc=IN IP4 192.0.2.1\na=sendonly\n" {
		t.Errorf("no final line end: %q", got)
	}
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")
	if got := edit(t, strings.TrimSuffix(crlf, "\r\n")+"\r", add); !strings.HasSuffix(got, "c=IN IP4 192.0.2.1\r\na=sendonly\r\n") {
		t.Errorf("final bare CR: %q", got)
	}
	// the last line, without a line end, removed: what precedes it has one
	noEnd := crlf + "a=candidate:1 1 UDP 1 192.0.2.1 5000 typ host"
	if got := edit(t, noEnd, func(e *Editor, s *Session) {
		if !e.RemoveCandidates(0) || !e.AddAttribute(0, "sendonly", nil) {
			t.Fatal("refused")
		}
	}); got != crlf+"a=sendonly\r\n" {
		t.Errorf("last line removed: %q", got)
	}
	if got := edit(t, crlf+"\r\n\r\n", add); !strings.HasSuffix(got, "c=IN IP4 192.0.2.1\r\na=sendonly\r\n\r\n\r\n") {
		t.Errorf("line ends after the body: %q", got)
	}
}

func TestEditRefused(t *testing.T) {
	var s Session
	mustParse(t, &s, withHead("m=audio 5000 RTP/AVP 0"))
	var e Editor
	e.Reset(&s)
	ip := []byte("192.0.2.1")
	for name, ok := range map[string]bool{
		"value with CR LF":       e.AddAttribute(0, "x", []byte("1\r\na=injected")),
		"value with NUL":         e.SetAttribute(0, "x", []byte{'1', 0}),
		"name with a colon":      e.AddAttribute(0, "x:y", nil),
		"empty name":             e.AddAttribute(0, "", nil),
		"media out of range":     e.SetPort(1, 5000),
		"negative media":         e.SetConnection(-2, []byte("IP4"), ip),
		"port over 65535":        e.SetPort(0, 65536),
		"rtcp port over 65535":   e.SetRTCP(0, 65536, nil, nil),
		"address with LF":        e.SetConnections([]byte("IP4"), []byte("1.2.3.4\nx")),
		"no rtcp and no port":    e.SetRTCP(0, -1, []byte("IP4"), ip),
		"direction out of range": e.SetDirection(0, Inactive+1),
		"session-level port":     e.SetPort(SessionLevel, 5000),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if e.n != 0 {
		t.Errorf("%d splices recorded by refused edits", e.n)
	}
	for k := 0; k < MaxEdits; k++ {
		if !e.AddAttribute(0, "x", []byte(strconv.Itoa(k))) {
			t.Fatalf("edit %d refused", k)
		}
	}
	if e.AddAttribute(0, "x", nil) || e.SetPort(0, 1) {
		t.Error("an edit beyond MaxEdits accepted")
	}
	var s2 Session
	mustParse(t, &s2, noConn("m=audio 0 RTP/AVP 0"))
	e.Reset(&s2)
	if e.SetConnections([]byte("IP4"), ip) {
		t.Error("SetConnections without any c= reported a change")
	}
}

// TestEditAppendToTwice: AppendTo can be called again and gives the same.
func TestEditAppendToTwice(t *testing.T) {
	var s Session
	mustParse(t, &s, mustRead(t, "chrome-webrtc.sdp"))
	var e Editor
	e.Reset(&s)
	e.SetPort(2, 1)
	e.RemoveICE()
	e.SetPort(0, 3)
	a := string(e.AppendTo(nil))
	if b := string(e.AppendTo(nil)); a != b {
		t.Error("second AppendTo differs")
	}
}

// TestEditOverlap: an edit inside a removed line is dropped, and a line
// inserted between two removed lines stays although removals of adjacent
// lines share a splice.
func TestEditOverlap(t *testing.T) {
	body := string(withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001", "a=x", "a=y", "a=z"))
	got := edit(t, body, func(e *Editor, s *Session) {
		if !e.RemoveAttribute(0, "rtcp") || !e.SetRTCP(0, 6001, []byte("IP4"), []byte("192.0.2.8")) {
			t.Fatal("refused")
		}
	})
	if want := string(withHead("m=audio 5000 RTP/AVP 0", "a=x", "a=y", "a=z")); got != want {
		t.Errorf("edit inside a removed line: got\n%s", got)
	}
	got = edit(t, body, func(e *Editor, s *Session) {
		// lines 8-10 are a=x a=y a=z; insert at the start of a=y first
		y := s.lines[8].start
		e.add(splice{start: y, end: y, kind: opAttr, name: "new"})
		if !e.RemoveAttribute(0, "x") || !e.RemoveAttribute(0, "y") {
			t.Fatal("refused")
		}
	})
	if want := string(withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001", "a=new", "a=z")); got != want {
		t.Errorf("insertion between removals: got\n%s", got)
	}
}
