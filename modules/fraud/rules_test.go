package fraud

import (
	"testing"
	"time"

	"switchboard/store"
)

func TestPrefixMatch(t *testing.T) {
	rs, bad := buildRules([]store.FraudRule{
		{ID: 1, Profile: 1, Prefix: ""},
		{ID: 2, Profile: 1, Prefix: "0"},
		{ID: 3, Profile: 1, Prefix: "0900"},
		{ID: 4, Profile: 1, Prefix: "0900123"},
		{ID: 5, Profile: 1, Prefix: "+44"},
		{ID: 6, Profile: 1, Prefix: "*#"},
		{ID: 7, Profile: 2, Prefix: "09"},
		{ID: 8, Profile: 1, Prefix: "0900"}, // same prefix, higher ID: loses to 3
	})
	if len(bad) != 0 {
		t.Fatal(bad)
	}
	for _, c := range []struct {
		profile int
		number  string
		want    int64
	}{
		{1, "0900123456", 4},
		{1, "0900124", 3},    // diverges after 09001
		{1, "090012", 3},     // shorter than rule 4's prefix
		{1, "0900", 3},       // exactly the prefix
		{1, "0800", 2},       // only "0" matches
		{1, "1234", 1},       // only the empty prefix
		{1, "", 1},           // an empty number too
		{1, "alice", 1},      // a name: nothing but the empty prefix
		{1, "0900-123-4", 4}, // visual separators are skipped
		{1, "(0900) 123", 4},
		{1, "0900x123", 3},     // a letter ends the walk
		{1, "%30900123456", 4}, // escaped digits are the digits (the next hop unescapes them)
		{1, "09%30%30123", 4},
		{1, "%2B447700", 5},
		{1, "0900%2D123", 4}, // an escaped separator
		{1, "0900%3", 3},     // not an escape: '%' ends the walk
		{1, "0900%zz1", 3},
		{1, "+447700", 5},
		{1, "44", 1},
		{1, "*#06#", 6},
		{2, "0900123", 7}, // profile 2 has its own rules
		{2, "0800", 0},    // and nothing for other numbers
	} {
		tr := rs.profiles[c.profile]
		var got int64
		if tr != nil {
			if r := tr.match(rs.rules, []byte(c.number), 600, 1); r != nil {
				got = r.id
			}
		}
		if got != c.want {
			t.Errorf("profile %d, %q: rule %d, want %d", c.profile, c.number, got, c.want)
		}
	}
	if rs.profiles[3] != nil {
		t.Error("a profile without rules has a trie")
	}
}

func TestTimeWindows(t *testing.T) {
	rs, _ := buildRules([]store.FraudRule{
		{ID: 1, Profile: 1, Prefix: "09"},
		{ID: 2, Profile: 1, Prefix: "0900", StartHour: "08:00", EndHour: "17:59", Days: "Mon-Fri"},
		{ID: 3, Profile: 1, Prefix: "0900", StartHour: "22:00", EndHour: "05:59"}, // overnight, every day
		{ID: 4, Profile: 1, Prefix: "0900", Days: "Sat,Sun"},
	})
	const mon, tue, sat, sun = 1, 2, 6, 0
	at := func(h, m int) int { return h*60 + m }
	for _, c := range []struct {
		minute, weekday int
		want            int64
	}{
		{at(8, 0), mon, 2},   // first minute of the window
		{at(17, 59), tue, 2}, // last minute, included
		{at(18, 0), tue, 1},  // after it: the shorter prefix's rule
		{at(7, 59), mon, 1},
		{at(22, 0), mon, 3}, // the overnight window before midnight
		{at(0, 0), tue, 3},  // and after
		{at(5, 59), tue, 3},
		{at(6, 0), tue, 1},
		{at(12, 0), sat, 4}, // weekend rule
		{at(23, 0), sun, 3}, // rule 3 (lower ID) and rule 4 both apply
		{at(10, 0), sun, 4},
	} {
		r := rs.profiles[1].match(rs.rules, []byte("0900555"), c.minute, c.weekday)
		if r == nil || r.id != c.want {
			t.Errorf("%02d:%02d day %d: %+v, want rule %d", c.minute/60, c.minute%60, c.weekday, r, c.want)
		}
	}
}

