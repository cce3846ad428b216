package registrar

import (
	"strings"
	"testing"
)

// TestSaveRequire: RFC 3261 §10.3 step 2 (§8.2.2.3): a REGISTER requiring
// an extension the registrar lacks gets 420 with Unsupported and changes
// nothing; Require: path is supported.
func TestSaveRequire(t *testing.T) {
	h := newHarness(t, Config{})
	resp := h.request("127.0.0.1:5062", register("alice", "rq1", 1, "Require: gruu, path\r\nContact: <sip:alice@127.0.0.1:5062>\r\n"))
	if statusOf(resp) != "420 Bad Extension" || !strings.Contains(resp, "\r\nUnsupported: gruu\r\n") {
		t.Fatalf("Require: gruu, path: %s", resp)
	}
	if l := h.reg.List(""); len(l) != 0 {
		t.Fatalf("a refused REGISTER stored %+v", l)
	}
	if st := h.reg.Stats(); st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
	resp = h.request("127.0.0.1:5062", register("alice", "rq1", 2, "Require: path\r\nContact: <sip:alice@127.0.0.1:5062>\r\n"))
	if statusOf(resp) != "200 OK" || len(h.reg.List("")) != 1 {
		t.Fatalf("Require: path: %s", resp)
	}
}
