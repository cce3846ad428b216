package events

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"switchboard/mgmt"
)

// httpHandler adapts a method to http.Handler.
type httpHandler func(http.ResponseWriter, *http.Request)

func (f httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { f(w, r) }

// compact puts a JSON value on one line: an SSE data line cannot hold a
// newline.
func compact(v json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return []byte("null")
	}
	return b.Bytes()
}

// decodeSubscribe reads events.subscribe's arguments: the keys of a
// webhook (as in the configuration, timeouts as "2s") and expires.
func decodeSubscribe(raw json.RawMessage, a *subscribeArgs) error {
	var in struct {
		Name     string   `json:"name"`
		URL      string   `json:"url"`
		Events   []string `json:"events"`
		Token    string   `json:"token"`
		Queue    int      `json:"queue"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
		RetryMin string   `json:"retry_min"`
		RetryMax string   `json:"retry_max"`
		Expires  int64    `json:"expires"`
	}
	if err := mgmt.DecodeArgs(raw, &in); err != nil {
		return err
	}
	a.Name, a.URL, a.Events, a.Token, a.Queue, a.Retries, a.Expires = in.Name, in.URL, in.Events, in.Token, in.Queue, in.Retries, in.Expires
	for _, d := range []struct {
		key string
		s   string
		dst *time.Duration
	}{{"timeout", in.Timeout, &a.Timeout}, {"retry_min", in.RetryMin, &a.RetryMin}, {"retry_max", in.RetryMax, &a.RetryMax}} {
		if strings.TrimSpace(d.s) == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return &mgmt.ArgError{Msg: d.key + ": " + err.Error()}
		}
		*d.dst = v
	}
	return nil
}
