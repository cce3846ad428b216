package store

import (
	"strings"
	"testing"
)

func TestDRGatewayValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		ok := DRGateway{GWID: "gw1", Address: "192.0.2.10:5080"}
		for _, c := range []struct {
			name  string
			edit  func(g *DRGateway)
			words []string
		}{
			{"no gwid", func(g *DRGateway) { g.GWID = "" }, []string{"dr gateway: gwid"}},
			{"gwid with space", func(g *DRGateway) { g.GWID = "gw 1" }, []string{"gwid", `"gw 1"`}},
			{"host name", func(g *DRGateway) { g.Address = "gw.example.com" }, []string{"dr gateway gw1: address", "host names"}},
			{"bare IPv6", func(g *DRGateway) { g.Address = "2001:db8::1" }, []string{"address", "brackets"}},
			{"port 0", func(g *DRGateway) { g.Address = "192.0.2.1:0" }, []string{"address", "port 0"}},
			{"transport", func(g *DRGateway) { g.Transport = "sctp" }, []string{"transport", `"sctp"`}},
			{"strip", func(g *DRGateway) { g.Strip = -1 }, []string{"strip", "-1"}},
			{"prefix", func(g *DRGateway) { g.PriPrefix = "00x" }, []string{"pri_prefix", `'x'`}},
			{"probe mode", func(g *DRGateway) { g.ProbeMode = 3 }, []string{"probe_mode", "3"}},
			{"state", func(g *DRGateway) { g.State = 2 }, []string{"state", "2"}},
			{"attrs", func(g *DRGateway) { g.Attrs = "a\nb" }, []string{"attrs", "control"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				g := ok
				c.edit(&g)
				wantErr(t, s.AddDRGateways(ctx, []DRGateway{g}, false), ErrMalformedDR, c.words...)
			})
		}
		if gs, _ := s.ListDRGateways(ctx); len(gs) != 0 {
			t.Fatalf("invalid gateways stored: %+v", gs)
		}
	})
}

func TestDRGateways(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, _ := s.DRVersion(ctx, DRGatewaysTable)
		err := s.AddDRGateways(ctx, []DRGateway{
			{GWID: "gw1", Address: "sip:192.0.2.10", PriPrefix: "00", Strip: 1, ProbeMode: 2, Transport: "TCP"},
			{GWID: "gw6", Address: "[2001:db8::1]:5070"},
		}, false)
		if err != nil {
			t.Fatal(err)
		}
		g, err := s.GetDRGateway(ctx, "gw1")
		if err != nil || g.Address != "192.0.2.10:5060" || g.Transport != "tcp" || g.Strip != 1 || g.PriPrefix != "00" || g.ProbeMode != 2 || g.Created == 0 {
			t.Fatalf("gw1 = %+v, %v", g, err)
		}
		if v, _ := s.DRVersion(ctx, DRGatewaysTable); v != v0+1 {
			t.Errorf("version %d after one write, was %d", v, v0)
		}
		// All or none: the duplicate fails the batch.
		err = s.AddDRGateways(ctx, []DRGateway{{GWID: "gw2", Address: "192.0.2.2"}, {GWID: "gw1", Address: "192.0.2.3"}}, false)
		wantErr(t, err, ErrDRExists, "dr gateway gw1 exists already")
		wantErr(t, s.AddDRGateways(ctx, []DRGateway{{GWID: "gw3", Address: "192.0.2.2"}, {GWID: "gw3", Address: "192.0.2.3"}}, false),
			ErrDRExists, "entries 1 and 2", "gw3")
		wantErr(t, s.AddDRGateways(ctx, []DRGateway{{GWID: "gw3", Address: "192.0.2.2"}, {GWID: "gw4", Address: "x"}}, false),
			ErrMalformedDR, "entry 2: dr gateway gw4: address")
		if gs, _ := s.ListDRGateways(ctx); len(gs) != 2 {
			t.Fatalf("after refused batches: %+v", gs)
		}
		g.State = 1
		if err := s.UpdateDRGateway(ctx, g); err != nil {
			t.Fatal(err)
		}
		if g2, _ := s.GetDRGateway(ctx, "gw1"); g2.State != 1 || g2.Created != g.Created {
			t.Errorf("after update: %+v", g2)
		}
		wantErr(t, s.UpdateDRGateway(ctx, DRGateway{GWID: "gw9", Address: "192.0.2.9"}), ErrNoDR, "dr gateway gw9 does not exist")
		wantErr(t, s.DeleteDRGateway(ctx, "gw9"), ErrNoDR, "gw9")
		if err := s.DeleteDRGateway(ctx, "gw6"); err != nil {
			t.Fatal(err)
		}
		// replace empties the table first.
		if err := s.AddDRGateways(ctx, []DRGateway{{GWID: "gwA", Address: "192.0.2.20"}}, true); err != nil {
			t.Fatal(err)
		}
		if gs, _ := s.ListDRGateways(ctx); len(gs) != 1 || gs[0].GWID != "gwA" {
			t.Fatalf("after replace: %+v", gs)
		}
	})
}

