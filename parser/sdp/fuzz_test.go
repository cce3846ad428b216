package sdp

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, every accessor, Validate and
// the editor. Nothing may panic; an error must say where; whatever parses
// must write back unchanged with no edits, and with the NAT and relay
// edits to a body that parses again and reads back the edits.
func FuzzParse(f *testing.F) {
	for _, name := range testBodies {
		f.Add(mustRead(f, name))
	}
	for _, b := range [][]byte{
		withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 233.252.0.1/127/3", "a=rtcp:5001", "a=sendonly"),
		noConn("m=audio 0 RTP/AVP", "m=video 5002/2 RTP/AVP 31", "c=IN IP6 ff15::101/3", "a=rtcp:5003 IN IP6 ::1"),
		[]byte("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 h.example\nt=0 0\nm=audio 1 RTP/AVP 0\na=inactive"),
		withHead("a=ice-ufrag:F7gI", "m=audio 5000 RTP/AVP 0", "a=candidate:1 1 UDP 1 192.0.2.1 5000 typ srflx raddr ::1 rport 9 generation 0"),
		append(withHead("m=audio 5000 RTP/AVP 0"), "\r\n\r\n"...),
	} {
		f.Add(b)
	}
	out := make([]byte, 0, 1<<16)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, w := range bytes.Fields(b) {
			checkAddr(t, w)
		}
		var s Session
		if err := s.Parse(b); err != nil {
			e, ok := err.(*Error)
			if !ok || e.Kind == KindNone || e.Kind >= numKinds || e.Offset < 0 || e.Offset > len(b) ||
				e.Line < 0 || e.Line > MaxLines+1 {
				t.Fatalf("bad error %#v", err)
			}
			_ = e.Error()
			return
		}
		readEverything(&s)
		var e Editor
		e.Reset(&s)
		if got := e.AppendTo(out[:0]); !bytes.Equal(got, b) {
			t.Fatalf("AppendTo without edits changed the body:\n%q\n%q", b, got)
		}
		checkEdited(t, &s, b, out)
	})
}

// checkEdited applies the NAT and relay edits and checks the result.
func checkEdited(t *testing.T, s *Session, b, out []byte) {
	// Edits make lines longer and add some: a body at the limits may not
	// take them.
	if s.NumLines()+3 > MaxLines || len(b)+1024 > DefaultMaxSize || longestLine(b)+64 > MaxLineLength {
		return
	}
	var e Editor
	natEdit(&e, s)
	got := e.AppendTo(out[:0])
	var s2 Session
	if err := s2.Parse(got); err != nil {
		t.Fatalf("edited body does not parse: %v\n%q\n%q", err, b, got)
	}
	if s2.NumMedia() != s.NumMedia() {
		t.Fatalf("media sections %d, were %d", s2.NumMedia(), s.NumMedia())
	}
	if string(s2.Origin().Address) != string(relayIP) {
		t.Fatalf("origin %q", s2.Origin().Address)
	}
	if c, ok := s2.Connection(); ok && string(c.Address) != string(relayIP) {
		t.Fatalf("session c= %q", c.Address)
	}
	if v, _ := s2.Attr("nortpproxy"); string(v) != "yes" {
		t.Fatal("a=nortpproxy:yes missing")
	}
	for it := s2.Lines(); it.Next(); {
		if it.Line.Type == 'a' && (strings.HasPrefix(string(it.Line.Value), "candidate") || strings.HasPrefix(string(it.Line.Value), "ice-")) {
			if n := lookupAttr(bytes.SplitN(it.Line.Value, []byte(":"), 2)[0]); n.isICE() {
				t.Fatalf("ICE line %d left: %q", it.Line.Line, it.Line.Value)
			}
		}
	}
	for i := 0; i < s2.NumMedia(); i++ {
		m, old := s2.Media(i), s.Media(i)
		if m.HasConnection() {
			if c, _ := m.Connection(); string(c.Address) != string(relayIP) {
				t.Fatalf("media %d c= %q", i, c.Address)
			}
		}
		if old.Port == 0 {
			if m.Port != 0 {
				t.Fatalf("media %d: port %d", i, m.Port)
			}
			continue
		}
		if m.Port != 30000+2*i || m.NumPorts != old.NumPorts {
			t.Fatalf("media %d: port %d/%d", i, m.Port, m.NumPorts)
		}
		if r, ok := m.RTCP(); !ok || r.Port != 30001+2*i || string(r.Address) != string(relayIP) {
			t.Fatalf("media %d: rtcp %+v", i, r)
		}
	}
	if s2.NumMedia() > 0 && s2.Media(0).Direction() != SendRecv {
		t.Fatalf("direction %v", s2.Media(0).Direction())
	}
}

func longestLine(b []byte) int {
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		n = max(n, len(l))
	}
	return n
}
