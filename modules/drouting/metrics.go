package drouting

func (d *Drouting) registerMetrics() {
	for r := range numResults {
		d.results[r] = d.set.NewCounter(`switchboard_drouting_routes_total{result="` + r.String() + `"}`)
	}
	d.failovers = d.set.NewCounter(`switchboard_drouting_failovers_total`)
	d.lost = d.set.NewCounter(`switchboard_drouting_lists_lost_total`)
	d.reloadErrors = d.set.NewCounter(`switchboard_drouting_reload_errors_total`)
	d.probeOK = d.set.NewCounter(`switchboard_drouting_probes_total{result="answered"}`)
	d.probeFailed = d.set.NewCounter(`switchboard_drouting_probes_total{result="failed"}`)
	d.gateways = d.set.NewGauge(`switchboard_drouting_gateways`, nil)
	d.set.NewGauge(`switchboard_drouting_rules`, func() float64 {
		if rs := d.rules.Load(); rs != nil {
			return float64(len(rs.rules))
		}
		return 0
	})
	d.set.NewGauge(`switchboard_drouting_rules_load_seconds`, func() float64 {
		if rs := d.rules.Load(); rs != nil {
			return rs.took.Seconds()
		}
		return 0
	})
	d.set.NewGauge(`switchboard_drouting_rules_bytes`, func() float64 {
		if rs := d.rules.Load(); rs != nil {
			return float64(rs.bytes())
		}
		return 0
	})
}

// gatewayMetrics registers the metrics of a new slot: calls sent to the
// gateway, failures (408 and 5xx seen by
// UseNextGW), and whether it is usable now.
func (d *Drouting) gatewayMetrics(s *gwSlot) {
	calls := metricName("switchboard_drouting_gateway_calls_total", s.id)
	failures := metricName("switchboard_drouting_gateway_failures_total", s.id)
	up := metricName("switchboard_drouting_gateway_up", s.id)
	s.calls = d.set.GetOrCreateCounter(calls)
	s.failures = d.set.GetOrCreateCounter(failures)
	d.set.GetOrCreateGauge(up, func() float64 {
		if s.usable() != nil {
			return 1
		}
		return 0
	})
	s.metricNames = []string{calls, failures, up}
}
