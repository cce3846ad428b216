package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddressPrefix(t *testing.T) {
	good := []struct {
		in   string
		ip   string
		mask int
	}{
		{"192.0.2.7", "192.0.2.7", 32},
		{" 192.0.2.7 ", "192.0.2.7", 32},
		{"192.0.2.0/24", "192.0.2.0", 24},
		{"0.0.0.0/0", "0.0.0.0", 0},
		{"2001:DB8::1", "2001:db8::1", 128},
		{"2001:db8::/32", "2001:db8::", 32},
		{"2001:0db8:0000::/48", "2001:db8::", 48},
		{"::ffff:192.0.2.7", "192.0.2.7", 32},
		{"::ffff:192.0.2.0/120", "192.0.2.0", 24},
	}
	for _, g := range good {
		ip, mask, err := ParseAddressPrefix(g.in)
		if err != nil || ip != g.ip || mask != g.mask {
			t.Errorf("ParseAddressPrefix(%q) = %q, %d, %v; want %q, %d", g.in, ip, mask, err, g.ip, g.mask)
		}
	}
	bad := []struct{ in, words string }{
		{"", "empty"},
		{"192.0.2.300", `"192.0.2.300": not an IPv4 or IPv6 address`},
		{"gw.example.com", "not an IPv4 or IPv6 address"},
		{"192.0.2.0/33", "prefix length 33 out of range for IPv4 (0-32)"},
		{"2001:db8::/129", "prefix length 129 out of range for IPv6 (0-128)"},
		{"192.0.2.0/-1", "prefix length"},
		{"192.0.2.0/", "prefix length"},
		{"192.0.2.0/x", `prefix length "x" is not a number`},
		{"192.0.2.7/24", "bits set after the /24 prefix (the subnet is 192.0.2.0/24)"},
		{"2001:db8::1/64", "the subnet is 2001:db8::/64"},
		{"fe80::1%eth0", "zones"},
	}
	for _, b := range bad {
		_, _, err := ParseAddressPrefix(b.in)
		if !errors.Is(err, ErrMalformedAddress) || !strings.Contains(err.Error(), b.words) {
			t.Errorf("ParseAddressPrefix(%q) = %v; want ErrMalformedAddress mentioning %q", b.in, err, b.words)
		}
	}
}

func TestNormalizeAddress(t *testing.T) {
	a := Address{Group: 1, IP: "10.0.0.0", Mask: 8, Proto: "UDP"}
	if err := NormalizeAddress(&a); err != nil || a.IP != "10.0.0.0" || a.Mask != 8 || a.Proto != "udp" {
		t.Fatalf("normalized %+v, %v", a, err)
	}
	a = Address{Group: 2, IP: "10.0.0.1"}
	if err := NormalizeAddress(&a); err != nil || a.Mask != 32 || a.Proto != "any" {
		t.Fatalf("defaults: %+v, %v", a, err)
	}
	bad := []struct {
		a     Address
		words string
	}{
		{Address{Group: 0, IP: "10.0.0.1"}, "group 0 out of range (1-65535)"},
		{Address{Group: 65536, IP: "10.0.0.1"}, "group 65536"},
		{Address{Group: 1, IP: "10.0.0.1", Port: 65536}, "port 65536 out of range"},
		{Address{Group: 1, IP: "10.0.0.1", Port: -1}, "port -1"},
		{Address{Group: 1, IP: "10.0.0.1", Proto: "sctp"}, `proto "sctp": want one of any, udp, tcp, tls, ws`},
		{Address{Group: 1, IP: "10.0.0.1", Pattern: "sip:(+"}, `pattern "sip:(+"`},
		{Address{Group: 1, IP: "10.0.0.1", Pattern: strings.Repeat("a", 513)}, "longer than 512 bytes"},
		{Address{Group: 1, IP: "10.0.0.1", ContextInfo: strings.Repeat("a", 256)}, "longer than 255 bytes"},
		{Address{Group: 1, IP: "10.0.0.1", ContextInfo: "a\nb"}, "control characters"},
		{Address{Group: 1, IP: "10.0.0.1", Mask: 33}, "out of range for IPv4"},
		{Address{Group: 1, IP: "10.0.0.1", Mask: 8}, "the subnet is 10.0.0.0/8"},
		{Address{Group: 1, IP: "10.0.0.0/8", Mask: 16}, "two different prefix lengths"},
		{Address{Group: 1, IP: "10.0.0.256"}, `"10.0.0.256": not an IPv4`},
	}
	for _, b := range bad {
		a := b.a
		err := NormalizeAddress(&a)
		if !errors.Is(err, ErrMalformedAddress) || !strings.Contains(err.Error(), b.words) {
			t.Errorf("NormalizeAddress(%+v) = %v; want ErrMalformedAddress mentioning %q", b.a, err, b.words)
		}
	}
}

