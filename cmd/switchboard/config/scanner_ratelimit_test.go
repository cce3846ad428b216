package config

import (
	"reflect"
	"strings"
	"testing"

	// Their sections are in default.yaml.
	"switchboard/modules/ratelimit"
	"switchboard/modules/scanner"
)

// TestScannerAndRateLimitErrors: a bad value in the scanner or ratelimit
// section is reported with the file, the line and the key.
func TestScannerAndRateLimitErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"scanner:\n  patterns: [ok, \"re:(\"]\n", `x.yaml:2: scanner.patterns[1]: "re:(": error parsing regexp`},
		{"scanner:\n  action: ban\n", `x.yaml:2: scanner.action: "ban": must be drop or reject`},
		{"ratelimit:\n  pipes:\n    - name: invite\n      limit: 0\n", "x.yaml:4: ratelimit.pipes[0].limit: must be between 1 and"},
		{"ratelimit:\n  pipes:\n    - {name: a, limit: 5, key: ip}\n", `x.yaml:3: ratelimit.pipes[0].key: "ip": must be none, source, user, domain or method`},
		{"ratelimit:\n  pipes:\n    - {name: a, limit: 5, interval: 5x}\n", "x.yaml:3: ratelimit.pipes[0].interval: not a duration"},
		{"ratelimit:\n  pipes:\n    - {name: a, limit: 5, colour: red}\n", "x.yaml:3: ratelimit.pipes[0].colour: unknown key"},
		{"ratelimit:\n  max_keys: 1\n", "x.yaml:2: ratelimit.max_keys: must be between 16 and"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s...", tc.src, err, tc.want)
		}
	}
}

// TestRateLimitPipesReplaceDefaults: pipes in the file replace the default
// pipes whole; a pipe takes nothing from the default at its position.
func TestRateLimitPipesReplaceDefaults(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("ratelimit:\n  pipes:\n    - {name: a, limit: 5}\nscanner:\n  patterns: [x]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rl := cfg.Modules["ratelimit"].(*ratelimit.Settings)
	want := []ratelimit.PipeSettings{{Name: "a", Limit: 5}}
	if !reflect.DeepEqual(rl.Pipes, want) || rl.MaxKeys != ratelimit.DefaultMaxKeys {
		t.Fatalf("pipes %+v, max_keys %d", rl.Pipes, rl.MaxKeys)
	}
	if sc := cfg.Modules["scanner"].(*scanner.Settings); !reflect.DeepEqual(sc.Patterns, []string{"x"}) || len(sc.Fingerprints) != 2 {
		t.Fatalf("scanner %+v", sc)
	}
}
