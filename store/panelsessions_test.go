package store

import (
	"context"
	"errors"
	"testing"
)

// TestPanelSessions: a session is found by the id of its token, moves its
// expiry, ends, and is swept once expired, on every backend; the token
// itself is stored nowhere.
func TestPanelSessions(t *testing.T) {
	ctx := context.Background()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		if !s.HasPanelSessions() {
			t.Fatal("no panel sessions")
		}
		token := "the cookie's token, random in the panel"
		a := PanelSession{ID: PanelSessionID(token), User: "ops", CSRF: "csrf-a", PasswordTag: PanelPasswordTag("$argon2id$..."), Created: 1000, Expires: 2000}
		b := PanelSession{ID: PanelSessionID("another token"), User: "viewer", CSRF: "csrf-b", PasswordTag: "tag", Created: 1000, Expires: 1500}
		for _, ps := range []PanelSession{a, b} {
			if err := s.AddPanelSession(ctx, ps); err != nil {
				t.Fatal(err)
			}
		}
		if len(a.ID) != 64 || a.ID == token || len(a.PasswordTag) != 32 {
			t.Fatalf("id %q, tag %q", a.ID, a.PasswordTag)
		}
		got, err := s.GetPanelSession(ctx, a.ID)
		if err != nil || got != a {
			t.Fatalf("get: %+v %v, want %+v", got, err, a)
		}
		if _, err := s.GetPanelSession(ctx, token); !errors.Is(err, ErrNoPanelSession) {
			t.Fatalf("get by the token itself: %v", err)
		}
		if err := s.TouchPanelSession(ctx, a.ID, 3000); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchPanelSession(ctx, a.ID, 3000); err != nil { // the same expiry again is not "no session"
			t.Fatal(err)
		}
		if got, _ := s.GetPanelSession(ctx, a.ID); got.Expires != 3000 {
			t.Fatalf("expires %d after touch", got.Expires)
		}
		if n, err := s.DeleteExpiredPanelSessions(ctx, 1600); n != 1 || err != nil {
			t.Fatalf("swept %d, %v; want b", n, err)
		}
		if _, err := s.GetPanelSession(ctx, b.ID); !errors.Is(err, ErrNoPanelSession) {
			t.Fatalf("b after the sweep: %v", err)
		}
		if err := s.DeletePanelSession(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchPanelSession(ctx, a.ID, 4000); !errors.Is(err, ErrNoPanelSession) {
			t.Fatalf("touch after delete: %v", err)
		}
		if err := s.DeletePanelSession(ctx, a.ID); err != nil {
			t.Fatalf("second delete: %v", err)
		}
	})
}
