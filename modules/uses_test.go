package modules

import "testing"

type usesInst struct{ partner Instance }

func (*usesInst) Start() error { return nil }
func (*usesInst) Stop()        {}

// A module's Uses partner is built before it and handed to it when it is
// compiled in; a partner that is not compiled in is no error.
func TestUsesOptionalPartner(t *testing.T) {
	Register(Definition{Name: "uses-test-a", Uses: []string{"uses-test-absent", "uses-test-b"},
		New: func(h *Host, _ any) (Instance, error) {
			return &usesInst{partner: h.Module("uses-test-b")}, nil
		}})
	Register(Definition{Name: "uses-test-b",
		New: func(h *Host, _ any) (Instance, error) { return &usesInst{}, nil }})
	Register(Definition{Name: "uses-test-c",
		New: func(h *Host, _ any) (Instance, error) {
			// Not named in After or Uses: not reachable.
			return &usesInst{partner: h.Module("uses-test-b")}, nil
		}})
	set, err := Build(Services{}, nil, "uses-test-a", "uses-test-b", "uses-test-c")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	a := set.Get("uses-test-a").(*usesInst)
	if a.partner == nil || a.partner != set.Get("uses-test-b") {
		t.Fatalf("uses-test-a got partner %v, want uses-test-b (built first although its name sorts later)", a.partner)
	}
	if c := set.Get("uses-test-c").(*usesInst); c.partner != nil {
		t.Fatal("Host.Module returned a module the definition does not name")
	}
}
