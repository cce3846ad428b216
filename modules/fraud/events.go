package fraud

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
)

// An event is a call that reached a warning or critical threshold
// (OpenSIPS raises E_FRD_WARNING and E_FRD_CRITICAL). It is counted in
// switchboard_fraud_events_total{level}, kept in a ring of the latest
// max_events for fraud.events, and logged, at most logPerSecond lines a
// second. Recording one allocates nothing: callers and numbers are copied
// into fixed arrays (cut if longer).
type event struct {
	at        int64 // ms
	level     Result
	param     param
	value     int32
	threshold int32
	rule      int64
	profile   int32
	prefix    [64]byte
	prefixLen uint8
	userLen   uint16
	numLen    uint16
	user      [128]byte
	number    [64]byte
}

// logPerSecond bounds the event lines, before Host.Warn's own bound, so
// that a refused caller who keeps calling does not cost a formatted line
// per call.
const logPerSecond = 10

type eventLog struct {
	mu      sync.Mutex
	ring    []event
	next    int // where the next event goes
	n       int // events held
	logSec  int64
	logN    int
	dropped int

	counts [numResults]*metrics.Counter
}

func (l *eventLog) init(size int) { l.ring = make([]event, size) }

func (l *eventLog) size() int { return len(l.ring) }

// add records an event and reports whether to log it, with the lines
// left out since the last one logged.
func (l *eventLog) add(ev *event) (log bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) > 0 {
		l.ring[l.next] = *ev
		l.next = (l.next + 1) % len(l.ring)
		if l.n < len(l.ring) {
			l.n++
		}
	}
	if sec := ev.at / 1000; sec != l.logSec {
		l.logSec, l.logN = sec, 0
	}
	if l.logN >= logPerSecond {
		l.dropped++
		return false, 0
	}
	l.logN++
	dropped, l.dropped = l.dropped, 0
	return true, dropped
}

func (f *Fraud) event(now int64, level Result, p param, value, threshold int32, user, number []byte, r *rule) {
	f.events.counts[level].Inc()
	ev := event{at: now, level: level, param: p, value: value, threshold: threshold, rule: r.id, profile: int32(r.profile)}
	ev.userLen = uint16(copy(ev.user[:], user))
	ev.numLen = uint16(copy(ev.number[:], number))
	ev.prefixLen = uint8(copy(ev.prefix[:], r.prefix))
	name := modules.EventFraudWarning
	if level != Warning {
		name = modules.EventFraudCritical
	}
	f.h.Events.Begin(name).Str("param", p.String()).Int("value", int64(value)).Int("threshold", int64(threshold)).
		Bytes("user", user).Bytes("number", number).Int("ruleid", r.id).Int("profile", int64(r.profile)).Raise()
	log, dropped := f.events.add(&ev)
	if !log {
		return
	}
	args := []any{"level", level.String(), "param", p.String(), "value", value, "threshold", threshold,
		"user", string(user), "number", string(number), "rule", r.id, "profile", r.profile, "prefix", r.prefix}
	if dropped > 0 {
		args = append(args, "not_logged", dropped)
	}
	f.h.Warn("fraud threshold reached", args...)
}

// EventInfo is one event in fraud.events.
type EventInfo struct {
	Time      string `json:"time"`
	Level     string `json:"level"`
	Param     string `json:"param"`
	Value     int32  `json:"value"`
	Threshold int32  `json:"threshold"`
	User      string `json:"user"`
	Number    string `json:"number"`
	Rule      int64  `json:"rule"`
	Profile   int32  `json:"profile"`
	Prefix    string `json:"prefix"`
}

// Events returns the events kept, newest first; with level "warning" or
// "critical" only those, with user only that caller's.
func (f *Fraud) Events(level, user string) []EventInfo {
	l := &f.events
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []EventInfo{}
	for i := 0; i < l.n; i++ {
		ev := &l.ring[(l.next-1-i+2*len(l.ring))%len(l.ring)]
		if level != "" && ev.level.String() != level || user != "" && string(ev.user[:ev.userLen]) != user {
			continue
		}
		out = append(out, EventInfo{
			Time: time.UnixMilli(ev.at).UTC().Format(time.RFC3339Nano), Level: ev.level.String(),
			Param: ev.param.String(), Value: ev.value, Threshold: ev.threshold,
			User: string(ev.user[:ev.userLen]), Number: string(ev.number[:ev.numLen]),
			Rule: ev.rule, Profile: ev.profile, Prefix: string(ev.prefix[:ev.prefixLen]),
		})
	}
	return out
}

func (f *Fraud) registerMetrics(set *metrics.Set) {
	for r := Result(0); r < numResults; r++ {
		f.results[r] = set.NewCounter(`switchboard_fraud_checks_total{result="` + r.String() + `"}`)
	}
	f.events.counts[Warning] = set.NewCounter(`switchboard_fraud_events_total{level="warning"}`)
	f.events.counts[Critical] = set.NewCounter(`switchboard_fraud_events_total{level="critical"}`)
	f.evicted = set.NewCounter(`switchboard_fraud_counters_evicted_total`)
	f.reloadErrors = set.NewCounter(`switchboard_fraud_reload_errors_total`)
	set.NewGauge(`switchboard_fraud_rules`, func() float64 {
		if rs := f.rules.Load(); rs != nil {
			return float64(len(rs.rules))
		}
		return 0
	})
	set.NewGauge(`switchboard_fraud_counters`, func() float64 { return float64(f.counters.Len()) })
	set.NewGauge(`switchboard_fraud_calls`, func() float64 { return float64(f.calls.Len()) })
}
