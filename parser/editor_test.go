package parser

import (
	"strings"
	"testing"
)

const editBase = "INVITE sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport, SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKc\r\n" +
	"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n" +
	"Route: <sip:p3.example.com;lr>\r\n" +
	"Max-Forwards: 10\r\n" +
	"From: <sip:alice@example.com>;tag=f\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"Call-ID: edit-1\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"X-Remove-Me: 1\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Length: 5\r\n" +
	"\r\n" +
	"hello"

func parseOrDie(t *testing.T, b []byte) *Message {
	t.Helper()
	var m Message
	if err := m.Parse(b); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return &m
}

func edit(t *testing.T, f func(e *Editor)) (*Message, string) {
	t.Helper()
	m := parseOrDie(t, []byte(editBase))
	var e Editor
	e.Reset(m)
	f(&e)
	out := e.AppendTo(nil)
	return parseOrDie(t, out), string(out)
}

func vias(m *Message) []string {
	var out []string
	it := m.Vias()
	for it.Next() {
		out = append(out, string(it.Via.Raw))
	}
	return out
}

func values(m *Message, h HeaderName) []string {
	var out []string
	it := m.NameAddrs(h)
	for it.Next() {
		out = append(out, string(it.NameAddr.URI))
	}
	return out
}

func TestEditorNoEdits(t *testing.T) {
	_, out := edit(t, func(e *Editor) {})
	if out != editBase {
		t.Errorf("unedited output differs:\n%s", out)
	}
}

