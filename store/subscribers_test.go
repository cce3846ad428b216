package store

import (
	"errors"
	"strings"
	"testing"
)

func TestHA1Vectors(t *testing.T) {
	// RFC 2617 §3.5 and RFC 7616 §3.9.1 examples.
	if got := HA1MD5("Mufasa", "testrealm@host.com", "Circle Of Life"); got != "939e7578ed9e3c518a452acee763bce9" {
		t.Errorf("HA1MD5 = %s", got)
	}
	if got := HA1SHA256("Mufasa", "http-auth@example.org", "Circle of Life"); got != "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232" {
		t.Errorf("HA1SHA256 = %s", got)
	}
}

func wantErr(t *testing.T, err, sentinel error, words ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestSubscribers(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		if err := s.AddDomain(ctx, "Example.COM"); err != nil {
			t.Fatal(err)
		}

		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.org", Password: "x"}),
			ErrUnknownDomain, `"example.org"`, "not served")

		if err := s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "EXAMPLE.com", Password: "secret", Email: "a@example.com"}); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "other"}),
			ErrSubscriberExists, "alice@example.com already exists")

		got, err := s.GetSubscriber(ctx, "alice", "example.com")
		if err != nil {
			t.Fatal(err)
		}
		// Independently computed with md5sum and sha256sum of "alice:example.com:secret".
		if got.HA1 != "b1726872c344b6dc8365b774f8fd6412" ||
			got.HA1SHA256 != "ed8925b20f9a77b8f8f8d5f8e4467fe32b866f7208ab9e4b20595e9821a0fdee" {
			t.Fatalf("credentials = %+v", got)
		}
		if got.Password != "" {
			t.Errorf("plain password stored without StorePasswords: %q", got.Password)
		}
		if got.Username != "alice" || got.Domain != "example.com" || got.Email != "a@example.com" || got.Created == 0 {
			t.Errorf("subscriber = %+v", got)
		}

		_, err = s.GetSubscriber(ctx, "bob", "example.com")
		wantErr(t, err, ErrNoSubscriber, "bob@example.com does not exist")

		// Usernames are case-sensitive (RFC 3261 §19.1.4), domains are not.
		if _, err := s.GetSubscriber(ctx, "Alice", "example.com"); !errors.Is(err, ErrNoSubscriber) {
			t.Errorf("Alice found: %v", err)
		}

		if err := s.SetPassword(ctx, "alice", "example.com", "newpass"); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetSubscriber(ctx, "alice", "example.com")
		if got.HA1 != HA1MD5("alice", "example.com", "newpass") || got.HA1SHA256 != HA1SHA256("alice", "example.com", "newpass") {
			t.Fatalf("password not changed: %+v", got)
		}
		wantErr(t, s.SetPassword(ctx, "nobody", "example.com", "x"), ErrNoSubscriber, "nobody@example.com")
		wantErr(t, s.SetPassword(ctx, "alice", "example.com", ""), ErrNoCredentials)

		// ha1-only subscriber.
		ha1 := HA1MD5("carol", "example.com", "pw")
		if err := s.AddSubscriber(ctx, Subscriber{Username: "carol", Domain: "example.com", HA1: ha1}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetSubscriber(ctx, "carol", "example.com")
		if got.HA1 != ha1 || got.HA1SHA256 != "" {
			t.Fatalf("ha1-only = %+v", got)
		}
		sha := HA1SHA256("erin", "example.com", "pw")
		if err := s.AddSubscriber(ctx, Subscriber{Username: "erin", Domain: "example.com",
			HA1: strings.ToUpper(HA1MD5("erin", "example.com", "pw")), HA1SHA256: strings.ToUpper(sha)}); err != nil {
			t.Fatal(err)
		}
		if got, _ = s.GetSubscriber(ctx, "erin", "example.com"); got.HA1SHA256 != sha || got.HA1 != HA1MD5("erin", "example.com", "pw") {
			t.Fatalf("upper-case ha1 not stored lower-case: %+v", got)
		}
		s.DeleteSubscriber(ctx, "erin", "example.com")
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "dave", Domain: "example.com", HA1: "XYZ"}), ErrMalformedHA1, "dave@example.com", "32")
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "dave", Domain: "example.com", HA1: ha1, HA1SHA256: ha1}), ErrMalformedHA1, "64")
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "dave", Domain: "example.com"}), ErrNoCredentials)
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "da ve", Domain: "example.com", Password: "x"}), ErrMalformedUser, `"da ve"`)
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "dave@x", Domain: "example.com", Password: "x"}), ErrMalformedUser)
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "", Domain: "example.com", Password: "x"}), ErrMalformedUser, "empty")
		wantErr(t, s.AddSubscriber(ctx, Subscriber{Username: "dave", Domain: "exa mple.com", Password: "x"}), ErrMalformedDomain)
		wantErr(t, s.SetCredentials(ctx, Subscriber{Username: "carol", Domain: "example.com", HA1: "0"}), ErrMalformedHA1)

		if err := s.AddDomain(ctx, "example.net"); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSubscriber(ctx, Subscriber{Username: "zed", Domain: "example.net", Password: "z"}); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListSubscribers(ctx, "example.com")
		if err != nil || len(list) != 2 || list[0].Username != "alice" || list[1].Username != "carol" {
			t.Fatalf("list = %+v, %v", list, err)
		}
		all, err := s.ListSubscribers(ctx, "")
		if err != nil || len(all) != 3 || all[2].Username != "zed" || all[2].Domain != "example.net" {
			t.Fatalf("list all = %+v, %v", all, err)
		}
		_, err = s.ListSubscribers(ctx, "example.org")
		wantErr(t, err, ErrUnknownDomain, "example.org")

		if err := s.DeleteSubscriber(ctx, "alice", "example.com"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.DeleteSubscriber(ctx, "alice", "example.com"), ErrNoSubscriber, "alice@example.com")
		if _, err := s.GetSubscriber(ctx, "alice", "example.com"); !errors.Is(err, ErrNoSubscriber) {
			t.Fatalf("deleted subscriber still found: %v", err)
		}
	})
}

