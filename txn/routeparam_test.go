package txn

import (
	"strings"
	"testing"

	"switchboard/parser"
)

// Parameters a route puts in our Record-Route come back, signed, on every
// request of the dialog, with the direction it goes in; changed or
// removed, the Route no longer verifies.
func TestRecordRouteParams(t *testing.T) {
	h := newHarness(t, nil)
	type seen struct {
		kind RouteKind
		uacc string
		down bool
	}
	var got []seen
	h.rt.request = func(r *Request) {
		if r.HasToTag() {
			got = append(got, seen{r.RouteKind(), string(r.DialogRouteParam("uacc")), r.Downstream()})
			if !r.LooseRoute() {
				r.Reply(403, "Forbidden Route")
				return
			}
		} else {
			r.RecordRoute()
			if r.SetRecordRouteParam([]byte("uac-f"), []byte("a b")) || r.SetRecordRouteParam([]byte("sig"), []byte("1")) {
				t.Error("a parameter with a space, or named sig, was taken")
			}
			r.SetRecordRouteParam([]byte("uacc"), []byte("9"))
			r.SetRecordRouteParam([]byte("uacx"), []byte("Zm9v_-"))
			r.SetRecordRouteParam([]byte("uacc"), []byte("1")) // replaces the 9
		}
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKrp1", "rp@x"))
	msgs := h.snd.take()
	rr := header(msgs[len(msgs)-1].data, "Record-Route")
	want := "<sip:127.0.0.1:5060;lr;uacx=Zm9v_-;uacc=1;sig=" + string(h.core.sigs.appendSigExtra(nil, []byte("rp@x"), []byte("a1"), []byte(";uacx=Zm9v_-;uacc=1"))) + ">"
	if rr != want {
		t.Fatalf("Record-Route %s\nwant         %s", rr, want)
	}

	inDialog := func(method, branch, from, to, route string) string {
		return method + " sip:x@127.0.0.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=" + branch + "\nMax-Forwards: 70\n" +
			"Route: " + route + "\nFrom: " + from + "\nTo: " + to + "\nCall-ID: rp@x\nCSeq: 5 " + method + "\n\n"
	}
	caller, callee := "<sip:alice@127.0.0.1>;tag=a1", "<sip:bob@127.0.0.1>;tag=b1"
	h.in(uacAddr, inDialog("BYE", "z9hG4bKrp2", caller, callee, rr))       // from the caller
	h.in(uasAddr, inDialog("BYE", "z9hG4bKrp3", callee, caller, rr))       // from the callee
	h.in(uacAddr, inDialog("ACK", "z9hG4bKrp4", caller, callee, rr))       // no transaction
	tampered := strings.Replace(rr, "uacc=1", "uacc=2", 1)                 // the caller wants another CSeq offset
	h.in(uacAddr, inDialog("BYE", "z9hG4bKrp5", caller, callee, tampered)) // refused
	stripped := strings.Replace(rr, ";uacx=Zm9v_-;uacc=1", "", 1)          // or none at all
	h.in(uacAddr, inDialog("BYE", "z9hG4bKrp6", caller, callee, stripped)) // refused
	outside := strings.Replace(rr, ";lr;", ";foo=1;lr;", 1)                // not ours to read, not covered
	h.in(uacAddr, inDialog("INFO", "z9hG4bKrp7", caller, callee, outside)) // still ours
	wantSeen := []seen{
		{RouteDialog, "1", true},
		{RouteDialog, "1", false},
		{RouteDialog, "1", true},
		{RouteForged, "", false},
		{RouteForged, "", false},
		{RouteDialog, "1", true},
	}
	if len(got) != len(wantSeen) {
		t.Fatalf("routes seen %+v", got)
	}
	for i := range wantSeen {
		if got[i] != wantSeen[i] {
			t.Errorf("request %d: %+v, want %+v", i, got[i], wantSeen[i])
		}
	}
}

func TestRouteExtra(t *testing.T) {
	for params, want := range map[string]string{
		"lr;sig=0123":                 "",
		"transport=tcp;lr;a=1;sig=01": ";a=1",
		"lr;a=1;b=x;sig=01":           ";a=1;b=x",
		"a=1;lr;sig=01":               "",
		"lr":                          "",
		"sig=01;lr;a=1":               "",
		"LR;a=1;SIG=01":               ";a=1",
	} {
		if got := string(routeExtra([]byte(params))); got != want {
			t.Errorf("routeExtra(%q) = %q, want %q", params, got, want)
		}
	}
	if v := paramValue([]byte(";a=1;bb=22;b=3"), "b"); string(v) != "3" {
		t.Errorf("paramValue b = %q", v)
	}
	if v := paramValue([]byte(";a=1"), "c"); v != nil {
		t.Errorf("paramValue c = %q", v)
	}
}

// Bytes handed to the Editor through Own survive a Suspend while the
// goroutine's scratch memory serves other requests.
func TestOwnSurvivesSuspend(t *testing.T) {
	h := newHarness(t, nil)
	scratch := make([]byte, 0, 64)
	var held *Request
	h.rt.request = func(r *Request) {
		if held != nil {
			r.Reply(486, "")
			return
		}
		scratch = append(scratch[:0], `<sip:trunk@carrier.example>;tag=a1`...)
		r.Editor().SetHeaderValue(parser.HdrFrom, r.Own(scratch))
		scratch = append(scratch[:0], "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"...)
		held = r.Suspend()
	}
	h.in(uacAddr, invite("z9hG4bKown1", "own1@x"))
	for i := 0; i < 5; i++ { // other requests meanwhile
		h.in(uacAddr, invite("z9hG4bKown2"+itoa(i), "own2@x"))
	}
	h.snd.take()
	if err := held.Resume(func(r *Request) { r.Relay() }); err != nil {
		t.Fatal(err)
	}
	out := h.snd.take()
	if len(out) != 1 || header(out[0].data, "From") != "<sip:trunk@carrier.example>;tag=a1" {
		t.Fatalf("relayed after the wait:\n%s", describe(out))
	}
}
