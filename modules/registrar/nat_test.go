package registrar

import (
	"strings"
	"testing"
)

// natCase registers one contact of user from src (the REGISTER edited by
// edit) and reports where an INVITE to user goes and what List says.
func natCase(t *testing.T, h *harness, user, src, contact string, edit func(string) string) (dst, ruri string, nat bool, sentMsg string) {
	t.Helper()
	msg := register(user, "n-"+user, 1, "Contact: <"+contact+">\r\n")
	if edit != nil {
		msg = edit(msg)
	}
	if r := h.request(src, msg); statusOf(r) != "200 OK" {
		t.Fatalf("%s: REGISTER: %s", user, r)
	}
	h.take()
	h.receive("127.0.0.1:5080", invite(user))
	out := invitesSent(h.take())
	if len(out) != 1 {
		t.Fatalf("%s: INVITEs sent %+v", user, out)
	}
	line, _, _ := strings.Cut(out[0].data, "\r\n")
	l := h.reg.List(user + "@example.com")
	if len(l) != 1 || l[0].Contact != contact {
		t.Fatalf("%s: stored %+v, want the contact as registered", user, l)
	}
	return out[0].dst.String(), strings.Fields(line)[1], l[0].NAT, out[0].data
}

func via(v string) func(string) string {
	return func(m string) string {
		return strings.Replace(m, "Via: SIP/2.0/UDP 127.0.0.1:5062;", "Via: SIP/2.0/UDP "+v+";", 1)
	}
}

// TestNATTests: the default tests (private Contact, Via received, Via
// rport, RFC 5626 flow) on authenticated REGISTERs; a contact that fails
// none of them is a third-party registration reached as registered.
func TestNATTests(t *testing.T) {
	h := newHarness(t, Config{})
	h.authenticated = true
	for _, tc := range []struct {
		name, src, contact string
		edit               func(string) string
		nat                bool
		dst                string
	}{
		// A PBX registering a phone elsewhere (third party): no test holds.
		{"third-party", "127.0.0.1:5062", "sip:u@127.0.0.2:7000", nil, false, "127.0.0.2:7000"},
		{"private-contact", "127.0.0.1:5062", "sip:u@192.168.1.10:5060", nil, true, "127.0.0.1:5062"},
		{"cgnat-contact", "127.0.0.1:5062", "sip:u@100.64.7.7:5060", nil, true, "127.0.0.1:5062"},
		{"via-received", "127.0.0.1:5062", "sip:u@127.0.0.3:5062", via("127.0.0.9:5062"), true, "127.0.0.1:5062"},
		{"via-host-name", "127.0.0.1:5062", "sip:u@127.0.0.3:5062", via("phone.example.com:5062"), true, "127.0.0.1:5062"},
		{"via-rport", "127.0.0.1:40000", "sip:u@127.0.0.3:5062", nil, true, "127.0.0.1:40000"},
		{"via-default-port", "127.0.0.1:5062", "sip:u@127.0.0.3:5062", via("127.0.0.1"), true, "127.0.0.1:5062"},
		{"flow-ob", "127.0.0.1:5062", "sip:u@127.0.0.3:5070;ob", nil, true, "127.0.0.1:5062"},
	} {
		user := "nat-" + tc.name
		dst, ruri, nat, _ := natCase(t, h, user, tc.src, tc.contact, tc.edit)
		if nat != tc.nat || dst != tc.dst || ruri != tc.contact {
			t.Errorf("%s: nat=%v, INVITE %s to %s; want nat=%v to %s", tc.name, nat, ruri, dst, tc.nat, tc.dst)
		}
	}
}

// TestNATTestsConfigured: other selections of tests, and none.
func TestNATTestsConfigured(t *testing.T) {
	h := newHarness(t, Config{NATTests: NATPrivateVia | NATContactPort})
	h.authenticated = true
	for _, tc := range []struct {
		name, src, contact string
		edit               func(string) string
		nat                bool
	}{
		{"private-contact-not-tested", "127.0.0.1:5062", "sip:u@192.168.1.10:5062", nil, false},
		{"private-via", "127.0.0.1:5062", "sip:u@127.0.0.3:5062", via("10.1.1.1:5062"), true},
		{"contact-port", "127.0.0.1:5062", "sip:u@127.0.0.3:5099", nil, true},
	} {
		if _, _, nat, _ := natCase(t, h, "c-"+tc.name, tc.src, tc.contact, tc.edit); nat != tc.nat {
			t.Errorf("%s: nat=%v", tc.name, nat)
		}
	}
	h = newHarness(t, Config{NATTests: NATNone})
	h.authenticated = true
	if dst, _, nat, _ := natCase(t, h, "none", "127.0.0.1:40000", "sip:u@192.168.1.10:5060", via("10.0.0.1:5060")); nat || dst != "192.168.1.10:5060" {
		t.Errorf("no tests: nat=%v dst %s", nat, dst)
	}
	if _, err := ParseNATTests([]string{"private_contact", "via_rport"}); err != nil {
		t.Fatal(err)
	}
	if n, err := ParseNATTests(nil); err != nil || n != NATNone {
		t.Fatalf("empty list: %v %v", n, err)
	}
	if _, err := ParseNATTests([]string{"rfc1918"}); err == nil || !strings.Contains(err.Error(), `unknown NAT test "rfc1918"; known: private_contact, via_received, private_via, via_rport, contact_port, flow`) {
		t.Fatalf("unknown test: %v", err)
	}
	if got := strings.Join(DefaultNATTests.Names(), ","); got != "private_contact,via_received,via_rport,flow" {
		t.Fatalf("default names %s", got)
	}
}