func TestStorePasswords(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{StorePasswords: true})
		s.AddDomain(ctx, "example.com")
		if err := s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "secret"}); err != nil {
			t.Fatal(err)
		}
		got, _ := s.GetSubscriber(ctx, "alice", "example.com")
		if got.Password != "secret" || got.HA1 != HA1MD5("alice", "example.com", "secret") {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestDomains(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		for _, d := range []string{"b.example.com", "a.example.com", "[2001:DB8::1]", "192.0.2.1"} {
			if err := s.AddDomain(ctx, d); err != nil {
				t.Fatalf("AddDomain(%s): %v", d, err)
			}
		}
		wantErr(t, s.AddDomain(ctx, "A.example.com"), ErrDomainExists, `"a.example.com" already exists`)
		for _, bad := range []string{"", "exa mple.com", "-x.com", "a..b", "[::1", "x.com:5060", "user@x.com"} {
			if err := s.AddDomain(ctx, bad); !errors.Is(err, ErrMalformedDomain) {
				t.Errorf("AddDomain(%q) = %v, want ErrMalformedDomain", bad, err)
			}
		}
		list, err := s.ListDomains(ctx)
		if err != nil || len(list) != 4 || list[0].Domain != "192.0.2.1" || list[1].Domain != "[2001:db8::1]" || list[2].Domain != "a.example.com" {
			t.Fatalf("ListDomains = %+v, %v", list, err)
		}
		if ok, err := s.DomainExists(ctx, "B.EXAMPLE.COM"); !ok || err != nil {
			t.Fatalf("DomainExists = %v, %v", ok, err)
		}
		if ok, _ := s.DomainExists(ctx, "c.example.com"); ok {
			t.Fatal("unknown domain exists")
		}
		s.AddSubscriber(ctx, Subscriber{Username: "u", Domain: "a.example.com", Password: "p"})
		wantErr(t, s.DeleteDomain(ctx, "a.example.com"), ErrDomainInUse, "a.example.com", "still has subscribers")
		wantErr(t, s.DeleteDomain(ctx, "c.example.com"), ErrUnknownDomain, "c.example.com")
		if err := s.DeleteDomain(ctx, "b.example.com"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.DomainExists(ctx, "b.example.com"); ok {
			t.Fatal("deleted domain still exists")
		}
	})
}

func TestSplitAOR(t *testing.T) {
	u, d, err := SplitAOR("alice@Example.COM")
	if err != nil || u != "alice" || d != "example.com" {
		t.Fatalf("SplitAOR = %q %q %v", u, d, err)
	}
	for _, bad := range []string{"alice", "@example.com", "alice@", "sip:alice@example.com", "al ice@example.com", "alice@exa mple.com"} {
		_, _, err := SplitAOR(bad)
		wantErr(t, err, ErrMalformedAOR, bad)
	}
}

