package events

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"switchboard/modules"
)

// keepAlive is how often a quiet stream gets a comment line, so that
// proxies and clients see the connection is alive.
const keepAlive = 15 * time.Second

// serveStream is GET /api/v1/stream/events[?events=E_A,E_B]: the events
// as Server-Sent Events (event: <name>, id: <seq>, data: <JSON>), until
// the client goes away. Each stream has its own queue (stream_queue);
// a reader that falls behind loses events, counted in
// switchboard_events_stream_dropped_total, and is never waited for.
func (m *Module) serveStream(w http.ResponseWriter, r *http.Request) {
	var names []string
	if q := r.URL.Query().Get("events"); q != "" {
		for _, n := range strings.Split(q, ",") {
			n = strings.TrimSpace(n)
			if n != modules.AllEvents && !validEvent(n) {
				http.Error(w, "events: "+strconv.Quote(n)+" is not an event name (E_ followed by capitals, digits and '_'), nor *", http.StatusBadRequest)
				return
			}
			names = append(names, n)
		}
	}
	sub, ok := m.addStream(names)
	if !ok {
		http.Error(w, "too many subscribers (events.max_subscribers)", http.StatusServiceUnavailable)
		return
	}
	defer m.removeStream(sub)

	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // the listener's write timeout is for commands
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(": switchboard events\n\n"))
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-m.stopped:
			return
		case <-tick.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		case ev := <-sub.C():
			buf = append(buf[:0], "event: "...)
			buf = append(buf, ev.Name...)
			buf = append(buf, "\nid: "...)
			buf = strconv.AppendUint(buf, ev.Seq, 10)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, ev.JSON...) // one line: the JSON has no raw newline
			buf = append(buf, "\n\n"...)
			if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
				return
			}
			m.streamSent.Inc()
		}
	}
}
