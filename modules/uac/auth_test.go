package uac

import (
	"fmt"
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
)

const (
	caller  = "127.0.0.1:5070"
	carrier = "127.0.0.5:5090"
)

func trunkCredential(st *store.Store) {
	if _, err := st.AddUACCredential(ctx, store.UACCredential{Realm: "carrier.example", Gateway: carrier, Username: "trunk1", Password: "s3cret"}); err != nil {
		panic(err)
	}
}

func invite(ruri string) string {
	return routetest.Request("INVITE", ruri, "Contact: <sip:alice@127.0.0.1:5070>\r\n")
}

// inDialog is a request of a dialog along route, from one party to the
// other.
func inDialog(method, ruri, branch, from, to, callID, cseq, route string) string {
	return method + " " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + map[bool]string{true: caller, false: carrier}[strings.Contains(from, "alice")] +
		";branch=z9hG4bK" + branch + ";rport\r\nMax-Forwards: 70\r\nRoute: " + route + "\r\nFrom: " + from + "\r\nTo: " + to +
		"\r\nCall-ID: " + callID + "\r\nCSeq: " + cseq + " " + method + "\r\nContent-Length: 0\r\n\r\n"
}

// The carrier challenges the INVITE: it is sent again with digest
// credentials it verifies and the next CSeq; the caller sees its own
// numbers throughout, and the dialog's later requests from the caller
// (the ACK, the BYE) get the carrier's numbering from the signed
// Record-Route, the carrier's own requests are left alone.
func TestUACAuthProxyChallenge(t *testing.T) {
	f := build(t, nil, trunkCredential, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	inv := invite("sip:+4930123@" + carrier)
	h.Receive(caller, inv)
	sent := h.Take()
	first := one(t, sent, carrier, "INVITE ")
	if header(first, "Proxy-Authorization") != "" || header(first, "Record-Route") != "" {
		t.Fatalf("first INVITE:\n%s", first)
	}
	h.Receive(carrier, respond(t, first, 407, "c0", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n0nce1\", qop=\"auth\", algorithm=MD5, opaque=\"op1\"\r\n"))
	sent = h.Take()
	if ack := one(t, sent, carrier, "ACK "); header(ack, "CSeq") != "1 ACK" {
		t.Errorf("ACK of the 407: %s", header(ack, "CSeq"))
	}
	again := one(t, sent, carrier, "INVITE ")
	a := checkDigest(t, header(again, "Proxy-Authorization"), "INVITE", "trunk1", "carrier.example", "s3cret", "n0nce1")
	if string(a.URI) != "sip:+4930123@"+carrier || string(a.Opaque) != "op1" || string(a.NC) != "00000001" || len(a.CNonce) < 8 {
		t.Errorf("credentials %+v", a)
	}
	rr := header(again, "Record-Route")
	if header(again, "CSeq") != "2 INVITE" || !strings.Contains(rr, ";uacc=1;sig=") {
		t.Fatalf("re-sent INVITE: CSeq %q, Record-Route %q", header(again, "CSeq"), rr)
	}
	if len(sentTo(sent, caller, "SIP/2.0 407")) != 0 {
		t.Fatal("the 407 went to the caller")
	}
	h.Receive(carrier, respond(t, again, 180, "c1", ""))
	if r := one(t, h.Take(), caller, "SIP/2.0 180"); header(r, "CSeq") != "1 INVITE" {
		t.Errorf("180 to the caller: CSeq %q", header(r, "CSeq"))
	}
	h.Receive(carrier, respond(t, again, 200, "c1", "Record-Route: "+rr+"\r\nContact: <sip:gw@"+carrier+">\r\n"))
	ok := one(t, h.Take(), caller, "SIP/2.0 200")
	if header(ok, "CSeq") != "1 INVITE" || header(ok, "Record-Route") != rr {
		t.Fatalf("200 to the caller:\n%s", ok)
	}
	if got := f.counter("switchboard_uac_auth_answered_total"); got != 1 {
		t.Errorf("answered %d", got)
	}

	callID, from := header(inv, "Call-ID"), header(inv, "From")
	to := header(inv, "To") + ";tag=c1"
	h.Receive(caller, inDialog("ACK", "sip:gw@"+carrier, "ack1", from, to, callID, "1", rr))
	if ack := one(t, h.Take(), carrier, "ACK "); header(ack, "CSeq") != "2 ACK" {
		t.Errorf("the caller's ACK: CSeq %q, want the re-sent INVITE's 2", header(ack, "CSeq"))
	}
	h.Receive(caller, inDialog("BYE", "sip:gw@"+carrier, "bye1", from, to, callID, "2", rr))
	bye := one(t, h.Take(), carrier, "BYE ")
	if header(bye, "CSeq") != "3 BYE" {
		t.Errorf("the caller's BYE: CSeq %q, want 3 (after the carrier's 2)", header(bye, "CSeq"))
	}
	h.Receive(carrier, respond(t, bye, 200, "", ""))
	if r := one(t, h.Take(), caller, "SIP/2.0 200"); header(r, "CSeq") != "2 BYE" {
		t.Errorf("200 to the caller's BYE: CSeq %q", header(r, "CSeq"))
	}
	h.Receive(carrier, inDialog("BYE", "sip:alice@"+caller, "bye2", to, from, callID, "7", rr))
	if r := one(t, h.Take(), caller, "BYE "); header(r, "CSeq") != "7 BYE" {
		t.Errorf("the carrier's BYE: CSeq %q, its own numbering", header(r, "CSeq"))
	}
	// A PRACK's RAck names the INVITE by the number the carrier knows.
	prack := strings.Replace(inDialog("PRACK", "sip:gw@"+carrier, "prack1", from, to, callID, "3", rr), "Content-Length:", "RAck: 1 1 INVITE\r\nContent-Length:", 1)
	h.Receive(caller, prack)
	if r := one(t, h.Take(), carrier, "PRACK "); header(r, "CSeq") != "4 PRACK" || header(r, "RAck") != "1 2 INVITE" {
		t.Errorf("the caller's PRACK: CSeq %q, RAck %q, want 4 PRACK, 1 2 INVITE", header(r, "CSeq"), header(r, "RAck"))
	}
	// The same with the RAck folded over two lines, which the parser reads.
	prack = strings.Replace(inDialog("PRACK", "sip:gw@"+carrier, "prack2", from, to, callID, "4", rr), "Content-Length:", "RAck: 2\r\n 1 INVITE\r\nContent-Length:", 1)
	h.Receive(caller, prack)
	r := one(t, h.Take(), carrier, "PRACK ")
	var m parser.Message
	if err := m.Parse([]byte(r)); err != nil || strings.Join(strings.Fields(string(m.Get(parser.HdrRAck))), " ") != "2 2 INVITE" {
		t.Errorf("the caller's PRACK with a folded RAck: RAck %q (%v), want 2 2 INVITE", m.Get(parser.HdrRAck), err)
	}
}

// Which challenges are answered, with what, and which are not.
func TestUACAuthChoices(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		trunkCredential(st)
		st.AddUACCredential(ctx, store.UACCredential{Realm: "sha.example", Username: "trunk2", HA1: "0123456789abcdef0123456789abcdef",
			HA1SHA256: hexSHA256("trunk2:sha.example:pw2")})
		st.AddUACCredential(ctx, store.UACCredential{Realm: "md5only.example", Username: "trunk3", HA1: hexMD5("trunk3:md5only.example:pw3")})
	}, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	challenge := func(dst, hdrs string) (first, second string, toCaller []string) {
		t.Helper()
		h.Receive(caller, invite("sip:+4930123@"+dst))
		first = one(t, h.Take(), dst, "INVITE ")
		h.Receive(dst, respond(t, first, 407, "c0", hdrs))
		sent := h.Take()
		if s := sentTo(sent, dst, "INVITE "); len(s) == 1 {
			second = s[0]
		}
		return first, second, sentTo(sent, caller, "SIP/2.0 ")
	}

	// The realm is ours, but the challenge comes from another address
	// than the credential's gateway: a callee fishing for our trunk's
	// digest gets nothing.
	_, again, up := challenge("127.0.0.6:5090", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"x\"\r\n")
	if again != "" || len(up) != 1 || !strings.HasPrefix(up[0], "SIP/2.0 407") {
		t.Fatalf("a challenge from another next hop was answered:\n%s", again)
	}
	if f.counter("switchboard_uac_auth_no_credentials_total") != 1 {
		t.Error("not counted")
	}

	// SHA-256 and MD5 offered, credentials for both (realm only, any
	// next hop): the first the carrier lists is answered, with the HA1.
	_, again, _ = challenge("127.0.0.7:5060", "Proxy-Authenticate: Digest realm=\"sha.example\", nonce=\"s1\", algorithm=SHA-256, qop=\"auth\"\r\n"+
		"Proxy-Authenticate: Digest realm=\"sha.example\", nonce=\"s2\", algorithm=MD5, qop=\"auth\"\r\n")
	checkDigest(t, header(again, "Proxy-Authorization"), "INVITE", "trunk2", "sha.example", "pw2", "s1")

	// Only an MD5 HA1 stored: the SHA-256 challenge is skipped for the
	// MD5 one; no qop (RFC 2069).
	_, again, _ = challenge("127.0.0.7:5060", "Proxy-Authenticate: Digest realm=\"md5only.example\", nonce=\"m1\", algorithm=SHA-256\r\n"+
		"Proxy-Authenticate: Digest realm=\"md5only.example\", nonce=\"m2\"\r\n")
	a := checkDigest(t, header(again, "Proxy-Authorization"), "INVITE", "trunk3", "md5only.example", "pw3", "m2")
	if len(a.QOP) != 0 || len(a.CNonce) != 0 {
		t.Errorf("qop/cnonce without qop in the challenge: %+v", a)
	}

	// Refused again: not answered a second time (no loop), the 407 goes
	// to the caller; with stale=true it is answered again, CSeq 3.
	_, again, _ = challenge(carrier, "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"r1\"\r\n")
	h.Receive(carrier, respond(t, again, 407, "c2", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"r2\"\r\n"))
	sent := h.Take()
	if len(sentTo(sent, carrier, "INVITE ")) != 0 || len(sentTo(sent, caller, "SIP/2.0 407")) != 1 {
		t.Fatal("refused credentials sent again")
	}
	if f.counter("switchboard_uac_auth_rejected_total") != 1 {
		t.Error("rejection not counted")
	}
	_, again, _ = challenge(carrier, "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"t1\"\r\n")
	h.Receive(carrier, respond(t, again, 407, "c2", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"t2\", stale=true\r\n"))
	third := one(t, h.Take(), carrier, "INVITE ")
	checkDigest(t, header(third, "Proxy-Authorization"), "INVITE", "trunk1", "carrier.example", "s3cret", "t2")
	if header(third, "CSeq") != "3 INVITE" || len(headers(third, "Proxy-Authorization")) != 1 || !strings.Contains(header(third, "Record-Route"), ";uacc=2;") {
		t.Errorf("answered after stale: CSeq %q, %d credentials, Record-Route %q", header(third, "CSeq"), len(headers(third, "Proxy-Authorization")), header(third, "Record-Route"))
	}

	// A 401 is answered with Authorization; a challenge whose realm
	// would break out of its quotes is not answered.
	h.Receive(caller, invite("sip:+4930123@"+carrier))
	first := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(carrier, respond(t, first, 401, "c0", "WWW-Authenticate: Digest realm=\"carrier.example\", nonce=\"w1\", qop=\"auth-int,auth\"\r\n"))
	again = one(t, h.Take(), carrier, "INVITE ")
	checkDigest(t, header(again, "Authorization"), "INVITE", "trunk1", "carrier.example", "s3cret", "w1")
	_, again, _ = challenge(carrier, "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"a\\\"b\"\r\n")
	if again != "" {
		t.Errorf("a nonce with a quote was answered:\n%s", again)
	}
}

