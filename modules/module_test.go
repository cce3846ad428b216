package modules

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"switchboard/mgmt"
	"switchboard/shards"
)

// testModule records what the server does with it.
type testModule struct {
	name string
	log  *[]string
}

func (m *testModule) Start() error { *m.log = append(*m.log, "start "+m.name); return nil }
func (m *testModule) Stop()        { *m.log = append(*m.log, "stop "+m.name) }

type testSettings struct {
	Limit int `yaml:"limit"`
}

var events []string

// The test modules: "t-c" needs "t-b", which needs "t-a"; their names sort
// the other way round, so the order is the dependencies'.
func init() {
	mk := func(name string, after ...string) Definition {
		return Definition{
			Name:     name,
			After:    after,
			Settings: func() any { return &testSettings{Limit: 10} },
			Check: func(s any) error {
				if s.(*testSettings).Limit < 1 {
					return Errorf("limit", "must be at least 1")
				}
				return nil
			},
			New: func(h *Host, s any) (Instance, error) {
				events = append(events, "new "+h.name)
				if h.name == "t-c" && h.Module("t-b") == nil {
					return nil, errors.New("t-b not given to t-c")
				}
				if h.Module("t-a") != nil && h.name == "t-c" {
					return nil, errors.New("t-c sees t-a, which it did not name")
				}
				if h.name == "t-a" {
					h.AdmitSources(func(a netip.Addr) bool { return a != netip.MustParseAddr("192.0.2.1") })
				}
				if h.name == "t-b" {
					h.AdmitSources(func(a netip.Addr) bool { return a != netip.MustParseAddr("192.0.2.2") })
				}
				h.Command(h.name+".list", mgmt.Command{})
				return &testModule{name: h.name, log: &events}, nil
			},
		}
	}
	Register(mk("t-c", "t-b"))
	Register(mk("t-b", "t-a"))
	Register(mk("t-a"))
}

func TestBuildOrderStartStop(t *testing.T) {
	events = nil
	clock := shards.NewManualClock(0)
	s, err := Build(Services{Clock: clock}, map[string]any{"t-b": &testSettings{Limit: 3}}, "t-c")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Stop() // twice is safe
	want := "new t-a,new t-b,new t-c,start t-a,start t-b,start t-c,stop t-c,stop t-b,stop t-a"
	if got := strings.Join(events, ","); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
}

func TestAdmitJoinsFilters(t *testing.T) {
	s, err := Build(Services{Clock: shards.NewManualClock(0)}, nil, "t-b")
	if err != nil {
		t.Fatal(err)
	}
	admit := s.Admit()
	for addr, want := range map[string]bool{"192.0.2.1": false, "192.0.2.2": false, "192.0.2.3": true} {
		if got := admit(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { admit(netip.MustParseAddr("192.0.2.3")) }); n != 0 {
		t.Errorf("the joined filter allocates %v times", n)
	}
	empty := &Set{}
	if empty.Admit() != nil {
		t.Error("a set without filters gives the transport one")
	}
}

func TestOrderedFindsMissingAndCycles(t *testing.T) {
	mu.Lock()
	defs["t-x"] = Definition{Name: "t-x", After: []string{"t-missing"}, New: func(*Host, any) (Instance, error) { return nil, nil }}
	mu.Unlock()
	_, err := Ordered()
	if err == nil || !strings.Contains(err.Error(), "t-x needs t-missing, which is not compiled in") {
		t.Errorf("missing dependency: %v", err)
	}
	mu.Lock()
	defs["t-x"] = Definition{Name: "t-x", After: []string{"t-y"}, New: defs["t-x"].New}
	defs["t-y"] = Definition{Name: "t-y", After: []string{"t-x"}, New: defs["t-x"].New}
	mu.Unlock()
	_, err = Ordered()
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	mu.Lock()
	delete(defs, "t-x")
	delete(defs, "t-y")
	mu.Unlock()
}

func TestDuplicateCommandPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `registers command "t-a.list", which t-a registered`) {
			t.Errorf("recovered %v", r)
		}
	}()
	h := &Host{name: "t-b", commands: map[string]string{"t-a.list": "t-a"}}
	h.Command("t-a.list", mgmt.Command{})
}

func TestDefaultsMustPassCheck(t *testing.T) {
	mu.Lock()
	defs["t-bad"] = Definition{Name: "t-bad", Settings: func() any { return &testSettings{} },
		Check: func(any) error { return Errorf("limit", "must be at least 1") },
		New:   func(*Host, any) (Instance, error) { return nil, nil }}
	mu.Unlock()
	defer func() { mu.Lock(); delete(defs, "t-bad"); mu.Unlock() }()
	_, err := Build(Services{Clock: shards.NewManualClock(0)}, nil, "t-bad")
	if err == nil || err.Error() != "t-bad: defaults do not pass Check: limit: must be at least 1" {
		t.Errorf("got %v", err)
	}
}
