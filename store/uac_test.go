package store

import (
	"errors"
	"testing"
)

func TestUACCredentials(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, _ := s.UACCredentialsVersion(ctx)
		c, err := s.AddUACCredential(ctx, UACCredential{Realm: " carrier.example ", Gateway: "::ffff:192.0.2.10", Username: "trunk1", Password: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		if c.ID == 0 || c.Realm != "carrier.example" || c.Gateway != "192.0.2.10" || c.Created == 0 {
			t.Fatalf("stored %+v", c)
		}
		if _, err := s.AddUACCredential(ctx, UACCredential{Gateway: "[2001:db8::1]:5070", Username: "t", Realm: "r", HA1: "0123456789ABCDEF0123456789abcdef"}); err != nil {
			t.Fatal(err)
		}
		_, err = s.AddUACCredential(ctx, UACCredential{Realm: "carrier.example", Gateway: "192.0.2.10", Username: "other", Password: "x"})
		wantErr(t, err, ErrUACExists, `realm "carrier.example"`, `gateway "192.0.2.10"`)
		list, err := s.ListUACCredentials(ctx)
		if err != nil || len(list) != 2 || list[0].Gateway != "[2001:db8::1]:5070" && list[1].Gateway != "[2001:db8::1]:5070" {
			t.Fatalf("list %+v %v", list, err)
		}
		for _, l := range list {
			if l.HA1 != "" && l.HA1 != "0123456789abcdef0123456789abcdef" {
				t.Errorf("HA1 not lower-cased: %q", l.HA1)
			}
		}
		if v, _ := s.UACCredentialsVersion(ctx); v != v0+2 {
			t.Errorf("version %d after two writes from %d (the refused one counts not)", v, v0)
		}
		del, err := s.DeleteUACCredential(ctx, c.ID)
		if err != nil || del.Username != "trunk1" {
			t.Fatalf("delete: %+v %v", del, err)
		}
		_, err = s.DeleteUACCredential(ctx, c.ID)
		wantErr(t, err, ErrNoUAC, "uac credential", "does not exist")
	})
}

func TestUACCredentialValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		ok := UACCredential{Realm: "carrier.example", Gateway: "192.0.2.10:5060", Username: "trunk", Password: "pw"}
		for _, c := range []struct {
			name  string
			edit  func(c *UACCredential)
			words []string
		}{
			{"neither realm nor gateway", func(c *UACCredential) { c.Realm, c.Gateway = "", "" }, []string{"realm and gateway"}},
			{"gateway hostname", func(c *UACCredential) { c.Gateway = "gw.example" }, []string{`gateway "gw.example"`}},
			{"gateway port 0", func(c *UACCredential) { c.Gateway = "192.0.2.1:0" }, []string{"port 0"}},
			{"no username", func(c *UACCredential) { c.Username = "" }, []string{"username: empty"}},
			{"quote in realm", func(c *UACCredential) { c.Realm = `a"b` }, []string{"realm", "quotes"}},
			{"newline in password", func(c *UACCredential) { c.Password = "a\r\nb" }, []string{"password", "line break"}},
			{"no secret", func(c *UACCredential) { c.Password = "" }, []string{"give a password, or ha1"}},
			{"both", func(c *UACCredential) { c.HA1 = "0123456789abcdef0123456789abcdef" }, []string{"not both"}},
			{"short ha1", func(c *UACCredential) { c.Password, c.HA1 = "", "0123" }, []string{"ha1: must be 32 hex"}},
			{"bad sha256", func(c *UACCredential) { c.Password, c.HA1SHA256 = "", "xyz" }, []string{"ha1_sha256: must be 64 hex"}},
			{"ha1 without realm", func(c *UACCredential) { c.Password, c.Realm, c.HA1 = "", "", "0123456789abcdef0123456789abcdef" }, []string{"realm: an HA1"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := ok
				c.edit(&r)
				_, err := s.AddUACCredential(ctx, r)
				wantErr(t, err, ErrMalformedUAC, append([]string{"uac credential"}, c.words...)...)
			})
		}
		if l, _ := s.ListUACCredentials(ctx); len(l) != 0 {
			t.Fatalf("invalid rows stored: %+v", l)
		}
	})
}

func TestUACRegistrations(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		r, err := s.AddUACRegistration(ctx, UACRegistration{AOR: "sip:+4930123@carrier.example", Registrar: "carrier.example", Proxy: "192.0.2.10:5060", Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Registrar != "sip:carrier.example" || r.Proxy != "sip:192.0.2.10:5060" || r.Username != "+4930123" || r.Expires != DefaultUACExpires {
			t.Fatalf("stored with defaults %+v", r)
		}
		_, err = s.AddUACRegistration(ctx, UACRegistration{AOR: "sip:+4930123@carrier.example", Registrar: "sip:carrier.example"})
		wantErr(t, err, ErrUACExists, "sip:+4930123@carrier.example")
		for _, c := range []struct {
			r     UACRegistration
			words []string
		}{
			{UACRegistration{AOR: "carrier.example", Registrar: "x"}, []string{"aor", "sip: or sips: URI"}},
			{UACRegistration{AOR: "sip:carrier.example", Registrar: "x"}, []string{"aor", "no user part"}},
			{UACRegistration{AOR: "sip:a@b"}, []string{"registrar: empty"}},
			{UACRegistration{AOR: "sip:a@b", Registrar: "sip:"}, []string{"registrar"}},
			{UACRegistration{AOR: "sip:a@b", Registrar: "b", Expires: 10}, []string{"expires 10", "between 60 and 86400"}},
			{UACRegistration{AOR: "sip:a@b", Registrar: "b", Contact: "tel:+1"}, []string{"contact"}},
		} {
			_, err := s.AddUACRegistration(ctx, c.r)
			wantErr(t, err, ErrMalformedUAC, append([]string{"uac registration"}, c.words...)...)
		}
		list, _ := s.ListUACRegistrations(ctx)
		if len(list) != 1 {
			t.Fatalf("list %+v", list)
		}
		if _, err := s.DeleteUACRegistration(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteUACRegistration(ctx, r.ID); !errors.Is(err, ErrNoUAC) {
			t.Fatalf("second delete: %v", err)
		}
		if v, _ := s.UACRegistrationsVersion(ctx); v != 2 {
			t.Errorf("version %d after an add and a delete", v)
		}
	})
}