// A challenge to a request inside a dialog other than BYE is not answered:
// the offset of the dialog's later requests is fixed in its route set.
func TestUACAuthInDialog(t *testing.T) {
	f := build(t, nil, trunkCredential, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, func(c *routing.Ctx) { c.RecordRoute() })
	inv := invite("sip:+4930123@" + carrier)
	h.Receive(caller, inv)
	first := one(t, h.Take(), carrier, "INVITE ")
	rr := header(first, "Record-Route")
	callID, from, to := header(inv, "Call-ID"), header(inv, "From"), header(inv, "To")+";tag=c1"
	for _, c := range []struct {
		method string
		answer bool
	}{{"INVITE", false}, {"BYE", true}} {
		h.Receive(caller, inDialog(c.method, "sip:gw@"+carrier, "d"+c.method, from, to, callID, "5", rr))
		req := one(t, h.Take(), carrier, c.method+" ")
		h.Receive(carrier, respond(t, req, 407, "", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"d1\"\r\n"))
		sent := h.Take()
		if got := len(sentTo(sent, carrier, c.method+" ")) == 1; got != c.answer {
			t.Errorf("%s inside the dialog challenged: answered %v, want %v", c.method, got, c.answer)
		}
	}
	if f.counter("switchboard_uac_auth_refused_total") != 1 {
		t.Error("the refusal is not counted")
	}
}