// Server and CLI are two processes on one file; two Store handles with their
// own connection pools behave the same way towards SQLite.
func TestTwoHandlesSeeEachOthersWrites(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		server := db.open(t, Options{})
		cli := db.open(t, Options{})

		since, err := server.LastChange(ctx)
		if err != nil || since != 0 {
			t.Fatalf("LastChange on empty db = %d, %v", since, err)
		}
		if ch, next, err := server.Changes(ctx, since); err != nil || len(ch) != 0 || next != 0 {
			t.Fatalf("Changes on empty db = %+v %d %v", ch, next, err)
		}

		if err := cli.AddDomain(ctx, "example.com"); err != nil {
			t.Fatal(err)
		}
		if err := cli.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "one"}); err != nil {
			t.Fatal(err)
		}
		got, err := server.GetSubscriber(ctx, "alice", "example.com")
		if err != nil || got.HA1 != HA1MD5("alice", "example.com", "one") {
			t.Fatalf("server does not see CLI's subscriber: %+v %v", got, err)
		}
		ch, next, err := server.Changes(ctx, since)
		if err != nil || len(ch) != 2 || next != 2 ||
			ch[0] != (Change{Seq: 1, Kind: ChangeDomain, Domain: "example.com"}) ||
			ch[1] != (Change{Seq: 2, Kind: ChangeSubscriber, Username: "alice", Domain: "example.com"}) {
			t.Fatalf("Changes = %+v next %d %v", ch, next, err)
		}
		since = next

		if err := cli.SetPassword(ctx, "alice", "example.com", "two"); err != nil {
			t.Fatal(err)
		}
		ch, since, err = server.Changes(ctx, since)
		if err != nil || len(ch) != 1 || ch[0].Username != "alice" || since != 3 {
			t.Fatalf("Changes after passwd = %+v %d %v", ch, since, err)
		}
		got, _ = server.GetSubscriber(ctx, "alice", "example.com")
		if got.HA1 != HA1MD5("alice", "example.com", "two") {
			t.Fatal("server reads the old password after the CLI changed it")
		}

		// Writes from the server side are seen by the CLI too.
		if err := server.AddSubscriber(ctx, Subscriber{Username: "bob", Domain: "example.com", Password: "b"}); err != nil {
			t.Fatal(err)
		}
		if l, _ := cli.ListSubscribers(ctx, "example.com"); len(l) != 2 {
			t.Fatalf("CLI sees %d subscribers", len(l))
		}

		// Failed writes do not log a change.
		cli.AddSubscriber(ctx, Subscriber{Username: "bob", Domain: "example.com", Password: "b"})
		if last, _ := server.LastChange(ctx); last != 4 {
			t.Fatalf("LastChange = %d after a refused write, want 4", last)
		}
		if ch, n, _ := server.Changes(ctx, 4); len(ch) != 0 || n != 4 {
			t.Fatalf("Changes(latest) = %+v %d", ch, n)
		}
	})
}

func TestChangesPrunedOrAhead(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{ChangeLogSize: 3})
		s.AddDomain(ctx, "example.com")
		for _, u := range []string{"a", "b", "c", "d", "e"} {
			if err := s.AddSubscriber(ctx, Subscriber{Username: u, Domain: "example.com", Password: "p"}); err != nil {
				t.Fatal(err)
			}
		}
		if n := db.count(t, s, "change_log"); n != 3 {
			t.Fatalf("change_log keeps %d entries, want 3", n)
		}
		// Entries 4..6 are kept: reading from 3 is complete, from 1 is not.
		if ch, next, err := s.Changes(ctx, 3); err != nil || len(ch) != 3 || ch[0].Seq != 4 || next != 6 {
			t.Fatalf("Changes(3) = %+v %d %v", ch, next, err)
		}
		if ch, next, err := s.Changes(ctx, 1); err != nil || len(ch) != 1 || ch[0].Kind != ChangeAll || next != 6 {
			t.Fatalf("Changes(1) = %+v %d %v, want ChangeAll", ch, next, err)
		}
		// A reader ahead of the database (file replaced by an older copy).
		if ch, next, err := s.Changes(ctx, 50); err != nil || len(ch) != 1 || ch[0].Kind != ChangeAll || next != 6 {
			t.Fatalf("Changes(50) = %+v %d %v, want ChangeAll", ch, next, err)
		}
	})
}
