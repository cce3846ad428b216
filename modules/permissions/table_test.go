package permissions

import (
	"net/netip"
	"testing"

	"switchboard/store"
	"switchboard/transport"
)

// mustTable builds a table from rows written as the CLI takes them
// ("192.0.2.0/24", no mask), put first in the form the store holds them
// (the address apart, the mask its prefix length), as AddAddress does.
func mustTable(t testing.TB, subj subject, rows ...store.Address) *table {
	t.Helper()
	for i := range rows {
		if rows[i].ID == 0 {
			rows[i].ID = int64(i + 1)
		}
		if err := store.NormalizeAddress(&rows[i]); err != nil {
			t.Fatalf("row %+v: %v", rows[i], err)
		}
	}
	tab := buildTable(rows, subj, nil, func(a store.Address, err error) { t.Fatalf("row %+v skipped: %v", a, err) })
	return tab
}

// find runs a full check (port, proto, pattern) and returns the id
// matched, 0 for none.
func find(tab *table, group int, addr string, port uint16, proto transport.Proto, subject string) int64 {
	q := query{group: uint16(group), port: port, proto: proto, full: true}
	if subject != "" {
		q.subject = []byte(subject)
	}
	if e := tab.lookup(netip.MustParseAddr(addr), &q); e != nil {
		return e.id
	}
	return 0
}

func TestLookupExact(t *testing.T) {
	tab := mustTable(t, subjectFrom,
		store.Address{ID: 1, Group: 1, IP: "192.0.2.10"},
		store.Address{ID: 2, Group: 2, IP: "2001:db8::10"},
	)
	cases := []struct {
		group int
		addr  string
		want  int64
	}{
		{1, "192.0.2.10", 1},
		{0, "192.0.2.10", 1}, // any group
		{2, "192.0.2.10", 0}, // another group
		{1, "192.0.2.11", 0},
		{1, "192.0.2.1", 0},
		{2, "2001:db8::10", 2},
		{2, "2001:DB8:0::10", 2},
		{2, "2001:db8::11", 0},
		{1, "::ffff:192.0.2.10", 1}, // an IPv4 source seen on a dual-stack socket
		{1, "::192.0.2.10", 0},      // IPv4-compatible is another address
	}
	for _, c := range cases {
		if got := find(tab, c.group, c.addr, 5060, transport.UDP, ""); got != c.want {
			t.Errorf("group %d, %s: matched %d, want %d", c.group, c.addr, got, c.want)
		}
	}
	if got := find(tab, 1, "fe80::1%eth0", 5060, transport.UDP, ""); got != 0 {
		t.Errorf("zone address matched %d", got)
	}
	if e := tab.lookup(netip.Addr{}, &query{full: true}); e != nil {
		t.Error("the zero address matched")
	}
}

func TestLookupSubnetsMostSpecificFirst(t *testing.T) {
	tab := mustTable(t, subjectFrom,
		store.Address{ID: 1, Group: 1, IP: "10.0.0.0/8", ContextInfo: "wide"},
		store.Address{ID: 2, Group: 1, IP: "10.1.0.0/16", ContextInfo: "narrow"},
		store.Address{ID: 3, Group: 2, IP: "10.1.2.0/24"},
		store.Address{ID: 4, Group: 1, IP: "10.1.2.3"},
		store.Address{ID: 5, Group: 3, IP: "2001:db8::/32"},
		store.Address{ID: 6, Group: 3, IP: "2001:db8:1::/48"},
		store.Address{ID: 7, Group: 4, IP: "0.0.0.0/0"},
	)
	cases := []struct {
		group int
		addr  string
		want  int64
	}{
		{1, "10.200.0.1", 1},
		{1, "10.1.200.1", 2}, // the /16 shadows the /8
		{1, "10.1.2.4", 2},   // the /24 is group 2: group 1 falls back to the /16
		{2, "10.1.2.4", 3},
		{0, "10.1.2.4", 3}, // any group: the most specific address first
		{1, "10.1.2.3", 4}, // exact before every subnet
		{2, "10.1.2.3", 3}, // ... unless it is of another group
		{2, "10.1.3.1", 0},
		{1, "11.0.0.1", 0},
		{4, "11.0.0.1", 7}, // /0 is everything (IPv4)
		{0, "11.0.0.1", 7},
		{3, "2001:db8:1::5", 6},
		{3, "2001:db8:2::5", 5},
		{3, "2001:db9::5", 0},
		{4, "2001:db9::5", 0}, // an IPv4 /0 is not IPv6
		{3, "10.1.2.3", 0},
	}
	for _, c := range cases {
		if got := find(tab, c.group, c.addr, 5060, transport.UDP, ""); got != c.want {
			t.Errorf("group %d, %s: matched %d, want %d", c.group, c.addr, got, c.want)
		}
	}
	if got := tab.lens4; len(got) != 4 || got[0] != 24 || got[3] != 0 {
		t.Errorf("IPv4 lengths %v, want [24 16 8 0]", got)
	}
}