// TestUACAuthQuotedURI: a Request-URI that cannot go into the digest's
// quoted uri as it is (a parameter ending in a backslash would escape the
// closing quote) is not answered: the challenge goes back to the caller
// rather than credentials that do not parse.
func TestUACAuthQuotedURI(t *testing.T) {
	f := build(t, nil, trunkCredential, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	h.Receive(caller, invite("sip:+4930123@"+carrier+`;x=\`))
	first := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(carrier, respond(t, first, 407, "c0", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n0nce1\", qop=\"auth\", algorithm=MD5\r\n"))
	sent := h.Take()
	if again := sentTo(sent, carrier, "INVITE "); len(again) != 0 {
		t.Fatalf("INVITE sent again with %q", header(again[0], "Proxy-Authorization"))
	}
	one(t, sent, caller, "SIP/2.0 407")
}

// TestUACAuthChallengeLoopBounded: a next hop that answers every
// credential with another challenge, each with a new nonce marked stale
// (or, for a gateway credential of any realm, each for a new realm), gets
// at most maxAuthAnswers digests of the trunk's password per request, as
// the registrant's stale limit does: then its 407 goes to the caller.
// Before, it got one per attempt up to txn.MaxBranches (15), each a
// digest for a nonce and realm of its choosing.
func TestUACAuthChallengeLoopBounded(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		trunkCredential(st)
		if _, err := st.AddUACCredential(ctx, store.UACCredential{Gateway: "127.0.0.8:5090", Username: "trunk9", Password: "pw9"}); err != nil {
			panic(err)
		}
	}, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	for _, c := range []struct {
		name, gw  string
		challenge func(i int) string
	}{
		{"stale", carrier, func(i int) string {
			return fmt.Sprintf("Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n%d\", stale=true\r\n", i)
		}},
		{"new realm", "127.0.0.8:5090", func(i int) string {
			return fmt.Sprintf("Proxy-Authenticate: Digest realm=\"r%d.example\", nonce=\"n%d\"\r\n", i, i)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.Receive(caller, invite("sip:+4930123@"+c.gw))
			req := one(t, h.Take(), c.gw, "INVITE ")
			answered := 0
			var toCaller []string
			for i := 0; i < 20; i++ {
				h.Receive(c.gw, respond(t, req, 407, fmt.Sprintf("c%d", i), c.challenge(i)))
				sent := h.Take()
				toCaller = sentTo(sent, caller, "SIP/2.0 407")
				again := sentTo(sent, c.gw, "INVITE ")
				if len(again) == 0 {
					break
				}
				answered++
				req = again[0]
			}
			if answered != maxAuthAnswers || len(toCaller) != 1 {
				t.Fatalf("the next hop got %d digests, the caller %d 407s; want %d and 1", answered, len(toCaller), maxAuthAnswers)
			}
		})
	}

	// The bound counts a request's own answers: the caller's BYE in a
	// dialog whose INVITE took all three (uacc=3) is still answered.
	inv := invite("sip:+4930123@" + carrier)
	h.Receive(caller, inv)
	req := one(t, h.Take(), carrier, "INVITE ")
	for i := 0; i < maxAuthAnswers; i++ {
		h.Receive(carrier, respond(t, req, 407, "c0", fmt.Sprintf("Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"d%d\", stale=true\r\n", i)))
		req = one(t, h.Take(), carrier, "INVITE ")
	}
	rr := header(req, "Record-Route")
	if !strings.Contains(rr, ";uacc=3;") {
		t.Fatalf("Record-Route %q", rr)
	}
	h.Receive(carrier, respond(t, req, 200, "c1", "Record-Route: "+rr+"\r\nContact: <sip:gw@"+carrier+">\r\n"))
	h.Take()
	callID, from, to := header(inv, "Call-ID"), header(inv, "From"), header(inv, "To")+";tag=c1"
	h.Receive(caller, inDialog("BYE", "sip:gw@"+carrier, "bye1", from, to, callID, "2", rr))
	bye := one(t, h.Take(), carrier, "BYE ")
	h.Receive(carrier, respond(t, bye, 407, "", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"b1\"\r\n"))
	again := one(t, h.Take(), carrier, "BYE ")
	checkDigest(t, header(again, "Proxy-Authorization"), "BYE", "trunk1", "carrier.example", "s3cret", "b1")
	if header(again, "CSeq") != "6 BYE" {
		t.Errorf("the BYE answered: CSeq %q, want 6", header(again, "CSeq"))
	}
}

// TestUACAuthForgedSource: a 407 with the carrier's realm sent from
// another address than the gateway's (a forger who learned the branch,
// the source spoofed or not) is matched to the transaction by its Via
// like any response, but the answer goes where the challenged request
// went, to the gateway: the forger receives no digest, and the gateway
// gets one over the forger's nonce, which it refuses.
func TestUACAuthForgedSource(t *testing.T) {
	f := build(t, nil, trunkCredential, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	const forger = "127.0.0.66:5090"
	h.Receive(caller, invite("sip:+4930123@"+carrier))
	first := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(forger, respond(t, first, 407, "c0", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"forged\"\r\n"))
	sent := h.Take()
	if n := len(sentTo(sent, forger, "")); n != 0 {
		t.Fatalf("%d messages sent to the forger", n)
	}
	again := one(t, sent, carrier, "INVITE ")
	checkDigest(t, header(again, "Proxy-Authorization"), "INVITE", "trunk1", "carrier.example", "s3cret", "forged")
}

// TestUACAuthNoOtherTrunksCredentials: a gateway that has credentials of
// its own gets only those. Challenging with the realm of another trunk
// whose credential is stored for a realm alone (any next hop), carrier A
// got a digest of carrier B's password for a nonce of its choosing; now
// its 407 goes to the caller. A next hop without credentials of its own
// is still answered with the realm's, as uac_auth does.
func TestUACAuthNoOtherTrunksCredentials(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		trunkCredential(st)
		if _, err := st.AddUACCredential(ctx, store.UACCredential{Realm: "carrier-b.example", Username: "trunkB", Password: "pwB"}); err != nil {
			panic(err)
		}
	}, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, nil)
	const challenge = "Proxy-Authenticate: Digest realm=\"carrier-b.example\", nonce=\"fish\"\r\n"
	h.Receive(caller, invite("sip:+4930123@"+carrier))
	first := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(carrier, respond(t, first, 407, "c0", challenge))
	sent := h.Take()
	if again := sentTo(sent, carrier, "INVITE "); len(again) != 0 {
		t.Fatalf("carrier A got trunk B's credentials: %s", header(again[0], "Proxy-Authorization"))
	}
	one(t, sent, caller, "SIP/2.0 407")

	const other = "127.0.0.9:5090"
	h.Receive(caller, invite("sip:+4930123@"+other))
	first = one(t, h.Take(), other, "INVITE ")
	h.Receive(other, respond(t, first, 407, "c0", challenge))
	again := one(t, h.Take(), other, "INVITE ")
	checkDigest(t, header(again, "Proxy-Authorization"), "INVITE", "trunkB", "carrier-b.example", "pwB", "fish")
}
