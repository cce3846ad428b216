package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/events"
)

// TestEventsSection: the events module's section decodes into its
// settings with each webhook's defaults, and its errors name file, line
// and key.
func TestEventsSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("events:\n  webhooks:\n    - url: http://127.0.0.1:9000/hook\n      events: [E_UL_CONTACT_INSERT]\n      timeout: 1s\n  stream_queue: 50\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["events"].(*events.Settings)
	if len(s.Webhooks) != 1 || s.StreamQueue != 50 || s.MaxSubscribers != 64 {
		t.Fatalf("settings %+v", s)
	}
	w := s.Webhooks[0]
	if w.Name != "127.0.0.1:9000" || w.Timeout != time.Second || w.Queue != 1000 || w.Retries != 10 || w.RetryMin != 100*time.Millisecond || w.RetryMax != 5*time.Second {
		t.Fatalf("webhook %+v", w)
	}
	for _, tc := range []struct{ src, want string }{
		{"events:\n  webhooks:\n    - url: ftp://x/\n", `x.yaml:3: events.webhooks[0].url: "ftp://x/" is not an http:// or https:// URL`},
		{"events:\n  webhooks:\n    - url: http://x/\n      events: [register]\n", `x.yaml:4: events.webhooks[0].events: "register" is not an event name`},
		{"events:\n  max_subscribers: 0\n", "x.yaml:2: events.max_subscribers: must be between 1 and 10000"},
		{"events:\n  webhook: []\n", "x.yaml:2: events.webhook: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