func TestAddresses(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		since, err := s.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gw, err := s.AddAddress(ctx, Address{Group: 1, IP: "192.0.2.10", Proto: "udp", Port: 5060, ContextInfo: "carrier A"})
		if err != nil {
			t.Fatal(err)
		}
		if gw.ID == 0 || gw.Mask != 32 || gw.Created == 0 {
			t.Fatalf("stored %+v", gw)
		}
		net, err := s.AddAddress(ctx, Address{Group: 2, IP: "2001:db8::/32", Pattern: `^sip:\+49`})
		if err != nil {
			t.Fatal(err)
		}
		// The same entry again, in another spelling, is a duplicate; a
		// different port is not.
		_, err = s.AddAddress(ctx, Address{Group: 1, IP: "::ffff:192.0.2.10", Proto: "UDP", Port: 5060})
		wantErr(t, err, ErrAddressExists, "192.0.2.10/32", "group 1")
		if _, err := s.AddAddress(ctx, Address{Group: 1, IP: "192.0.2.10", Proto: "udp", Port: 5080}); err != nil {
			t.Fatal(err)
		}
		_, err = s.AddAddress(ctx, Address{Group: 1, IP: "192.0.2.10", Proto: "sctp"})
		wantErr(t, err, ErrMalformedAddress, `proto "sctp"`)

		// A batch is all or nothing, and its error names the entry.
		err = s.AddAddresses(ctx, []Address{{Group: 3, IP: "198.51.100.1"}, {Group: 3, IP: "198.51.100.0/33"}})
		wantErr(t, err, ErrMalformedAddress, "entry 2", "198.51.100.0/33")
		err = s.AddAddresses(ctx, []Address{{Group: 3, IP: "198.51.100.1"}, {Group: 1, IP: "192.0.2.10", Proto: "udp", Port: 5060}})
		wantErr(t, err, ErrAddressExists, "already in group 1")

		all, err := s.ListAddresses(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 || all[0].ID != gw.ID || all[2].ID != net.ID {
			t.Fatalf("list = %+v", all)
		}
		if all[0] != gw || all[2] != net {
			t.Errorf("round trip:\n got %+v\nwant %+v\n got %+v\nwant %+v", all[0], gw, all[2], net)
		}
		g2, _ := s.ListAddresses(ctx, 2)
		if len(g2) != 1 || g2[0].IP != "2001:db8::" || g2[0].Mask != 32 || g2[0].Pattern != `^sip:\+49` {
			t.Fatalf("group 2 = %+v", g2)
		}
		if _, err := s.ListAddresses(ctx, 70000); !errors.Is(err, ErrMalformedAddress) {
			t.Errorf("ListAddresses(70000) = %v", err)
		}

		del, err := s.DeleteAddress(ctx, net.ID)
		if err != nil || del != net {
			t.Fatalf("DeleteAddress = %+v, %v", del, err)
		}
		_, err = s.DeleteAddress(ctx, net.ID)
		wantErr(t, err, ErrNoAddress, "no address entry with id")

		dels, err := s.DeleteAddressesOf(ctx, 1, "192.0.2.10")
		if err != nil || len(dels) != 2 {
			t.Fatalf("DeleteAddressesOf = %+v, %v", dels, err)
		}
		_, err = s.DeleteAddressesOf(ctx, 1, "192.0.2.10")
		wantErr(t, err, ErrNoAddress, "no entry for 192.0.2.10/32 in group 1")
		_, err = s.DeleteAddressesOf(ctx, 1, "192.0.2.10/8")
		wantErr(t, err, ErrMalformedAddress, "bits set")

		// Every successful write, and only those, is in the change log.
		changes, _, err := s.Changes(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 5 { // 3 adds, 2 deletes
			t.Fatalf("changes = %+v, want 5", changes)
		}
		for _, c := range changes {
			if c.Kind != ChangeAddress {
				t.Errorf("change %+v, want kind ChangeAddress", c)
			}
		}
	})
}

func TestAddressesSeenByAnotherHandle(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		server := db.open(t, Options{})
		cli := db.open(t, Options{})
		since, _ := server.LastChange(ctx)
		if _, err := cli.AddAddress(ctx, Address{Group: 1, IP: "203.0.113.0/24"}); err != nil {
			t.Fatal(err)
		}
		changes, _, err := server.Changes(ctx, since)
		if err != nil || len(changes) != 1 || changes[0].Kind != ChangeAddress {
			t.Fatalf("changes = %+v, %v", changes, err)
		}
		as, err := server.ListAddresses(ctx, 1)
		if err != nil || len(as) != 1 || as[0].Prefix() != "203.0.113.0/24" {
			t.Fatalf("list = %+v, %v", as, err)
		}
	})
}

