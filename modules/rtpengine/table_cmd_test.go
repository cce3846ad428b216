package rtpengine

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/shards"
)

// TestTableCommands: rtpengine.add and rtpengine.del change the table and
// the instances in use before they return; what the server would skip is
// refused with the reason (an address outside outbound.allow: the API
// cannot make the proxy send ng commands elsewhere; a host name; an
// instance the configuration has in that set; bad numbers, naming the
// argument); enable and disable take the set as ctl's key=value sends it.
func TestTableCommands(t *testing.T) {
	ctx := context.Background()
	a, b := newNGPeer(t), newNGPeer(t)
	sock := func(p *ngPeer) string { return "udp:" + p.conn.LocalAddr().String() }
	st := openStore(t)
	srv := mgmt.New(mgmt.Config{Logger: slog.New(slog.DiscardHandler)})
	s := DefaultSettings()
	s.Instances = []string{sock(a)} // set 0
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000), Mgmt: srv,
		Logger: slog.New(slog.DiscardHandler), AllowOutbound: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		map[string]any{"rtpengine": s}, "rtpengine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e := set.Get("rtpengine").(*Engine)
	call := func(name, args string) (map[string]any, error) {
		t.Helper()
		res, err := srv.Call(ctx, name, json.RawMessage(args))
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(res)
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return map[string]any{"answer": string(b)}, nil
		}
		return m, nil
	}

	res, err := call("rtpengine.add", `{"socket":"`+sock(b)+`","set":2,"weight":3,"description":"media 2"}`)
	if err != nil {
		t.Fatal(err)
	}
	added := res["added"].(map[string]any)
	id := int64(added["id"].(float64))
	l := e.List()
	if id <= 0 || len(l) != 2 || l[1].Source != "table" || l[1].Set != 2 || l[1].URL != sock(b) || l[1].Weight != 3 || l[1].ID != id || l[1].Desc != "media 2" {
		t.Fatalf("after rtpengine.add: %v, instances %+v", res, l)
	}
	if rows, _ := st.ListRTPEngines(ctx); len(rows) != 1 || rows[0].ID != id {
		t.Fatalf("rows %+v", rows)
	}
	// ctl's key=value sends numbers as strings.
	if _, err := call("rtpengine.disable", `{"instance":"`+sock(b)+`","set":"2"}`); err != nil || e.List()[1].State != "disabled" {
		t.Fatalf("disable with set \"2\": %v %+v", err, e.List())
	}
	if _, err := call("rtpengine.enable", `{"instance":"`+sock(b)+`","set":"x"}`); err == nil || !strings.Contains(err.Error(), "x") {
		t.Fatalf("enable with set \"x\": %v", err)
	}

	for _, c := range []struct{ args, want string }{
		{`{"socket":"udp:192.0.2.7:2223"}`, "192.0.2.7 is outside outbound.allow"},
		{`{"socket":"udp:rtp.example.net:2223"}`, "socket"},
		{`{"socket":"` + sock(a) + `","set":0}`, "already in set 0 by rtpengine.instances[0] of the configuration"},
		{`{"socket":"` + sock(b) + `","set":2}`, "already in set 2"},
		{`{"socket":"udp:127.0.0.1:9","set":70000}`, "set: 70000: want 0-65535"},
		{`{"socket":"udp:127.0.0.1:9","weight":0}`, "weight: 0"},
		{`{"socket":"udp:127.0.0.1:9","weight":"heavy"}`, "heavy"},
		{`{"set":1}`, `"socket" is required`},
		{`{"socket":"udp:127.0.0.1:9","port":9}`, `unknown field "port"`},
	} {
		_, err := call("rtpengine.add", c.args)
		var ae *mgmt.ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rtpengine.add %s: %v, want a 400 with %q", c.args, err, c.want)
		}
	}
	if rows, _ := st.ListRTPEngines(ctx); len(rows) != 1 {
		t.Fatalf("refused rows stored: %+v", rows)
	}

	// Deleting by id; again is a 404; by socket and set.
	if _, err := call("rtpengine.del", `{"id":`+itoa(int(id))+`}`); err != nil || len(e.List()) != 1 {
		t.Fatalf("rtpengine.del: %v %+v", err, e.List())
	}
	if _, err := call("rtpengine.del", `{"id":"`+itoa(int(id))+`"}`); !errors.Is(err, mgmt.ErrNotFound) {
		t.Fatalf("deleting again: %v, want not found", err)
	}
	if _, err := call("rtpengine.add", `{"socket":"`+sock(b)+`","set":"5","disabled":true}`); err != nil || len(e.List()) != 2 || e.List()[1].State != "disabled" {
		t.Fatalf("add disabled: %v %+v", err, e.List())
	}
	if _, err := call("rtpengine.del", `{"socket":"`+sock(b)+`","set":4}`); !errors.Is(err, mgmt.ErrNotFound) {
		t.Fatalf("delete from a set without it: %v", err)
	}
	if _, err := call("rtpengine.del", `{"socket":"`+sock(b)+`","set":5}`); err != nil || len(e.List()) != 1 {
		t.Fatalf("delete by socket: %v %+v", err, e.List())
	}
	for _, args := range []string{`{}`, `{"id":0}`, `{"id":-3}`, `{"id":1,"socket":"udp:127.0.0.1:9"}`} {
		var ae *mgmt.ArgError
		if _, err := call("rtpengine.del", args); !errors.As(err, &ae) {
			t.Errorf("rtpengine.del %s: %v, want a 400", args, err)
		}
	}
	// The configuration's instance is not the table's to delete.
	if _, err := call("rtpengine.del", `{"socket":"`+sock(a)+`","set":0}`); !errors.Is(err, mgmt.ErrNotFound) || len(e.List()) != 1 {
		t.Fatalf("deleting the configured instance: %v", err)
	}
}
