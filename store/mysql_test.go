package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMySQLOpenErrors(t *testing.T) {
	for _, c := range []struct{ dsn, words string }{
		{"", "no DSN"},
		{"sb:secret-pw@tcp(db.example.net:3306", "bad DSN"},
		{"sb:secret-pw@tcp(db.example.net:3306)/", "names no database"},
	} {
		_, err := Open("", Options{Driver: DriverMySQL, DSN: c.dsn})
		if err == nil || !strings.Contains(err.Error(), c.words) || strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("Open(%q) = %v, want an error about %q", c.dsn, err, c.words)
		}
	}
	srv := testMySQL(t)
	_, err := Open("", Options{Driver: DriverMySQL, DSN: srv.DSN("no_such_db")})
	if err == nil || !strings.Contains(err.Error(), "no_such_db") || errors.Is(err, ErrUnavailable) {
		t.Errorf("Open of a missing database = %v, want an error naming it, not ErrUnavailable", err)
	}
}

// The TCP form works as the socket one.
func TestMySQLTCP(t *testing.T) {
	srv := testMySQL(t)
	db := newMySQLDB(t)
	name := db.dsn[strings.LastIndexByte(db.dsn, '/')+1:]
	s := openT(t, "", Options{Driver: DriverMySQL, DSN: srv.TCPDSN(name)})
	must(t, s.AddDomain(ctx, "example.com"))
	if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
		t.Fatalf("DomainExists = %v, %v", ok, err)
	}
}

// Text is stored as bytes: what a phone sends comes back as it was, NUL
// and invalid UTF-8 included, and keys differing only in case stay apart
// (a case-insensitive collation would merge them).
func TestMySQLBytesKept(t *testing.T) {
	db := newMySQLDB(t)
	s := db.open(t, Options{})
	exp := time.Now().Add(time.Hour).Unix()
	bad := binding("mallory@example.com", "sip:mallory@192.0.2.66", exp)
	bad.UserAgent, bad.CallID, bad.Instance = "caf\xe9", "a\x00b", "<urn:\xff>"
	bad.LastModified = 1234 // kept, not set at apply
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: bad}}))
	m := loadMap(t, s, time.Now())
	if got := m["mallory@example.com "+bad.Key()]; got != bad {
		t.Fatalf("stored %+v\nwant %+v", got, bad)
	}
	must(t, s.AddDomain(ctx, "example.com"))
	must(t, s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "a"}))
	must(t, s.AddSubscriber(ctx, Subscriber{Username: "Alice", Domain: "example.com", Password: "b"}))
	if l, _ := s.ListSubscribers(ctx, "example.com"); len(l) != 2 || l[0].Username != "Alice" || l[1].Username != "alice" {
		t.Fatalf("subscribers %+v: want Alice then alice (byte order)", l)
	}
}
