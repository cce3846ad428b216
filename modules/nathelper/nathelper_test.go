package nathelper

import (
	"strings"
	"testing"

	"switchboard/routing"
)

// TestNATUACTest: each nat_uac_test flag alone, on a request that fails
// every other test unless the case changes it; the phone sends from
// 127.0.0.1:5062 with a Via and Contact of that address by default.
func TestNATUACTest(t *testing.T) {
	f := build(t, nil, nil)
	const src = "127.0.0.1:5062"
	contact := func(uri string) string { return "Contact: <" + uri + ">\r\n" }
	for _, tc := range []struct {
		name  string
		flags Flags
		via   string
		extra string
		body  string
		src   string
		want  bool
	}{
		{"nothing-holds-all-flags", allFlags, src, contact("sip:a@127.0.0.1:5062"), phoneSDP("127.0.0.1"), src, false},

		{"private-contact-1918-192", PrivateContact, src, contact("sip:a@192.168.1.10:5062"), "", src, true},
		{"private-contact-1918-10", PrivateContact, src, contact("sip:a@10.1.2.3"), "", src, true},
		{"private-contact-1918-172", PrivateContact, src, contact("sip:a@172.31.255.1:5062"), "", src, true},
		{"public-contact-172.32", PrivateContact, src, contact("sip:a@172.32.0.1:5062"), "", src, false},
		{"private-contact-6598", PrivateContact, src, contact("sip:a@100.64.0.1:5062"), "", src, true},
		{"private-contact-6598-edge", PrivateContact, src, contact("sip:a@100.128.0.1:5062"), "", src, false},
		{"private-contact-ula", PrivateContact, src, contact("sip:a@[fd00::10]:5062"), "", src, true},
		{"loopback-contact-not-private", PrivateContact, src, contact("sip:a@127.0.0.9:5062"), "", src, false},
		{"host-name-contact", PrivateContact, src, contact("sip:a@phone.example.com"), "", src, false},
		{"second-contact-private", PrivateContact, src, contact("sip:a@127.0.0.1:5062") + contact("sip:a@192.168.1.10"), "", src, true},
		{"ds-lite-without-cgn", PrivateContact, src, contact("sip:a@192.0.0.2:5062"), "", src, false},
		{"ds-lite-with-cgn", PrivateContact | CarrierGradeNAT, src, contact("sip:a@192.0.0.2:5062"), "", src, true},

		{"received-differs", DiffIPSrcVia, "127.0.0.9:5062", "", "", src, true},
		{"received-host-name", DiffIPSrcVia, "phone.example.com:5062", "", "", src, true},
		{"received-same", DiffIPSrcVia, src, "", "", src, false},

		{"private-via", PrivateVia, "192.168.1.10:5062", "", "", src, true},
		{"public-via", PrivateVia, "198.51.100.7:5062", "", "", src, false},

		{"private-sdp-session", PrivateSDP, src, "", phoneSDP("192.168.1.10"), src, true},
		{"public-sdp", PrivateSDP, src, "", phoneSDP("198.51.100.7"), src, false},
		{"private-sdp-media-level", PrivateSDP, src, "", strings.Replace(phoneSDP("198.51.100.7"), "a=sendrecv", "c=IN IP4 10.0.0.5\r\na=sendrecv", 1), src, true},

		{"rport-differs", DiffPortSrcVia, src, "", "", "127.0.0.1:40000", true},
		{"rport-default-5060", DiffPortSrcVia, "127.0.0.2", "", "", "127.0.0.2:40000", true},
		{"rport-default-matches", DiffPortSrcVia, "127.0.0.2", "", "", "127.0.0.2:5060", false},

		{"contact-ip-differs", DiffIPSrcContact, src, contact("sip:a@127.0.0.3:5062"), "", src, true},
		{"contact-ip-same", DiffIPSrcContact, src, contact("sip:a@127.0.0.1:7000"), "", src, false},
		{"contact-port-differs", DiffPortSrcContact, src, contact("sip:a@127.0.0.1:7000"), "", src, true},
		{"contact-port-default", DiffPortSrcContact, "127.0.0.2:5060", contact("sip:a@127.0.0.2"), "", "127.0.0.2:5060", false},

		{"flow-ob", Flow, src, contact("sip:a@127.0.0.1:5062;ob"), "", src, true},
		{"flow-instance-reg-id", Flow, src, `Contact: <sip:a@127.0.0.1:5062>;+sip.instance="<urn:uuid:1>";reg-id=1` + "\r\n", "", src, true},
		{"instance-without-reg-id", Flow, src, `Contact: <sip:a@127.0.0.1:5062>;+sip.instance="<urn:uuid:1>"` + "\r\n", "", src, false},
	} {
		msg := req("INVITE", "sip:bob@example.com", tc.via, tc.extra, tc.body)
		// (127.0.0.1:5060 is the harness's listener: the core answers
		// nothing that would go there.)
		got := f.inRoute(t, tc.src, msg, func(c *routing.Ctx) bool { return f.n.NATUACTest(c, tc.flags) })
		if got != tc.want {
			t.Errorf("%s: nat_uac_test(%d) = %v, want %v", tc.name, tc.flags, got, tc.want)
		}
	}
}

