package store

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDispatcherURI(t *testing.T) {
	for _, c := range []struct{ in, canon, proto, addr string }{
		{"sip:192.0.2.10", "sip:192.0.2.10:5060", "udp", "192.0.2.10:5060"},
		{" SIP:192.0.2.10:5080 ", "sip:192.0.2.10:5080", "udp", "192.0.2.10:5080"},
		{"sip:192.0.2.10;transport=UDP", "sip:192.0.2.10:5060", "udp", "192.0.2.10:5060"},
		{"sip:192.0.2.10:5070;transport=tcp", "sip:192.0.2.10:5070;transport=tcp", "tcp", "192.0.2.10:5070"},
		{"sip:192.0.2.10;transport=tls", "sip:192.0.2.10:5061;transport=tls", "tls", "192.0.2.10:5061"},
		{"sips:192.0.2.10", "sips:192.0.2.10:5061", "tls", "192.0.2.10:5061"},
		{"sips:192.0.2.10:5071;transport=tcp", "sips:192.0.2.10:5071", "tls", "192.0.2.10:5071"},
		{"sip:[2001:DB8::1]", "sip:[2001:db8::1]:5060", "udp", "[2001:db8::1]:5060"},
		{"sip:[2001:db8::1]:5090;transport=tcp", "sip:[2001:db8::1]:5090;transport=tcp", "tcp", "[2001:db8::1]:5090"},
	} {
		tg, canon, err := ParseDispatcherURI(c.in)
		if err != nil || canon != c.canon || tg.Proto != c.proto || tg.Addr.String() != c.addr {
			t.Errorf("%q: %+v %q %v; want %s %s %s", c.in, tg, canon, err, c.canon, c.proto, c.addr)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"192.0.2.10", "want a sip: or sips: URI"},
		{"tel:+4930123", "want a sip: or sips: URI"},
		{"sip:media.example.net", "not an IP address"},
		{"sip:alice@192.0.2.10", "no user part"},
		{"sip:192.0.2.10?X=1", "no user part nor headers"},
		{"sip:192.0.2.10;lr", `parameter "lr"`},
		{"sip:192.0.2.10;transport=sctp", `transport "sctp"`},
		{"sips:192.0.2.10;transport=udp", "reached over TLS"},
		{"sip:192.0.2.10:0", `port "0"`},
		{"sip:192.0.2.10:70000", `port "70000"`},
		{"sip:192.0.2.10:", `port ""`},
		{"sip:2001:db8::1", "IPv6 addresses in brackets"},
		{"sip:[2001:db8::1", "unclosed ["},
		{"sip:[192.0.2.1]", "IPv4 addresses plainly"},
		{"sip:[::ffff:192.0.2.1]", "IPv4 addresses plainly"},
		{"sip:[fe80::1%eth0]", "not an IP address"},
		{"sip:" + strings.Repeat("1", 130), "longer than"},
	} {
		_, _, err := ParseDispatcherURI(c.in)
		if err == nil || !errors.Is(err, ErrMalformedDispatcher) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error saying %q", c.in, err, c.want)
		}
	}
}