func TestDRCarriersAndLists(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		if err := s.AddDRCarriers(ctx, []DRCarrier{{CarrierID: "cr1", GWList: " gw1=70 , gw2=30", SortAlg: "w", Flags: DRUseFirst}}, false); err != nil {
			t.Fatal(err)
		}
		cs, _ := s.ListDRCarriers(ctx)
		if len(cs) != 1 || cs[0].GWList != "gw1=70,gw2=30" || cs[0].SortAlg != "W" || cs[0].Flags != 1 {
			t.Fatalf("carriers: %+v", cs)
		}
		for _, c := range []struct {
			c     DRCarrier
			words []string
		}{
			{DRCarrier{CarrierID: "cr2", GWList: "gw1,#cr1"}, []string{"dr carrier cr2: gwlist", "gateways only"}},
			{DRCarrier{CarrierID: "cr2", GWList: ""}, []string{"gwlist", "empty"}},
			{DRCarrier{CarrierID: "cr2", GWList: "gw1=0"}, []string{"gwlist", "weight"}},
			{DRCarrier{CarrierID: "cr2", GWList: "gw1", SortAlg: "Q"}, []string{"sort_alg", `"Q"`}},
			{DRCarrier{CarrierID: "cr2", GWList: "gw1", Flags: 4}, []string{"flags", "4"}},
		} {
			wantErr(t, s.AddDRCarriers(ctx, []DRCarrier{c.c}, false), ErrMalformedDR, c.words...)
		}
		wantErr(t, s.AddDRCarriers(ctx, []DRCarrier{{CarrierID: "cr1", GWList: "gw3"}}, false), ErrDRExists, "dr carrier cr1")
		cs[0].State = 1
		if err := s.UpdateDRCarrier(ctx, cs[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteDRCarrier(ctx, "cr1"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.DeleteDRCarrier(ctx, "cr1"), ErrNoDR, "dr carrier cr1 does not exist")
	})
}

func TestDRRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		rules := []DRRule{
			{Groups: "0", Prefix: "49", GWList: "gw1,#cr1=5", TimeRec: "Mon-Fri   08:00-17:59", Priority: 5},
			{Groups: "1, 0", Prefix: "4930", GWList: "gw2"},
			{Groups: "2", Prefix: "", GWList: "gw3", SortAlg: "r"},
		}
		if err := s.AddDRRules(ctx, rules, false); err != nil {
			t.Fatal(err)
		}
		if rules[0].ID == 0 || rules[2].ID != rules[0].ID+2 {
			t.Fatalf("IDs: %d %d", rules[0].ID, rules[2].ID)
		}
		all, _ := s.ListDRRules(ctx, DRRuleFilter{Group: -1})
		if len(all) != 3 || all[0].TimeRec != "Mon-Fri 08:00-17:59" || all[1].Groups != "1,0" || all[2].SortAlg != "R" || all[0].GWList != "gw1,#cr1=5" {
			t.Fatalf("rules: %+v", all)
		}
		if g0, _ := s.ListDRRules(ctx, DRRuleFilter{Group: 0}); len(g0) != 2 {
			t.Errorf("group 0: %+v", g0)
		}
		if g0, _ := s.ListDRRules(ctx, DRRuleFilter{Group: 0, Limit: 1}); len(g0) != 1 || g0[0].Prefix != "49" {
			t.Errorf("group 0, limit 1: %+v", g0)
		}
		if p, _ := s.ListDRRules(ctx, DRRuleFilter{Group: -1, Prefix: "493"}); len(p) != 1 || p[0].Prefix != "4930" {
			t.Errorf("prefix 493: %+v", p)
		}
		if p, _ := s.ListDRRules(ctx, DRRuleFilter{Group: -1, AfterID: rules[0].ID, Limit: 1}); len(p) != 1 || p[0].ID != rules[1].ID {
			t.Errorf("after the first, limit 1: %+v", p)
		}
		for _, c := range []struct {
			r     DRRule
			words []string
		}{
			{DRRule{Groups: "", GWList: "gw1"}, []string{"dr rule: groupid", "empty"}},
			{DRRule{Groups: "-1", GWList: "gw1"}, []string{"groupid", `"-1"`}},
			{DRRule{Groups: "1,1", GWList: "gw1"}, []string{"groupid", "twice"}},
			{DRRule{Groups: "0", Prefix: "49a", GWList: "gw1"}, []string{"prefix", `'a'`}},
			{DRRule{Groups: "0", GWList: "gw 1"}, []string{"gwlist", `"gw 1"`}},
			{DRRule{Groups: "0", GWList: strings.Repeat("g,", 32) + "g"}, []string{"gwlist", "more than 32"}},
			{DRRule{Groups: "0", GWList: "gw1", TimeRec: "Mon-Fri 25:00-26:00"}, []string{"timerec", `"25:00"`}},
			{DRRule{Groups: "0", GWList: "gw1", TimeRec: "Mon-Fry"}, []string{"timerec", `"Fry"`}},
			{DRRule{Groups: "0", GWList: "gw1", TimeRec: "08:00"}, []string{"timerec", "HH:MM-HH:MM"}},
			{DRRule{Groups: "0", GWList: "gw1", Priority: 2_000_000_000}, []string{"priority"}},
		} {
			wantErr(t, s.AddDRRules(ctx, []DRRule{c.r}, false), ErrMalformedDR, c.words...)
		}
		v, _ := s.DRVersion(ctx, DRRulesTable)
		if err := s.AddDRRules(ctx, []DRRule{{Groups: "0", Prefix: "1", GWList: "gw1"}}, true); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.ListDRRules(ctx, DRRuleFilter{Group: -1}); len(all) != 1 || all[0].Prefix != "1" {
			t.Fatalf("after replace: %+v", all)
		}
		if v2, _ := s.DRVersion(ctx, DRRulesTable); v2 != v+1 {
			t.Errorf("replace moved the version from %d to %d, want one step", v, v2)
		}
		wantErr(t, s.DeleteDRRule(ctx, 999), ErrNoDR, "dr rule 999 does not exist")
	})
}

func TestDRTimeRec(t *testing.T) {
	for in, want := range map[string]DRTimeRec{
		"":                     {0x7f, 0, 1439},
		"Mon-Fri":              {0b0111110, 0, 1439},
		"08:00-17:59":          {0x7f, 480, 1079},
		"Sat,Sun 22:00-05:59":  {0b1000001, 1320, 359},
		"Mon, Wed 00:00-00:00": {0b0001010, 0, 0},
	} {
		got, err := ParseDRTimeRec(in)
		if err != nil || got != want {
			t.Errorf("ParseDRTimeRec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if tr, _ := ParseDRTimeRec(""); !tr.Always() {
		t.Error(`"" is not always`)
	}
}
