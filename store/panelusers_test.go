package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestPanelUsers(t *testing.T) {
	ctx := context.Background()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		if err := s.AddPanelUser(ctx, "ops", "correct horse battery", RoleAdmin); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, pw, role string
			want           error
			words          string
		}{
			{"ops", "correct horse battery", RoleAdmin, ErrPanelUserExists, "panel user ops exists already"},
			{"bad name", "correct horse battery", RoleAdmin, ErrMalformedPanelUser, "invalid character"},
			{"viewer", "short", RoleAdmin, ErrMalformedPanelUser, "at least 10 characters"},
			{"viewer", "correct horse battery", "root", ErrMalformedPanelUser, `role "root"`},
		} {
			err := s.AddPanelUser(ctx, c.name, c.pw, c.role)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words) {
				t.Errorf("add %q/%q/%q: %v, want %v with %q", c.name, c.pw, c.role, err, c.want, c.words)
			}
		}
		u, err := s.GetPanelUser(ctx, "ops")
		if err != nil || u.Role != RoleAdmin || !strings.HasPrefix(u.Hash, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(u.Hash, "horse") {
			t.Fatalf("get: %+v %v", u, err)
		}
		if ok, err := VerifyPanelPassword(u.Hash, "correct horse battery"); !ok || err != nil {
			t.Fatalf("verify right password: %v %v", ok, err)
		}
		if ok, err := VerifyPanelPassword(u.Hash, "correct horse batterY"); ok || err != nil {
			t.Fatalf("verify wrong password: %v %v", ok, err)
		}
		if err := s.SetPanelUser(ctx, "ops", "", RoleReadOnly); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPanelUser(ctx, "ops", "", RoleReadOnly); err != nil { // same values again
			t.Fatal(err)
		}
		// The same values in the same second leave the row as it was: the
		// user still exists (an UPDATE counts the rows it matched, on
		// MySQL too).
		for i := 0; i < 2; i++ {
			if err := s.b.(panelUsers).UpdatePanelUser(ctx, "ops", "", RoleReadOnly, 1700000000); err != nil {
				t.Fatalf("update with the same values, %d: %v", i+1, err)
			}
		}
		v, _ := s.GetPanelUser(ctx, "ops")
		if v.Role != RoleReadOnly || v.Hash != u.Hash {
			t.Fatalf("role change: %+v", v)
		}
		if err := s.SetPanelUser(ctx, "ops", "another long password", ""); err != nil {
			t.Fatal(err)
		}
		v, _ = s.GetPanelUser(ctx, "ops")
		if ok, _ := VerifyPanelPassword(v.Hash, "another long password"); !ok || v.Role != RoleReadOnly {
			t.Fatalf("password change: %+v", v)
		}
		if err := s.SetPanelUser(ctx, "nobody", "another long password", ""); !errors.Is(err, ErrNoPanelUser) {
			t.Fatalf("set missing: %v", err)
		}
		s.AddPanelUser(ctx, "alice", "correct horse battery", RoleReadOnly)
		l, err := s.ListPanelUsers(ctx)
		if err != nil || len(l) != 2 || l[0].Name != "alice" || l[1].Name != "ops" {
			t.Fatalf("list: %+v %v", l, err)
		}
		if err := s.DeletePanelUser(ctx, "ops"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePanelUser(ctx, "ops"); !errors.Is(err, ErrNoPanelUser) {
			t.Fatalf("delete twice: %v", err)
		}
		if _, err := s.GetPanelUser(ctx, "ops"); !errors.Is(err, ErrNoPanelUser) {
			t.Fatalf("get deleted: %v", err)
		}
	})
}

// TestVerifyPanelPasswordBounds: a stored hash whose parameters would
// make one login cost gigabytes is refused, not computed.
func TestVerifyPanelPasswordBounds(t *testing.T) {
	for _, h := range []string{
		"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U",
		"$argon2id$v=19$m=19456,t=1000,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$a2V5",
		"$2y$10$abcdefghijklmnopqrstuv",
		"",
	} {
		if ok, err := VerifyPanelPassword(h, "x"); ok || err == nil {
			t.Errorf("%q: %v %v, want an error", h, ok, err)
		}
	}
}
