package pike

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	_ "switchboard/modules/permissions"
	"switchboard/shards"
	"switchboard/store"
)

// built is pike as the server builds it: through the module framework,
// with a management server for its commands.
type built struct {
	p     *Pike
	set   *modules.Set
	mg    *mgmt.Server
	ms    *metrics.Set
	clock *shards.Clock
}

func buildModule(t *testing.T, s *Settings) *built {
	t.Helper()
	b := &built{clock: shards.NewManualClock(1_700_000_000_000), ms: metrics.NewSet()}
	b.mg = mgmt.New(mgmt.Config{Listen: "127.0.0.1:8080", Token: "secret"})
	set, err := modules.Build(modules.Services{Clock: b.clock, Metrics: b.ms, Mgmt: b.mg}, map[string]any{"pike": s}, "pike")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	b.set, b.p = set, set.Get("pike").(*Pike)
	return b
}

// api runs a management command as `switchboard ctl` would.
func (b *built) api(t *testing.T, cmd, args string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/v1/"+cmd, strings.NewReader(args))
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	b.mg.Handler().ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func (b *built) metric(t *testing.T, name string) string {
	t.Helper()
	var buf bytes.Buffer
	b.ms.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	t.Fatalf("no metric %s in\n%s", name, buf.String())
	return ""
}

func TestModuleSettingsChecked(t *testing.T) {
	for key, edit := range map[string]func(*Settings){
		"window":       func(s *Settings) { s.Window = time.Millisecond },
		"max_requests": func(s *Settings) { s.MaxRequests = -1 },
		"ban_time":     func(s *Settings) { s.BanTime = 0 },
		"ipv6_prefix":  func(s *Settings) { s.IPv6Prefix = 129 },
		"max_sources":  func(s *Settings) { s.MaxSources = 10 },
		"max_bans":     func(s *Settings) { s.MaxBans = 1 << 30 },
		"exempt[1]":    func(s *Settings) { s.Exempt = []string{"10.0.0.0/8", "gateway.example.com"} },
		"exempt_group": func(s *Settings) { s.ExemptGroup = -2 },
	} {
		s := DefaultSettings()
		edit(s)
		err := checkSettings(s)
		ke, ok := err.(*modules.KeyError)
		if !ok || ke.Key != key {
			t.Errorf("%s: error %v, want one naming the key", key, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// The set's transport filter is pike's; the management commands list,
// add and lift bans; the metrics count them.
func TestModuleCommandsAndMetrics(t *testing.T) {
	s := DefaultSettings()
	s.MaxRequests = 3
	b := buildModule(t, s)
	admit := b.set.Admit()
	if admit == nil {
		t.Fatal("pike gave the set no source filter")
	}
	flooder := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 4; i++ {
		b.p.CheckAddr(flooder)
	}
	if admit(flooder) || !admit(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("set filter does not follow the bans")
	}
	if code, body := b.api(t, "pike.ban", `{"address":"2001:db8:1:2::99","duration":"1h"}`); code != 200 || !strings.Contains(body, "2001:db8:1:2::/64") {
		t.Fatalf("pike.ban: %d %s", code, body)
	}
	code, body := b.api(t, "pike.bans", "")
	var res struct{ Result []BanInfo }
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Result) != 2 {
		t.Fatalf("pike.bans: %d %s", code, body)
	}
	if r := res.Result; r[0].Source != "2001:db8:1:2::/64" || r[0].Reason != "manual" || r[0].Remaining != 3600 ||
		r[1].Source != "192.0.2.7" || r[1].Reason != "flood" || r[1].Remaining != 300 {
		t.Fatalf("pike.bans: %+v", r)
	}
	if code, body := b.api(t, "pike.bans", `{"address":"192.0.2.9"}`); code != 404 {
		t.Fatalf("pike.bans for an address not banned: %d %s", code, body)
	}
	if code, body := b.api(t, "pike.sources", `{"limit":5}`); code != 200 || !strings.Contains(body, `"source": "192.0.2.7"`) {
		t.Fatalf("pike.sources: %d %s", code, body)
	}
	for _, bad := range []string{`{"address":"nope"}`, `{}`, `{"address":"192.0.2.1","duration":"soon"}`, `{"address":"192.0.2.1","duration":"1ms"}`, `{"adress":"192.0.2.1"}`} {
		if code, body := b.api(t, "pike.ban", bad); code != 400 {
			t.Fatalf("pike.ban %s: %d %s", bad, code, body)
		}
	}
	if v := b.metric(t, "switchboard_pike_bans_active"); v != "2" {
		t.Fatalf("bans_active %s", v)
	}
	if v := b.metric(t, `switchboard_pike_bans_total{reason="flood"}`); v != "1" {
		t.Fatalf("bans_total flood %s", v)
	}
	if v := b.metric(t, "switchboard_pike_checks_total"); v != "4" {
		t.Fatalf("checks_total %s", v)
	}
	if v := b.metric(t, "switchboard_pike_over_limit_total"); v != "1" {
		t.Fatalf("over_limit_total %s", v)
	}
	if v := b.metric(t, "switchboard_pike_refused_total"); v != "1" {
		t.Fatalf("refused_total %s", v)
	}
	if code, body := b.api(t, "pike.unban", `{"address":"192.0.2.7"}`); code != 200 {
		t.Fatalf("pike.unban: %d %s", code, body)
	}
	if !admit(flooder) || !b.p.CheckAddr(flooder) {
		t.Fatal("still refused after pike.unban")
	}
	if code, _ := b.api(t, "pike.unban", `{"address":"192.0.2.7"}`); code != 404 {
		t.Fatalf("second unban: %d", code)
	}
	if code, body := b.api(t, "pike.unban", `{"all":true}`); code != 200 || !strings.Contains(body, `"unbanned": 1`) {
		t.Fatalf("unban all: %d %s", code, body)
	}
	if b.p.bans.live.Load() != 0 {
		t.Fatal("bans left after unban all")
	}
}

// pike.ban of an IPv6 address bans its prefix, as documented, even a
// prefix that holds an exempt peer, whom that ban does not refuse; of the
// exempt peer's own address, bans it alone. pike.bans and pike.unban of
// an address name the bans that refuse it; of a prefix, its ban.
func TestModuleManualBansAndExemptPeer(t *testing.T) {
	s := DefaultSettings()
	s.Exempt = []string{"127.0.0.1", "::1", "2001:db8:1:2::10"}
	b := buildModule(t, s)
	admit := b.set.Admit()
	trunk, neighbour := netip.MustParseAddr("2001:db8:1:2::10"), netip.MustParseAddr("2001:db8:1:2::666")
	if code, body := b.api(t, "pike.ban", `{"address":"2001:db8:1:2::666","duration":"1h"}`); code != 200 || !strings.Contains(body, "banned 2001:db8:1:2::/64 for 1h0m0s") {
		t.Fatalf("pike.ban: %d %s", code, body)
	}
	if admit(neighbour) || admit(netip.MustParseAddr("2001:db8:1:2::1")) || !admit(trunk) {
		t.Fatal("a ban of the /64 by hand: neighbours admitted, or the exempt trunk refused")
	}
	if code, body := b.api(t, "pike.bans", `{"address":"2001:db8:1:2::99"}`); code != 200 || !strings.Contains(body, `"source": "2001:db8:1:2::/64"`) {
		t.Fatalf("pike.bans of a neighbour: %d %s", code, body)
	}
	if code, body := b.api(t, "pike.bans", `{"address":"2001:db8:1:2::10"}`); code != 404 {
		t.Fatalf("pike.bans of the trunk, not refused: %d %s", code, body)
	}
	if code, body := b.api(t, "pike.ban", `{"address":"2001:db8:1:2::10","duration":"2h"}`); code != 200 || !strings.Contains(body, "banned 2001:db8:1:2::10 for 2h0m0s") {
		t.Fatalf("pike.ban of the trunk: %d %s", code, body)
	}
	if admit(trunk) {
		t.Fatal("a ban of the exempt trunk itself does not refuse it")
	}
	if l := b.p.List(); len(l) != 2 || l[0].Source != "2001:db8:1:2::10" || l[1].Source != "2001:db8:1:2::/64" {
		t.Fatalf("bans %+v", l)
	}
	if code, body := b.api(t, "pike.unban", `{"address":"2001:db8:1:2::10"}`); code != 200 || !strings.Contains(body, `unbanned 2001:db8:1:2::10"`) {
		t.Fatalf("pike.unban of the trunk: %d %s", code, body)
	}
	if !admit(trunk) || admit(neighbour) {
		t.Fatal("pike.unban of the trunk lifted the wrong ban")
	}
	if code, body := b.api(t, "pike.unban", `{"address":"2001:db8:1:2::/64"}`); code != 200 || !strings.Contains(body, `unbanned 2001:db8:1:2::/64"`) {
		t.Fatalf("pike.unban of the /64: %d %s", code, body)
	}
	if !admit(neighbour) || b.p.bans.live.Load() != 0 {
		t.Fatal("bans left")
	}
	// A prefix named as such is banned whole, whatever its first address.
	if code, body := b.api(t, "pike.ban", `{"address":"2001:db8:1:2::/64"}`); code != 200 || !strings.Contains(body, "banned 2001:db8:1:2::/64") {
		t.Fatalf("pike.ban of the /64: %d %s", code, body)
	}
	if admit(neighbour) || !admit(trunk) {
		t.Fatal("pike.ban of the /64")
	}
}

// Reload changes the limit at once; ipv6_prefix, changed with it, waits
// for a restart: CheckReload names it as needing one (not a refusal), and
// Reload applies the limit and keeps the prefix in force, in the settings
// too.
func TestModuleReload(t *testing.T) {
	b := buildModule(t, DefaultSettings())
	a := netip.MustParseAddr("192.0.2.30")
	s := DefaultSettings()
	s.MaxRequests = 2
	s.IPv6Prefix = 48
	var ke *modules.KeyError
	if err := b.p.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "ipv6_prefix" {
		t.Fatalf("ipv6_prefix changed: CheckReload %v, want it named as needing a restart", err)
	}
	if err := b.p.Reload(s); err != nil {
		t.Fatal(err)
	}
	if b.p.v6bits != 64 || s.IPv6Prefix != 64 || b.p.set.IPv6Prefix != 64 {
		t.Fatalf("ipv6_prefix changed without a restart: %d bits, settings %d", b.p.v6bits, s.IPv6Prefix)
	}
	b.p.CheckAddr(a)
	b.p.CheckAddr(a)
	if b.p.CheckAddr(a) {
		t.Fatal("the reloaded limit is not applied")
	}
	s.Exempt = []string{"192.0.2.30"}
	if err := b.p.Reload(s); err != nil {
		t.Fatal(err)
	}
	if b.p.CheckAddr(a) {
		t.Fatal("exempting a source lifted its ban")
	}
	b.p.Unban(a)
	for i := 0; i < 10; i++ {
		if !b.p.CheckAddr(a) {
			t.Fatal("an exempt source is counted")
		}
	}
}

// With the permissions module compiled in (Definition.Uses), its group
// exempt_group is exempt: a gateway added to the store's address table
// is never banned for its rate, while other sources are.
func TestModuleExemptsPermissionsGroup(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AddAddress(context.Background(), store.Address{Group: 1, IP: "192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.MaxRequests = 3
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000), DataDir: dir},
		map[string]any{"pike": s}, "permissions", "pike")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	p := set.Get("pike").(*Pike)
	if p.groups == nil {
		t.Fatal("pike did not find the permissions module")
	}
	gw, other := netip.MustParseAddr("192.0.2.200"), netip.MustParseAddr("198.51.100.1")
	for i := 0; i < 100; i++ {
		if !p.CheckAddr(gw) {
			t.Fatalf("trusted gateway refused at request %d", i+1)
		}
	}
	for i := 0; i < 4; i++ {
		p.CheckAddr(other)
	}
	if !p.Banned(other) || p.Banned(gw) {
		t.Fatal("exemption by group wrong")
	}
}

// TestBanRaisesEvent: a ban made on the receive path is raised as
// E_PIKE_BLOCKED by the sweeper, within about a second.
func TestBanRaisesEvent(t *testing.T) {
	clock := shards.NewManualClock(1_700_000_000_000)
	ev := modules.NewEvents(clock, nil)
	sub := ev.Subscribe([]string{modules.EventPikeBlocked}, 16)
	s := DefaultSettings()
	s.MaxRequests = 3
	set, err := modules.Build(modules.Services{Clock: clock, Events: ev}, map[string]any{"pike": s}, "pike")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	p := set.Get("pike").(*Pike)
	for range 4 {
		p.CheckAddr(netip.MustParseAddr("192.0.2.7"))
	}
	select {
	case e := <-sub.C():
		var v struct {
			Params map[string]any `json:"params"`
		}
		json.Unmarshal(e.JSON, &v)
		if v.Params["ip"] != "192.0.2.7" || v.Params["reason"] != "flood" || v.Params["until_ms"] != float64(1_700_000_000_000+300_000) {
			t.Fatalf("event %s", e.JSON)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no E_PIKE_BLOCKED within 3 s")
	}
}
