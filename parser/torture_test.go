package parser

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tortureCase is what the parser must do with one file of the RFC 4475 /
// RFC 5118 corpus (testdata/torture/index.tsv).
type tortureCase struct {
	kind     ErrorKind // expected Parse error kind (KindNone: must parse)
	validate ErrorKind // expected Validate error kind after a clean parse
	status   int       // expected Error.Status() when kind != KindNone
	proxy    int       // expected ProxyVerdict code (0 = forward)
	uas      int       // expected UASVerdict code, -1 = not checked
	check    func(t *testing.T, m *Message)
}

// The RFC 5118 files with SDP carry a Content-Length computed for LF line
// ends (see testdata/torture/README.md). The harness decides once: it
// rewrites Content-Length to the body length for these three, so they test
// the IPv6 handling they were written for. The unmodified ipv6-in-sdp is
// also checked to fail with KindShortBody (declared 268 > 251 octets).
var fixContentLength = map[string]bool{
	"rfc5118/valid/ipv6-in-sdp.sip":      true,
	"rfc5118/valid/mult-ip-in-sdp.sip":   true,
	"rfc5118/valid/ipv4-mapped-ipv6.sip": true,
}

func eq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func allVias(t *testing.T, m *Message) []Via {
	t.Helper()
	var out []Via
	it := m.Vias()
	for it.Next() {
		out = append(out, it.Via)
	}
	if it.Err() != nil {
		t.Fatalf("Vias: %v", it.Err())
	}
	return out
}

func allNameAddrs(t *testing.T, m *Message, h HeaderName) []NameAddr {
	t.Helper()
	var out []NameAddr
	it := m.NameAddrs(h)
	for it.Next() {
		out = append(out, it.NameAddr)
	}
	if it.Err() != nil {
		t.Fatalf("NameAddrs(%v): %v", h, it.Err())
	}
	return out
}