func TestCheckDispatcherDest(t *testing.T) {
	ok := func() DispatcherDest {
		return DispatcherDest{SetID: 1, Destination: "sip:192.0.2.10", Weight: 1}
	}
	d := ok()
	d.Socket = "UDP:192.0.2.1:5060"
	if err := CheckDispatcherDest(&d); err != nil || d.Destination != "sip:192.0.2.10:5060" || d.Socket != "udp:192.0.2.1:5060" {
		t.Fatalf("%+v %v", d, err)
	}
	d = ok()
	d.Destination, d.Socket = "sip:[2001:db8::1];transport=tcp", "tcp:[2001:db8::2]"
	if err := CheckDispatcherDest(&d); err != nil || d.Socket != "tcp:[2001:db8::2]" {
		t.Fatalf("%+v %v", d, err)
	}
	for _, c := range []struct {
		edit func(*DispatcherDest)
		want string
	}{
		{func(d *DispatcherDest) { d.SetID = -1 }, "setid: -1"},
		{func(d *DispatcherDest) { d.SetID = 65536 }, "setid: 65536"},
		{func(d *DispatcherDest) { d.Destination = "sip:gw.example.net" }, "destination: \"sip:gw.example.net\": host"},
		{func(d *DispatcherDest) { d.Weight = 0 }, "weight: 0: must be between 1 and 1000"},
		{func(d *DispatcherDest) { d.Weight = 1001 }, "weight: 1001"},
		{func(d *DispatcherDest) { d.Priority = -1 }, "priority: -1"},
		{func(d *DispatcherDest) { d.State = 3 }, "state: 3"},
		{func(d *DispatcherDest) { d.ProbeMode = 2 }, "probe_mode: 2"},
		{func(d *DispatcherDest) { d.Socket = "192.0.2.1:5060" }, "socket: \"192.0.2.1:5060\": want proto:ip"},
		{func(d *DispatcherDest) { d.Socket = "udp:host:5060" }, "socket: \"udp:host:5060\": \"host:5060\" is not an IP address"},
		{func(d *DispatcherDest) { d.Socket = "tcp:192.0.2.1" }, "socket: \"tcp:192.0.2.1\" is tcp but the destination is reached over udp"},
		{func(d *DispatcherDest) { d.Socket = "udp:[2001:db8::1]" }, "socket: \"udp:[2001:db8::1]\" is not of the destination's address family"},
		{func(d *DispatcherDest) { d.Attrs = strings.Repeat("a", 256) }, "attrs: "},
		{func(d *DispatcherDest) { d.Description = "two\r\nlines" }, "description: \"two\\r\\nlines\": control characters"},
	} {
		d := ok()
		c.edit(&d)
		err := CheckDispatcherDest(&d)
		if err == nil || !errors.Is(err, ErrMalformedDispatcher) || !strings.Contains(err.Error(), "dispatcher destination: "+strings.SplitN(c.want, ":", 2)[0]) ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%v; want an error naming %q", err, c.want)
		}
	}
}

func TestParseDispatcherState(t *testing.T) {
	for in, want := range map[string]int{"active": 0, "A": 0, "0": 0, "Inactive": 1, "i": 1, "1": 1, "probing": 2, "p": 2, "2": 2} {
		if got, err := ParseDispatcherState(in); got != want || err != nil {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	if _, err := ParseDispatcherState("down"); err == nil || !strings.Contains(err.Error(), `state "down"`) {
		t.Errorf("down: %v", err)
	}
}

func TestDispatcherTable(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, err := s.DispatcherVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.AddDispatcherDest(ctx, DispatcherDest{SetID: 1, Destination: "sip:192.0.2.10", Weight: 1, Priority: 5, Attrs: "pbx=a"})
		if err != nil || a.ID == 0 || a.Destination != "sip:192.0.2.10:5060" || a.Created == 0 {
			t.Fatalf("add: %+v %v", a, err)
		}
		if _, err := s.AddDispatcherDest(ctx, DispatcherDest{SetID: 1, Destination: "sip:192.0.2.10:5060;transport=udp", Weight: 1}); !errors.Is(err, ErrDispatcherExists) ||
			!strings.Contains(err.Error(), "sip:192.0.2.10:5060 is already in set 1 (id ") {
			t.Fatalf("duplicate: %v", err)
		}
		// The same address in another set is another destination.
		if _, err := s.AddDispatcherDest(ctx, DispatcherDest{SetID: 2, Destination: "sip:192.0.2.10", Weight: 1}); err != nil {
			t.Fatal(err)
		}
		batch := []DispatcherDest{
			{SetID: 1, Destination: "sip:192.0.2.11", Weight: 3, Priority: 9},
			{SetID: 1, Destination: "sip:192.0.2.12", Weight: 0},
		}
		if err := s.AddDispatcherDests(ctx, batch); !errors.Is(err, ErrMalformedDispatcher) || !strings.Contains(err.Error(), "entry 2: dispatcher destination: weight") {
			t.Fatalf("bad batch: %v", err)
		}
		batch[1].Weight = 1
		batch = append(batch, DispatcherDest{SetID: 2, Destination: "sip:192.0.2.10", Weight: 1})
		if err := s.AddDispatcherDests(ctx, batch); !errors.Is(err, ErrDispatcherExists) || !strings.Contains(err.Error(), "entry 3: destination sip:192.0.2.10:5060 is already in set 2") {
			t.Fatalf("batch with a duplicate: %v", err)
		}
		if ds, _ := s.ListDispatcherDests(ctx); len(ds) != 2 {
			t.Fatalf("a refused batch added rows: %+v", ds)
		}
		v1, _ := s.DispatcherVersion(ctx)
		if v1 != v0+2 {
			t.Fatalf("version %d after two adds from %d (refusals must not count)", v1, v0)
		}
		if err := s.AddDispatcherDests(ctx, batch[:2]); err != nil {
			t.Fatal(err)
		}
		ds, err := s.ListDispatcherDests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.Destination)
		}
		// By set, then priority (highest first), then id.
		if strings.Join(got, " ") != "sip:192.0.2.11:5060 sip:192.0.2.10:5060 sip:192.0.2.12:5060 sip:192.0.2.10:5060" || ds[3].SetID != 2 {
			t.Fatalf("list order: %v", got)
		}

		d, err := s.SetDispatcherState(ctx, 1, "sip:192.0.2.12:5060", DispatcherInactive)
		if err != nil || d.State != DispatcherInactive || d.Destination != "sip:192.0.2.12:5060" {
			t.Fatalf("set state: %+v %v", d, err)
		}
		if _, err := s.SetDispatcherState(ctx, 3, "sip:192.0.2.12", DispatcherActive); !errors.Is(err, ErrNoDispatcher) || !strings.Contains(err.Error(), "not in set 3") {
			t.Fatalf("set state of a missing one: %v", err)
		}
		if d, err := s.DeleteDispatcherDestOf(ctx, 1, "sip:192.0.2.11"); err != nil || d.Weight != 3 {
			t.Fatalf("delete by destination: %+v %v", d, err)
		}
		if d, err := s.DeleteDispatcherDest(ctx, a.ID); err != nil || d.Attrs != "pbx=a" {
			t.Fatalf("delete by id: %+v %v", d, err)
		}
		if _, err := s.DeleteDispatcherDest(ctx, a.ID); !errors.Is(err, ErrNoDispatcher) || !strings.Contains(err.Error(), "no dispatcher destination with id") {
			t.Fatalf("second delete: %v", err)
		}
		v2, _ := s.DispatcherVersion(ctx)

		// Replace: the whole table in one transaction.
		if err := s.ReplaceDispatcherDests(ctx, []DispatcherDest{{SetID: 7, Destination: "sip:127.0.0.1:5070", Weight: 2}}); err != nil {
			t.Fatal(err)
		}
		if ds, _ := s.ListDispatcherDests(ctx); len(ds) != 1 || ds[0].SetID != 7 {
			t.Fatalf("after replace: %+v", ds)
		}
		if err := s.ReplaceDispatcherDests(ctx, []DispatcherDest{{SetID: 8, Destination: "sip:127.0.0.1", Weight: 1}, {SetID: 8, Destination: "sip:127.0.0.1:5060", Weight: 1}}); !errors.Is(err, ErrDispatcherExists) {
			t.Fatalf("replace with a duplicate: %v", err)
		}
		if ds, _ := s.ListDispatcherDests(ctx); len(ds) != 1 || ds[0].SetID != 7 {
			t.Fatalf("a failed replace changed the table: %+v", ds)
		}
		if v3, _ := s.DispatcherVersion(ctx); v3 != v2+1 {
			t.Fatalf("version %d after one replace from %d", v3, v2)
		}
	})
}

