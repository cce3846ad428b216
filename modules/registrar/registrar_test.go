package registrar

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/store"
)

func TestSaveListsBindings(t *testing.T) {
	h := newHarness(t, Config{})
	resp := h.request("127.0.0.1:5062", register("alice", "c1", 1, "Contact: <sip:alice@127.0.0.1:5062>\r\n"))
	if statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER: %s", resp)
	}
	if got := contacts(resp); len(got) != 1 || got[0] != "<sip:alice@127.0.0.1:5062>;expires=3600" {
		t.Fatalf("200 contacts %q", got)
	}
	// A second device, with Expires header and a q; the 200 lists both.
	resp = h.request("127.0.0.1:5064", register("alice", "c2", 1, "Contact: <sip:alice@127.0.0.1:5064>;q=0.5\r\nExpires: 600\r\n"))
	got := contacts(resp)
	if len(got) != 2 {
		t.Fatalf("200 contacts %q", got)
	}
	want := map[string]bool{"<sip:alice@127.0.0.1:5062>;expires=3600": true, "<sip:alice@127.0.0.1:5064>;expires=600;q=0.5": true}
	for _, c := range got {
		if !want[c] {
			t.Errorf("unexpected contact %q in %q", c, got)
		}
	}
	// A query (no Contact) lists without changing.
	resp = h.request("127.0.0.1:5064", register("alice", "c3", 1, ""))
	if len(contacts(resp)) != 2 {
		t.Fatalf("query: %s", resp)
	}
	l := h.reg.List("alice@EXAMPLE.com")
	if len(l) != 2 || l[0].Contact != "sip:alice@127.0.0.1:5062" || l[0].UserAgent != "test-phone" || l[0].Received != "udp:127.0.0.1:5062" || l[0].NAT {
		t.Fatalf("List: %+v", l)
	}
	if st := h.reg.Stats(); st.AORs != 1 || st.Bindings != 2 || st.Saved != 2 {
		t.Fatalf("Stats %+v", st)
	}
}

func TestExpiresRules(t *testing.T) {
	h := newHarness(t, Config{MinExpires: 60 * time.Second, MaxExpires: 7200 * time.Second, DefaultExpires: 3600 * time.Second})
	resp := h.request("127.0.0.1:5062", register("bob", "c1", 1, "Contact: <sip:bob@127.0.0.1:5062>\r\nExpires: 30\r\n"))
	if statusOf(resp) != "423 Interval Too Brief" || !strings.Contains(resp, "\r\nMin-Expires: 60\r\n") {
		t.Fatalf("short Expires: %s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("bob", "c1", 2, "Contact: <sip:bob@127.0.0.1:5062>;expires=10\r\nExpires: 300\r\n"))
	if statusOf(resp) != "423 Interval Too Brief" {
		t.Fatalf("contact expires param must win over the header: %s", resp)
	}
	if len(h.reg.List("")) != 0 {
		t.Fatal("a refused REGISTER stored something")
	}
	resp = h.request("127.0.0.1:5062", register("bob", "c1", 3, "Contact: <sip:bob@127.0.0.1:5062>;expires=99999\r\n"))
	if got := contacts(resp); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=7200") {
		t.Fatalf("maximum not applied: %q", got)
	}
	resp = h.request("127.0.0.1:5062", register("bob", "c1", 4, "Contact: <sip:bob@127.0.0.1:5062>;expires=120\r\n"))
	if got := contacts(resp); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=120") {
		t.Fatalf("refresh: %q", got)
	}
	// Expires 0 on the contact removes it.
	resp = h.request("127.0.0.1:5062", register("bob", "c1", 5, "Contact: <sip:bob@127.0.0.1:5062>;expires=0\r\n"))
	if statusOf(resp) != "200 OK" || len(contacts(resp)) != 0 || len(h.reg.List("bob@example.com")) != 0 {
		t.Fatalf("remove: %s", resp)
	}
}