// A database made by a binary that had only migration 1 gets the
// address table, and keeps what it had.
func TestAddressMigrationUpgradesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	var opts Options
	opts.setDefaults()
	old, err := openSQLite(path, opts, sqliteMigrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := New(old, opts).AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.Exec(`SELECT 1 FROM address`); err == nil {
		t.Fatal("the old schema already has the address table")
	}
	old.Close()

	s := openT(t, dir, Options{})
	if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
		t.Fatalf("domain lost in the upgrade: %v %v", ok, err)
	}
	if _, err := s.AddAddress(ctx, Address{Group: 1, IP: "192.0.2.1"}); err != nil {
		t.Fatalf("address table missing after upgrade: %v", err)
	}
	var v int
	if err := s.b.(*SQLite).db.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != len(sqliteMigrations) {
		t.Fatalf("version %d, %v", v, err)
	}
}

// An operator who adds 0.0.0.0/0 (every IPv4 source), ::/0 or
// ::ffff:0:0/96 (every IPv4-mapped source, which is 0.0.0.0/0) gets rows
// of mask 0 on every backend, read back as the /0 they are: a row read
// with NormalizeStoredAddress stays /0, where NormalizeAddress, for
// input, takes mask 0 for "not given" and would make it one address.
func TestZeroPrefixAddresses(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		must(t, s.AddAddresses(ctx, []Address{{Group: 4, IP: "0.0.0.0/0"}, {Group: 5, IP: "::/0"}, {Group: 6, IP: "::ffff:0:0/96"}}))
		as, err := s.ListAddresses(ctx, 0)
		must(t, err)
		want := []string{"0.0.0.0/0", "::/0", "0.0.0.0/0"}
		if len(as) != len(want) {
			t.Fatalf("list = %+v", as)
		}
		for i, a := range as {
			if a.Mask != 0 || a.Prefix() != want[i] {
				t.Errorf("stored %+v, want %s", a, want[i])
			}
			if err := NormalizeStoredAddress(&a); err != nil || a.Prefix() != want[i] {
				t.Errorf("row %s read back as %s, %v", want[i], a.Prefix(), err)
			}
		}
		// The /0 is its own entry: one address of the same text is another.
		if _, err := s.AddAddress(ctx, Address{Group: 4, IP: "0.0.0.0"}); err != nil {
			t.Errorf("0.0.0.0/32 beside 0.0.0.0/0: %v", err)
		}
		del, err := s.DeleteAddressesOf(ctx, 4, "0.0.0.0/0")
		if err != nil || len(del) != 1 || del[0].Mask != 0 {
			t.Fatalf("DeleteAddressesOf(0.0.0.0/0) = %+v, %v", del, err)
		}
	})
}

func TestNormalizeStoredAddress(t *testing.T) {
	rows := []struct {
		a    Address
		want string
	}{
		{Address{Group: 1, IP: "0.0.0.0", Mask: 0}, "0.0.0.0/0"},
		{Address{Group: 1, IP: "::", Mask: 0}, "::/0"},
		{Address{Group: 1, IP: "192.0.2.7", Mask: 32}, "192.0.2.7/32"},
		{Address{Group: 1, IP: "192.0.2.0/24", Mask: 24}, "192.0.2.0/24"},
		{Address{Group: 1, IP: "::ffff:192.0.2.7", Mask: 128}, "192.0.2.7/32"},
	}
	for _, r := range rows {
		a := r.a
		if err := NormalizeStoredAddress(&a); err != nil || a.Prefix() != r.want {
			t.Errorf("NormalizeStoredAddress(%+v) = %s, %v; want %s", r.a, a.Prefix(), err, r.want)
		}
	}
	// Mask 0 is /0 here: a host address with it has bits after the prefix,
	// and an address written with its own length must agree with the column.
	bad := []struct {
		a     Address
		words string
	}{
		{Address{Group: 1, IP: "192.0.2.7", Mask: 0}, "the subnet is 0.0.0.0/0"},
		{Address{Group: 1, IP: "10.0.0.0/8", Mask: 0}, "two different prefix lengths"},
		{Address{Group: 1, IP: "10.0.0.0", Mask: 33}, "out of range for IPv4"},
	}
	for _, b := range bad {
		a := b.a
		err := NormalizeStoredAddress(&a)
		if !errors.Is(err, ErrMalformedAddress) || !strings.Contains(err.Error(), b.words) {
			t.Errorf("NormalizeStoredAddress(%+v) = %v; want ErrMalformedAddress mentioning %q", b.a, err, b.words)
		}
	}
}
