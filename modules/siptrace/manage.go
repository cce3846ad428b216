package siptrace

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
)

// Status is what siptrace.status answers.
type Status struct {
	Mode       string            `json:"mode"`
	SampleRate float64           `json:"sample_rate"`
	NodeID     uint32            `json:"node_id"`
	Tapping    bool              `json:"tapping"` // the core shows messages to the module
	Collectors []CollectorStatus `json:"collectors"`
	QueueSize  int               `json:"queue_size"` // 0 before collectors were configured
	Queued     int               `json:"queued"`
	Captured   uint64            `json:"captured"`
	Dropped    map[string]uint64 `json:"dropped"`
}

// CollectorStatus is one collector's counters.
type CollectorStatus struct {
	Collector string `json:"collector"`
	Sent      uint64 `json:"sent"`
	Errors    uint64 `json:"errors"`
}

// Status returns the mode, the collectors and the counters.
func (t *SipTrace) Status() Status {
	t.mu.Lock()
	tapping := t.tapOn
	t.mu.Unlock()
	st := t.state.Load()
	out := Status{
		Mode: st.mode.String(), SampleRate: st.rate, NodeID: st.nodeID, Tapping: tapping,
		Collectors: []CollectorStatus{},
		Dropped:    t.dropped(),
	}
	if set := t.colls.Load(); set != nil {
		for _, c := range set.list {
			out.Collectors = append(out.Collectors, CollectorStatus{Collector: c.name, Sent: c.sent.Load(), Errors: c.errs.Load()})
		}
	}
	if q := t.q.Load(); q != nil {
		out.QueueSize, out.Queued, out.Captured = len(q.slots), q.len(), q.tail.Load()
	}
	return out
}

func (t *SipTrace) dropped() map[string]uint64 {
	return map[string]uint64{"queue_full": t.full.Load(), "too_large": t.tooLarge.Load() + t.encodeErr.Load()}
}

// SetMode changes the mode (and, for sample, the rate) until the next
// reload or restart: OpenSIPS `sip_trace on|off`, Kamailio
// `siptrace.status on|off`. rate 0 keeps the current one.
func (t *SipTrace) SetMode(name string, rate float64) error {
	m, ok := parseMode(name)
	if !ok {
		return &mgmt.ArgError{Msg: fmt.Sprintf(`"mode": %q is not all, route, sample or off`, name)}
	}
	if rate < 0 || rate > 1 {
		return &mgmt.ArgError{Msg: fmt.Sprintf(`"sample_rate": %v is not above 0 and at most 1`, rate)}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.state.Load()
	if rate == 0 {
		rate = old.rate
	}
	st := newState(m, rate, int64(old.nodeID), string(old.password), old.logs)
	t.state.Store(st)
	set := t.colls.Load()
	return t.setTapLocked(t.started && set != nil && len(set.list) > 0 && m != modeOff)
}

type setArgs struct {
	Mode       string  `json:"mode"`
	SampleRate float64 `json:"sample_rate"`
}

func (t *SipTrace) registerCommands(h *modules.Host) {
	h.Command("siptrace.status", mgmt.Command{
		Help:     "HEP capture: mode, collectors with packets sent and errors, the queue and what was dropped",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return t.Status(), nil
		},
	})
	h.Command("siptrace.set", mgmt.Command{
		Help: `change the capture mode until the next reload: {"mode":"off|all|route|sample","sample_rate":0.1} (OpenSIPS sip_trace on|off)`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args setArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Mode == "" {
				return nil, &mgmt.ArgError{Msg: `"mode" is required`}
			}
			if err := t.SetMode(args.Mode, args.SampleRate); err != nil {
				return nil, err
			}
			return t.Status(), nil
		},
	})
}

// registerMetrics exposes the counters, read once per scrape.
func (t *SipTrace) registerMetrics(h *modules.Host) {
	h.Metrics.RegisterMetricsWriter(func(w io.Writer) {
		var captured uint64
		var queued, size int
		if q := t.q.Load(); q != nil {
			captured, queued, size = q.tail.Load(), q.len(), len(q.slots)
		}
		metrics.WriteCounterUint64(w, "switchboard_siptrace_captured_total", captured)
		metrics.WriteCounterUint64(w, `switchboard_siptrace_dropped_total{reason="queue_full"}`, t.full.Load())
		metrics.WriteCounterUint64(w, `switchboard_siptrace_dropped_total{reason="too_large"}`, t.tooLarge.Load()+t.encodeErr.Load())
		metrics.WriteGaugeUint64(w, "switchboard_siptrace_queue_length", uint64(queued))
		metrics.WriteGaugeUint64(w, "switchboard_siptrace_queue_size", uint64(size))
		if set := t.colls.Load(); set != nil {
			for _, c := range set.list {
				metrics.WriteCounterUint64(w, `switchboard_siptrace_packets_sent_total{collector="`+c.name+`"}`, c.sent.Load())
				metrics.WriteCounterUint64(w, `switchboard_siptrace_send_errors_total{collector="`+c.name+`"}`, c.errs.Load())
			}
		}
	})
}
