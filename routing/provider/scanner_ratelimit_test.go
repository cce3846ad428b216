package provider

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/ratelimit"
	"switchboard/modules/scanner"
	"switchboard/shards"
	"switchboard/transport"
)

// withScannerAndRateLimit builds the provider with the scanner module's
// defaults and a ratelimit pipe of 2 INVITEs per source in 10 s, built as
// the server builds them.
func withScannerAndRateLimit(t *testing.T) *harness {
	rl := &ratelimit.Settings{MaxKeys: 1024, IPv6Prefix: 64, Pipes: []ratelimit.PipeSettings{
		{Name: "invite", Limit: 2, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}},
	}}
	return newHarnessWith(t, true, Options{}, func(clock *shards.Clock) map[string]any {
		set, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.DiscardHandler)},
			map[string]any{"ratelimit": rl}, "scanner", "ratelimit")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		if _, ok := set.Get("scanner").(*scanner.Scanner); !ok {
			t.Fatal("no scanner module")
		}
		return set.Env()
	})
}

// TestScannerDroppedFirst: a scanner's requests, initial or in-dialog, to
// a served name or not, get no answer at all; a phone's are served.
func TestScannerDroppedFirst(t *testing.T) {
	h := withScannerAndRateLimit(t)
	for _, msg := range []string{
		req("OPTIONS", "sip:100@example.com", "100@1.1.1.1", "100@1.1.1.1", "User-Agent: friendly-scanner\r\n"),
		req("REGISTER", "sip:example.com", "alice@example.com", "alice@example.com", "User-Agent: friendly-scanner\r\n"),
		req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", "User-Agent: VaxSIPUserAgent/3.1\r\n"),
		inDialogReq("BYE", "sip:bob@example.com", "alice@example.com", "bob@example.com", "User-Agent: sipcli/v1.8\r\n"),
	} {
		h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort("127.0.0.3:5060"), Listener: &h.l, Proto: transport.UDP})
		if sent := h.sentNow(40 * time.Second); len(sent) != 0 {
			t.Errorf("a scanner got %d messages: %+v", len(sent), sent)
		}
	}
	r := h.reply("127.0.0.2:5060", req("OPTIONS", "sip:example.com", "alice@example.com", "example.com", "User-Agent: Linphonec/5.1.65\r\n"))
	if status(r) != "200 OK" {
		t.Fatalf("phone: %s", r)
	}
}

// TestRateLimitedInitialRequests: over the pipe's limit, one source's
// initial INVITEs get one stateless 503 with Retry-After each, while
// another source is served and in-dialog requests are not counted.
func TestRateLimitedInitialRequests(t *testing.T) {
	h := withScannerAndRateLimit(t)
	invite := func() string {
		return req("INVITE", "sip:nobody@example.com", "someone@example.net", "nobody@example.com", "")
	}
	for i, want := range []string{"480 Temporarily Unavailable", "480 Temporarily Unavailable", "503 Rate Limit Exceeded", "503 Rate Limit Exceeded"} {
		r := h.reply("127.0.0.4:5060", invite())
		if status(r) != want {
			t.Fatalf("INVITE %d: %s", i, r)
		}
		if strings.HasPrefix(want, "503") && !strings.Contains(r, "\r\nRetry-After: 10\r\n") {
			t.Fatalf("no Retry-After: %s", r)
		}
	}
	if r := h.reply("127.0.0.5:5060", invite()); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("another source: %s", r)
	}
	for i := 0; i < 3; i++ {
		bye := inDialogReq("BYE", "sip:nobody@example.com", "someone@example.net", "nobody@example.com", "")
		if r := h.reply("127.0.0.4:5060", bye); status(r) != "404 Not here" {
			t.Fatalf("in-dialog BYE %d: %s", i, r)
		}
	}
	// One packet for a refused INVITE, nothing retransmitted.
	h.reply("127.0.0.4:5060", invite())
	msgs := h.sentNow(0)
	msgs = append(msgs, h.sentNow(40*time.Second)...)
	if len(msgs) != 1 || status(msgs[0].data) != "503 Rate Limit Exceeded" {
		t.Fatalf("sent %d messages %+v, want one 503", len(msgs), msgs)
	}
	// 40 s later the source is served again.
	if r := h.reply("127.0.0.4:5060", invite()); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("after the window: %s", r)
	}
}

// inDialogReq is req with a To tag.
func inDialogReq(method, ruri, from, to, extra string) string {
	m := req(method, ruri, from, to, extra)
	return strings.Replace(m, "To: <sip:"+to+">", "To: <sip:"+to+">;tag=x", 1)
}
