package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPostgresOpenErrors(t *testing.T) {
	for _, c := range []struct {
		opts  Options
		words string
	}{
		{Options{Driver: DriverPostgres}, "no DSN"},
		{Options{Driver: DriverPostgres, DSN: "postgres://u:secret-pw@127.0.0.1:notaport/db"}, "bad DSN"},
		{Options{Driver: "oracle"}, `unknown driver "oracle"`},
		{Options{Driver: DriverSQLite, DSN: "host=/tmp"}, "DSN is for the postgres and mysql drivers"},
	} {
		_, err := Open(t.TempDir(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.words) || strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("Open(%+v) = %v, want an error about %q", c.opts, err, c.words)
		}
	}
	// A server that is not there.
	srv := testPostgres(t)
	_, err := Open("", Options{Driver: DriverPostgres, DSN: srv.DSN("no_such_db")})
	if err == nil || !strings.Contains(err.Error(), "no_such_db") || errors.Is(err, ErrUnavailable) {
		t.Errorf("Open of a missing database = %v, want an error naming it, not ErrUnavailable", err)
	}
}

// The URL form over TCP works as the key=value one over the socket.
func TestPostgresURL(t *testing.T) {
	srv := testPostgres(t)
	name, err := srv.NewDatabase(ctx, "url")
	must(t, err)
	s := openT(t, "", Options{Driver: DriverPostgres, DSN: srv.URL(name)})
	must(t, s.AddDomain(ctx, "example.com"))
	if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
		t.Fatalf("DomainExists = %v, %v", ok, err)
	}
}

// Binding fields come from headers anyone can forge: NUL and invalid
// UTF-8, which PostgreSQL's text refuses, are stored replaced rather than
// failing the writer's batch with everyone else's bindings in it.
func TestPostgresForgedBindingText(t *testing.T) {
	db := newPostgresDB(t)
	s := db.open(t, Options{})
	exp := time.Now().Add(time.Hour).Unix()
	bad := binding("mallory@example.com", "sip:mallory@192.0.2.66", exp)
	bad.UserAgent, bad.CallID, bad.Instance = "caf\xe9", "a\x00b", "<urn:\xff>"
	good := binding("alice@example.com", "sip:alice@192.0.2.1", exp)
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: bad}, {Kind: OpUpsert, Binding: good}}))
	m := loadMap(t, s, time.Now())
	if len(m) != 2 {
		t.Fatalf("%d bindings stored, want 2", len(m))
	}
	var got Binding
	for _, b := range m {
		if b.AOR == "mallory@example.com" {
			got = b
		}
	}
	if got.UserAgent != "caf\uFFFD" || got.CallID != "a\uFFFDb" || got.Instance != "<urn:\uFFFD>" {
		t.Fatalf("stored %q %q %q", got.UserAgent, got.CallID, got.Instance)
	}
	// The same forged binding deleted by its key.
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpDelete, Binding: bad}}))
	if m := loadMap(t, s, time.Now()); len(m) != 1 {
		t.Fatalf("%d bindings after deleting the forged one, want 1", len(m))
	}
}