func TestEditorRemoveTopViaSharedLine(t *testing.T) {
	m, out := edit(t, func(e *Editor) { e.RemoveTopVia() })
	got := vias(m)
	if len(got) != 2 || got[0] != "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb" {
		t.Errorf("vias %q\n%s", got, out)
	}
	// removing the only value of a line removes the line
	b := strings.Replace(editBase, ", SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb", "", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	e.RemoveTopVia()
	out = string(e.AppendTo(nil))
	if strings.Contains(out, "192.0.2.1") || strings.Count(out, "Via:") != 1 {
		t.Errorf("line not removed:\n%s", out)
	}
}

func TestEditorInsertAndRemoveViaEitherOrder(t *testing.T) {
	for _, insertFirst := range []bool{true, false} {
		m, out := edit(t, func(e *Editor) {
			if insertFirst {
				e.InsertVia([]byte("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnew"))
				e.RemoveTopVia()
			} else {
				e.RemoveTopVia()
				e.InsertVia([]byte("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnew"))
			}
		})
		got := vias(m)
		if len(got) != 3 || string(m.TopVia().Branch) != "z9hG4bKnew" || got[1] != "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb" {
			t.Errorf("insertFirst=%v: %q\n%s", insertFirst, got, out)
		}
	}
}

func TestEditorReceivedRPort(t *testing.T) {
	m, out := edit(t, func(e *Editor) { e.SetViaReceived([]byte("198.51.100.7"), 40000) })
	v := m.TopVia()
	if string(v.Received) != "198.51.100.7" || string(v.RPort) != "40000" || string(v.Branch) != "z9hG4bKa" {
		t.Errorf("%+v\n%s", v, out)
	}
	if len(vias(m)) != 3 {
		t.Error("values lost")
	}
	// replacing existing values; rport not asked for is not added
	b := strings.Replace(editBase, ";branch=z9hG4bKa;rport", ";received=10.0.0.1;branch=z9hG4bKa;rport=1", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	e.SetViaReceived([]byte("198.51.100.8"), 2)
	m1 := parseOrDie(t, e.AppendTo(nil))
	if string(m1.TopVia().Received) != "198.51.100.8" || string(m1.TopVia().RPort) != "2" {
		t.Errorf("%+v", m1.TopVia())
	}
	b = strings.Replace(editBase, ";rport", "", 1)
	m0 = parseOrDie(t, []byte(b))
	e.Reset(m0)
	e.SetViaReceived(nil, 5)
	m1 = parseOrDie(t, e.AppendTo(nil))
	if m1.TopVia().HasRPort || m1.TopVia().Received != nil {
		t.Errorf("rport added although not requested: %+v", m1.TopVia())
	}
}

func TestEditorRoutes(t *testing.T) {
	m, out := edit(t, func(e *Editor) { e.RemoveFirstRoute() })
	got := values(m, HdrRoute)
	if strings.Join(got, " ") != "sip:p2.example.com;lr sip:p3.example.com;lr" {
		t.Errorf("routes %q\n%s", got, out)
	}
	// the first value after a Route line that holds none is removed, not
	// the empty line (found by FuzzParse)
	b0 := strings.Replace(editBase, "Route: <sip:p1", "Route:\r\nRoute: <sip:p1", 1)
	me := parseOrDie(t, []byte(b0))
	var e0 Editor
	e0.Reset(me)
	if !e0.RemoveFirstRoute() {
		t.Fatal("RemoveFirstRoute after an empty Route line did nothing")
	}
	out0 := e0.AppendTo(nil)
	if got := values(parseOrDie(t, out0), HdrRoute); strings.Join(got, " ") != "sip:p2.example.com;lr sip:p3.example.com;lr" {
		t.Errorf("routes after an empty Route line %q\n%s", got, out0)
	}
	// twice removes the same first value (edits refer to the parsed message)
	m, _ = edit(t, func(e *Editor) {
		e.InsertRecordRoute([]byte("<sip:rr1.example.com;lr>"))
		e.InsertRecordRoute([]byte("<sip:rr2.example.com;lr>"))
	})
	got = values(m, HdrRecordRoute)
	if strings.Join(got, " ") != "sip:rr1.example.com;lr sip:rr2.example.com;lr" {
		t.Errorf("record-routes %q", got)
	}
	// above an existing Record-Route
	b := strings.Replace(editBase, "Max-Forwards: 10\r\n", "Max-Forwards: 10\r\nRecord-Route: <sip:old.example.com;lr>\r\n", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	e.InsertRecordRoute([]byte("<sip:new.example.com;lr>"))
	m1 := parseOrDie(t, e.AppendTo(nil))
	got = values(m1, HdrRecordRoute)
	if strings.Join(got, " ") != "sip:new.example.com;lr sip:old.example.com;lr" {
		t.Errorf("record-routes %q", got)
	}
}

func TestEditorMaxForwardsAndURI(t *testing.T) {
	m, _ := edit(t, func(e *Editor) {
		e.DecrementMaxForwards()
		e.SetRequestURI([]byte("sip:bob@192.0.2.50:5080;transport=tcp"))
	})
	if n, _ := m.MaxForwards(); n != 9 {
		t.Errorf("Max-Forwards %d", n)
	}
	if string(m.RURI().Host) != "192.0.2.50" || m.RURI().Port != 5080 {
		t.Errorf("R-URI %s", m.RequestURI())
	}
	b := strings.Replace(editBase, "Max-Forwards: 10\r\n", "", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	e.DecrementMaxForwards()
	m1 := parseOrDie(t, e.AppendTo(nil))
	if n, ok := m1.MaxForwards(); !ok || n != 70 {
		t.Errorf("added Max-Forwards %d %v", n, ok)
	}
}

func TestEditorHeadersAndBody(t *testing.T) {
	m, out := edit(t, func(e *Editor) {
		e.AddHeader("X-Added", []byte("yes"))
		e.AddHeaderTop("X-Top", []byte("1"))
		e.RemoveHeadersByName([]byte("x-remove-me"))
		e.SetBody([]byte("v=0\r\n"), []byte("application/sdp"))
	})
	if string(m.GetByName([]byte("X-Added"))) != "yes" || m.GetByName([]byte("X-Remove-Me")) != nil {
		t.Errorf("headers:\n%s", out)
	}
	if m.HeaderAt(0).Name != HdrOther || string(m.HeaderAt(0).RawName) != "X-Top" {
		t.Errorf("top header %q", m.HeaderAt(0).RawName)
	}
	if string(m.Body()) != "v=0\r\n" || string(m.MediaType()) != "application/sdp" {
		t.Errorf("body %q type %q", m.Body(), m.MediaType())
	}
	if n, _ := m.ContentLength(); n != 5 {
		t.Errorf("Content-Length %d", n)
	}
	// body removed, Content-Type added when absent
	b := strings.Replace(editBase, "Content-Type: text/plain\r\n", "", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	e.SetBody([]byte("xyzxyzxyz"), []byte("text/x"))
	m1 := parseOrDie(t, e.AppendTo(nil))
	if n, _ := m1.ContentLength(); n != 9 || string(m1.ContentType()) != "text/x" {
		t.Errorf("CL %d CT %q", n, m1.ContentType())
	}
	e.Reset(m0)
	e.RemoveHeaders(HdrContentType)
	e.SetBody(nil, nil)
	m1 = parseOrDie(t, e.AppendTo(nil))
	if n, _ := m1.ContentLength(); n != 0 || len(m1.Body()) != 0 {
		t.Errorf("emptied body: %d %q", n, m1.Body())
	}
}

func TestEditorAddsContentLengthAndDropsTrailing(t *testing.T) {
	b := []byte("OPTIONS sip:b@example.com SIP/2.0\r\n" + okHeaders + "\r\nbody")
	m := parseOrDie(t, b)
	var e Editor
	e.Reset(m)
	out := e.AppendTo(nil)
	out2 := e.AppendTo(nil) // idempotent
	if string(out) != string(out2) {
		t.Error("AppendTo not repeatable")
	}
	m1 := parseOrDie(t, out)
	if n, ok := m1.ContentLength(); !ok || n != 4 {
		t.Errorf("Content-Length %d %v\n%s", n, ok, out)
	}
	// trailing datagram octets after Content-Length are not written
	b = []byte(req("Content-Length: 2\r\n\r\nokJUNK"))
	m = parseOrDie(t, b)
	e.Reset(m)
	if out := e.AppendTo(nil); strings.Contains(string(out), "JUNK") {
		t.Errorf("trailing octets written:\n%s", out)
	}
}

func TestEditorLimit(t *testing.T) {
	m := parseOrDie(t, []byte(editBase))
	var e Editor
	e.Reset(m)
	for i := 0; i < MaxEdits; i++ {
		if !e.AddHeader("X-N", []byte("1")) {
			t.Fatalf("edit %d refused", i)
		}
	}
	if e.AddHeader("X-N", []byte("1")) {
		t.Error("edit beyond MaxEdits accepted")
	}
	m1 := parseOrDie(t, e.AppendTo(nil))
	if m1.Count(HdrOther) != 0 && m1.NumHeaders() != m.NumHeaders()+MaxEdits {
		t.Errorf("%d headers", m1.NumHeaders())
	}
	e.Reset(m)
	var r Message
	r.Parse([]byte("SIP/2.0 200 OK\r\n" + okHeaders + "\r\n"))
	e.Reset(&r)
	if e.SetRequestURI([]byte("sip:x")) {
		t.Error("R-URI set on a response")
	}
}

func TestEditorSetHeaderValueAndCSeq(t *testing.T) {
	m, out := edit(t, func(e *Editor) {
		e.SetHeaderValue(HdrFrom, []byte(`"Trunk" <sip:+4930100@carrier.example>;tag=f`))
		e.SetCSeq(4294967295)
	})
	if string(m.From().URI) != "sip:+4930100@carrier.example" || string(m.From().DisplayName) != `"Trunk"` || string(m.FromTag()) != "f" {
		t.Errorf("From %q:\n%s", m.Get(HdrFrom), out)
	}
	if cs := m.CSeq(); cs.Num != 4294967295 || cs.Method != MethodInvite {
		t.Errorf("CSeq %+v:\n%s", cs, out)
	}
	// compact form, LWS between number and method, no To header
	b := strings.Replace(editBase, "CSeq: 1 INVITE", "CSeq:   17\t INVITE", 1)
	b = strings.Replace(b, "To: <sip:bob@example.com>", "t: <sip:bob@example.com>", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	if !e.SetCSeq(18) || !e.SetHeaderValue(HdrTo, []byte("<sip:carol@example.net>")) {
		t.Fatal("edit refused")
	}
	m1 := parseOrDie(t, e.AppendTo(nil))
	if m1.CSeq().Num != 18 || string(m1.CSeq().MethodRaw) != "INVITE" || string(m1.To().URI) != "sip:carol@example.net" {
		t.Errorf("CSeq %+v To %q", m1.CSeq(), m1.Get(HdrTo))
	}
	if e.SetHeaderValue(HdrOther, []byte("x")) || e.SetHeaderValue(HdrPath, []byte("x")) {
		t.Error("SetHeaderValue of a missing or unknown header edited something")
	}
}

func TestEditorDropHeaders(t *testing.T) {
	// Every Via goes, ours inserted at the first one's place stays; the
	// received parameter recorded on the old top Via goes with it.
	m, out := edit(t, func(e *Editor) {
		e.SetViaReceived([]byte("198.51.100.1"), 5060)
		if !e.DropHeaders(HdrVia) {
			t.Fatal("DropHeaders(Via) refused")
		}
		e.InsertVia([]byte("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKours"))
		e.RemoveTopVia() // the same line removed twice: no harm
	})
	if got := vias(m); len(got) != 1 || got[0] != "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKours" {
		t.Errorf("vias %q:\n%s", got, out)
	}
	if strings.Contains(out, "received") || strings.Contains(out, "192.0.2.") {
		t.Errorf("a dropped Via's bytes were written:\n%s", out)
	}
	if !strings.HasPrefix(out, "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1") {
		t.Errorf("our Via is not the first line:\n%s", out)
	}
	// Route lines replaced by one added line; the other headers, body
	// and Content-Length as they were.
	m, out = edit(t, func(e *Editor) {
		e.RemoveFirstRoute()
		e.DropHeaders(HdrRoute)
		e.AddHeader("Route", []byte("<sip:new.example.net;lr>"))
	})
	if got := values(m, HdrRoute); len(got) != 1 || got[0] != "sip:new.example.net;lr" {
		t.Errorf("routes %q:\n%s", got, out)
	}
	if len(vias(m)) != 3 || m.Get(HdrOther) != nil || string(m.Body()) != "hello" || m.Get(HdrContentType) == nil {
		t.Errorf("other headers changed:\n%s", out)
	}
	// Names that cannot be dropped.
	var e Editor
	e.Reset(m)
	if e.DropHeaders(HdrContentLength) || e.DropHeaders(HdrOther) || e.DropHeaders(numHeaderNames) {
		t.Error("Content-Length, an unknown name or an out-of-range name accepted")
	}
}

// TestEditorDropHeadersManyLines: 28 lines of a name interleaved with
// others, all dropped while the editor holds MaxEdits splices (one line
// removed per splice would not fit), its other edits still applied;
// Reset forgets the names.
func TestEditorDropHeadersManyLines(t *testing.T) {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for i := 0; i < 28; i++ {
		b.WriteString("Record-Route: <sip:10.0.0." + strings.Repeat("1", 1+i%3) + ";lr>\r\nX-Keep: " + string(rune('a'+i%26)) + "\r\n")
	}
	b.WriteString("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n" +
		"Call-ID: many\r\nCSeq: 1 INVITE\r\nContact: <sip:b@10.0.0.5>\r\nContent-Length: 0\r\n\r\n")
	m := parseOrDie(t, []byte(b.String()))
	var e Editor
	e.Reset(m)
	e.DropHeaders(HdrRecordRoute)
	e.DropHeaders(HdrContact)
	e.InsertRecordRoute([]byte("<sip:caller-side.example;lr>"))
	e.AddHeader("Contact", []byte("<sip:203.0.113.1;th=x>"))
	e.SetCSeq(9)
	for e.AddHeader("X-Added", []byte("1")) {
	}
	out := string(e.AppendTo(nil))
	// Too many lines to parse again: read the text.
	for _, want := range []string{"\r\nRecord-Route: <sip:caller-side.example;lr>\r\nX-Keep: a\r\n", "\r\nCSeq: 9 INVITE\r\n",
		"\r\nContact: <sip:203.0.113.1;th=x>\r\n"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want %q once:\n%s", want, out)
		}
	}
	if strings.Contains(out, "10.0.0.") || strings.Count(out, "Record-Route:") != 1 || strings.Count(out, "Contact:") != 1 ||
		strings.Count(out, "X-Keep: ") != 28 || strings.Count(out, "X-Added: 1\r\n") != MaxEdits-3 {
		t.Errorf("dropped lines written, or other lines lost:\n%s", out)
	}
	e.Reset(m)
	if out := string(e.AppendTo(nil)); out != b.String() {
		t.Errorf("Reset kept the dropped names:\n%s", out)
	}
}

func TestEditorReplaceHeaders(t *testing.T) {
	// Two Route lines become one where the first was; Via lines become
	// one on top.
	m, out := edit(t, func(e *Editor) {
		if !e.ReplaceHeaders(HdrRoute, []byte("<sip:new.example.net;lr>, <sip:next.example.net;lr>")) ||
			!e.ReplaceHeaders(HdrVia, []byte("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKx")) {
			t.Fatal("refused")
		}
	})
	if got := values(m, HdrRoute); strings.Join(got, " ") != "sip:new.example.net;lr sip:next.example.net;lr" {
		t.Errorf("routes %q:\n%s", got, out)
	}
	want := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKx\r\n" +
		"Route: <sip:new.example.net;lr>, <sip:next.example.net;lr>\r\nMax-Forwards: 10\r\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("not in place:\n%s", out)
	}
	// A header the message does not have goes at the end.
	m, out = edit(t, func(e *Editor) { e.ReplaceHeaders(HdrContact, []byte("<sip:203.0.113.1>")) })
	if !strings.HasSuffix(out, "Content-Length: 5\r\nContact: <sip:203.0.113.1>\r\n\r\nhello") || m.Count(HdrContact) != 1 {
		t.Errorf("Contact not added at the end:\n%s", out)
	}
	var e Editor
	e.Reset(m)
	if e.ReplaceHeaders(HdrContentLength, []byte("1")) || e.ReplaceHeaders(HdrOther, []byte("1")) {
		t.Error("Content-Length or an unknown name replaced")
	}
}

// TestEditorAddViaRPort: force_rport adds ";rport=N" to a top Via that
// has none (and only to it), and leaves a Via that has one to
// SetViaReceived.
func TestEditorAddViaRPort(t *testing.T) {
	b := strings.Replace(editBase, ";branch=z9hG4bKa;rport", ";branch=z9hG4bKa", 1)
	m0 := parseOrDie(t, []byte(b))
	var e Editor
	e.Reset(m0)
	if !e.AddViaRPort(40000) || !e.SetViaReceived([]byte("198.51.100.7"), 0) {
		t.Fatal("refused")
	}
	out := e.AppendTo(nil)
	m := parseOrDie(t, out)
	v := m.TopVia()
	if !v.HasRPort || string(v.RPort) != "40000" || string(v.Received) != "198.51.100.7" || string(v.Branch) != "z9hG4bKa" {
		t.Fatalf("%+v\n%s", v, out)
	}
	if got := vias(m); len(got) != 3 || got[1] != "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb" {
		t.Fatalf("other Vias changed: %q", got)
	}
	e.Reset(parseOrDie(t, []byte(editBase)))
	if e.AddViaRPort(40000) {
		t.Fatal("added a second rport")
	}
}

// TestEditorReplace: a view into a header is replaced in place; a view
// into the body, into another buffer or empty is refused.
func TestEditorReplace(t *testing.T) {
	b := strings.Replace(editBase, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>\r\nContact: \"Bob\" <sip:bob@192.168.1.10:5062;transport=udp>;expires=60", 1)
	m0 := parseOrDie(t, []byte(b))
	var na NameAddr
	if !m0.Contact(&na) {
		t.Fatal("no Contact")
	}
	u, err := ParseURI(na.URI)
	if err != nil {
		t.Fatal(err)
	}
	hostport := na.URI[4+len(u.User)+1 : 4+len(u.User)+1+len("192.168.1.10:5062")]
	var e Editor
	e.Reset(m0)
	if !e.Replace(hostport, []byte("203.0.113.9:40000")) {
		t.Fatal("refused a view into the Contact")
	}
	out := e.AppendTo(nil)
	if c := parseOrDie(t, out).Get(HdrContact); string(c) != "\"Bob\" <sip:bob@203.0.113.9:40000;transport=udp>;expires=60" {
		t.Fatalf("Contact %q", c)
	}
	body := m0.Body()
	if e.Replace(body[:2], []byte("x")) || e.Replace([]byte("192.168.1.10"), []byte("x")) || e.Replace(hostport[:0], []byte("x")) {
		t.Fatal("accepted a view outside the headers")
	}
}

// TestEditorLengthAlwaysWritten: however many edits a route made, the
// Content-Length AppendTo writes is the length of the body it writes;
// the reserve after UseReserve takes ReservedEdits more, and no more.
func TestEditorLengthAlwaysWritten(t *testing.T) {
	m := parseOrDie(t, []byte(editBase))
	var e Editor
	e.Reset(m)
	for i := 0; i < MaxEdits-1; i++ {
		e.AddHeader("X-N", []byte("1"))
	}
	if !e.SetBody([]byte("a longer body"), nil) {
		t.Fatal("the last edit refused")
	}
	if e.AddHeader("X-N", []byte("1")) {
		t.Fatal("an edit beyond MaxEdits accepted")
	}
	out := parseOrDie(t, e.AppendTo(nil))
	if n, _ := out.ContentLength(); n != len("a longer body") || string(out.Body()) != "a longer body" {
		t.Fatalf("Content-Length %d, body %q", n, out.Body())
	}
	e.UseReserve()
	for i := 0; i < ReservedEdits; i++ {
		if !e.InsertVia([]byte("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKr")) {
			t.Fatalf("reserved edit %d refused", i)
		}
	}
	if e.InsertVia([]byte("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKr")) {
		t.Fatal("an edit beyond the reserve accepted")
	}
	// Too many lines to parse again (MaxHeaders): read the bytes.
	raw := string(e.AppendTo(nil))
	if vias := strings.Count(raw, "\r\nVia: "); vias != 2+ReservedEdits || !strings.Contains(raw, "\r\nContent-Length: 13\r\n") || !strings.HasSuffix(raw, "\r\n\r\na longer body") {
		t.Fatalf("%d Via lines:\n%s", vias, raw)
	}
	e.Reset(m)
	if e.AddHeader("X-N", []byte("1")); e.limit != MaxEdits {
		t.Fatal("Reset kept the reserve")
	}
}

// TestEditorLengthOfSeveralLines: a message with its Content-Length on
// several lines (of one value, which the parser takes) gets one line with
// the new body's length.
func TestEditorLengthOfSeveralLines(t *testing.T) {
	msg := strings.Replace(editBase, "Content-Length: 5\r\n", "Content-Length: 5\r\nl: 5\r\nContent-Length: 5\r\n", 1)
	m := parseOrDie(t, []byte(msg))
	var e Editor
	e.Reset(m)
	e.SetBody([]byte("hi"), nil)
	out := parseOrDie(t, e.AppendTo(nil))
	if n, _ := out.ContentLength(); n != 2 || out.Count(HdrContentLength) != 1 || string(out.Body()) != "hi" {
		t.Fatalf("Content-Length %d on %d lines, body %q", n, out.Count(HdrContentLength), out.Body())
	}
	// AppendTo again writes the same.
	if again := parseOrDie(t, e.AppendTo(nil)); again.Count(HdrContentLength) != 1 || string(again.Body()) != "hi" {
		t.Fatal("second AppendTo differs")
	}
}

// TestEditorRemoveHeadersOneEdit: RemoveHeaders takes one edit however
// many lines the header has.
func TestEditorRemoveHeadersOneEdit(t *testing.T) {
	msg := strings.Replace(editBase, "Route: <sip:p3.example.com;lr>\r\n", strings.Repeat("Route: <sip:p3.example.com;lr>\r\n", 40), 1)
	m := parseOrDie(t, []byte(msg))
	var e Editor
	e.Reset(m)
	if !e.RemoveHeaders(HdrRoute) {
		t.Fatal("RemoveHeaders refused")
	}
	for i := 0; i < MaxEdits; i++ {
		if !e.AddHeader("X-N", []byte("1")) {
			t.Fatalf("edit %d refused after RemoveHeaders", i)
		}
	}
	if out := parseOrDie(t, e.AppendTo(nil)); out.Has(HdrRoute) {
		t.Fatal("a Route line left")
	}
}
