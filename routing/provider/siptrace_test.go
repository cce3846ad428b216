package provider

import (
	"log/slog"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/siptrace"
	"switchboard/shards"
)

// TestTraceCallsInRouteMode: with siptrace in mode route, the provider
// traces the transactions of calls (an INVITE, here challenged) and of
// requests inside dialogs (a stray BYE, here refused), and not REGISTER
// nor OPTIONS: the collector gets the INVITE and its 407, the BYE and its
// 404, each once, and nothing else.
func TestTraceCallsInRouteMode(t *testing.T) {
	col, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	s := siptrace.DefaultSettings()
	s.Mode, s.Collectors = "route", []string{col.LocalAddr().String()}
	orig := &modules.Originator{}
	var set *modules.Set
	h := newHarnessWith(t, true, Options{}, func(clock *shards.Clock) map[string]any {
		set, err = modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.DiscardHandler), Originator: orig},
			map[string]any{"siptrace": s}, "siptrace")
		if err != nil {
			t.Fatal(err)
		}
		return set.Env()
	})
	orig.SetCore(h.core) // as the server does, once the core exists
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	defer set.Stop()

	h.reply("127.0.0.2:5062", req("REGISTER", "sip:example.com", "alice@example.com", "alice@example.com", ""))
	h.reply("127.0.0.2:5062", req("OPTIONS", "sip:example.com", "alice@example.com", "example.com", ""))
	inv := req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", "")
	if r := h.reply("127.0.0.2:5062", inv); !strings.HasPrefix(status(r), "407") {
		t.Fatalf("INVITE: %s", status(r))
	}
	bye := inDialogReq("BYE", "sip:bob@example.com", "alice@example.com", "bob@example.com", "")
	if r := h.reply("127.0.0.2:5062", bye); !strings.HasPrefix(status(r), "404") {
		t.Fatalf("BYE: %s", status(r))
	}

	var got []string
	buf := make([]byte, 65536)
	for {
		col.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := col.Read(buf)
		if err != nil {
			break
		}
		var r siptrace.Record
		if err := siptrace.ParseHEP3(buf[:n], &r); err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(r.Payload), "\r\n")
		got = append(got, r.Src.String()+">"+r.Dst.String()+" "+line)
	}
	want := []string{
		"127.0.0.2:5062>127.0.0.1:5060 " + strings.SplitN(inv, "\r\n", 2)[0],
		"127.0.0.1:5060>127.0.0.2:5062 SIP/2.0 407 Proxy Authentication Required",
		"127.0.0.2:5062>127.0.0.1:5060 " + strings.SplitN(bye, "\r\n", 2)[0],
		"127.0.0.1:5060>127.0.0.2:5062 SIP/2.0 404 Not here",
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("traced:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