var tortureCases = map[string]tortureCase{
	"rfc4475/valid/wsinv.sip": {uas: 0, check: func(t *testing.T, m *Message) {
		eqInt(t, "method", int(m.Method()), int(MethodInvite))
		eq(t, "R-URI", m.RequestURI(), "sip:vivekg@chair-dnrc.example.com;unknownparam")
		eq(t, "R-URI host", m.RURI().Host, "chair-dnrc.example.com")
		eq(t, "To URI", m.To().URI, "sip:vivekg@chair-dnrc.example.com")
		eq(t, "To tag", m.ToTag(), "1918181833n")
		eq(t, "From display", m.From().DisplayName, `"J Rosenberg \\\""`)
		eq(t, "From URI", m.From().URI, "sip:jdrosen@example.com")
		eq(t, "From tag", m.FromTag(), "98asjd8")
		mf, ok := m.MaxForwards()
		if !ok || mf != 68 {
			t.Errorf("Max-Forwards = %d %v, want 68", mf, ok)
		}
		eq(t, "Call-ID", m.CallID(), "wsinv.ndaksdj@192.0.2.1")
		cl, ok := m.ContentLength()
		if !ok || cl != 150 || len(m.Body()) != 150 {
			t.Errorf("Content-Length = %d %v, body %d", cl, ok, len(m.Body()))
		}
		c := m.CSeq()
		if c.Num != 9 || c.Method != MethodInvite {
			t.Errorf("CSeq = %+v", c)
		}
		vias := allVias(t, m)
		if len(vias) != 3 {
			t.Fatalf("%d Vias, want 3", len(vias))
		}
		eq(t, "via0 proto", vias[0].Protocol, "SIP")
		eq(t, "via0 version", vias[0].Version, "2.0")
		eq(t, "via0 transport", vias[0].Transport, "UDP")
		eq(t, "via0 host", vias[0].Host, "192.0.2.2")
		eq(t, "via0 branch", vias[0].Branch, "390skdjuw")
		eq(t, "via1 transport", vias[1].Transport, "TCP")
		eq(t, "via1 host", vias[1].Host, "spindle.example.com")
		eq(t, "via1 branch", vias[1].Branch, "z9hG4bK9ikj8")
		eq(t, "via2 host", vias[2].Host, "192.168.255.111")
		eq(t, "via2 branch", vias[2].Branch, "z9hG4bK30239")
		if m.TopVia().RFC3261Branch() {
			t.Error("top branch 390skdjuw taken for an RFC 3261 branch")
		}
		eq(t, "Subject", m.Get(HdrSubject), "")
		if !m.Has(HdrSubject) {
			t.Error("empty Subject lost")
		}
		eq(t, "NewFangledHeader", m.GetByName([]byte("newfangledheader")), "newfangled value\r\n continued newfangled value")
		eq(t, "UnknownHeaderWithUnusualValue", m.GetByName([]byte("UnknownHeaderWithUnusualValue")), ";;,,;;,;")
		routes := allNameAddrs(t, m, HdrRoute)
		if len(routes) != 1 {
			t.Fatalf("%d routes", len(routes))
		}
		u, err := routes[0].ParseURI()
		if err != nil || !u.LR() || string(u.Host) != "services.example.com" {
			t.Errorf("Route URI %+v %v", u, err)
		}
		if v, ok := u.Param("unknownwith"); !ok || string(v) != "value" {
			t.Errorf("unknownwith = %q %v", v, ok)
		}
		if _, ok := u.Param("unknown-no-value"); !ok {
			t.Error("unknown-no-value missing")
		}
		cs := allNameAddrs(t, m, HdrContact)
		if len(cs) != 1 {
			t.Fatalf("%d contacts", len(cs))
		}
		eq(t, "Contact display", cs[0].DisplayName, `"Quoted string \"\""`)
		eq(t, "Contact URI", cs[0].URI, "sip:jdrosen@example.com")
		if v, ok := cs[0].Param("newparam"); !ok || string(v) != "newvalue" {
			t.Errorf("newparam = %q %v", v, ok)
		}
		if _, ok := cs[0].Param("secondparam"); !ok {
			t.Error("secondparam missing")
		}
		eqInt(t, "q", cs[0].Q(), 330)
		eq(t, "media type", m.MediaType(), "application/sdp")
	}},
	"rfc4475/valid/intmeth.sip": {uas: 501, check: func(t *testing.T, m *Message) {
		eqInt(t, "method", int(m.Method()), int(MethodOther))
		eq(t, "method bytes", m.MethodBytes(), "!interesting-Method0123456789_*+`.%indeed'~")
		u := m.RURI()
		eq(t, "user", u.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
		eq(t, "password", u.Password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
		eq(t, "host", u.Host, "example.com")
		eq(t, "To display", m.To().DisplayName, "\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\"")
		eq(t, "From display", m.From().DisplayName, "token1~` token2'+_ token3*%!.-")
		eq(t, "From tag", m.FromTag(), "_token~1'+`*%!-.")
		eq(t, "Call-ID", m.CallID(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
		eq(t, "branch", m.TopVia().Branch, "z9hG4bK-.!%66*_+`'~")
		if m.CSeq().Num != 139122385 {
			t.Errorf("CSeq %d", m.CSeq().Num)
		}
		if m.GetByName([]byte("extensionHeader-!.%*+_`'~")) == nil {
			t.Error("extension header lost")
		}
	}},
	"rfc4475/valid/esc01.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "user", m.RURI().User, "sips%3Auser%40example.com")
		got, err := Unescape(nil, m.RURI().User)
		if err != nil || string(got) != "sips:user@example.com" {
			t.Errorf("unescaped user %q %v", got, err)
		}
		var c NameAddr
		if !m.Contact(&c) {
			t.Fatal("no Contact")
		}
		u, err := c.ParseURI()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := u.Param("n%61me")
		got, _ = Unescape(nil, v)
		if string(got) != "value%41" {
			t.Errorf("unescaped param %q, want value%%41 (one level only)", got)
		}
	}},
	"rfc4475/valid/escnull.sip": {check: func(t *testing.T, m *Message) {
		cs := allNameAddrs(t, m, HdrContact)
		if len(cs) != 2 {
			t.Fatalf("%d contacts, want 2", len(cs))
		}
		u, _ := ParseURI(m.To().URI)
		got, _ := Unescape(nil, u.User)
		if string(got) != "null-\x00-null" {
			t.Errorf("AOR user %q", got)
		}
	}},
	"rfc4475/valid/esc02.sip": {uas: 501, check: func(t *testing.T, m *Message) {
		eqInt(t, "method", int(m.Method()), int(MethodOther))
		eq(t, "method", m.MethodBytes(), "RE%47IST%45R")
		cs := allNameAddrs(t, m, HdrContact)
		if len(cs) != 2 {
			t.Fatalf("%d contacts, want 2 (C%%6Fntact is not Contact)", len(cs))
		}
		eq(t, "contact 2", cs[1].URI, "sip:alias3@host3.example.com")
		eq(t, "To display", m.To().DisplayName, `"%Z%45"`)
		if m.GetByName([]byte("C%6Fntact")) == nil {
			t.Error("C%6Fntact lost")
		}
	}},
	"rfc4475/valid/lwsdisp.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "From display", m.From().DisplayName, "caller")
		eq(t, "From URI", m.From().URI, "sip:caller@example.com")
	}},
	"rfc4475/valid/longreq.sip": {check: func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		if len(vias) != 34 {
			t.Errorf("%d Vias, want 34", len(vias))
		}
		eq(t, "top via host", m.TopVia().Host, "sip33.example.com")
		eq(t, "last via received", vias[len(vias)-1].Received, "192.0.2.5")
		if len(m.To().DisplayName) < 90 || len(m.FromTag()) < 100 {
			t.Errorf("long values cut: %d %d", len(m.To().DisplayName), len(m.FromTag()))
		}
	}},
	"rfc4475/valid/dblreq.sip": {check: func(t *testing.T, m *Message) {
		eqInt(t, "method", int(m.Method()), int(MethodRegister))
		eqInt(t, "body", len(m.Body()), 0)
		if bytes.Contains(m.Bytes(), []byte("INVITE")) {
			t.Error("trailing INVITE kept in the message")
		}
	}},
	"rfc4475/valid/semiuri.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "user", m.RURI().User, "user;par=u%40example.net")
		eq(t, "host", m.RURI().Host, "example.com")
		if m.RURI().Params != nil {
			t.Errorf("params %q", m.RURI().Params)
		}
		n := 0
		it := m.Tokens(HdrAccept)
		for it.Next() {
			n++
		}
		eqInt(t, "Accept items", n, 6)
	}},
	"rfc4475/valid/transports.sip": {check: func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		want := []string{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"}
		if len(vias) != len(want) {
			t.Fatalf("%d vias", len(vias))
		}
		for i, w := range want {
			eq(t, "transport", vias[i].Transport, w)
		}
		eq(t, "Call-ID", m.CallID(), "transports.kijh4akdnaqjkwendsasfdj")
	}},
	"rfc4475/valid/mpart01.sip": {check: func(t *testing.T, m *Message) {
		eqInt(t, "body", len(m.Body()), 553)
		if !m.TopVia().HasRPort || m.TopVia().RPort != nil {
			t.Error("bare rport not seen")
		}
		eq(t, "User-Agent", m.UserAgent(), "SIPimp.org/0.2.5 (curses)")
		eq(t, "media type", m.MediaType(), "multipart/mixed")
	}},
	"rfc4475/valid/unreason.sip": {uas: -1, check: func(t *testing.T, m *Message) {
		eqInt(t, "status", m.StatusCode(), 200)
		if !strings.HasPrefix(string(m.Reason()), "= 2**3 * 5**2 ") {
			t.Errorf("reason %q", m.Reason())
		}
	}},
	"rfc4475/valid/noreason.sip": {uas: -1, check: func(t *testing.T, m *Message) {
		eqInt(t, "status", m.StatusCode(), 100)
		eq(t, "reason", m.Reason(), "")
	}},

	"rfc4475/invalid/badinv01.sip":   {kind: KindBadHeader, status: 400},
	"rfc4475/invalid/clerr.sip":      {kind: KindShortBody, status: 400},
	"rfc4475/invalid/ncl.sip":        {kind: KindBadContentLength, status: 400},
	"rfc4475/invalid/scalar02.sip":   {kind: KindBadHeader, status: 400},
	"rfc4475/invalid/scalarlg.sip":   {kind: KindBadHeader, status: 400},
	"rfc4475/invalid/quotbal.sip":    {kind: KindBadHeader, status: 400},
	"rfc4475/invalid/ltgtruri.sip":   {kind: KindBadRequestURI, status: 400},
	"rfc4475/invalid/lwsruri.sip":    {kind: KindBadStartLine, status: 400},
	"rfc4475/invalid/lwsstart.sip":   {kind: KindBadStartLine, status: 400},
	"rfc4475/invalid/trws.sip":       {kind: KindBadStartLine, status: 400},
	"rfc4475/invalid/escruri.sip":    {kind: KindBadRequestURI, status: 400},
	"rfc4475/invalid/baddate.sip":    {}, // Date is never interpreted; the RFC allows accepting it
	"rfc4475/invalid/regbadct.sip":   {validate: KindBadHeader},
	"rfc4475/invalid/badaspec.sip":   {kind: KindBadHeader, status: 400},
	"rfc4475/invalid/baddn.sip":      {kind: KindNoHeaderEnd, status: 400},
	"rfc4475/invalid/badvers.sip":    {proxy: 505, uas: 505},
	"rfc4475/invalid/mismatch01.sip": {kind: KindCSeqMismatch, status: 400},
	"rfc4475/invalid/mismatch02.sip": {kind: KindCSeqMismatch, status: 501},
	"rfc4475/invalid/bigcode.sip":    {kind: KindBadStartLine, status: 400},

	"rfc4475/semantic/badbranch.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "branch", m.TopVia().Branch, "z9hG4bK")
		if m.TopVia().RFC3261Branch() {
			t.Error("bare magic cookie taken for an RFC 3261 branch")
		}
	}},
	"rfc4475/semantic/insuf.sip":   {kind: KindMissingHeader, status: 400},
	"rfc4475/semantic/unkscm.sip":  {proxy: 416, uas: 416},
	"rfc4475/semantic/novelsc.sip": {proxy: 416, uas: 416},
	"rfc4475/semantic/unksm2.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "To URI", m.To().URI, "isbn:2983792873")
		eq(t, "From URI", m.From().URI, "http://www.example.com")
		u, err := ParseURI(m.To().URI)
		if err != nil || u.Scheme != SchemeOther {
			t.Errorf("To scheme %v %v", u.Scheme, err)
		}
	}},
	"rfc4475/semantic/bext01.sip": {proxy: 420, uas: 420},
	"rfc4475/semantic/invut.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "Content-Type", m.ContentType(), "application/unknownformat")
	}},
	"rfc4475/semantic/regaut01.sip": {check: func(t *testing.T, m *Message) {
		var a Auth
		if !m.Auth(HdrAuthorization, &a) || a.IsDigest() {
			t.Fatalf("auth %+v", a)
		}
		eq(t, "scheme", a.Scheme, "NoOneKnowsThisScheme")
		eq(t, "params", a.Params, "opaque-data=here")
	}},
	"rfc4475/semantic/multi01.sip": {kind: KindDuplicateHeader, status: 400},
	"rfc4475/semantic/mcl01.sip":   {kind: KindBadContentLength, status: 400},
	"rfc4475/semantic/bcast.sip": {uas: -1, check: func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		if len(vias) != 2 || string(vias[1].Host) != "255.255.255.255" {
			t.Errorf("vias %d", len(vias))
		}
	}},
	"rfc4475/semantic/zeromf.sip": {proxy: 483, check: func(t *testing.T, m *Message) {
		if n, ok := m.MaxForwards(); !ok || n != 0 {
			t.Errorf("Max-Forwards %d %v", n, ok)
		}
	}},
	"rfc4475/semantic/cparam01.sip": {check: func(t *testing.T, m *Message) {
		var c NameAddr
		if !m.Contact(&c) {
			t.Fatal("no contact")
		}
		eq(t, "contact URI", c.URI, "sip:+19725552222@gw1.example.net")
		if _, ok := c.Param("unknownparam"); !ok {
			t.Error("unknownparam is a contact parameter")
		}
	}},
	"rfc4475/semantic/cparam02.sip": {check: func(t *testing.T, m *Message) {
		var c NameAddr
		m.Contact(&c)
		u, _ := c.ParseURI()
		if _, ok := u.Param("unknownparam"); !ok || c.Params != nil {
			t.Error("unknownparam is a URI parameter")
		}
	}},
	"rfc4475/semantic/regescrt.sip": {check: func(t *testing.T, m *Message) {
		var c NameAddr
		m.Contact(&c)
		u, err := c.ParseURI()
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "URI headers", u.Headers, "Route=%3Csip:sip.example.com%3E")
	}},
	"rfc4475/semantic/sdp01.sip": {},
	"rfc4475/compat/inv2543.sip": {check: func(t *testing.T, m *Message) {
		if m.FromTag() != nil || m.TopVia().Branch != nil {
			t.Error("tag or branch invented")
		}
		if _, ok := m.MaxForwards(); ok {
			t.Error("Max-Forwards invented")
		}
		if _, ok := m.ContentLength(); ok {
			t.Error("Content-Length invented")
		}
		if !bytes.HasPrefix(m.Body(), []byte("v=0")) || !bytes.HasSuffix(m.Body(), []byte("RTP/AVP 0\r\n")) {
			t.Errorf("body %q", m.Body())
		}
	}},

	"rfc5118/valid/ipv6-good.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "R-URI host", m.RURI().Host, "[2001:db8::10]")
		eq(t, "via host", m.TopVia().Host, "[2001:db8::9:1]")
		var c NameAddr
		m.Contact(&c)
		u, _ := c.ParseURI()
		eq(t, "contact host", u.Host, "[2001:db8::1]")
	}},
	"rfc5118/invalid/ipv6-bad.sip": {kind: KindBadRequestURI, status: 400},
	"rfc5118/valid/port-ambiguous.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "host", m.RURI().Host, "[2001:db8::10:5070]")
		eqInt(t, "port", m.RURI().Port, 0)
	}},
	"rfc5118/valid/port-unambiguous.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "host", m.RURI().Host, "[2001:db8::10]")
		eqInt(t, "port", m.RURI().Port, 5070)
	}},
	"rfc5118/valid/via-received-param-with-delim.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "received", m.TopVia().Received, "[2001:db8::9:255]")
		eq(t, "branch", m.TopVia().Branch, "z9hG4bKas3-111")
	}},
	"rfc5118/valid/via-received-param-no-delim.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "received", m.TopVia().Received, "2001:db8::9:255")
		eq(t, "branch", m.TopVia().Branch, "z9hG4bKas3")
	}},
	"rfc5118/valid/ipv6-in-sdp.sip": {check: func(t *testing.T, m *Message) {
		if !bytes.Contains(m.Body(), []byte("c=IN IP6 2001:db8::20")) {
			t.Error("body")
		}
	}},
	"rfc5118/valid/mult-ip-in-header.sip": {check: func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		if len(vias) != 3 {
			t.Fatalf("%d vias", len(vias))
		}
		eq(t, "via0 host", vias[0].Host, "[2001:db8::9:1]")
		eqInt(t, "via0 port", vias[0].Port, 6050)
		eq(t, "via1 host", vias[1].Host, "192.0.2.1")
		eq(t, "via2 host", vias[2].Host, "[2001:db8::9:255]")
		eq(t, "via2 received", vias[2].Received, "192.0.2.200")
	}},
	"rfc5118/valid/mult-ip-in-sdp.sip": {},
	"rfc5118/valid/ipv4-mapped-ipv6.sip": {check: func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		eq(t, "via0 host", vias[0].Host, "[::ffff:192.0.2.10]")
		eqInt(t, "via0 port", vias[0].Port, 19823)
		eq(t, "via1 host", vias[1].Host, "[::ffff:192.0.2.2]")
	}},
	// RFC 5118 §4.10 allows either; an invalid IPv6 reference is rejected.
	"rfc5118/invalid/ipv6-bug-abnf-3-colons.sip": {kind: KindBadRequestURI, status: 400},
	"rfc5118/valid/ipv6-correct-abnf-2-colons.sip": {check: func(t *testing.T, m *Message) {
		eq(t, "host", m.RURI().Host, "[2001:db8::192.0.2.1]")
	}},
}