// TestPrivateLoopback: 127/8 and ::1 count as private only when
// configured.
func TestPrivateLoopback(t *testing.T) {
	s := DefaultSettings()
	s.PrivateLoopback = true
	f := build(t, s, nil)
	msg := req("INVITE", "sip:bob@example.com", "127.0.0.1:5062", "Contact: <sip:a@127.0.0.9:5062>\r\n", "")
	if !f.inRoute(t, "127.0.0.1:5062", msg, func(c *routing.Ctx) bool { return f.n.NATUACTest(c, PrivateContact) }) {
		t.Fatal("loopback Contact not private with private_loopback")
	}
}

// TestParseFlags: names, OpenSIPS's numbers, and errors.
func TestParseFlags(t *testing.T) {
	if f, err := ParseFlags([]string{"private-contact", "diff-ip-src-via", "diff-port-src-via"}); err != nil || f != 19 {
		t.Fatalf("names: %d %v", f, err)
	}
	if f, err := ParseFlags([]string{"19", "flow"}); err != nil || f != DefaultFlags {
		t.Fatalf("numbers: %d %v", f, err)
	}
	if _, err := ParseFlags([]string{"512"}); err == nil {
		t.Fatal("512 accepted")
	}
	if _, err := ParseFlags([]string{"private_contact"}); err == nil || !strings.Contains(err.Error(), "private-contact") {
		t.Fatalf("unknown name: %v", err)
	}
	if f, err := ParseSDPFlags([]string{"0x0A", "add-no-rtpproxy"}); err != nil || f != RewriteMediaIP|RewriteOriginIP|AddNoRTPProxy {
		t.Fatalf("sdp flags: %d %v", f, err)
	}
	if _, err := ParseSDPFlags([]string{"0x20"}); err == nil {
		t.Fatal("0x20 accepted")
	}
}

// TestSettingsCheck: every key's refusal names it.
func TestSettingsCheck(t *testing.T) {
	for _, tc := range []struct {
		key string
		mod func(s *Settings)
	}{
		{"nat_tests[1]", func(s *Settings) { s.NATTests = []string{"flow", "nope"} }},
		{"nat_tests[1]", func(s *Settings) { s.NATTests = []string{"flow", "flow"} }},
		{"fix_sdp[0]", func(s *Settings) { s.FixSDP = []string{"rewrite-everything"} }},
		{"ping_interval", func(s *Settings) { s.PingInterval = 500e6 }},
		{"ping_method", func(s *Settings) { s.PingMethod = "stun" }},
		{"ping_timeout", func(s *Settings) { s.PingTimeout = s.PingInterval }},
		{"ping_failures", func(s *Settings) { s.PingFailures = -1 }},
		{"ping_from", func(s *Settings) { s.PingFrom = "mailto:x@example.com" }},
	} {
		s := DefaultSettings()
		tc.mod(s)
		err := s.check()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%s: %v", tc.key, err)
		}
	}
	if err := DefaultSettings().check(); err != nil {
		t.Fatal(err)
	}
}
