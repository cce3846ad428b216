package panel

import (
	"encoding/json"
	"net/http"
	"strings"
)

// A tile is one number of the dashboard: the sum of the metrics named
// (with any labels). Rate tiles are counters the page shows per second.
type tile struct {
	ID, Title string
	Metrics   []string
	Rate      bool
}

var tiles = []tile{
	{ID: "requests", Title: "Requests /s", Metrics: []string{"switchboard_requests_received_total"}, Rate: true},
	{ID: "replies", Title: "Replies /s", Metrics: []string{"switchboard_replies_received_total"}, Rate: true},
	{ID: "calls", Title: "Calls up", Metrics: []string{"switchboard_dialog_active"}},
	{ID: "transactions", Title: "Transactions open", Metrics: []string{"switchboard_transactions_active"}},
	{ID: "aors", Title: "Registered AORs", Metrics: []string{"switchboard_registrar_aors"}},
	{ID: "bindings", Title: "Contacts", Metrics: []string{"switchboard_registrar_bindings"}},
	{ID: "auth_failed", Title: "Auth failures /s", Metrics: []string{"switchboard_auth_failed_total"}, Rate: true},
	{ID: "errors", Title: "Errors /s", Rate: true, Metrics: []string{
		"switchboard_parse_errors_total", "switchboard_send_errors_total", "switchboard_transport_errors_total",
		"switchboard_overload_rejections_total", "switchboard_transport_drops_total",
	}},
}

// dashboardValues runs the stats command (the metric set as name: value,
// as a scraper reads it) and sums it into the tiles.
func (p *Panel) dashboardValues(r *http.Request, s *session) (map[string]float64, error) {
	res, err := p.call(r.Context(), s, "stats", nil)
	if err != nil {
		return nil, err
	}
	stats, _ := res.(map[string]float64)
	out := make(map[string]float64, len(tiles))
	for name, v := range stats {
		base := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			base = name[:i]
		}
		for _, t := range tiles {
			for _, m := range t.Metrics {
				if m == base {
					out[t.ID] += v
				}
			}
		}
	}
	return out, nil
}

func (p *Panel) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	data := p.common(s, "")
	data["Tiles"] = tiles
	vals, err := p.dashboardValues(r, s)
	if err != nil {
		data["ListError"] = err.Error()
	}
	data["Values"] = vals
	p.render(w, "dashboard", data)
}

// statsJSON is what the dashboard polls: the tiles' values, a few
// hundred bytes.
func (p *Panel) statsJSON(w http.ResponseWriter, r *http.Request, s *session) {
	vals, err := p.dashboardValues(r, s)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(vals)
}
