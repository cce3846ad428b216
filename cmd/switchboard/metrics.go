package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/transport"
	"switchboard/txn"
)

// registerMetrics exposes the transport and transaction counters. They are
// read as one snapshot per scrape, so the hot path only bumps its own
// atomics.
func registerMetrics(set *metrics.Set, tr *transport.Transport, core *txn.Core) {
	set.RegisterMetricsWriter(func(w io.Writer) {
		ts := tr.Stats()
		for _, p := range []transport.Proto{transport.UDP, transport.TCP, transport.TLS, transport.WS, transport.WSS} {
			ps := ts.Proto[p]
			l := `{proto="` + p.String() + `"}`
			metrics.WriteCounterUint64(w, "switchboard_sip_packets_received_total"+l, ps.PacketsIn)
			metrics.WriteCounterUint64(w, "switchboard_sip_bytes_received_total"+l, ps.BytesIn)
			metrics.WriteCounterUint64(w, "switchboard_sip_packets_sent_total"+l, ps.PacketsOut)
			metrics.WriteCounterUint64(w, "switchboard_sip_bytes_sent_total"+l, ps.BytesOut)
		}
		metrics.WriteCounterUint64(w, "switchboard_transport_errors_total", ts.Errors)
		metrics.WriteCounterUint64(w, `switchboard_transport_drops_total{direction="in"}`, ts.DropsIn)
		metrics.WriteCounterUint64(w, `switchboard_transport_drops_total{direction="out"}`, ts.SendDrops)
		metrics.WriteCounterUint64(w, "switchboard_transport_refused_datagrams_total", ts.AdmitDrops)
		metrics.WriteCounterUint64(w, `switchboard_connections_refused_total{when="accept"}`, ts.AdmitRefused)
		metrics.WriteCounterUint64(w, `switchboard_connections_refused_total{when="open"}`, ts.AdmitClosed)
		metrics.WriteGaugeUint64(w, "switchboard_connections_open", uint64(max(ts.ConnsOpen, 0)))
		metrics.WriteCounterUint64(w, "switchboard_connections_accepted_total", ts.ConnsAccepted)
		metrics.WriteCounterUint64(w, "switchboard_connections_dialed_total", ts.ConnsDialed)
		metrics.WriteCounterUint64(w, "switchboard_connections_rejected_total", ts.ConnsRejected)
		metrics.WriteCounterUint64(w, "switchboard_connections_rejected_inbound_share_total", ts.ConnsShareFull)
		metrics.WriteCounterUint64(w, `switchboard_connections_closed_total{reason="idle"}`, ts.ConnsIdle)
		metrics.WriteCounterUint64(w, `switchboard_connections_closed_total{reason="message_timeout"}`, ts.ConnsSlow)
		metrics.WriteCounterUint64(w, `switchboard_connections_closed_total{reason="oversize"}`, ts.ConnsOversize)
		metrics.WriteCounterUint64(w, `switchboard_connections_closed_total{reason="write_overflow"}`, ts.ConnsOverflow)
		metrics.WriteCounterUint64(w, "switchboard_tls_handshake_failures_total", ts.TLSHandshakeKO)
		metrics.WriteCounterUint64(w, "switchboard_websocket_upgrade_failures_total", ts.WSUpgradeKO)
		metrics.WriteCounterUint64(w, "switchboard_keepalive_pings_total", ts.KeepalivePings)

		cs := core.Stats()
		metrics.WriteCounterUint64(w, "switchboard_requests_received_total", cs.Requests)
		metrics.WriteCounterUint64(w, "switchboard_replies_received_total", cs.Responses)
		metrics.WriteCounterUint64(w, "switchboard_retransmissions_absorbed_total", cs.Retransmissions)
		metrics.WriteCounterUint64(w, "switchboard_parse_errors_total", cs.Malformed)
		metrics.WriteCounterUint64(w, "switchboard_replies_forwarded_stateless_total", cs.Stateless)
		metrics.WriteCounterUint64(w, "switchboard_overload_rejections_total", cs.Full)
		metrics.WriteCounterUint64(w, "switchboard_loops_detected_total", cs.Loops)
		metrics.WriteCounterUint64(w, "switchboard_forged_responses_total", cs.ForgedResponses)
		metrics.WriteCounterUint64(w, "switchboard_held_responses_expired_total", cs.HeldExpired)
		metrics.WriteCounterUint64(w, "switchboard_send_errors_total", cs.SendErrors)
		metrics.WriteCounterUint64(w, "switchboard_response_loops_dropped_total", cs.ResponseLoops)
		metrics.WriteGaugeUint64(w, "switchboard_transactions_active", uint64(max(cs.Transactions, 0)))
		metrics.WriteGaugeUint64(w, "switchboard_transactions_memory_bytes", uint64(max(cs.Bytes, 0)))
		metrics.WriteGaugeUint64(w, "switchboard_transactions_memory_limit_bytes", uint64(max(cs.MaxBytes, 0)))
	})
}

func (s *server) registerCommands() {
	s.registerTraceCommands()
	s.mgmt.Register("transactions", mgmt.Command{
		Help:     "transaction counters and the number open now",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return s.core.Stats(), nil
		},
	})
	s.mgmt.Register("transport", mgmt.Command{
		Help:     "packet, byte and connection counters per protocol",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			ts := s.tr.Stats()
			out := map[string]any{
				"errors": ts.Errors, "drops_in": ts.DropsIn, "send_drops": ts.SendDrops,
				"connections_open": ts.ConnsOpen, "connections_rejected": ts.ConnsRejected,
				"connections_rejected_inbound_share": ts.ConnsShareFull,
				"refused_datagrams":                  ts.AdmitDrops, "connections_refused": ts.AdmitRefused + ts.AdmitClosed,
			}
			for _, p := range []transport.Proto{transport.UDP, transport.TCP, transport.TLS, transport.WS, transport.WSS} {
				out[p.String()] = ts.Proto[p]
			}
			return out, nil
		},
	})
	s.mgmt.Register("reload", mgmt.Command{
		Help: "re-read the configuration file and apply what can change without restart (as SIGHUP); a file or a module's settings refused changes nothing, and the error names the key",
		Run: func(context.Context, json.RawMessage) (any, error) {
			applied, restart, err := s.reload()
			if err != nil && applied == nil {
				return nil, err
			}
			if err != nil {
				return nil, fmt.Errorf("applied %s; not applied: %w", strings.Join(applied, ","), err)
			}
			return map[string][]string{"applied": nonNil(applied), "need_restart": nonNil(restart)}, nil
		},
	})
	s.mgmt.Register("domains", mgmt.Command{
		Help:     "the names this server treats as its own (served domains and listener addresses)",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return s.domains.List(), nil
		},
	})
}

// nonNil is l, or an empty list for JSON's [] rather than null.
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
