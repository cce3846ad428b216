package scanner

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
)

// Rule is a configured pattern or fingerprint and what it blocked.
type Rule struct {
	Rule    string `json:"rule"`
	Kind    string `json:"kind"`
	Blocked uint64 `json:"blocked"`
}

// Block is a blocked request as scanner.blocks lists it.
type Block struct {
	At        time.Time `json:"at"`
	Source    string    `json:"source"`
	Proto     string    `json:"proto"`
	Method    string    `json:"method"`
	Rule      string    `json:"rule"`
	UserAgent string    `json:"user_agent"`
}

// Rules lists the configured patterns then fingerprints, with the number
// of requests each blocked since start.
func (s *Scanner) Rules() []Rule {
	r := s.rules.Load()
	out := make([]Rule, len(r.rule))
	for i, ri := range r.rule {
		out[i] = Rule{Rule: ri.name, Kind: ri.kind, Blocked: ri.count.Load()}
	}
	return out
}

// Recent lists the last blocked requests, newest first (at most the recent
// setting, or limit when smaller and not 0).
func (s *Scanner) Recent(limit int) []Block {
	r := s.rules.Load()
	if limit <= 0 || limit > r.recent.want {
		limit = r.recent.want
	}
	bs := r.recent.list(limit)
	out := make([]Block, len(bs))
	for i := range bs {
		b := &bs[i]
		out[i] = Block{
			At: time.UnixMilli(b.at).UTC(), Source: b.src.String(), Proto: b.proto.String(),
			Method: b.method.String(), Rule: b.rule, UserAgent: string(b.ua[:b.uaLen]),
		}
		if out[i].Method == "" {
			out[i].Method = "other"
		}
	}
	return out
}

func (s *Scanner) registerCommands() {
	s.h.Command("scanner.patterns", mgmt.Command{
		Help:     "the User-Agent patterns and fingerprints, the action, and how many requests each blocked",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			action := ActionDrop
			if s.rules.Load().reject {
				action = ActionReject
			}
			return map[string]any{"action": action, "rules": s.Rules()}, nil
		},
	})
	s.h.Command("scanner.blocks", mgmt.Command{
		Help:     `the last requests blocked, newest first; args {"limit": n}`,
		ReadOnly: true,
		Run: func(_ context.Context, args json.RawMessage) (any, error) {
			var a struct {
				Limit int `json:"limit"`
			}
			if len(args) > 0 {
				if err := json.Unmarshal(args, &a); err != nil {
					return nil, &mgmt.ArgError{Msg: "arguments: " + err.Error()}
				}
				if a.Limit < 0 {
					return nil, &mgmt.ArgError{Msg: "limit: must not be negative"}
				}
			}
			return s.Recent(a.Limit), nil
		},
	})
}

// registerMetrics exposes switchboard_scanner_blocked_total, labelled by
// pattern or by fingerprint, for the rules configured now.
func (s *Scanner) registerMetrics() {
	s.h.Metrics.RegisterMetricsWriter(func(w io.Writer) {
		r := s.rules.Load()
		for _, ri := range r.rule {
			label := "pattern"
			if ri.kind == "fingerprint" {
				label = "fingerprint"
			}
			metrics.WriteCounterUint64(w, `switchboard_scanner_blocked_total{`+label+`="`+escapeLabel(ri.name)+`"}`, ri.count.Load())
		}
	})
}

// escapeLabel escapes a Prometheus label value (patterns may hold quotes
// and backslashes).
func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\"\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
