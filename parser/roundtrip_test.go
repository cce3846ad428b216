package parser

import (
	"bytes"
	"reflect"
	"testing"
)

// fields is what a round trip must preserve.
type fields struct {
	request          bool
	method, ruri     string
	status           int
	reason           string
	callID           string
	cseq             uint32
	cseqMethod       string
	fromURI, fromTag string
	toURI, toTag     string
	mf               int
	hasMF            bool
	vias             []string
	body             string
	nh               int
}

func fieldsOf(t testing.TB, m *Message) fields {
	f := fields{
		request: m.IsRequest(), method: string(m.MethodBytes()), ruri: string(m.RequestURI()),
		status: m.StatusCode(), reason: string(m.Reason()), callID: string(m.CallID()),
		cseq: m.CSeq().Num, cseqMethod: string(m.CSeq().MethodRaw),
		fromURI: string(m.From().URI), fromTag: string(m.FromTag()),
		toURI: string(m.To().URI), toTag: string(m.ToTag()),
		body: string(m.Body()), nh: m.NumHeaders(),
	}
	f.mf, f.hasMF = m.MaxForwards()
	it := m.Vias()
	for it.Next() {
		f.vias = append(f.vias, string(it.Via.Host)+"|"+string(it.Via.Branch)+"|"+string(it.Via.Received))
	}
	return f
}

func sameFields(a, b fields) bool {
	if len(a.vias) != len(b.vias) {
		return false
	}
	for i := range a.vias {
		if a.vias[i] != b.vias[i] {
			return false
		}
	}
	a.vias, b.vias = nil, nil
	return reflect.DeepEqual(a, b)
}

// checkRoundTrip writes m through an editor without edits and with the
// proxy edits, re-parses both and compares the fields.
func checkRoundTrip(t *testing.T, m *Message) {
	t.Helper()
	before := fieldsOf(t, m)
	var e Editor
	e.Reset(m)
	out := e.AppendTo(nil)
	var m2 Message
	if err := m2.Parse(out); err != nil {
		t.Fatalf("re-parse of unedited output: %v\n%s", err, out)
	}
	after := fieldsOf(t, &m2)
	_, hadCL := m.ContentLength()
	if !hadCL {
		after.nh-- // the editor added Content-Length
	}
	if !sameFields(before, after) {
		t.Fatalf("unedited round trip changed fields:\n%+v\n%+v", before, after)
	}
	if hadCL && !bytes.Equal(out, m.Bytes()) {
		t.Fatalf("unedited output differs from input:\n%q\n%q", out, m.Bytes())
	}
	if !m.IsRequest() {
		return
	}
	// The proxy edits.
	e.Reset(m)
	e.InsertVia([]byte("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1"))
	e.SetViaReceived([]byte("127.0.0.2"), 5099)
	e.RemoveFirstRoute()
	e.InsertRecordRoute([]byte("<sip:127.0.0.1;lr>"))
	e.DecrementMaxForwards()
	e.SetRequestURI([]byte("sip:new@127.0.0.1:5070"))
	out = e.AppendTo(out[:0])
	if err := m2.Parse(out); err != nil {
		t.Fatalf("re-parse of edited output: %v\n%s", err, out)
	}
	want := before
	want.ruri = "sip:new@127.0.0.1:5070"
	if want.hasMF {
		want.mf = max(want.mf-1, 0)
	} else {
		want.mf, want.hasMF = 70, true
	}
	want.vias = append([]string{"127.0.0.1|z9hG4bKproxy1|"}, want.vias...)
	if len(want.vias) > 1 {
		v := m.TopVia()
		want.vias[1] = string(v.Host) + "|" + string(v.Branch) + "|127.0.0.2"
	}
	got := fieldsOf(t, &m2)
	got.nh = want.nh
	if !sameFields(want, got) {
		t.Fatalf("edited round trip:\nwant %+v\ngot  %+v\n%s", want, got, out)
	}
	rr := m2.NameAddrs(HdrRecordRoute)
	if !rr.Next() || string(rr.NameAddr.URI) != "sip:127.0.0.1;lr" {
		t.Errorf("top Record-Route %q", rr.NameAddr.URI)
	}
	nr, nr2 := countValues(m, HdrRoute), countValues(&m2, HdrRoute)
	if nr > 0 && nr2 != nr-1 {
		t.Errorf("routes %d -> %d", nr, nr2)
	}
}

func countValues(m *Message, h HeaderName) int {
	n := 0
	it := m.NameAddrs(h)
	for it.Next() {
		n++
	}
	return n
}
