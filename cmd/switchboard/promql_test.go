package main

import (
	"sort"
	"strings"
	"testing"
)

// promqlRefs are the metric and label names a PromQL expression uses.
type promqlRefs struct {
	metrics []string
	labels  []string // in label matchers and by/without/on/ignoring/group_* lists
}

// promqlKeywords are the identifiers of PromQL that are not metric names
// when they are not followed by "(".
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
	// aggregations, which may be followed by "by (...)" before their "("
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

// promqlLabelLists are the keywords followed by a list of label names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// parsePromQL reads the metric and label names of expr: enough of the
// PromQL lexer for the dashboard's and the alerts' expressions (promtool
// checks their syntax). Grafana variables ($job, $__rate_interval) are
// skipped.
func parsePromQL(expr string) promqlRefs {
	var r promqlRefs
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipString := func(i int) int { // expr[i] is the opening quote
		q := expr[i]
		for i++; i < len(expr) && expr[i] != q; i++ {
			if expr[i] == '\\' {
				i++
			}
		}
		return i + 1
	}
	nextNonSpace := func(i int) (int, byte) {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		if i < len(expr) {
			return i, expr[i]
		}
		return i, 0
	}
	// labelNames reads identifiers up to the closing delimiter, skipping
	// strings (and, in matchers, the values), and returns the position
	// after it.
	labelNames := func(i int, close byte) int {
		for i < len(expr) && expr[i] != close {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(i)
			case isIdentStart(c):
				j := i
				for j < len(expr) && isIdent(expr[j]) {
					j++
				}
				r.labels = append(r.labels, expr[i:j])
				i = j
			default:
				i++
			}
		}
		return i + 1
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '$': // a Grafana variable
			i++
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '{' || expr[i] == '}') {
				i++
			}
		case c == '{':
			i = labelNames(i+1, '}')
		case c == '[':
			for i < len(expr) && expr[i] != ']' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++ // numbers and durations (1e-05, 5m)
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			name := expr[i:j]
			k, next := nextNonSpace(j)
			switch {
			case promqlLabelLists[name] && next == '(':
				i = labelNames(k+1, ')')
				continue
			case next == '(' || promqlKeywords[name]:
				// a function, an aggregation or an operator
			default:
				r.metrics = append(r.metrics, name)
			}
			i = j
		default:
			i++
		}
	}
	return r
}

// TestParsePromQL: the names found in expressions like the dashboard's,
// so that the monitoring test cannot pass by finding nothing.
func TestParsePromQL(t *testing.T) {
	for _, c := range []struct {
		expr            string
		metrics, labels string
	}{
		{`sum by (method) (rate(switchboard_requests_routed_total{job=~"$job",instance=~"$instance"}[$__rate_interval]))`,
			"switchboard_requests_routed_total", "instance job method"},
		{`histogram_quantile(0.99, sum by (le) (rate(switchboard_route_duration_seconds_bucket{x="a,b}"}[5m])))`,
			"switchboard_route_duration_seconds_bucket", "le x"},
		{`a / (b > 0) > 0.8 and on (instance) c offset 1h or d * 0 unless e{class=~"[2-6]xx"}`,
			"a b c d e", "class instance"},
		{`sum(rate(x_total[1h] offset 5m)) by (gwid, set) > 1e-05`, "x_total", "gwid set"},
		{`go_memlimit_bytes < 9e18`, "go_memlimit_bytes", ""},
		{`up{job="switchboard"} == 0`, "up", "job"},
	} {
		r := parsePromQL(c.expr)
		sort.Strings(r.metrics)
		sort.Strings(r.labels)
		if got := strings.Join(r.metrics, " "); got != c.metrics {
			t.Errorf("%s: metrics %q, want %q", c.expr, got, c.metrics)
		}
		if got := strings.Join(r.labels, " "); got != c.labels {
			t.Errorf("%s: labels %q, want %q", c.expr, got, c.labels)
		}
	}
}
