package scanner

import (
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"switchboard/parser"
)

func compile(t testing.TB, pats ...string) *uaMatcher {
	t.Helper()
	ps := make([]pattern, len(pats))
	for i, s := range pats {
		p, err := parsePattern(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		ps[i] = p
	}
	return newUAMatcher(ps)
}

func TestPatternForms(t *testing.T) {
	m := compile(t, DefaultPatterns...)
	rule := func(p string) int {
		for i, d := range DefaultPatterns {
			if d == p {
				return i
			}
		}
		t.Fatalf("no default pattern %q", p)
		return -1
	}
	for _, tc := range []struct {
		ua   string
		want int
	}{
		{"friendly-scanner", rule("friendly-scanner")},
		{"Friendly-Scanner", rule("friendly-scanner")},
		{"x FRIENDLY-SCANNER/1.0", rule("friendly-scanner")},
		{"sipcli/v1.8", rule("^sipcli/")},
		{"SIPCLI/v1.8", rule("^sipcli/")},
		{"VaxSIPUserAgent/3.1", rule("VaxSIPUserAgent")},
		{"my vaxsipuseragent", rule("VaxSIPUserAgent")},
		{"iWar", rule("^iWar")},
		{"pplsip", rule("^pplsip")},
		{"sipvicious 0.3.4", rule("sipvicious")},
		// Phones, and near misses.
		{"MySIPClient 2.0", -1}, // "sipcli" inside, but not at the start with a slash
		{"x sipcli/v1.8", -1},
		{"Kiwar 1.0", -1},
		{"baresip v1.0.0 (x86_64/linux)", -1},
		{"Linphonec/5.1.65", -1},
		{"Grandstream GXP2170 1.0.11.3", -1},
		{"friendly-scanne", -1},
		{"", -1},
	} {
		if got := m.match([]byte(tc.ua)); got != tc.want {
			t.Errorf("%q matched rule %d, want %d", tc.ua, got, tc.want)
		}
	}
}

func TestAnchoredAndRegexp(t *testing.T) {
	m := compile(t, "^start", "end$", "^Exact$", `re:^Bad[0-9]+$`, "^^caret", "dollar$$")
	for _, tc := range []struct {
		ua   string
		want int
	}{
		{"START of it", 0}, {"not the start", -1},
		{"the END", 1}, {"the end.", -1},
		{"exact", 2}, {"exact ", -1}, {" exact", -1},
		{"Bad42", 3}, {"bad42", -1}, {"Bad42x", -1},
		{"^caret", 4}, {"caret", -1},
		{"dollar$", 5}, {"dollar", -1},
	} {
		if got := m.match([]byte(tc.ua)); got != tc.want {
			t.Errorf("%q matched rule %d, want %d", tc.ua, got, tc.want)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, p := range []string{"", "^", "$", "^$", "re:(", "re:.*", "re:x?", strings.Repeat("x", 129), "a\x00b", "tab\there"} {
		if _, err := parsePattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	for _, p := range []string{"x", strings.Repeat("x", 128), "re:(?i)^sip", "spaces are fine", "ünïcode"} {
		if _, err := parsePattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
}

// TestAutomatonAgainstNaive checks the automaton on random patterns over a
// small alphabet (many overlaps: patterns inside patterns, shared
// prefixes and suffixes) against a plain search: it finds a pattern
// exactly when one occurs, and the one it reports does occur.
func TestAutomatonAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcAB"[rng.IntN(5)]
		}
		return string(b)
	}
	for round := 0; round < 300; round++ {
		pats := make([]string, 1+rng.IntN(8))
		for i := range pats {
			pats[i] = word(1 + rng.IntN(5))
		}
		m := compile(t, pats...)
		for k := 0; k < 50; k++ {
			ua := word(rng.IntN(30))
			got := m.match([]byte(ua))
			any := false
			for _, p := range pats {
				any = any || strings.Contains(strings.ToLower(ua), strings.ToLower(p))
			}
			switch {
			case got < 0 && any:
				t.Fatalf("patterns %q: %q not matched", pats, ua)
			case got >= 0 && !strings.Contains(strings.ToLower(ua), strings.ToLower(pats[got])):
				t.Fatalf("patterns %q: %q matched %q, which it does not contain", pats, ua, pats[got])
			}
		}
	}
}

// readMessages reads a file of messages, each after a "=== name" line,
// written with LF line ends; it returns them with CRLF and a
// Content-Length that fits their body.
func readMessages(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cl := regexp.MustCompile(`(?m)^Content-Length: *\d+$`)
	out := map[string]string{}
	for _, part := range strings.Split(string(b), "=== ")[1:] {
		name, msg, _ := strings.Cut(part, "\n")
		head, body, _ := strings.Cut(msg, "\n\n")
		body = strings.TrimRight(body, "\n")
		if body != "" {
			body = strings.ReplaceAll(body, "\n", "\r\n") + "\r\n"
		}
		head = cl.ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body)))
		out[name] = strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body
	}
	return out
}