func TestBadStoredRulesSkipped(t *testing.T) {
	// A row written to the database by hand, not through the store's
	// functions, is skipped and reported; the others load.
	rs, bad := buildRules([]store.FraudRule{
		{ID: 1, Profile: 1, Prefix: "09a"},
		{ID: 2, Profile: 1, Prefix: "0900", StartHour: "25:00"},
		{ID: 3, Profile: 1, Prefix: "0800"},
	})
	if len(bad) != 2 || len(rs.rules) != 1 || rs.rules[0].id != 3 {
		t.Fatalf("rules %+v, errors %v", rs.rules, bad)
	}
}

func TestWallClock(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	w := newWallClock(paris)
	for _, c := range []struct {
		utc     string
		minute  int
		weekday time.Weekday
		date    string
	}{
		{"2026-03-02T10:00:30Z", 11*60 + 0, time.Monday, "2026-03-02"},
		{"2026-03-02T22:59:59Z", 23*60 + 59, time.Monday, "2026-03-02"},
		{"2026-03-02T23:00:00Z", 0, time.Tuesday, "2026-03-03"},     // midnight in Paris
		{"2026-03-29T01:00:00Z", 3 * 60, time.Sunday, "2026-03-29"}, // summer time began at 02:00 local
		{"2026-03-29T00:59:00Z", 1*60 + 59, time.Sunday, "2026-03-29"},
	} {
		ts, _ := time.Parse(time.RFC3339, c.utc)
		day, _ := time.Parse("2006-01-02", c.date)
		for i := 0; i < 2; i++ { // computed, then from the cache
			got := w.at(ts.UnixMilli() + int64(i)*10)
			if got.minute != c.minute || got.weekday != int(c.weekday) || got.day != int32(day.Unix()/86400) {
				t.Errorf("%s (pass %d): %+v, want minute %d, %s, day %d", c.utc, i, got, c.minute, c.weekday, day.Unix()/86400)
			}
		}
	}
}

// TestCountsConcurrent: a profile counts concurrent calls once one of its
// rules has a concurrent_calls threshold, warning or critical, and no
// longer once that rule is gone; other profiles, and a nil *Fraud, do not.
func TestCountsConcurrent(t *testing.T) {
	e := newEnv(t, envOptions{})
	if e.f.CountsConcurrent(1) {
		t.Fatal("no rules: counts concurrent calls")
	}
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Critical: 5}})
	if e.f.CountsConcurrent(1) {
		t.Fatal("a rule without concurrent thresholds: counts concurrent calls")
	}
	r := e.rule(store.FraudRule{Prefix: "00", ConcurrentCalls: store.FraudLimit{Warning: 4}})
	e.rule(store.FraudRule{Profile: 3, Prefix: "00", ConcurrentCalls: store.FraudLimit{Critical: 4}})
	if !e.f.CountsConcurrent(1) || e.f.CountsConcurrent(2) || !e.f.CountsConcurrent(3) {
		t.Fatalf("profiles 1, 2, 3 count concurrent calls: %v, %v, %v, want true, false, true",
			e.f.CountsConcurrent(1), e.f.CountsConcurrent(2), e.f.CountsConcurrent(3))
	}
	if err := e.st.DeleteFraudRule(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.f.LoadRules(ctx); err != nil {
		t.Fatal(err)
	}
	if e.f.CountsConcurrent(1) {
		t.Fatal("the concurrent rule deleted: profile 1 still counts concurrent calls")
	}
	if (*Fraud)(nil).CountsConcurrent(1) {
		t.Fatal("a nil *Fraud counts concurrent calls")
	}
}
