package parser

import (
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	cases := []struct {
		in                                string
		scheme                            Scheme
		user, pass, host, params, headers string
		port                              int
	}{
		{"sip:alice@example.com", SchemeSIP, "alice", "", "example.com", "", "", 0},
		{"SIP:alice:secret@example.com:5070;transport=tcp;lr?Subject=hi&X=1", SchemeSIP, "alice", "secret", "example.com", "transport=tcp;lr", "Subject=hi&X=1", 5070},
		{"sips:[2001:db8::1]:5061", SchemeSIPS, "", "", "[2001:db8::1]", "", "", 5061},
		{"sip:[::ffff:192.0.2.1]", SchemeSIP, "", "", "[::ffff:192.0.2.1]", "", "", 0},
		{"sip:192.0.2.1;maddr=239.255.255.1", SchemeSIP, "", "", "192.0.2.1", "maddr=239.255.255.1", "", 0},
		{"tel:+1-201-555-0123;phone-context=example.com", SchemeTel, "+1-201-555-0123", "", "", "phone-context=example.com", "", 0},
		{"urn:service:sos", SchemeOther, "", "", "", "", "", 0},
	}
	for _, c := range cases {
		u, err := ParseURI([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if u.Scheme != c.scheme || string(u.User) != c.user || string(u.Password) != c.pass || string(u.Host) != c.host ||
			string(u.Params) != c.params || string(u.Headers) != c.headers || u.Port != c.port || string(u.Raw) != c.in {
			t.Errorf("%s: %+v", c.in, u)
		}
	}
	u, _ := ParseURI([]byte("sip:a@b;transport=TLS;lr;maddr=10.0.0.1"))
	if !u.LR() || string(u.Transport()) != "TLS" || string(u.MAddr()) != "10.0.0.1" {
		t.Errorf("params %+v", u)
	}
	if u.Scheme.String() != "sip" || SchemeTel.String() != "tel" {
		t.Error("scheme names")
	}
}

func TestParseURIErrors(t *testing.T) {
	for _, in := range []string{
		"", "sip:", "sip:@example.com", ":x", "1sip:a", "sip:a@", "sip:a@b:", "sip:a@b:65536",
		"sip:a@b:x", "sip:2001:db8::10", "sip:[2001:db8::1", "sip:[2001:db8:::1]", "sip:[1:2:3:4:5:6:7:8:9]",
		"sip:[1::2::3]", "sip:[::ffff:192.0.2.256]", "sip:a b@c", "sip:a@b c", "tel:", "tel:1?x", "x:", "x:a b",
		"sip:a@b\x00", "sip:[fe80::1%eth0]",
	} {
		if _, err := ParseURI([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestValidIPv6(t *testing.T) {
	good := []string{"::", "::1", "1::", "2001:db8::10", "2001:db8:0:0:0:0:0:1", "::ffff:192.0.2.1", "2001:db8::192.0.2.1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4"}
	bad := []string{"", ":", ":1", "1:", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "12345::", "1:::2", "g::1", "::1.2.3", "1:2:3:4:5:6:7:1.2.3.4", "1.2.3.4"}
	for _, s := range good {
		if !validIPv6([]byte(s)) {
			t.Errorf("%s rejected", s)
		}
	}
	for _, s := range bad {
		if validIPv6([]byte(s)) {
			t.Errorf("%s accepted", s)
		}
	}
}

func TestUnescape(t *testing.T) {
	got, err := Unescape(make([]byte, 0, 32), []byte("a%20b%2541%00"))
	if err != nil || string(got) != "a b%41\x00" {
		t.Errorf("%q %v", got, err)
	}
	for _, s := range []string{"%", "%4", "%zz", "a%g0"} {
		if _, err := Unescape(nil, []byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if string(AppendUnquoted(nil, []byte(`"a \"b\" \\c"`))) != `a "b" \c` {
		t.Error("AppendUnquoted")
	}
	if string(Unquote([]byte(`"x"`))) != "x" || string(Unquote([]byte(`x`))) != "x" {
		t.Error("Unquote")
	}
}

// TestDecodeEscape: an escape decodes wherever it stands and in either
// case; anything else that starts with "%" is not one.
func TestDecodeEscape(t *testing.T) {
	for _, tc := range []struct {
		s    string
		i    int
		want byte
		ok   bool
	}{
		{"%30", 0, '0', true},
		{"a%2Fb", 1, '/', true},
		{"%2f", 0, '/', true},
		{"%00", 0, 0, true},
		{"%ff", 0, 0xff, true},
		{"a%30", 0, 0, false},
		{"%3", 0, 0, false},
		{"%", 0, 0, false},
		{"%g0", 0, 0, false},
		{"%0g", 0, 0, false},
		{"x%30", 2, 0, false},
	} {
		c, ok := DecodeEscape([]byte(tc.s), tc.i)
		if c != tc.want || ok != tc.ok {
			t.Errorf("DecodeEscape(%q, %d) = %q %v, want %q %v", tc.s, tc.i, c, ok, tc.want, tc.ok)
		}
	}
}

func TestLookupHeader(t *testing.T) {
	for h := HdrVia; h < numHeaderNames; h++ {
		name := h.String()
		for _, v := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if got := LookupHeader([]byte(v)); got != h {
				t.Errorf("%s -> %v", v, got)
			}
			// a name in a larger buffer (the lookup reads past len into cap)
			buf := []byte(v + ": value\r\n")
			if got := LookupHeader(buf[:len(v)]); got != h {
				t.Errorf("%s in buffer -> %v", v, got)
			}
		}
		// near misses
		for _, v := range []string{name + "x", name[:len(name)-1], "x" + name[1:]} {
			if got := LookupHeader([]byte(v)); len(v) > 1 && got == h && !strings.EqualFold(v, name) {
				t.Errorf("%s matched %v", v, h)
			}
		}
		if strings.Contains(name, "-") {
			v := strings.Replace(name, "-", "\r", 1)
			if LookupHeader([]byte(v)) == h {
				t.Errorf("%q matched %v", v, h)
			}
		}
	}
	compact := map[string]HeaderName{"i": HdrCallID, "m": HdrContact, "e": HdrContentEncoding, "l": HdrContentLength,
		"c": HdrContentType, "f": HdrFrom, "s": HdrSubject, "k": HdrSupported, "t": HdrTo, "v": HdrVia,
		"o": HdrEvent, "u": HdrAllowEvents, "r": HdrReferTo, "b": HdrReferredBy, "x": HdrSessionExpires,
		"y": HdrIdentity, "a": HdrAcceptContact, "V": HdrVia, "z": HdrOther, "1": HdrOther}
	for k, v := range compact {
		if got := LookupHeader([]byte(k)); got != v {
			t.Errorf("%s -> %v, want %v", k, got, v)
		}
	}
	if LookupHeader(nil) != HdrOther || LookupHeader([]byte("X-Very-Long-Header-Name-Over-24")) != HdrOther {
		t.Error("unknown names")
	}
}

func TestLookupMethod(t *testing.T) {
	for m := MethodInvite; m < numMethods; m++ {
		if LookupMethod([]byte(m.String())) != m {
			t.Errorf("%v", m)
		}
	}
	if LookupMethod([]byte("invite")) != MethodOther || LookupMethod([]byte("FOO")) != MethodOther {
		t.Error("methods are case-sensitive")
	}
}

func TestNameIs(t *testing.T) {
	words := map[string]uint64{"branch": wordBranch, "received": wordReceived, "rport": wordRport,
		"maddr": wordMaddr, "ttl": wordTTL, "tag": wordTag}
	for s, w := range words {
		for _, v := range []string{s, strings.ToUpper(s), strings.ToUpper(s[:1]) + s[1:]} {
			buf := []byte(v + "=value;x")
			if !nameIs(buf[:len(v)], w, len(s)) || !nameIs([]byte(v), w, len(s)) {
				t.Errorf("%s not matched", v)
			}
			// at an offset, as the Via and name-addr parsers use it
			line := []byte(";" + v + "=value")
			if !nameAt(line, 1, 1+len(v), w, len(s)) || !nameAt(line[:1+len(v)], 1, 1+len(v), w, len(s)) {
				t.Errorf("%s not matched at offset 1", v)
			}
			if nameAt(line, 0, len(v), w, len(s)) || nameAt(line, 1, len(v), w, len(s)) {
				t.Errorf("%s matched at a wrong offset", v)
			}
		}
		for _, v := range []string{s[:len(s)-1], s + "x", "x" + s[1:], s[:len(s)-1] + "@", s[:len(s)-1] + "\x00"} {
			if nameIs([]byte(v), w, len(s)) {
				t.Errorf("%q matched %s", v, s)
			}
		}
	}
}
