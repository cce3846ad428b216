package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Grafana dashboard (docs/grafana/switchboard.json) and the Prometheus
// alert rules (docs/prometheus/alerts.yml) name metrics and labels the
// server exports. These tests keep them from drifting: every metric an
// expression uses must be on a running server's /metrics, with every label
// the expression matches or groups by; the rules pass promtool.

const (
	dashboardFile  = "../../docs/grafana/switchboard.json"
	alertsFile     = "../../docs/prometheus/alerts.yml"
	alertTestsFile = "../../docs/prometheus/alerts_test.yml"
)

// prometheusMade are the series Prometheus adds to every target; the
// labels it adds to every series are job and instance.
var prometheusMade = map[string]bool{"up": true}

// scrapedNames reads /metrics into metric name -> the label names its
// series carry.
func scrapedNames(t *testing.T, srv *testServer) map[string]map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + srv.Mgmt + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		labels := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = line[:i], line[i:]
			rest = labels
		}
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if strings.HasPrefix(rest, "{") {
			for _, l := range parsePromQL("x" + rest[:strings.IndexByte(rest, '}')+1]).labels {
				out[name][l] = true
			}
		}
	}
	return out
}

// monitoredServer starts a server on which every metric the dashboard and
// the alerts use exists: a HEP collector, a PSTN gateway (drouting) and a
// dispatcher destination, whose metrics appear once they are loaded, and
// one request routed.
func monitoredServer(t *testing.T) *testServer {
	t.Helper()
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	srv := startServer(t, fmt.Sprintf("siptrace:\n  collectors: [%q]\n"+
		"dispatcher:\n  poll_interval: 50ms\n  probe_interval: 0s\n"+
		"drouting:\n  poll_interval: 50ms\n  probe_interval: 1h\n", sink.LocalAddr().String()))
	drCLI(t, srv, "gw-add", "gw1", "--address", "127.0.0.2:5060")
	drCLI(t, srv, "rule-add", "--prefix", "+49", "--gwlist", "gw1")
	dsCLI(t, srv, "add", "sip:127.0.0.3:5060", "--setid", "1")
	waitSeries(t, srv, `switchboard_drouting_gateway_up{gwid="gw1"}`)
	waitSeries(t, srv, `switchboard_dispatcher_state{set="1",destination="sip:127.0.0.3:5060"}`)
	sendUDP(t, srv.Port, "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bKmon1;rport\r\n"+
		"From: <sip:mon@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: mon-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", time.Second)
	return srv
}

// waitSeries waits until the server exports the series name{labels}.
func waitSeries(t *testing.T, srv *testServer, series string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := srv.metrics()[series]; ok {
			return
		}
		if time.Now().After(deadline) {
			var have []string
			for k := range srv.metrics() {
				if strings.HasPrefix(k, series[:strings.IndexByte(series, '{')]) {
					have = append(have, k)
				}
			}
			t.Fatalf("%s not exported within 5s; there are %v", series, have)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRefs reports the metrics of expr missing from the scrape, and the
// labels it uses that none of its metrics carries.
func checkRefs(t *testing.T, where, expr string, scraped map[string]map[string]bool) {
	t.Helper()
	r := parsePromQL(expr)
	if len(r.metrics) == 0 {
		t.Errorf("%s: no metric found in %q", where, expr)
	}
	have := map[string]bool{"job": true, "instance": true}
	for _, m := range r.metrics {
		if prometheusMade[m] {
			continue
		}
		labels, ok := scraped[m]
		if !ok {
			t.Errorf("%s: metric %s is not exported (%s)", where, m, expr)
			continue
		}
		for l := range labels {
			have[l] = true
		}
	}
	for _, l := range r.labels {
		if !have[l] {
			t.Errorf("%s: label %q is on none of %v", where, l, r.metrics)
		}
	}
}

// dashboard is the part of the Grafana JSON the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// dashboardExprs returns every query of the dashboard by panel title,
// and the metric queries of its variables (label_values(metric, label)).
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice (%s)", p.ID, p.Title)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			for i, tg := range p.Targets {
				out[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		inner, ok := strings.CutPrefix(s, "label_values(")
		if !ok {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, s)
			continue
		}
		i := strings.LastIndexByte(inner, ',')
		out["variable "+v.Name] = inner[:i]
	}
	return out
}

// alertRules reads the rules of docs/prometheus/alerts.yml.
func alertRules(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// TestDashboardMetricsExist: every query of the Grafana dashboard and every
// alert rule uses metrics a running server exports, with their labels.
func TestDashboardMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Fatalf("dashboard without uid or title")
	}
	exprs := dashboardExprs(t, d)
	alerts := alertRules(t)
	if len(exprs) < 50 || len(alerts) < 10 {
		t.Fatalf("%d dashboard queries and %d alert rules read: the files were not understood", len(exprs), len(alerts))
	}
	srv := monitoredServer(t)
	scraped := scrapedNames(t, srv)
	used := map[string]bool{}
	for _, set := range []map[string]string{exprs, alerts} {
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			checkRefs(t, k, set[k], scraped)
			for _, m := range parsePromQL(set[k]).metrics {
				used[m] = true
			}
		}
	}
	// The rows the issue asks for, by one metric each.
	for _, m := range []string{
		"switchboard_requests_routed_total", "switchboard_replies_received_total", "switchboard_transactions_active",
		"switchboard_registrar_bindings", "switchboard_auth_failed_total", "switchboard_pike_bans_total",
		"switchboard_connections_open", "switchboard_transport_errors_total", "switchboard_route_duration_seconds_bucket",
		"go_goroutines", "switchboard_drouting_gateway_up", "switchboard_dispatcher_state", "switchboard_dialog_confirmed",
		"switchboard_siptrace_captured_total",
	} {
		if !used[m] {
			t.Errorf("the dashboard and alerts do not use %s", m)
		}
	}
}

// TestAlertRulesPromtool: promtool accepts the alert rules, their unit
// tests (alerts_test.yml) pass, and every dashboard query parses (each
// checked as a recording rule, Grafana's variables replaced).
func TestAlertRulesPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (Debian package prometheus; scripts/test-deps.sh installs it)")
	}
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertTestsFile}} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exprs := dashboardExprs(t, readDashboard(t))
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$instance", ".*")
	for i, k := range keys {
		e := exprs[k]
		if strings.HasPrefix(k, "variable ") {
			continue // a selector, checked by TestDashboardMetricsExist
		}
		q, _ := json.Marshal(vars.Replace(e))
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("a dashboard query does not parse: %v\n%s", err, out)
	}
	if n := strings.Count(rules.String(), "record:"); n < 50 {
		t.Errorf("only %d dashboard queries checked", n)
	}

}
