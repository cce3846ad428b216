package sdp

import "testing"

func assertNoAllocs(t *testing.T, what string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Errorf("%s: %v allocs/op", what, n)
	}
}

// sink keeps reads from being optimised away.
var sink int

// readEverything reads every field the package offers.
func readEverything(s *Session) int {
	n := len(s.Bytes()) + len(s.Name()) + s.NumLines() + int(s.Direction())
	o := s.Origin()
	n += len(o.Username) + len(o.SessID) + len(o.SessVersion) + len(o.NetType) + len(o.AddrType) + len(o.Address)
	t := s.Timing()
	n += int(t.Start + t.Stop)
	if c, ok := s.Connection(); ok {
		n += len(c.Address) + c.TTL + c.Count
	}
	bw, _ := s.Bandwidth("AS")
	n += int(bw)
	for it := s.Attrs(); it.Next(); {
		n += len(it.Attr.Name) + len(it.Attr.Value) + it.Attr.Line
	}
	for it := s.Lines(); it.Next(); {
		n += int(it.Line.Type) + len(it.Line.Value)
	}
	v, _ := s.Attr("group")
	n += len(v)
	if s.HasAttr("ice-lite") {
		n++
	}
	for i := 0; i < s.NumMedia(); i++ {
		m := s.Media(i)
		n += len(m.Type) + m.Port + m.NumPorts + len(m.Proto) + len(m.Formats) + m.Index() + m.Line()
		if m.Disabled() || m.HasConnection() || m.RTCPMux() || m.HasAttr("ptime") {
			n++
		}
		if c, ok := m.Connection(); ok {
			n += len(c.Address)
		}
		n += int(m.Direction())
		if r, ok := m.RTCP(); ok {
			n += r.Port + len(r.Address)
		}
		for it := m.FormatIter(); it.Next(); {
			n += len(it.Format)
		}
		for it := m.Attrs(); it.Next(); {
			n += len(it.Attr.Value)
		}
		ci := m.Candidates()
		for ci.Next() {
			c := &ci.Candidate
			n += len(c.Foundation) + c.Component + len(c.Transport) + int(c.Priority) + len(c.Address) + c.Port + len(c.Type) + len(c.RelAddr) + c.RelPort + len(c.Ext)
		}
		if ci.Err() != nil {
			n++
		}
		ri := m.RTPMaps()
		for ri.Next() {
			n += ri.RTPMap.Payload + len(ri.RTPMap.Encoding) + ri.RTPMap.ClockRate + len(ri.RTPMap.Params)
		}
		if ri.Err() != nil {
			n++
		}
		fi := m.Fmtps()
		for fi.Next() {
			n += len(fi.Fmtp.Format) + len(fi.Fmtp.Params)
		}
		cr := m.Cryptos()
		for cr.Next() {
			n += int(cr.Crypto.Tag) + len(cr.Crypto.Suite) + len(cr.Crypto.KeyParams) + len(cr.Crypto.SessionParams)
		}
		r, _ := m.RTPMap(101)
		p, _ := m.Fmtp("101")
		n += len(r.Encoding) + len(p)
		f, _ := m.Fingerprint()
		n += len(f.Hash) + len(f.Value)
		n += len(m.ICEUfrag()) + len(m.ICEPwd()) + len(m.Setup()) + len(m.Mid())
		b, _ := m.Bandwidth("TIAS")
		n += int(b)
	}
	if s.Validate() == nil {
		n++
	}
	return n
}

// natEdit is what nathelper and a media relay do to an offer.
func natEdit(e *Editor, s *Session) {
	e.Reset(s)
	e.SetConnections(ip4, relayIP)
	e.SetOriginAddress(ip4, relayIP)
	e.RemoveICE()
	for i := 0; i < s.NumMedia(); i++ {
		if s.Media(i).Port != 0 {
			e.SetPort(i, 30000+2*i)
			e.SetRTCP(i, 30001+2*i, ip4, relayIP)
		}
	}
	e.SetDirection(0, SendRecv)
	e.AddAttribute(SessionLevel, "nortpproxy", yes)
}

var (
	ip4     = []byte("IP4")
	relayIP = []byte("203.0.113.7")
	yes     = []byte("yes")
)

func TestAllocs(t *testing.T) {
	out := make([]byte, 0, 16384)
	msg := make([]byte, 0, 128)
	var s Session
	var e Editor
	for _, name := range testBodies {
		body := mustRead(t, name)
		assertNoAllocs(t, "Parse "+name, func() {
			if err := s.Parse(body); err != nil {
				t.Fatal(err)
			}
		})
		if readEverything(&s) == 0 {
			t.Fatal("nothing read")
		}
		assertNoAllocs(t, "fields of "+name, func() { sink += readEverything(&s) })
		assertNoAllocs(t, "parse+edit+AppendTo "+name, func() {
			if err := s.Parse(body); err != nil {
				t.Fatal(err)
			}
			natEdit(&e, &s)
			out = e.AppendTo(out[:0])
		})
	}
	badPort := withHead("m=audio 99999 RTP/AVP 0")
	bad := withHead("m=audio 5000 RTP/AVP 0", "a=candidate:1 1 UDP 1 192.0.2.1 99999 typ host")
	assertNoAllocs(t, "error paths", func() {
		if err := s.Parse(badPort); err == nil {
			t.Fatal("no error")
		} else {
			msg = err.(*Error).AppendTo(msg[:0])
		}
		if err := s.Parse(bad); err != nil {
			t.Fatal(err)
		}
		if s.Validate() == nil {
			t.Fatal("no error")
		}
		it := s.Media(0).Candidates()
		for it.Next() {
		}
		if it.Err() == nil {
			t.Fatal("no error")
		}
	})
}