func TestWildcardAndOrdering(t *testing.T) {
	h := newHarness(t, Config{})
	h.request("127.0.0.1:5062", register("carol", "c1", 5, "Contact: <sip:carol@127.0.0.1:5062>\r\n"))
	h.request("127.0.0.1:5064", register("carol", "c2", 1, "Contact: <sip:carol@127.0.0.1:5064>\r\n"))
	// An older CSeq with the same Call-ID fails (RFC 3261 §10.3 step 7);
	// TestCSeqOrder has the details.
	resp := h.request("127.0.0.1:5062", register("carol", "c1", 4, "Contact: <sip:carol@127.0.0.1:5062>;expires=0\r\n"))
	if statusOf(resp) != "400 Out of Order CSeq" || len(h.reg.List("carol@example.com")) != 2 {
		t.Fatalf("old CSeq: %s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("carol", "c9", 1, "Contact: *\r\n"))
	if statusOf(resp) != "400 Invalid Wildcard Contact" {
		t.Fatalf("* without Expires 0: %s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("carol", "c9", 2, "Contact: *\r\nContact: <sip:x@127.0.0.1>\r\nExpires: 0\r\n"))
	if statusOf(resp) != "400 Invalid Wildcard Contact" {
		t.Fatalf("* with another contact: %s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("carol", "c9", 3, "Contact: *\r\nExpires: 0\r\n"))
	if statusOf(resp) != "200 OK" || len(contacts(resp)) != 0 || len(h.reg.List("")) != 0 {
		t.Fatalf("unregister all: %s\n%+v", resp, h.reg.List(""))
	}
}

func TestInstanceReplacesOldBinding(t *testing.T) {
	h := newHarness(t, Config{})
	inst := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`
	h.request("127.0.0.1:5062", register("dave", "c1", 1, "Contact: <sip:dave@127.0.0.1:5062>"+inst+"\r\n"))
	// The phone comes back from another address with a new Call-ID.
	resp := h.request("127.0.0.1:6000", register("dave", "c2", 1, "Contact: <sip:dave@127.0.0.1:6000>"+inst+"\r\n"))
	got := contacts(resp)
	if len(got) != 1 || !strings.HasPrefix(got[0], "<sip:dave@127.0.0.1:6000>;+sip.instance=") || !strings.Contains(got[0], ";reg-id=1;expires=") {
		t.Fatalf("instance not replaced: %q", got)
	}
	l := h.reg.List("dave@example.com")
	if len(l) != 1 || l[0].Instance != "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" || l[0].RegID != 1 {
		t.Fatalf("List %+v", l)
	}
}

func TestMaxContacts(t *testing.T) {
	h := newHarness(t, Config{MaxContacts: 2})
	h.request("127.0.0.1:5062", register("erin", "c1", 1, "Contact: <sip:erin@127.0.0.1:5062>\r\nContact: <sip:erin@127.0.0.1:5063>\r\n"))
	resp := h.request("127.0.0.1:5064", register("erin", "c2", 1, "Contact: <sip:erin@127.0.0.1:5064>\r\n"))
	if statusOf(resp) != "503 Too Many Registered Contacts" || len(h.reg.List("")) != 2 {
		t.Fatalf("third contact: %s", resp)
	}
	// Replacing one in the same request is within the limit.
	resp = h.request("127.0.0.1:5064", register("erin", "c2", 2, "Contact: <sip:erin@127.0.0.1:5062>;expires=0\r\nContact: <sip:erin@127.0.0.1:5064>\r\n"))
	if statusOf(resp) != "200 OK" || len(contacts(resp)) != 2 {
		t.Fatalf("swap: %s", resp)
	}
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t, Config{})
	for _, tc := range []struct{ hdr, want string }{
		{"Contact: <mailto:x@example.com>\r\n", "400 Bad Contact"},
		{"Contact: <sip:@>\r\n", "400 Bad Contact"},
		// An instance that is not UTF-8 would not read back the same
		// from Redis on another node, nor from PostgreSQL.
		{"Contact: <sip:fred@192.0.2.1>;+sip.instance=\"<urn:uuid:\xfe>\";reg-id=1\r\n", "400 Bad Contact"},
	} {
		if resp := h.request("127.0.0.1:5062", register("fred", "c1", 1, tc.hdr)); statusOf(resp) != tc.want {
			t.Errorf("%q: %s", tc.hdr, statusOf(resp))
		}
	}
	other := strings.ReplaceAll(register("fred", "c1", 1, "Contact: <sip:fred@127.0.0.1>\r\n"), "To: <sip:fred@example.com>", "To: <sip:fred@example.org>")
	if resp := h.request("127.0.0.1:5062", other); statusOf(resp) != "404 Not Found" {
		t.Errorf("To of a domain not served: %s", statusOf(resp))
	}
}

func TestLookupNATAndQGroups(t *testing.T) {
	h := newHarness(t, Config{})
	// Behind NAT: the contact says 192.0.2.10:5060 but the REGISTER came
	// from 127.0.0.1:40000. Calls must go to the source address.
	h.request("127.0.0.1:40000", register("gina", "c1", 1, "Contact: <sip:gina@192.0.2.10:5060>;q=1\r\n"))
	// Two more on one lower q: tried together after the first fails.
	h.request("127.0.0.1:5064", register("gina", "c2", 1, "Contact: <sip:gina@127.0.0.1:5064>;q=0.5\r\n"))
	h.request("127.0.0.1:5065", register("gina", "c3", 1, "Contact: <sip:gina@127.0.0.1:5065>;q=0.5\r\n"))
	// And one lower still.
	h.request("127.0.0.1:5066", register("gina", "c4", 1, "Contact: <sip:gina@127.0.0.1:5066>;q=0.1\r\n"))

	h.take()
	h.receive("127.0.0.1:5080", invite("gina"))
	out := invitesSent(h.take())
	if len(out) != 1 || out[0].dst.String() != "127.0.0.1:40000" || !strings.HasPrefix(out[0].data, "INVITE sip:gina@192.0.2.10:5060 SIP/2.0\r\n") {
		t.Fatalf("first group: %+v", out)
	}
	h.receive("127.0.0.1:40000", responseTo(t, out[0].data, 486, "Busy Here"))
	out = invitesSent(h.take())
	dsts := map[string]bool{}
	for _, s := range out {
		dsts[s.dst.String()] = true
	}
	if len(out) != 2 || !dsts["127.0.0.1:5064"] || !dsts["127.0.0.1:5065"] {
		t.Fatalf("second group (parallel): %+v", out)
	}
	for _, s := range out {
		h.receive(s.dst.String(), responseTo(t, s.data, 480, "Temporarily Unavailable"))
	}
	out = invitesSent(h.take())
	if len(out) != 1 || out[0].dst.String() != "127.0.0.1:5066" {
		t.Fatalf("third group: %+v", out)
	}
	h.receive("127.0.0.1:5066", responseTo(t, out[0].data, 200, "OK"))
	final := h.take()
	found := false
	for _, s := range final {
		if strings.HasPrefix(s.data, "SIP/2.0 200 OK") && s.dst.String() == "127.0.0.1:5080" {
			found = true
		}
	}
	if !found {
		t.Fatalf("200 not forwarded to the caller: %+v", final)
	}

	// An unknown user gets the route's 480.
	if resp := h.request("127.0.0.1:5080", invite("nobody")); statusOf(resp) != "480 Temporarily Unavailable" {
		t.Fatalf("unknown: %s", resp)
	}
}

func TestLookupPath(t *testing.T) {
	h := newHarness(t, Config{})
	h.request("127.0.0.1:5070", register("hank", "c1", 1, "Path: <sip:edge@127.0.0.1:5070;lr>\r\nContact: <sip:hank@192.0.2.20:5060>\r\n"))
	h.take()
	h.receive("127.0.0.1:5080", invite("hank"))
	out := invitesSent(h.take())
	if len(out) != 1 || out[0].dst.String() != "127.0.0.1:5070" || !strings.Contains(out[0].data, "\r\nRoute: <sip:edge@127.0.0.1:5070;lr>\r\n") {
		t.Fatalf("Path not used: %+v", out)
	}
	if l := h.reg.List("hank@example.com"); len(l) != 1 || l[0].Path != "<sip:edge@127.0.0.1:5070;lr>" {
		t.Fatalf("List %+v", l)
	}
}

func TestExpiry(t *testing.T) {
	h := newHarness(t, Config{MinExpires: time.Second})
	h.request("127.0.0.1:5062", register("ivan", "c1", 1, "Contact: <sip:ivan@127.0.0.1:5062>;expires=5\r\nContact: <sip:ivan@127.0.0.1:5063>;expires=10\r\n"))
	h.clock.Advance(4999 * time.Millisecond)
	if len(h.reg.List("ivan@example.com")) != 2 {
		t.Fatal("expired early")
	}
	h.clock.Advance(time.Millisecond)
	if l := h.reg.List("ivan@example.com"); len(l) != 1 || l[0].Contact != "sip:ivan@127.0.0.1:5063" {
		t.Fatalf("after 5 s: %+v", l)
	}
	h.clock.Advance(5 * time.Second)
	if st := h.reg.Stats(); st.AORs != 0 || st.Expired != 2 {
		t.Fatalf("after 10 s: %+v", st)
	}
	if resp := h.request("127.0.0.1:5080", invite("ivan")); statusOf(resp) != "480 Temporarily Unavailable" {
		t.Fatalf("expired user still reachable: %s", resp)
	}
}

func TestPersistAndLoad(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := st.NewLocationWriter(store.WriterOptions{})
	h := newHarness(t, Config{Writer: w})
	inst := `;+sip.instance="<urn:uuid:1>";reg-id=2`
	h.request("127.0.0.1:40000", register("judy", "c1", 1, "Contact: <sip:judy@192.0.2.30:5060>;q=0.7"+inst+"\r\n"))
	h.request("127.0.0.1:5064", register("judy", "c2", 1, "Contact: <sip:judy@127.0.0.1:5064>\r\n"))
	h.request("127.0.0.1:5065", register("kim", "c3", 1, "Contact: <sip:kim@127.0.0.1:5065>\r\n"))
	h.request("127.0.0.1:5065", register("kim", "c3", 2, "Contact: *\r\nExpires: 0\r\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	before := h.reg.List("")

	h2 := newHarness(t, Config{})
	h2.clock.Set(h.clock.Now())
	n, err := h2.reg.Load(context.Background(), st)
	if err != nil || n != 2 {
		t.Fatalf("Load: %d %v", n, err)
	}
	after := h2.reg.List("")
	if len(after) != len(before) {
		t.Fatalf("loaded %+v, had %+v", after, before)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("binding %d:\n had %+v\n got %+v", i, before[i], after[i])
		}
	}
	// The loaded NAT binding is still reached at its source address.
	h2.take()
	h2.receive("127.0.0.1:5080", invite("judy"))
	out := invitesSent(h2.take())
	if len(out) != 1 || out[0].dst.String() != "127.0.0.1:5064" {
		t.Fatalf("after load, first branch %+v", out)
	}
	w.Close()
}

func TestManagementDelete(t *testing.T) {
	h := newHarness(t, Config{})
	h.request("127.0.0.1:5062", register("lea", "c1", 1, "Contact: <sip:lea@127.0.0.1:5062>\r\nContact: <sip:lea@127.0.0.1:5063>\r\n"))
	h.request("127.0.0.1:5062", register("max", "c2", 1, "Contact: <sip:max@127.0.0.1:5062>\r\n"))
	if n, err := h.reg.Delete("lea@example.com", "sip:lea@127.0.0.1:5063"); n != 1 || err != nil {
		t.Fatalf("Delete one: %d %v", n, err)
	}
	if l := h.reg.List("lea@example.com"); len(l) != 1 {
		t.Fatalf("after delete: %+v", l)
	}
	if n, err := h.reg.Flush(); n != 2 || err != nil || len(h.reg.List("")) != 0 {
		t.Fatalf("Flush: %d %v", n, err)
	}
}

func invitesSent(ss []sent) []sent {
	var out []sent
	for _, s := range ss {
		if strings.HasPrefix(s.data, "INVITE ") {
			out = append(out, s)
		}
	}
	return out
}

func TestMemoryCap(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 64 << 10, Shards: 1})
	full := -1
	for i := 0; i < 1000; i++ {
		u := "user" + itoa(i)
		resp := h.request("127.0.0.1:5062", register(u, "m"+u, 1, "Contact: <sip:"+u+"@127.0.0.1:5062>\r\n"))
		if statusOf(resp) == "503 Registrar Full" {
			full = i
			break
		}
		if statusOf(resp) != "200 OK" {
			t.Fatalf("user %d: %s", i, resp)
		}
	}
	t.Logf("full after %d AORs", full)
	if full < 10 {
		t.Fatalf("cap reached after %d users", full)
	}
	st := h.reg.tbl.Stats()
	if st.Bytes > 64<<10 {
		t.Fatalf("accounted %d bytes over the 64 KiB cap", st.Bytes)
	}
	// Refreshes and removals still work when full.
	if resp := h.request("127.0.0.1:5062", register("user0", "muser0", 2, "Contact: <sip:user0@127.0.0.1:5062>\r\n")); statusOf(resp) != "200 OK" {
		t.Fatalf("refresh when full: %s", resp)
	}
	if resp := h.request("127.0.0.1:5062", register("user1", "muser1", 2, "Contact: *\r\nExpires: 0\r\n")); statusOf(resp) != "200 OK" {
		t.Fatalf("removal when full: %s", resp)
	}
	if st := h.reg.Stats(); st.AORs != full-1 {
		t.Fatalf("AORs %d, want %d", st.AORs, full-1)
	}
}

// TestLoadSkipsBadStoredRows: stored location rows written by hand or by
// another tool with a value a binding cannot hold (q 5000, a negative
// cseq) are logged with what is wrong and left out; the others load, and
// a row with q -1 (OpenSIPS's "no q") loads with the default q 1. Before,
// one such row failed Load, and with it the registrar's and the server's
// start ("loading the stored bindings: ... invalid syntax").
func TestLoadSkipsBadStoredRows(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := int64(1_700_000_000)
	if err := st.ApplyBindings(context.Background(), []store.BindingOp{{Kind: store.OpUpsert, Binding: store.Binding{
		AOR: "alice@example.com", Contact: "sip:alice@127.0.0.1:5062", Expires: clock + 3600, Q: 500}}}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, store.DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range []struct {
		user string
		q    int64
		cseq int64
	}{{"bob", -1, 1}, {"carol", 5000, 1}, {"dave", 1000, -1}} {
		if _, err := db.Exec(`INSERT INTO location (aor, binding_key, contact, q, expires, cseq, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.user+"@example.com", "k", "sip:"+r.user+"@127.0.0.1:5070", r.q, clock+3600, r.cseq, clock); err != nil {
			t.Fatal(err)
		}
	}
	logs := &strings.Builder{}
	h := newHarness(t, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	n, err := h.reg.Load(context.Background(), st)
	if err != nil || n != 2 {
		t.Fatalf("Load: %d bindings, %v; want alice and bob", n, err)
	}
	if l := h.reg.List("bob@example.com"); len(l) != 1 || l[0].Q != 1 {
		t.Fatalf("bob (q -1): %+v, want q 1", l)
	}
	for _, w := range []string{"carol@example.com: q 5000 outside 0 to 1000", "dave@example.com: cseq -1 outside 0 to 4294967295"} {
		if !strings.Contains(logs.String(), "registrar: stored binding not loaded") || !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs)
		}
	}
}
