package events

import (
	"net/url"
	"strconv"
	"time"

	"switchboard/modules"
)

// Settings are the events section of the configuration.
type Settings struct {
	// Webhooks are the subscribers the configuration names; more can be
	// added at run time (events.subscribe).
	Webhooks []WebhookSettings `yaml:"webhooks"`
	// MaxSubscribers bounds webhooks (configured and added at run time)
	// plus open streams: events.subscribe and a new stream are refused
	// beyond it.
	MaxSubscribers int `yaml:"max_subscribers"`
	// StreamQueue is the queue of each management API stream
	// (/api/v1/stream/events): events a slow reader has not taken yet;
	// beyond, they are dropped for that reader and counted.
	StreamQueue int `yaml:"stream_queue"`
}

// WebhookSettings are one webhook: events are POSTed to URL as JSON, one
// per request, in the order raised.
type WebhookSettings struct {
	// Name identifies the webhook in metrics and commands (default: the
	// URL's host).
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Events are the event names sent (empty or "*": every one).
	Events []string `yaml:"events"`
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string `yaml:"token"`
	// Queue is the events held for the receiver while it is slow or down
	// (0: 1000); beyond, new events are dropped and counted.
	Queue int `yaml:"queue"`
	// Timeout bounds one POST (0: 2s).
	Timeout time.Duration `yaml:"timeout"`
	// Retries are the attempts after the first that fail (no answer, or
	// an answer other than 2xx) before the event is given up and counted
	// (0: 10; -1: none).
	Retries int `yaml:"retries"`
	// RetryMin and RetryMax bound the wait between attempts, doubled
	// from RetryMin each time (0: 100ms and 5s).
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
}

// DefaultSettings are the defaults: no webhook.
func DefaultSettings() *Settings {
	return &Settings{MaxSubscribers: 64, StreamQueue: 1000}
}

const (
	defaultQueue    = 1000
	defaultTimeout  = 2 * time.Second
	defaultRetries  = 10
	defaultRetryMin = 100 * time.Millisecond
	defaultRetryMax = 5 * time.Second
	maxQueue        = 1 << 20
)

func checkSettings(v any) error {
	s := v.(*Settings)
	if s.MaxSubscribers < 1 || s.MaxSubscribers > 10000 {
		return modules.Errorf("max_subscribers", "must be between 1 and 10000, got %d", s.MaxSubscribers)
	}
	if len(s.Webhooks) > s.MaxSubscribers {
		return modules.Errorf("webhooks", "%d webhooks, more than max_subscribers (%d)", len(s.Webhooks), s.MaxSubscribers)
	}
	if s.StreamQueue < 1 || s.StreamQueue > maxQueue {
		return modules.Errorf("stream_queue", "must be between 1 and %d, got %d", maxQueue, s.StreamQueue)
	}
	names := map[string]bool{}
	for i := range s.Webhooks {
		w := &s.Webhooks[i]
		key := "webhooks[" + strconv.Itoa(i) + "]."
		if err := w.normalize(); err != nil {
			ke := err.(*modules.KeyError)
			ke.Key = key + ke.Key
			return ke
		}
		if names[w.Name] {
			return modules.Errorf(key+"name", "%q is the name of an earlier webhook", w.Name)
		}
		names[w.Name] = true
	}
	return nil
}

// normalize checks w and fills in its defaults. Errors are *KeyError
// relative to the webhook.
func (w *WebhookSettings) normalize() error {
	u, err := url.Parse(w.URL)
	if w.URL == "" {
		return modules.Errorf("url", "missing: the http:// or https:// address events are POSTed to")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return modules.Errorf("url", "%q is not an http:// or https:// URL", w.URL)
	}
	if u.User != nil {
		return modules.Errorf("url", "credentials in the URL would show in listings: give them as token")
	}
	if w.Name == "" {
		w.Name = u.Host
	}
	if !validName(w.Name) {
		return modules.Errorf("name", "%q: use letters, digits, '.', '-', '_' and ':' (at most 64)", w.Name)
	}
	for _, e := range w.Events {
		if e != modules.AllEvents && !validEvent(e) {
			return modules.Errorf("events", "%q is not an event name (E_ followed by capitals, digits and '_'), nor *", e)
		}
	}
	if w.Queue == 0 {
		w.Queue = defaultQueue
	}
	if w.Queue < 1 || w.Queue > maxQueue {
		return modules.Errorf("queue", "must be between 1 and %d, got %d", maxQueue, w.Queue)
	}
	if w.Timeout == 0 {
		w.Timeout = defaultTimeout
	}
	if w.Timeout < 0 {
		return modules.Errorf("timeout", "must be positive")
	}
	switch {
	case w.Retries == 0:
		w.Retries = defaultRetries
	case w.Retries == -1:
		w.Retries = 0
	case w.Retries < -1 || w.Retries > 1000:
		return modules.Errorf("retries", "must be between -1 (none) and 1000, got %d", w.Retries)
	}
	if w.RetryMin == 0 {
		w.RetryMin = defaultRetryMin
	}
	if w.RetryMax == 0 {
		w.RetryMax = max(defaultRetryMax, w.RetryMin)
	}
	if w.RetryMin < 0 || w.RetryMax < w.RetryMin {
		return modules.Errorf("retry_max", "must be at least retry_min (%s)", w.RetryMin)
	}
	return nil
}

// validEvent says whether name is an event name: E_ then capitals,
// digits and '_', at most 64 bytes.
func validEvent(name string) bool {
	if len(name) < 3 || len(name) > 64 || name[:2] != "E_" {
		return false
	}
	for i := 2; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}
