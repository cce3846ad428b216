package store

import (
	"testing"
)

func TestFraudRuleValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		ok := FraudRule{Profile: 1, Prefix: "0900", CPM: FraudLimit{5, 10}}
		for _, c := range []struct {
			name  string
			edit  func(r *FraudRule)
			words []string
		}{
			{"profile 0", func(r *FraudRule) { r.Profile = 0 }, []string{"fraud rule: profile: 0"}},
			{"letter in prefix", func(r *FraudRule) { r.Prefix = "09a0" }, []string{"prefix", `"09a0"`, `'a'`}},
			{"long prefix", func(r *FraudRule) { r.Prefix = string(make([]byte, 65)) }, []string{"prefix", "longer than 64"}},
			{"hour", func(r *FraudRule) { r.StartHour = "24:00" }, []string{"start_hour", `"24:00"`}},
			{"minute", func(r *FraudRule) { r.EndHour = "12:5" }, []string{"end_hour", "HH:MM"}},
			{"signed hour", func(r *FraudRule) { r.EndHour = "+1:00" }, []string{"end_hour"}},
			{"day", func(r *FraudRule) { r.Days = "Mon-Fry" }, []string{"days", `"Fry"`}},
			{"negative", func(r *FraudRule) { r.TotalCalls.Critical = -1 }, []string{"total_calls_critical", "-1"}},
			{"huge", func(r *FraudRule) { r.ConcurrentCalls.Warning = MaxFraudThreshold + 1 }, []string{"concurrent_calls_warning"}},
			{"warning above critical", func(r *FraudRule) { r.SequentialCalls = FraudLimit{Warning: 9, Critical: 3} },
				[]string{"sequential_calls_warning", "9 is above sequential_calls_critical (3)"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := ok
				c.edit(&r)
				_, err := s.AddFraudRule(ctx, r)
				wantErr(t, err, ErrMalformedFraudRule, c.words...)
			})
		}
		if rules, _ := s.ListFraudRules(ctx); len(rules) != 0 {
			t.Fatalf("invalid rules stored: %+v", rules)
		}
	})
}

func TestFraudDays(t *testing.T) {
	for in, want := range map[string]uint8{
		"":             0x7f,
		"Sun":          1,
		"mon-fri":      0b0111110,
		"Fri-Mon":      0b1100011, // wraps through the weekend
		" Sat , Sun ":  0b1000001,
		"Mon-Wed,Fri":  0b0101110,
		"Tue-Tue":      0b0000100,
		"Sun-Sat, Mon": 0x7f,
	} {
		got, err := ParseFraudDays(in)
		if err != nil || got != want {
			t.Errorf("ParseFraudDays(%q) = %07b, %v; want %07b", in, got, err, want)
		}
	}
	for _, bad := range []string{"Mo", "Mon-", "Monday", "Mon,,Tue", "-Fri"} {
		if _, err := ParseFraudDays(bad); err == nil {
			t.Errorf("ParseFraudDays(%q) accepted", bad)
		}
	}
}

func TestFraudRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, err := s.FraudRulesVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.AddFraudRule(ctx, FraudRule{Profile: 1, Prefix: "0900", Days: " Mon-Fri ", CPM: FraudLimit{5, 10}})
		if err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 || r.StartHour != "00:00" || r.EndHour != "23:59" || r.Days != "Mon-Fri" || r.Created == 0 {
			t.Fatalf("stored rule = %+v", r)
		}
		_, err = s.AddFraudRule(ctx, FraudRule{Profile: 1, Prefix: "0900", Days: "Mon-Fri", TotalCalls: FraudLimit{1, 2}})
		wantErr(t, err, ErrFraudRuleExists, "profile 1", `prefix "0900"`)
		// The same prefix at other hours is another rule.
		night, err := s.AddFraudRule(ctx, FraudRule{Profile: 1, Prefix: "0900", StartHour: "22:00", EndHour: "06:00", CPM: FraudLimit{1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddFraudRule(ctx, FraudRule{Profile: 2, Prefix: "", ConcurrentCalls: FraudLimit{0, 4}}); err != nil {
			t.Fatal(err)
		}

		// A second handle (the CLI while the server runs) sees the version move.
		other := db.open(t, Options{})
		v1, err := other.FraudRulesVersion(ctx)
		if err != nil || v1 != v0+3 {
			t.Fatalf("version = %d, %v; want %d", v1, err, v0+3)
		}

		r.CPM = FraudLimit{50, 100}
		r.Days = "Sat"
		if err := other.UpdateFraudRule(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetFraudRule(ctx, r.ID)
		if err != nil || got.CPM != (FraudLimit{50, 100}) || got.Days != "Sat" || got.Created != r.Created {
			t.Fatalf("after update: %+v, %v", got, err)
		}
		wantErr(t, s.UpdateFraudRule(ctx, FraudRule{ID: 999, Profile: 1}), ErrNoFraudRule, "fraud rule 999 does not exist")
		dup := night
		dup.Days, dup.StartHour, dup.EndHour = "Sat", "00:00", "23:59"
		wantErr(t, s.UpdateFraudRule(ctx, dup), ErrFraudRuleExists)

		rules, err := s.ListFraudRules(ctx)
		if err != nil || len(rules) != 3 {
			t.Fatalf("list = %+v, %v", rules, err)
		}
		if rules[0].ID != r.ID || rules[1].ID != night.ID || rules[2].Profile != 2 {
			t.Errorf("order: %+v", rules)
		}

		if err := other.DeleteFraudRule(ctx, night.ID); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.DeleteFraudRule(ctx, night.ID), ErrNoFraudRule)
		_, err = s.GetFraudRule(ctx, night.ID)
		wantErr(t, err, ErrNoFraudRule)
		if v, _ := s.FraudRulesVersion(ctx); v != v0+5 {
			t.Errorf("version = %d after 3 adds, an update and a delete; want %d (failed writes do not count)", v, v0+5)
		}
	})
}
