package parser

import (
	"os"
	"testing"
)

func mustRead(t testing.TB, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoAllocs(t *testing.T, what string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Errorf("%s: %v allocs/op", what, n)
	}
}

func TestParseAllocs(t *testing.T) {
	b := mustRead(t, "testdata/bench/invite.sip")
	var m Message
	assertNoAllocs(t, "Parse INVITE with SDP", func() {
		if err := m.Parse(b); err != nil {
			t.Fatal(err)
		}
	})
	bad := []byte(req("Content-Length: 10\r\n\r\nabc"))
	assertNoAllocs(t, "Parse error path", func() {
		if err := m.Parse(bad); err == nil {
			t.Fatal("no error")
		}
	})
}

// readEverything reads every typed field the parser offers.
func readEverything(m *Message, scratch []byte) int {
	n := 0
	n += len(m.MethodBytes()) + int(m.Method()) + len(m.RequestURI()) + len(m.Version()) + m.StatusCode() + len(m.Reason())
	u := m.RURI()
	n += len(u.User) + len(u.Host) + u.Port + len(u.Params)
	if u.LR() {
		n++
	}
	n += len(u.Transport()) + len(u.MAddr())
	v := m.TopVia()
	n += len(v.Branch) + len(v.Host) + v.Port + len(v.Received) + len(v.RPort) + len(v.Transport)
	if v.RFC3261Branch() {
		n++
	}
	n += len(m.From().URI) + len(m.From().DisplayName) + len(m.FromTag()) + len(m.To().URI) + len(m.ToTag())
	n += len(m.CallID()) + int(m.CSeq().Num) + int(m.CSeq().Method)
	mf, _ := m.MaxForwards()
	cl, _ := m.ContentLength()
	n += mf + cl + len(m.Body())
	vi := m.Vias()
	for vi.Next() {
		n += len(vi.Via.Branch)
		p, _ := vi.Via.Param("x")
		n += len(p)
	}
	for _, h := range [...]HeaderName{HdrContact, HdrRoute, HdrRecordRoute, HdrPath, HdrPAssertedIdentity} {
		it := m.NameAddrs(h)
		for it.Next() {
			na := &it.NameAddr
			n += len(na.URI) + len(na.Tag) + na.Q() + na.RegID() + len(na.Instance())
			e, _ := na.Expires()
			n += int(e)
			uu, err := na.ParseURI()
			if err == nil {
				n += len(uu.Host)
				s, _ := Unescape(scratch[:0], uu.User)
				n += len(s)
			}
		}
	}
	for _, h := range [...]HeaderName{HdrRequire, HdrProxyRequire, HdrSupported, HdrAllow} {
		ti := m.Tokens(h)
		for ti.Next() {
			n += len(ti.Token)
		}
	}
	if m.HasToken(HdrSupported, "timer") {
		n++
	}
	var a Auth
	for _, h := range [...]HeaderName{HdrAuthorization, HdrProxyAuthorization, HdrWWWAuthenticate, HdrProxyAuthenticate} {
		if m.Auth(h, &a) {
			n += len(a.Username) + len(a.Response) + len(a.Nonce)
		}
	}
	if ev, ok := m.Event(); ok {
		n += len(ev.Package)
	}
	e, _ := m.Expires()
	n += int(e) + len(m.ContentType()) + len(m.MediaType()) + len(m.UserAgent()) + len(m.Server())
	n += len(m.GetByName([]byte("X-Unknown"))) + len(m.Get(HdrSubject))
	for i := 0; i < m.NumHeaders(); i++ {
		n += len(m.HeaderAt(i).Value)
	}
	if m.Validate() == nil {
		n++
	}
	vd := m.ProxyVerdict([]string{"timer"}, scratch[:0])
	n += vd.Code
	vd = m.UASVerdict([]string{"timer"}, nil, scratch[:0])
	n += vd.Code
	return n
}

func TestFieldAllocs(t *testing.T) {
	scratch := make([]byte, 0, 256)
	for _, name := range benchMessages {
		b := mustRead(t, "testdata/bench/"+name+".sip")
		var m Message
		if err := m.Parse(b); err != nil {
			t.Fatal(err)
		}
		if readEverything(&m, scratch) == 0 {
			t.Fatal("nothing read")
		}
		assertNoAllocs(t, "fields of "+name, func() { sink += readEverything(&m, scratch) })
	}
}

var newFrom = []byte("<sip:trunk@carrier.example>;tag=t")

func TestEditAllocs(t *testing.T) {
	out := make([]byte, 0, 4096)
	resp := make([]byte, 0, 2048)
	var e Editor
	var m Message
	for _, name := range benchMessages {
		b := mustRead(t, "testdata/bench/"+name+".sip")
		assertNoAllocs(t, "parse+proxy edits+AppendTo "+name, func() {
			if err := m.Parse(b); err != nil {
				t.Fatal(err)
			}
			proxyEdit(&e, &m)
			out = e.AppendTo(out[:0])
		})
		assertNoAllocs(t, "SetCSeq+SetHeaderValue "+name, func() {
			e.Reset(&m)
			e.SetCSeq(7)
			e.SetHeaderValue(HdrFrom, newFrom)
			out = e.AppendTo(out[:0])
		})
		assertNoAllocs(t, "DropHeaders "+name, func() {
			e.Reset(&m)
			e.DropHeaders(HdrVia)
			e.DropHeaders(HdrRecordRoute)
			e.InsertVia(newFrom)
			out = e.AppendTo(out[:0])
		})
		if m.IsRequest() {
			assertNoAllocs(t, "AppendResponse "+name, func() {
				resp = AppendResponseHeaders(resp[:0], &m, 100, nil, []byte("abc"), []byte("Server: x\r\n"))
			})
		}
		assertNoAllocs(t, "FrameLength "+name, func() {
			if _, n, err := FrameLength(b, 0); err != nil || n == 0 {
				t.Fatal(n, err)
			}
		})
	}
}