func parse(t *testing.T, msg string) *parser.Message {
	t.Helper()
	m := new(parser.Message)
	if err := m.Parse([]byte(msg)); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	return m
}

// TestFingerprintsOnSIPVicious: every request SIPVicious 0.3.3 sent to a
// UDP listener (testdata/sipvicious-0.3.3.txt: svmap, svmap -c without
// User-Agent, svwar, svcrack) has both fingerprints; the first requests of
// baresip, linphonec and sipp (testdata/phones.txt, captured the same way)
// have neither.
func TestFingerprintsOnSIPVicious(t *testing.T) {
	sv := readMessages(t, "testdata/sipvicious-0.3.3.txt")
	if len(sv) != 6 {
		t.Fatalf("%d SIPVicious messages", len(sv))
	}
	for name, msg := range sv {
		m := parse(t, msg)
		for _, f := range fingerprints {
			if !f.match(m) {
				t.Errorf("%s: %s does not match", name, f.name)
			}
		}
	}
	phones := readMessages(t, "testdata/phones.txt")
	if len(phones) != 3 {
		t.Fatalf("%d phone messages", len(phones))
	}
	for name, msg := range phones {
		m := parse(t, msg)
		for _, f := range fingerprints {
			if f.match(m) {
				t.Errorf("%s: %s matches", name, f.name)
			}
		}
		if r := compile(t, DefaultPatterns...).match(m.UserAgent()); r >= 0 {
			t.Errorf("%s: User-Agent %q matches %q", name, m.UserAgent(), DefaultPatterns[r])
		}
	}
}

func TestCreateTagShape(t *testing.T) {
	for tag, want := range map[string]bool{
		"3766303030303031336537360133393135353936363831": true,  // svmap: "7f0000013e76" 01 "3915596681"
		"3130300131393734313131333636":                   true,  // svwar: "100" 01 "1974111366"
		"313030":                                         false, // no 0x01
		"0131323334":                                     false, // nothing before the 0x01
		"31303001":                                       false, // no digits after it
		"3130300131613334":                               false, // "1a34": not all digits
		"3130300101313233":                               false, // two 0x01
		"1f30300131323334":                               false, // control byte before
		"3766303030303031336537360133393135353936363831a":  false,
		"3766303030303031336537360133393135353936363831AB": false,
		"2582d0b3405ba440": false, // baresip
		"3206210844":       false, // svcrack's constant is matched on its own
	} {
		if got := isCreateTag([]byte(tag)); got != want {
			t.Errorf("isCreateTag(%s) = %v", tag, got)
		}
	}
}

// BenchmarkMatch is the User-Agent match against the default patterns:
// a phone (no match), a scanner, and a 4 KB forged User-Agent; and the
// same with 256 patterns, which costs the same per byte.
func BenchmarkMatch(b *testing.B) {
	many := append([]string(nil), DefaultPatterns...)
	for i := len(many); i < 256; i++ {
		many = append(many, "scanner-"+strconv.Itoa(i*7919))
	}
	long := strings.Repeat("Mozilla/5.0 (compatible) ", 4096/25)
	for _, set := range []struct {
		name string
		pats []string
	}{{"default", DefaultPatterns}, {"256", many}} {
		m := compile(b, set.pats...)
		for _, ua := range []struct{ name, ua string }{
			{"phone", "Linphonec/5.1.65 (belle-sip/5.1.55)"},
			{"scanner", "friendly-scanner"},
			{"4KB", long},
		} {
			b.Run(set.name+"/"+ua.name, func(b *testing.B) {
				u := []byte(ua.ua)
				b.ReportAllocs()
				b.SetBytes(int64(len(u)))
				for b.Loop() {
					m.match(u)
				}
			})
		}
	}
}
