package txn

import (
	"strings"
	"testing"
	"time"

	"switchboard/parser"
)

// checkAsSent fails unless the response the client got carries its own
// From, To (with toTag when not empty) and CSeq number.
func checkAsSent(t *testing.T, what, resp string, cseq, toTag string) {
	t.Helper()
	wantTo := "<sip:bob@127.0.0.1>"
	if toTag == "*" { // any tag
		_, toTag, _ = strings.Cut(header(resp, "To"), ";tag=")
	}
	if toTag != "" {
		wantTo += ";tag=" + toTag
	}
	if f, to, cs := header(resp, "From"), header(resp, "To"), header(resp, "CSeq"); f != "<sip:alice@127.0.0.1>;tag=a1" || to != wantTo || cs != cseq {
		t.Errorf("%s: From %q To %q CSeq %q, want the client's own:\n%s", what, f, to, cs, resp)
	}
}

// A route that changes From, To and CSeq in the relayed copy: the next hop
// sees the changes, the client never does, in the core's own answers (100,
// 408) as in the responses relayed from downstream (1xx, 2xx and its
// retransmission).
func TestRouteEditsRestoredUpstream(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		ed := r.Editor()
		ed.SetHeaderValue(parser.HdrFrom, []byte(`"Trunk" <sip:+4930100@carrier.example>;tag=a1`))
		ed.SetHeaderValue(parser.HdrTo, []byte(`<sip:+4930999@carrier.example>`))
		ed.SetCSeq(r.Msg.CSeq().Num + 5)
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKr1", "r1@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
	checkAsSent(t, "100 Trying", msgs[0].data, "1 INVITE", "")
	fwd := msgs[1].data
	if f, to, cs := header(fwd, "From"), header(fwd, "To"), header(fwd, "CSeq"); !strings.Contains(f, "+4930100@carrier") || !strings.Contains(to, "+4930999") || cs != "6 INVITE" {
		t.Fatalf("relayed without the route's edits:\n%s", fwd)
	}
	for _, code := range []int{180, 200, 200} {
		h.in(uasAddr, respond(fwd, code, "c1"))
		out := h.snd.take()
		if len(out) != 1 || out[0].dst != uacAddr {
			t.Fatalf("%d: sent %s", code, describe(out))
		}
		checkAsSent(t, out[0].data[:15], out[0].data, "1 INVITE", "c1")
	}

	// A MESSAGE whose next hop never answers: the core's 408 after timer F
	// (RFC 4320 leaves a non-INVITE without it: take an INVITE, timer B).
	h.rt.request = func(r *Request) {
		r.Editor().SetCSeq(r.Msg.CSeq().Num + 1)
		r.SetTimeouts(2*time.Second, 0)
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKr2", "r2@x"))
	h.snd.take()
	h.advance(3 * time.Second)
	out := h.snd.take()
	var got408 bool
	for _, m := range out {
		if m.dst == uacAddr && strings.HasPrefix(m.data, "SIP/2.0 408") {
			got408 = true
			checkAsSent(t, "408", m.data, "1 INVITE", "*")
		}
	}
	if !got408 {
		t.Fatalf("no 408 to the client:\n%s", describe(out))
	}
}

// The failure route re-sends the request with the next CSeq number and
// credentials (uac_auth): the new branch carries them, the CANCEL for it
// the new number too, and the client's responses (the 487 after its own
// CANCEL) its own number.
func TestResentWithNextCSeq(t *testing.T) {
	h := newHarness(t, nil)
	var best *Branch
	h.rt.failure = func(r *Request, m *parser.Message) {
		if m.StatusCode() != 407 {
			return
		}
		best = r.BestBranch()
		ed := r.Editor()
		ed.SetCSeq(r.Msg.CSeq().Num + 1)
		ed.AddHeader("Proxy-Authorization", []byte(`Digest username="trunk"`))
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKr3", "r3@x"))
	msgs := h.snd.take()
	first := msgs[1].data
	h.in(uasAddr, strings.Replace(respond(first, 407, "c1"), "Content-Length: 0", "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n\"\r\nContent-Length: 0", 1))
	out := h.snd.take()
	h.only(out, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
	if best == nil || best.Index() != 0 || best.Code() != 407 {
		t.Fatalf("BestBranch in the failure route: %+v", best)
	}
	if cs := header(out[0].data, "CSeq"); cs != "1 ACK" {
		t.Errorf("ACK of the 407: CSeq %q", cs)
	}
	again := out[1].data
	if cs, pa := header(again, "CSeq"), header(again, "Proxy-Authorization"); cs != "2 INVITE" || pa == "" || topBranch(again) == topBranch(first) {
		t.Fatalf("re-sent INVITE:\n%s", again)
	}
	h.in(uasAddr, respond(again, 180, "c2"))
	out = h.snd.take()
	h.only(out, toUAC+"SIP/2.0 180 Ringing")
	checkAsSent(t, "180", out[0].data, "1 INVITE", "c2")

	h.in(uacAddr, strings.Replace(strings.Replace(invite("z9hG4bKr3", "r3@x"), "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1))
	out = h.snd.take()
	h.only(out, toUAC+"SIP/2.0 200 OK", toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0")
	if cs := header(out[1].data, "CSeq"); cs != "2 CANCEL" {
		t.Errorf("CANCEL of the re-sent INVITE: CSeq %q, want its branch's number", cs)
	}
	h.in(uasAddr, respond(again, 487, "c2"))
	out = h.snd.take()
	var to487 string
	for _, m := range out {
		if m.dst == uacAddr {
			to487 = m.data
		}
	}
	if !strings.HasPrefix(to487, "SIP/2.0 487") {
		t.Fatalf("no 487 upstream:\n%s", describe(out))
	}
	checkAsSent(t, "487", to487, "1 INVITE", "*")
}

// The failure route sees the answer to its latest attempt: after a
// request re-sent from it is challenged again, Best and BestBranch are
// the second challenge, not the first (an equal status on an older
// branch), as in OpenSIPS's and Kamailio's failure routes.
func TestFailureSeesLatestStep(t *testing.T) {
	h := newHarness(t, nil)
	var seen []string
	var idx []int
	h.rt.failure = func(r *Request, m *parser.Message) {
		seen = append(seen, string(m.Get(parser.HdrProxyAuthenticate)))
		idx = append(idx, r.BestBranch().Index())
		if len(seen) < 3 {
			r.Relay()
		}
	}
	h.in(uacAddr, invite("z9hG4bKst1", "st1@x"))
	req := h.snd.take()[1].data
	for i, nonce := range []string{"a", "b", "c"} {
		h.in(uasAddr, strings.Replace(respond(req, 407, "c"+nonce), "Content-Length: 0", "Proxy-Authenticate: Digest realm=\"r\", nonce=\""+nonce+"\"\r\nContent-Length: 0", 1))
		out := h.snd.take()
		if i < 2 {
			req = out[len(out)-1].data
		}
	}
	want := []string{`Digest realm="r", nonce="a"`, `Digest realm="r", nonce="b"`, `Digest realm="r", nonce="c"`}
	for i := range want {
		if i >= len(seen) || seen[i] != want[i] || idx[i] != i {
			t.Fatalf("failure route saw %q on branches %v, want %q on 0, 1, 2", seen, idx, want)
		}
	}
}