func TestLookupPortAndProto(t *testing.T) {
	tab := mustTable(t, subjectFrom,
		store.Address{ID: 1, Group: 1, IP: "192.0.2.1", Port: 5060, Proto: "udp"},
		store.Address{ID: 2, Group: 1, IP: "192.0.2.2", Proto: "tls"},
		store.Address{ID: 3, Group: 1, IP: "192.0.2.0/24", Port: 5061},
		store.Address{ID: 4, Group: 1, IP: "192.0.2.3", Proto: "any"},
		// Under one address the more specific entry comes first, whatever
		// the order of the ids.
		store.Address{ID: 5, Group: 2, IP: "192.0.2.4"},
		store.Address{ID: 6, Group: 2, IP: "192.0.2.4", Port: 5080, Proto: "tcp"},
	)
	cases := []struct {
		addr  string
		port  uint16
		proto transport.Proto
		want  int64
	}{
		{"192.0.2.1", 5060, transport.UDP, 1},
		{"192.0.2.1", 5062, transport.UDP, 0},
		{"192.0.2.1", 5060, transport.TCP, 0},
		{"192.0.2.2", 40000, transport.TLS, 2},
		{"192.0.2.2", 5061, transport.TCP, 3}, // not TLS: the /24 on port 5061 (any proto)
		{"192.0.2.2", 5060, transport.TCP, 0},
		{"192.0.2.3", 1, transport.WS, 4},
		{"192.0.2.9", 5061, transport.UDP, 3},
		{"192.0.2.9", 5060, transport.UDP, 0},
		{"192.0.2.4", 5080, transport.TCP, 6},
		{"192.0.2.4", 5080, transport.UDP, 5},
	}
	for _, c := range cases {
		if got := find(tab, 0, c.addr, c.port, c.proto, ""); got != c.want {
			t.Errorf("%s:%d %s: matched %d, want %d", c.addr, c.port, c.proto, got, c.want)
		}
	}
}

func TestLookupPattern(t *testing.T) {
	tab := mustTable(t, subjectFrom,
		store.Address{ID: 1, Group: 1, IP: "192.0.2.1", Pattern: `^sip:\+49[0-9]+@`},
		store.Address{ID: 2, Group: 1, IP: "192.0.2.0/24", Pattern: `@carrier\.example$`},
		store.Address{ID: 3, Group: 2, IP: "192.0.2.1"},
	)
	cases := []struct {
		group   int
		addr    string
		subject string
		want    int64
	}{
		{1, "192.0.2.1", "sip:+4930123@gw.example", 1},
		{1, "192.0.2.1", "sip:+130123@gw.example", 0},
		{1, "192.0.2.1", "sip:+130123@carrier.example", 2}, // the subnet's pattern
		{1, "192.0.2.1", "", 0},                            // no subject: no pattern matches
		{0, "192.0.2.1", "sip:+130123@gw.example", 3},      // group 2 has no pattern
		// A pattern never grants: the right From from another address.
		{1, "198.51.100.1", "sip:+4930123@gw.example", 0},
		{0, "198.51.100.1", "sip:+4930123@carrier.example", 0},
	}
	for _, c := range cases {
		if got := find(tab, c.group, c.addr, 5060, transport.UDP, c.subject); got != c.want {
			t.Errorf("group %d, %s, %q: matched %d, want %d", c.group, c.addr, c.subject, got, c.want)
		}
	}
	// The same pattern text is compiled once, and kept across reloads.
	rows := []store.Address{
		{ID: 1, Group: 1, IP: "192.0.2.1", Mask: 32, Pattern: "^a"},
		{ID: 2, Group: 1, IP: "192.0.2.2", Mask: 32, Pattern: "^a"},
	}
	t1 := buildTable(rows, subjectFrom, nil, nil)
	t2 := buildTable(rows, subjectFrom, t1, nil)
	k1, k2 := v4key(netip.MustParseAddr("192.0.2.1")), v4key(netip.MustParseAddr("192.0.2.2"))
	p1 := t1.exact4[k1][0].pattern
	if t1.exact4[k2][0].pattern != p1 || t2.exact4[k1][0].pattern != p1 {
		t.Error("a pattern was compiled twice")
	}
}

func TestInGroupIsByAddressOnly(t *testing.T) {
	tab := mustTable(t, subjectFrom,
		store.Address{ID: 1, Group: 1, IP: "192.0.2.1", Port: 5060, Proto: "tls", Pattern: "^never$"},
		store.Address{ID: 2, Group: 7, IP: "2001:db8::/64"},
	)
	in := func(group int, addr string) bool {
		q := query{group: uint16(group)}
		return tab.lookup(netip.MustParseAddr(addr), &q) != nil
	}
	if !in(1, "192.0.2.1") || !in(0, "192.0.2.1") || in(2, "192.0.2.1") || in(1, "192.0.2.2") {
		t.Error("IPv4 membership wrong")
	}
	if !in(7, "2001:db8::abcd") || in(7, "2001:db8:0:1::1") {
		t.Error("IPv6 /64 membership wrong")
	}
}

func TestBadRowsAreSkipped(t *testing.T) {
	// Rows edited in the database by hand: they grant nothing, the rest
	// of the table loads.
	rows := []store.Address{
		{ID: 1, Group: 1, IP: "192.0.2.1", Mask: 32},
		{ID: 2, Group: 1, IP: "192.0.2.300", Mask: 32},
		{ID: 3, Group: 1, IP: "192.0.2.0", Mask: 40},
		{ID: 4, Group: 1, IP: "192.0.2.5", Pattern: "(", Mask: 32},
		{ID: 5, Group: 0, IP: "192.0.2.6", Mask: 32},
		{ID: 6, Group: 1, IP: "192.0.2.7", Proto: "sctp", Mask: 32},
	}
	var skipped []int64
	tab := buildTable(rows, subjectFrom, nil, func(a store.Address, err error) { skipped = append(skipped, a.ID) })
	if tab.entries != 1 || tab.skipped != 5 || len(skipped) != 5 {
		t.Fatalf("entries %d, skipped %d %v", tab.entries, tab.skipped, skipped)
	}
	if find(tab, 0, "192.0.2.1", 5060, transport.UDP, "") != 1 || find(tab, 0, "192.0.2.6", 5060, transport.UDP, "") != 0 {
		t.Error("lookups wrong")
	}
}