// setContentLength rewrites the Content-Length value to the body length.
func setContentLength(b []byte) []byte {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	body := len(b) - i - 4
	return regexpCL(b, body)
}

func regexpCL(b []byte, n int) []byte {
	k := bytes.Index(b, []byte("Content-Length: "))
	e := k + bytes.Index(b[k:], []byte("\r\n"))
	out := append([]byte(nil), b[:k]...)
	out = append(out, "Content-Length: "+strconv.Itoa(n)...)
	return append(out, b[e:]...)
}

type indexEntry struct{ file, verdict, handling string }

func readIndex(t testing.TB) []indexEntry {
	f, err := os.Open("testdata/torture/index.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []indexEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		out = append(out, indexEntry{cols[0], cols[4], cols[5]})
	}
	return out
}

func TestTorture(t *testing.T) {
	idx := readIndex(t)
	if len(idx) != 61 {
		t.Fatalf("index has %d files, want 61", len(idx))
	}
	for _, e := range idx {
		t.Run(e.file, func(t *testing.T) {
			tc, ok := tortureCases[e.file]
			if !ok {
				t.Fatalf("no expectation for %s", e.file)
			}
			b, err := os.ReadFile(filepath.Join("testdata/torture", e.file))
			if err != nil {
				t.Fatal(err)
			}
			if fixContentLength[e.file] {
				b = setContentLength(b)
			}
			// Parse must never keep state from the previous message.
			var m Message
			m.Parse([]byte("OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n"))
			err = m.Parse(b)
			if tc.kind != KindNone {
				var pe *Error
				if !errors.As(err, &pe) || pe.Kind != tc.kind {
					t.Fatalf("Parse error %v, want kind %v", err, tc.kind)
				}
				if pe.Status() != tc.status {
					t.Errorf("status %d, want %d", pe.Status(), tc.status)
				}
				if pe.Offset < 0 || pe.Offset > len(b) {
					t.Errorf("offset %d out of range", pe.Offset)
				}
				if (e.verdict == "accept" || e.verdict == "accept-syntax") && tc.kind != KindMissingHeader && tc.kind != KindDuplicateHeader {
					t.Errorf("index says %s", e.verdict)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v (index: %s)", err, e.verdict)
			}
			verr := m.Validate()
			if tc.validate != KindNone {
				var pe *Error
				if !errors.As(verr, &pe) || pe.Kind != tc.validate {
					t.Fatalf("Validate = %v, want kind %v", verr, tc.validate)
				}
				return
			}
			if verr != nil {
				t.Fatalf("Validate: %v", verr)
			}
			if m.IsRequest() {
				buf := make([]byte, 0, 128)
				v := m.ProxyVerdict(nil, buf)
				if v.Code != tc.proxy {
					t.Errorf("ProxyVerdict = %d %s, want %d", v.Code, v.Reason, tc.proxy)
				}
				if tc.uas >= 0 {
					v = m.UASVerdict(nil, nil, buf)
					if v.Code != tc.uas {
						t.Errorf("UASVerdict = %d %s, want %d", v.Code, v.Reason, tc.uas)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, &m)
			}
			checkRoundTrip(t, &m)
		})
	}
}

// TestTortureDetails covers the cases of the corpus whose expected
// outcome depends on a choice this harness documents.
func TestTortureDetails(t *testing.T) {
	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata/torture", f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var m Message
	// Unmodified ipv6-in-sdp declares 268 octets for 251: the clerr case.
	if err := m.Parse(read("rfc5118/valid/ipv6-in-sdp.sip")); !errors.Is(err, ErrShortBody) {
		t.Errorf("ipv6-in-sdp as shipped: %v, want short body", err)
	}
	// mult-ip-in-sdp declares fewer octets than it has: truncated like UDP.
	b := read("rfc5118/valid/mult-ip-in-sdp.sip")
	if err := m.Parse(b); err != nil || len(m.Body()) != 181 {
		t.Errorf("mult-ip-in-sdp as shipped: %v, body %d", err, len(m.Body()))
	}
	// baddn with its missing empty line restored fails on the display name.
	err := m.Parse(append(read("rfc4475/invalid/baddn.sip"), "\r\n"...))
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != KindBadHeader || pe.Header != HdrFrom {
		t.Errorf("baddn + CRLF: %v, want malformed From", err)
	}
	// bext01: a proxy lists the Proxy-Require tokens, a UAS the Require ones.
	if err := m.Parse(read("rfc4475/semantic/bext01.sip")); err != nil {
		t.Fatal(err)
	}
	v := m.ProxyVerdict(nil, make([]byte, 0, 128))
	eq(t, "proxy Unsupported", v.Unsupported, "noProxiesSupportThis, norDoAnyProxiesSupportThis")
	v = m.UASVerdict(nil, nil, make([]byte, 0, 128))
	eq(t, "UAS Unsupported", v.Unsupported, "nothingSupportsThis, nothingSupportsThisEither")
	v = m.ProxyVerdict([]string{"noproxiessupportthis"}, make([]byte, 0, 128))
	eq(t, "proxy Unsupported", v.Unsupported, "norDoAnyProxiesSupportThis")
	// insuf: the index is complete, so the 400 can be built from its Via.
	err = m.Parse(read("rfc4475/semantic/insuf.sip"))
	if !errors.As(err, &pe) || pe.Kind != KindMissingHeader {
		t.Fatalf("insuf: %v", err)
	}
	resp := AppendResponse(nil, &m, pe.Status(), []byte(pe.Reason()), nil)
	if !bytes.Contains(resp, []byte("Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n")) {
		t.Errorf("400 for insuf:\n%s", resp)
	}
	// mismatch02: 501 from the error.
	err = m.Parse(read("rfc4475/invalid/mismatch02.sip"))
	if !errors.As(err, &pe) || pe.Status() != 501 || pe.Reason() != "Not Implemented" {
		t.Errorf("mismatch02: %v", err)
	}
	// scalar02: the Expires is overlarge; an accessor says so instead of wrapping.
	b = read("rfc4475/invalid/scalar02.sip")
	b = bytes.Replace(b, []byte("36893488147419103232"), []byte("1"), 1)
	b = bytes.Replace(b, []byte("Max-Forwards: 300"), []byte("Max-Forwards: 30"), 1)
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Expires(); ok {
		t.Error("overlarge Expires accepted")
	}
	var c NameAddr
	m.Contact(&c)
	if _, ok := c.Expires(); ok {
		t.Error("overlarge contact expires accepted")
	}
	if err := m.Validate(); !errors.Is(err, ErrBadHeader) {
		t.Errorf("Validate of overlarge Expires: %v", err)
	}
}
