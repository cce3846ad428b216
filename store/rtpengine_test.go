package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRTPEngineTable: rows added, listed by set and id, refused when
// malformed (the error names the field) or already in their set, and
// deleted by id or by set and socket; every write moves the table
// version a running server polls. On SQLite, PostgreSQL and MySQL.
func TestRTPEngineTable(t *testing.T) {
	ctx := context.Background()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, err := s.RTPEngineVersion(ctx)
		must(t, err)
		a, err := s.AddRTPEngine(ctx, RTPEngine{SetID: 1, Socket: " 127.0.0.1:2223", Weight: 2, Description: "media 1"})
		must(t, err)
		if a.ID == 0 || a.Socket != "udp:127.0.0.1:2223" || a.Created == 0 {
			t.Fatalf("added %+v", a)
		}
		b, err := s.AddRTPEngine(ctx, RTPEngine{SetID: 0, Socket: "UDP:[::1]:2224", Weight: 1, Disabled: true})
		must(t, err)
		// The same socket in another set is another row.
		_, err = s.AddRTPEngine(ctx, RTPEngine{SetID: 2, Socket: "udp:127.0.0.1:2223", Weight: 1})
		must(t, err)
		v1, err := s.RTPEngineVersion(ctx)
		must(t, err)
		if v1 == v0 {
			t.Fatal("the version did not move")
		}
		for _, c := range []struct {
			r     RTPEngine
			want  error
			words string
		}{
			{RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:2223", Weight: 1}, ErrRTPEngineExists, "rtpengine udp:127.0.0.1:2223 is already in set 1"},
			{RTPEngine{SetID: 1, Socket: "udp:rtp.example.net:2223", Weight: 1}, ErrMalformedRTPEngine, "socket: \"udp:rtp.example.net:2223\": want udp:IP:port"},
			{RTPEngine{SetID: 1, Socket: "tcp:127.0.0.1:2223", Weight: 1}, ErrMalformedRTPEngine, "only udp:"},
			{RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:2223=3", Weight: 1}, ErrMalformedRTPEngine, "weight in its own field"},
			{RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:0", Weight: 1}, ErrMalformedRTPEngine, "port 0"},
			{RTPEngine{SetID: 70000, Socket: "udp:127.0.0.1:1", Weight: 1}, ErrMalformedRTPEngine, "set_id: 70000"},
			{RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:1", Weight: 0}, ErrMalformedRTPEngine, "weight: 0"},
			{RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:1", Weight: 1, Description: "a\nb"}, ErrMalformedRTPEngine, "description"},
		} {
			_, err := s.AddRTPEngine(ctx, c.r)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words) {
				t.Errorf("add %+v: %v, want %v with %q", c.r, err, c.want, c.words)
			}
		}
		l, err := s.ListRTPEngines(ctx)
		must(t, err)
		if len(l) != 3 || l[0].ID != b.ID || !l[0].Disabled || l[0].Socket != "udp:[::1]:2224" ||
			l[1].ID != a.ID || l[1].Weight != 2 || l[1].Description != "media 1" || l[1].Disabled || l[2].SetID != 2 {
			t.Fatalf("list %+v", l)
		}
		d, err := s.DeleteRTPEngineOf(ctx, 1, "127.0.0.1:2223")
		must(t, err)
		if d.ID != a.ID {
			t.Fatalf("deleted %+v", d)
		}
		if _, err := s.DeleteRTPEngineOf(ctx, 1, "127.0.0.1:2223"); !errors.Is(err, ErrNoRTPEngine) || !strings.Contains(err.Error(), "not in set 1") {
			t.Fatalf("delete again: %v", err)
		}
		if _, err := s.DeleteRTPEngine(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteRTPEngine(ctx, b.ID); !errors.Is(err, ErrNoRTPEngine) {
			t.Fatalf("delete id again: %v", err)
		}
		v2, _ := s.RTPEngineVersion(ctx)
		if v2 == v1 {
			t.Fatal("deletes did not move the version")
		}
		if l, _ := s.ListRTPEngines(ctx); len(l) != 1 || l[0].SetID != 2 {
			t.Fatalf("left %+v", l)
		}
	})
}
