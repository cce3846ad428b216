package pike

import (
	"strconv"
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
)

// harness is a real transaction core and router (routetest's) whose
// request route runs pike's Check first, as the provider route set does,
// and answers 200 to what passes; nothing leaves the process.
type harness struct {
	*routetest.Harness
	p       *Pike
	answers map[string]int // 200s sent, by destination address
	dropped int
}

func newHarness(t testing.TB, s *Settings, groups GroupChecker) *harness {
	t.Helper()
	h := &harness{Harness: routetest.New(t, nil), answers: map[string]int{}}
	if s == nil {
		s = DefaultSettings()
	}
	p, err := New(h.Clock, *s, groups, 8)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	h.Route = func(c *routing.Ctx) {
		if !p.Check(c) {
			h.dropped++
			c.Drop()
			return
		}
		c.ReplyStateless(200, "OK", nil)
	}
	return h
}

var seq int

func options(n int) string {
	return "OPTIONS sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-o" + strconv.Itoa(n) + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@example.com>;tag=t" + strconv.Itoa(n) + "\r\n" +
		"To: <sip:example.com>\r\n" +
		"Call-ID: opt-" + strconv.Itoa(n) + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// receive hands a new OPTIONS to the core as if it came from src over UDP.
func (h *harness) receive(src string) {
	seq++
	h.Receive(src, options(seq))
}

// answered is the number of 200s sent to addr so far.
func (h *harness) answered(addr string) int {
	for _, s := range h.Take() {
		if strings.HasPrefix(s.Data, "SIP/2.0 200") {
			h.answers[s.Dst.Addr().String()]++
		}
	}
	return h.answers[addr]
}
