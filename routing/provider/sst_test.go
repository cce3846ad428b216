package provider

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/sst"
	"switchboard/shards"
)

// withSST builds the sst module (and the dialog module it needs) with
// sst.enabled and interval.
func withSST(t *testing.T, interval int) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		s := sst.DefaultSettings()
		s.Enabled, s.Interval = true, interval
		set, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{"sst": s}, "sst")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		return map[string]any{"sst-set": set, "sst": set.Get("sst"), "dialog": set.Get("dialog")}
	}
}

// TestSessionTimers: with sst.enabled the provider checks an
// authenticated caller's INVITE (422 with Min-SE for an interval below
// min_se from a caller that says Supported: timer, 400 for a malformed
// one), raises it for a caller that does not, adds sst.interval to one
// without, gives each relayed INVITE a dialog (accounting off), and times
// the dialog by the 2xx's Session-Expires.
func TestSessionTimers(t *testing.T) {
	h := newHarnessWith(t, true, Options{DialplanID: -1}, withSST(t, 1800))
	const phone = "127.0.0.1:6000"
	if r := registerBob(t, h, phone, "sip:bob@"+phone); status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	if r := aliceDials(h, "sip:bob@example.com", "Session-Expires: 60\r\nSupported: timer\r\n"); status(r.data) != "422 Session Interval Too Small" || headerValue(r.data, "Min-SE") != "90" {
		t.Fatalf("too small: %s", r.data)
	}
	if r := aliceDials(h, "sip:bob@example.com", "Session-Expires: soon\r\n"); status(r.data) != "400 Bad Session-Expires" {
		t.Fatalf("malformed: %s", r.data)
	}
	inv := aliceDials(h, "sip:bob@example.com", "Session-Expires: 60;refresher=uac\r\n")
	if !isINVITE(inv) || headerValue(inv.data, "Session-Expires") != "90;refresher=uac" || headerValue(inv.data, "Min-SE") != "90" ||
		!strings.Contains(headerValue(inv.data, "Record-Route"), ";did=") {
		t.Fatalf("raised: %+v", inv)
	}
	inv = aliceDials(h, "sip:bob@example.com", "")
	if !isINVITE(inv) || headerValue(inv.data, "Session-Expires") != "1800" {
		t.Fatalf("interval: %+v", inv)
	}
	up := h.answer(phone, inv, 200, "b1")
	if status(up.data) != "200 OK" {
		t.Fatalf("200 upstream: %+v", up)
	}
	// alice's INVITE said nothing of timers and bob's 200 neither: no
	// session timer (nobody would refresh).
	if headerValue(up.data, "Session-Expires") != "" {
		t.Fatalf("2xx upstream: %s", up.data)
	}
}