// Another handle on the same file (the CLI while the server runs) sees the
// writes and the version moving.
func TestDispatcherSecondHandle(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		server := db.open(t, Options{})
		cli := db.open(t, Options{})
		v0, _ := server.DispatcherVersion(ctx)
		if _, err := cli.AddDispatcherDest(ctx, DispatcherDest{SetID: 1, Destination: "sip:127.0.0.1:5070", Weight: 1}); err != nil {
			t.Fatal(err)
		}
		if v, _ := server.DispatcherVersion(ctx); v == v0 {
			t.Fatal("the version did not move for the other handle")
		}
		if ds, err := server.ListDispatcherDests(ctx); err != nil || len(ds) != 1 {
			t.Fatalf("%+v %v", ds, err)
		}
	})
}

// A database made before the dispatcher migration gets the table, and
// keeps what it had.
func TestDispatcherMigrationUpgradesOldFile(t *testing.T) {
	dir := t.TempDir()
	old, opts := openBeforeMigration(t, dir, "dispatcher destinations")
	if err := New(old, opts).AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.Exec(`SELECT 1 FROM dispatcher`); err == nil {
		t.Fatal("the old schema already has the dispatcher table")
	}
	old.Close()

	s := openT(t, dir, Options{})
	if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
		t.Fatalf("domain lost in the upgrade: %v %v", ok, err)
	}
	if _, err := s.AddDispatcherDest(ctx, DispatcherDest{SetID: 1, Destination: "sip:192.0.2.1", Weight: 1}); err != nil {
		t.Fatalf("dispatcher table missing after upgrade: %v", err)
	}
	if v, err := s.DispatcherVersion(ctx); err != nil || v != 1 {
		t.Fatalf("version %d, %v", v, err)
	}
}
