package uac

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

var ctx = context.Background()

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	dir string
	st  *store.Store
	set *modules.Set
	u   *UAC
	m   *metrics.Set
	org *modules.Originator
}

// build opens a store in a new directory, runs seed on it and builds the
// module as the server does (started unless start is false).
func build(t testing.TB, s *Settings, seed func(st *store.Store), org *modules.Originator) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), m: metrics.NewSet(), org: org}
	var err error
	f.st, err = store.Open(f.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if seed != nil {
		seed(f.st)
	}
	if s == nil {
		s = defaultSettings().(*Settings)
		s.PollInterval = 20 * time.Millisecond
	}
	f.set, err = modules.Build(modules.Services{Store: f.st, Clock: shards.NewManualClock(1_700_000_000_000), Metrics: f.m,
		Logger: quiet, DataDir: f.dir, Originator: org}, map[string]any{"uac": s}, "uac")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.set.Stop)
	if err := f.set.Start(); err != nil {
		t.Fatal(err)
	}
	f.u = f.set.Get("uac").(*UAC)
	return f
}

func (f *fixture) counter(name string) uint64 {
	return f.m.GetOrCreateCounter(name).Get()
}

// trunkRoutes is a route set that sends calls to their Request-URI,
// answers a next hop's challenge with UACAuth and restores in-dialog
// requests: the route a provider writes for its trunks.
func trunkRoutes(h *routetest.Harness, u *UAC, initial func(c *routing.Ctx)) {
	h.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			if !c.LooseRoute() {
				c.ReplyStateless(404, "Not here", nil)
				return
			}
			u.Restore(c)
			c.Relay()
			return
		}
		if initial != nil {
			initial(c)
		}
		c.Relay()
	}
	h.Failure = func(c *routing.FailureCtx) {
		if u.UACAuth(c) {
			c.Relay()
		}
	}
}

// respond builds a response to a request the core sent, as a UAS would,
// with extra header lines (each ending in CRLF).
func respond(t *testing.T, req string, code int, toTag, extra string) string {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		t.Fatalf("%v\n%s", err, req)
	}
	var tag []byte
	if toTag != "" {
		tag = []byte(toTag)
	}
	return string(parser.AppendResponseHeaders(nil, &m, code, nil, tag, []byte(extra)))
}

func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func headers(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// sentTo returns the messages sent to dst whose first line starts with
// prefix.
func sentTo(sent []routetest.Sent, dst, prefix string) []string {
	var out []string
	for _, s := range sent {
		if s.Dst.String() == dst && strings.HasPrefix(s.Data, prefix) {
			out = append(out, s.Data)
		}
	}
	return out
}

func one(t *testing.T, sent []routetest.Sent, dst, prefix string) string {
	t.Helper()
	got := sentTo(sent, dst, prefix)
	if len(got) != 1 {
		var lines []string
		for _, s := range sent {
			l, _, _ := strings.Cut(s.Data, "\r\n")
			lines = append(lines, s.Dst.String()+" "+l)
		}
		t.Fatalf("want one %q to %s; sent:\n%s", prefix, dst, strings.Join(lines, "\n"))
	}
	return got[0]
}

// checkDigest verifies credentials the way a carrier does, with its own
// code: the response for the password, the method and the digest URI, for
// the nonce the carrier gave.
func checkDigest(t *testing.T, value, method, user, realm, password, nonce string) parser.Auth {
	t.Helper()
	var a parser.Auth
	if !parser.ParseAuth([]byte(value), &a) {
		t.Fatalf("credentials do not parse: %s", value)
	}
	var h func() hash.Hash
	switch strings.ToUpper(string(a.Algorithm)) {
	case "", "MD5":
		h = md5.New
	case "SHA-256":
		h = sha256.New
	default:
		t.Fatalf("algorithm %q", a.Algorithm)
	}
	hx := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	if string(a.Username) != user || string(a.Realm) != realm || string(a.Nonce) != nonce {
		t.Fatalf("credentials for %q@%q nonce %q: %s", a.Username, a.Realm, a.Nonce, value)
	}
	ha1 := hx(user + ":" + realm + ":" + password)
	ha2 := hx(method + ":" + string(a.URI))
	want := hx(ha1 + ":" + nonce + ":" + ha2)
	if len(a.QOP) > 0 {
		want = hx(ha1 + ":" + nonce + ":" + string(a.NC) + ":" + string(a.CNonce) + ":" + string(a.QOP) + ":" + ha2)
	}
	if string(a.Response) != want {
		t.Fatalf("digest response %s, want %s:\n%s", a.Response, want, value)
	}
	return a
}

func hexMD5(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