// TestPathStoredAsRegistered: a REGISTER relayed by an edge proxy that
// added Path is stored with its contact and Path as given, not marked
// behind NAT, and calls go to the first Path hop with the Path as Route,
// even when the edge proxy's Path names another address than the one it
// sent from.
func TestPathStoredAsRegistered(t *testing.T) {
	h := newHarness(t, Config{})
	h.authenticated = true
	edge := func(path string) func(string) string {
		return func(m string) string {
			m = strings.Replace(m, "Via: SIP/2.0/UDP 127.0.0.1:5062;", "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-edge\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;", 1)
			return strings.Replace(m, "Max-Forwards: 70\r\n", "Max-Forwards: 69\r\nPath: "+path+"\r\n", 1)
		}
	}
	dst, ruri, nat, msg := natCase(t, h, "path", "127.0.0.1:5070", "sip:u@192.168.1.10:5060", edge("<sip:127.0.0.1:5071;lr>"))
	if nat || dst != "127.0.0.1:5071" || ruri != "sip:u@192.168.1.10:5060" || !strings.Contains(msg, "\r\nRoute: <sip:127.0.0.1:5071;lr>\r\n") {
		t.Fatalf("Path: nat=%v, INVITE %s to %s:\n%s", nat, ruri, dst, msg)
	}
	if l := h.reg.List("path@example.com"); l[0].Path != "<sip:127.0.0.1:5071;lr>" || l[0].Received != "udp:127.0.0.1:5070" {
		t.Fatalf("List %+v", l)
	}
	// The transport of the hop comes from the Path URI; a host name is
	// reached at the REGISTER's source.
	dst, _, _, _ = natCase(t, h, "path-tcp", "127.0.0.1:5070", "sip:u@192.168.1.11:5060", edge(`"edge <1>" <sip:127.0.0.1:5072;transport=tcp;lr>, <sip:core@127.0.0.1;lr>`))
	if dst != "127.0.0.1:5072" {
		t.Errorf("Path with transport=tcp: to %s", dst)
	}
	dst, _, _, _ = natCase(t, h, "path-name", "127.0.0.1:5070", "sip:u@192.168.1.12:5060", edge("<sip:edge.example.com;lr>"))
	if dst != "127.0.0.1:5070" {
		t.Errorf("Path naming a host: to %s", dst)
	}
}

// TestUnauthenticatedContactIsItsSource: what the NAT rule protects. A
// REGISTER that was not authenticated (auth.register: false) cannot make
// calls go anywhere but where it came from: a contact or a Path elsewhere
// is reached at the source, whatever the tests say.
func TestUnauthenticatedContactIsItsSource(t *testing.T) {
	h := newHarness(t, Config{NATTests: NATNone})
	for _, tc := range []struct {
		name, contact string
		edit          func(string) string
	}{
		{"third-party", "sip:u@127.0.0.2:7000", nil},
		{"other-port", "sip:u@127.0.0.1:7000", nil},
		{"host-name", "sip:u@victim.example.com", nil},
		{"path", "sip:u@127.0.0.1:5062", func(m string) string {
			return strings.Replace(m, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nPath: <sip:127.0.0.2:5071;lr>\r\n", 1)
		}},
	} {
		dst, _, nat, _ := natCase(t, h, "u-"+tc.name, "127.0.0.1:5062", tc.contact, tc.edit)
		if !nat || dst != "127.0.0.1:5062" {
			t.Errorf("%s: nat=%v, INVITE to %s", tc.name, nat, dst)
		}
	}
	// Its own address is stored as it is.
	if dst, _, nat, _ := natCase(t, h, "u-self", "127.0.0.1:5062", "sip:u@127.0.0.1:5062", nil); nat || dst != "127.0.0.1:5062" {
		t.Errorf("own address: nat=%v to %s", nat, dst)
	}
}
