package parser

import (
	"strings"
	"testing"
)

func TestTypedFields(t *testing.T) {
	in := "REGISTER sip:example.com SIP/2.0\r\n" + okHeaders[:strings.Index(okHeaders, "CSeq")] +
		"CSeq: 2 REGISTER\r\n" +
		"Max-Forwards: 70\r\n" +
		"Contact: <sip:bob@192.0.2.4;transport=tcp>;expires=600;q=0.7;+sip.instance=\"<urn:uuid:1>\";reg-id=2\r\n" +
		"m: \"Bob\" <sip:bob@192.0.2.5>;q=1\r\n" +
		"Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"n1\", uri=\"sip:example.com\",\r\n response=\"r1\", algorithm=MD5, cnonce=\"c1\", opaque=\"o1\", qop=auth, nc=00000001\r\n" +
		"WWW-Authenticate: Digest realm=\"example.com\", domain=\"sip:example.com\", nonce=\"n2\", stale=FALSE, qop=\"auth,auth-int\"\r\n" +
		"Require: path\r\n" +
		"Proxy-Require: sec-agree\r\n" +
		"Supported: path, outbound,gruu\r\n" +
		"k: 100rel\r\n" +
		"Allow: INVITE, ACK,BYE\r\n" +
		"Event: presence;id=7;x=y\r\n" +
		"Expires: 3600\r\n" +
		"Min-Expires: 60\r\n" +
		"Path: <sip:edge.example.com;lr>\r\n" +
		"User-Agent: UA/1\r\n" +
		"Server: S/2\r\n" +
		"Content-Type: application/sdp; charset=utf-8\r\n" +
		"Content-Length: 0\r\n\r\n"
	in = strings.Replace(in, "OPTIONS", "REGISTER", -1)
	m := parseOrDie(t, []byte(in))
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	it := m.NameAddrs(HdrContact)
	var cs []NameAddr
	for it.Next() {
		cs = append(cs, it.NameAddr)
	}
	if len(cs) != 2 || string(cs[1].DisplayName) != `"Bob"` {
		t.Fatalf("contacts %+v", cs)
	}
	if e, ok := cs[0].Expires(); !ok || e != 600 {
		t.Error("expires")
	}
	if cs[0].Q() != 700 || cs[1].Q() != 1000 {
		t.Errorf("q %d %d", cs[0].Q(), cs[1].Q())
	}
	if string(cs[0].Instance()) != "<urn:uuid:1>" || cs[0].RegID() != 2 || cs[1].RegID() != -1 {
		t.Error("instance/reg-id")
	}
	var a Auth
	if !m.Auth(HdrAuthorization, &a) || !a.IsDigest() {
		t.Fatal("auth")
	}
	if string(a.Username) != "bob" || string(a.Realm) != "example.com" || string(a.Nonce) != "n1" || string(a.URI) != "sip:example.com" ||
		string(a.Response) != "r1" || string(a.Algorithm) != "MD5" || string(a.CNonce) != "c1" || string(a.Opaque) != "o1" ||
		string(a.QOP) != "auth" || string(a.NC) != "00000001" {
		t.Errorf("credentials %+v", a)
	}
	if !m.Auth(HdrWWWAuthenticate, &a) || string(a.Domain) != "sip:example.com" || string(a.Stale) != "FALSE" || string(a.QOP) != "auth,auth-int" {
		t.Errorf("challenge %+v", a)
	}
	if m.Auth(HdrProxyAuthorization, &a) {
		t.Error("absent header parsed")
	}
	var toks []string
	ti := m.Tokens(HdrSupported)
	for ti.Next() {
		toks = append(toks, string(ti.Token))
	}
	if strings.Join(toks, "|") != "path|outbound|gruu|100rel" {
		t.Errorf("supported %q", toks)
	}
	if !m.HasToken(HdrAllow, "bye") || m.HasToken(HdrAllow, "CANCEL") || !m.HasToken(HdrRequire, "path") {
		t.Error("HasToken")
	}
	ev, ok := m.Event()
	if !ok || string(ev.Package) != "presence" || string(ev.ID) != "7" {
		t.Errorf("event %+v", ev)
	}
	if e, ok := m.Expires(); !ok || e != 3600 {
		t.Error("Expires")
	}
	if e, ok := m.MinExpires(); !ok || e != 60 {
		t.Error("Min-Expires")
	}
	if string(m.UserAgent()) != "UA/1" || string(m.Server()) != "S/2" || string(m.MediaType()) != "application/sdp" {
		t.Error("raw values")
	}
	p := m.NameAddrs(HdrPath)
	if !p.Next() || string(p.NameAddr.URI) != "sip:edge.example.com;lr" {
		t.Error("Path")
	}
	v := m.ProxyVerdict([]string{"outbound"}, make([]byte, 0, 64))
	if v.Code != 420 || string(v.Unsupported) != "sec-agree" {
		t.Errorf("proxy verdict %+v", v)
	}
	v = m.UASVerdict([]string{"path"}, nil, nil)
	if v.Code != 0 {
		t.Errorf("uas verdict %+v", v)
	}
}

func TestContactStar(t *testing.T) {
	m := parseOrDie(t, []byte(strings.Replace(req("Contact: *\r\nExpires: 0\r\n\r\n"), "OPTIONS", "REGISTER", -1)))
	var c NameAddr
	if !m.Contact(&c) || !c.Star || m.Validate() != nil {
		t.Errorf("%+v %v", c, m.Validate())
	}
}

func TestValidateErrors(t *testing.T) {
	for _, extra := range []string{
		"Contact: <sip:a@b>, *\r\n",
		"Route: *\r\n",
		"Contact: <sip:a b@c>\r\n",
		"Record-Route: <sip:a@b>;;\r\n",
		"Expires: soon\r\n",
		"Authorization: Digest realm\r\n",
		"Event: ;x\r\n",
		"Via: SIP/2.0/UDP h;branch=z9hG4bK1,\r\n",
	} {
		m := parseOrDie(t, []byte(req(extra+"\r\n")))
		if err := m.Validate(); err == nil {
			t.Errorf("%q validated", extra)
		}
	}
	b := strings.Replace(req("\r\n"), "c1@192.0.2.1", "c 1", 1)
	m := parseOrDie(t, []byte(b))
	if m.Validate() == nil {
		t.Error("Call-ID with a space validated")
	}
}
