package dispatch

import (
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/dispatcher"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// The route set needs the dispatcher module, and has the request, reply
// and failure routes; cmd/switchboard/dispatcher_e2e_test.go runs it.
func TestNewRoutes(t *testing.T) {
	rs, err := routing.Lookup("dispatch")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.New(&routing.Env{}); err == nil || !strings.Contains(err.Error(), "needs the dispatcher module") {
		t.Fatalf("without the module: %v", err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(0)}, nil, "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	if _, ok := set.Get("dispatcher").(*dispatcher.Dispatcher); !ok {
		t.Fatal("no dispatcher")
	}
	r, err := rs.New(&routing.Env{Modules: set.Env()})
	if err != nil || r.Request == nil || r.Reply == nil || r.Failure == nil {
		t.Fatalf("routes %+v, %v", r, err)
	}
}
