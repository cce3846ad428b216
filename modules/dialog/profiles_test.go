package dialog

import (
	"strings"
	"sync"
	"testing"

	"switchboard/routing"
)

func profileSettings() *Settings {
	s := DefaultSettings()
	s.Profiles = []ProfileSettings{{Name: "caller", WithValue: true}, {Name: "inbound"}}
	return s
}

// TestProfileLimit: a limit of 2 calls per caller, checked and counted in
// one step (SetProfileLimit): the third concurrent call of alice is
// refused while bob's goes through; once one of alice's ends, her next
// call is let in. Sizes by value and in total, IsInProfile, and a dialog
// leaving its profiles when it ends (by BYE and by failure).
func TestProfileLimit(t *testing.T) {
	e := newEnv(t, profileSettings())
	refused := 0
	e.beforeRelay = func(c *routing.Ctx) bool {
		if !e.d.SetProfileLimit(c, "caller", c.FUser(), 2) {
			refused++
			c.Reply(486, "Too Many Calls")
			return false
		}
		e.d.SetProfile(c, "inbound", nil)
		if !e.d.IsInProfile(c, "caller", c.FUser()) || !e.d.IsInProfile(c, "inbound", nil) || e.d.IsInProfile(c, "caller", []byte("zed")) {
			t.Error("IsInProfile wrong")
		}
		return true
	}
	a1 := e.invite("p-a1")
	a1.respond(0, 200, "b")
	a2 := e.invite("p-a2")
	a2.respond(0, 180, "b")
	a3 := e.invite("p-a3")
	if refused != 1 || a3.fwd != "" {
		t.Fatalf("third call of alice: refused %d, relayed %v", refused, a3.fwd != "")
	}
	if got := e.d.ProfileSize("caller", []byte("alice")); got != 2 {
		t.Fatalf("alice's calls %d", got)
	}
	if got := e.d.ProfileSize("inbound", nil); got != 2 {
		t.Fatalf("inbound %d", got)
	}
	if e.d.ProfileSize("nope", nil) != -1 {
		t.Fatal("unknown profile has a size")
	}
	a1.inDialog("BYE", true, "b", 11)
	if got := e.d.ProfileSize("caller", []byte("alice")); got != 1 {
		t.Fatalf("after a BYE alice has %d calls", got)
	}
	a4 := e.invite("p-a4")
	if refused != 1 || a4.fwd == "" {
		t.Fatal("alice's call refused after one ended")
	}
	a2.respond(0, 486, "b")
	a4.respond(0, 603, "b")
	if e.d.ProfileSize("caller", []byte("alice")) != 0 || e.d.ProfileSize("inbound", nil) != 0 || e.d.profiles[0].Total() != 0 {
		t.Fatal("profiles not released when the dialogs ended")
	}
	ps, _ := e.d.Profiles("", true)
	if len(ps) != 2 || ps[0].Size != 0 || len(ps[0].Values) != 0 {
		t.Fatalf("profiles %+v", ps)
	}
}

// TestProfileLimitConcurrent: many goroutines counting in one value with
// a limit never pass it.
func TestProfileLimitConcurrent(t *testing.T) {
	p := newProfilesOne()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 100; k++ {
				if p.add([]byte("v"), 10) {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if ok != 10 || p.Size([]byte("v")) != 10 {
		t.Fatalf("%d admitted past a limit of 10 (size %d)", ok, p.Size([]byte("v")))
	}
}

func newProfilesOne() *Profile {
	ps, _ := newProfiles([]ProfileSettings{{Name: "x", WithValue: true}})
	return ps[0]
}

// TestProfileMetrics: named profiles' sizes are gauges.
func TestProfileMetrics(t *testing.T) {
	e := newEnv(t, profileSettings())
	e.beforeRelay = func(c *routing.Ctx) bool { return e.d.SetProfile(c, "caller", c.FUser()) }
	e.invite("pm-1")
	var b strings.Builder
	e.set.WritePrometheus(&b)
	for _, want := range []string{`switchboard_dialog_profile_size{profile="caller"} 1`, `switchboard_dialog_profile_size{profile="inbound"} 0`, "switchboard_dialog_active 1"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

// TestApplyProfiles: profiles configured with a value take every dialog
// ApplyProfiles is called for, within their limit; calling it twice
// counts once.
func TestApplyProfiles(t *testing.T) {
	s := DefaultSettings()
	s.Profiles = []ProfileSettings{
		{Name: "caller", WithValue: true, Value: "from_user", Limit: 1},
		{Name: "src", WithValue: true, Value: "source_ip"},
		{Name: "all", Value: "all"},
		{Name: "manual", WithValue: true},
	}
	e := newEnv(t, s)
	var lastOK bool
	var lastName string
	e.beforeRelay = func(c *routing.Ctx) bool {
		e.d.ApplyProfiles(c)
		lastOK, lastName = e.d.ApplyProfiles(c)
		if !lastOK {
			c.Reply(486, "")
		}
		return lastOK
	}
	c := e.invite("ap-1")
	if !lastOK || c.fwd == "" {
		t.Fatal("first call refused")
	}
	for _, tc := range []struct {
		name  string
		value string
		want  int
	}{{"caller", "alice", 1}, {"src", "127.0.0.1", 1}, {"all", "", 1}, {"manual", "", 0}} {
		var v []byte
		if tc.value != "" {
			v = []byte(tc.value)
		}
		if got := e.d.ProfileSize(tc.name, v); got != tc.want {
			t.Errorf("profile %s %q: %d, want %d", tc.name, tc.value, got, tc.want)
		}
	}
	e.invite("ap-2")
	if lastOK || lastName != "caller" {
		t.Fatalf("second call of alice: ok %v profile %q", lastOK, lastName)
	}
	if e.d.ProfileSize("all", nil) != 1 || e.d.ProfileSize("caller", []byte("alice")) != 1 {
		t.Fatal("the refused call is still counted")
	}
	if e.d.limited.Get() != 2 { // the route asked twice
		t.Fatalf("limit hits counted %d, want 2", e.d.limited.Get())
	}
}
