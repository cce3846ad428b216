package panel

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"

	// The modules compiled into the server (cmd/switchboard/plugins.go):
	// the commands the pages name are theirs.
	_ "switchboard/modules/all"
)

// moduleServer is a management server with the commands of every module,
// built as the server builds them (modules.Build with their default
// settings) on a SQLite store of its own.
func moduleServer(t *testing.T) *mgmt.Server {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "0123456789abcdef0123", Logger: log})
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000), Metrics: srv.Metrics(),
		Logger: log, Mgmt: srv, DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	return srv
}

// sample is what a user might type in f: a value of its kind, sent
// through fieldArgs as the panel sends it.
func sample(f Field) string {
	switch f.Kind {
	case "int", "bool":
		return "1"
	case "select":
		for _, o := range f.Options {
			if o != "" {
				return o
			}
		}
	case "const":
		return f.Value
	case "hidden":
		return "1"
	}
	return "x"
}

// argProblem says whether err is a command refusing an argument's name
// or type (as opposed to its value): the form would never work.
func argProblem(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "unknown field") || strings.Contains(s, "cannot unmarshal") || strings.Contains(s, "is not an integer")
}

// checkPages lists what is wrong with pages on srv: a List that is not
// a command or not read-only, a form naming a command srv does not have,
// an argument (filter or field) that the command refuses by name or type.
// Each argument is sent alone, as the panel would send it, so most
// mutating commands stop at a missing required argument; the store is
// the test's own. (A command that ignores its arguments, rtpengine.list,
// cannot refuse a wrong one: only the commands decoding with
// mgmt.DecodeArgs are checked this way.)
func checkPages(t *testing.T, srv *mgmt.Server, pages []*Page) []string {
	t.Helper()
	ctx := context.Background()
	var bad []string
	run := func(where, cmd string, f Field) {
		args, err := fieldArgs([]Field{f}, url.Values{f.Name: {sample(f)}})
		if err != nil {
			bad = append(bad, where+": "+err.Error())
			return
		}
		raw, _ := json.Marshal(args)
		if _, err := srv.Call(ctx, cmd, raw); argProblem(err) {
			bad = append(bad, where+": "+cmd+" "+string(raw)+": "+err.Error())
		}
	}
	slugs := map[string]bool{}
	for _, pg := range pages {
		if slugs[pg.Slug] {
			bad = append(bad, pg.Slug+": two pages with this slug")
		}
		slugs[pg.Slug] = true
		ro, ok := srv.Lookup(pg.List)
		switch {
		case !ok:
			bad = append(bad, pg.Slug+": list command "+pg.List+" does not exist")
		case !ro:
			bad = append(bad, pg.Slug+": list command "+pg.List+" is not read-only")
		}
		for _, f := range pg.Filters {
			run(pg.Slug+" filter "+f.Name, pg.List, f)
		}
		ids := map[string]bool{}
		for _, list := range [][]Form{pg.Forms, pg.RowForms} {
			for _, form := range list {
				where := pg.Slug + "/" + form.ID
				if ids[form.ID] {
					bad = append(bad, where+": two forms with this ID")
				}
				ids[form.ID] = true
				if _, ok := srv.Lookup(form.Cmd); !ok {
					bad = append(bad, where+": command "+form.Cmd+" does not exist")
					continue
				}
				for _, f := range form.Fields {
					run(where+" field "+f.Name, form.Cmd, f)
				}
			}
		}
	}
	return bad
}

// TestPagesNameRealCommands: every page's list command and every form's
// command is one the modules register, a list is read-only, and every
// filter and field is an argument its command takes, of the type the
// panel sends. The check itself finds a page naming a command that does
// not exist, a list that changes state, and a misnamed or mistyped
// argument.
func TestPagesNameRealCommands(t *testing.T) {
	srv := moduleServer(t)
	for _, p := range checkPages(t, srv, Pages) {
		t.Error(p)
	}
	for _, slug := range []string{"aliases", "groups", "fraud", "fraud-events", "trunks", "uac-registrations", "rtpengine"} {
		found := false
		for _, pg := range Pages {
			found = found || pg.Slug == slug
		}
		if !found {
			t.Errorf("no page %s", slug)
		}
	}

	bogus := []*Page{
		{Slug: "a", List: "aliases.lists"},
		{Slug: "b", List: "aliases.add"},
		{Slug: "c", List: "aliases.list", Filters: []Field{text("domian", "", "")},
			Forms: []Form{
				{ID: "add", Cmd: "aliases.insert"},
				{ID: "del", Cmd: "aliases.del", Fields: []Field{hidden("name", "alias")}},
			},
			RowForms: []Form{{ID: "del", Cmd: "uac.credentials.del", Fields: []Field{hidden("id", "id")}}}, // a string id
		},
	}
	got := strings.Join(checkPages(t, srv, bogus), "\n")
	for _, want := range []string{
		"a: list command aliases.lists does not exist",
		"b: list command aliases.add is not read-only",
		`c filter domian: aliases.list {"domian":"x"}: bad arguments: json: unknown field "domian"`,
		"c/add: command aliases.insert does not exist",
		`c/del field name: aliases.del {"name":"1"}`,
		"c/del: two forms with this ID",
		`c/del field id: uac.credentials.del {"id":"1"}: bad arguments: json: cannot unmarshal string`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the check missed %q; it found:\n%s", want, got)
		}
	}
}

// flashOf is the message a page shows after a form.
var flashRE = regexp.MustCompile(`<p class="flash (ok|err)" role="(?:status|alert)">([^<]*)</p>`)

func flashOf(page string) string {
	m := flashRE.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1] + ": " + html.UnescapeString(m[2])
}

// send posts a form of a page and returns the status and the flash the
// page shows next.
func (b *browser) send(csrf, page, form string, vals url.Values) (int, string) {
	b.g.t.Helper()
	vals.Set("csrf", csrf)
	resp, _ := b.post("/ui/"+page+"/"+form, vals)
	_, body := b.get("/ui/" + page)
	return resp.StatusCode, flashOf(body)
}

// TestModulePages drives the new pages against the modules' real
// commands: an admin adds, changes and deletes through each page and
// sees the table change; a read-only user sees the look-up forms (read-only
// commands) and runs them, but no form that changes anything, and a
// delete posted anyway is refused before it runs.
func TestModulePages(t *testing.T) {
	g := panelOn(t, moduleServer(t), nil)
	admin := g.browser()
	csrf := admin.login("admin", "admin password 1")
	must := func(page, form string, vals url.Values, want string) {
		t.Helper()
		code, fl := admin.send(csrf, page, form, vals)
		if code != 303 || !strings.HasPrefix(fl, "ok: ") || !strings.Contains(fl, want) {
			t.Fatalf("%s/%s %v: %d %q, want ok with %q", page, form, vals, code, fl, want)
		}
	}
	must("domains", "add", url.Values{"domain": {"example.com"}}, "example.com")
	must("subscribers", "add", url.Values{"user": {"alice@example.com"}, "password": {"alice password"}}, "added alice@example.com")

	// Aliases.
	must("aliases", "add", url.Values{"alias": {"+33123456789@example.com"}, "target": {"alice@example.com"}}, `"target":"alice@example.com"`)
	if code, fl := admin.send(csrf, "aliases", "add", url.Values{"alias": {"+33123456789@example.com"}, "target": {"alice@example.com"}}); code != 303 || !strings.HasPrefix(fl, "err: ") {
		t.Fatalf("the same alias twice: %d %q, want the command's error", code, fl)
	}
	_, page := admin.get("/ui/aliases?domain=example.com")
	if !strings.Contains(page, `<td data-label="alias">&#43;33123456789@example.com</td>`) || !strings.Contains(page, `action="/ui/aliases/del"`) ||
		!strings.Contains(page, `href="/ui/registrations?aor=alice%40example.com"`) {
		t.Fatalf("aliases page:\n%s", page)
	}
	must("aliases", "lookup", url.Values{"alias": {"+33123456789@example.com"}}, `{"found":true,"target":"alice@example.com"}`)

	// Groups.
	must("groups", "add", url.Values{"user": {"alice@example.com"}, "group": {"pstn"}}, `"group":"pstn"`)
	if _, page := admin.get("/ui/groups?group=pstn"); !strings.Contains(page, `<td data-label="user">alice@example.com</td>`) {
		t.Fatalf("groups page:\n%s", page)
	}

	// Fraud rules: add, change the fields given, see both.
	must("fraud", "add", url.Values{"profile": {"1"}, "prefix": {"0900"}, "cpm_warning": {"5"}, "cpm_critical": {"10"}}, `"prefix":"0900"`)
	_, page = admin.get("/ui/fraud?profile=1")
	id := regexp.MustCompile(`<td data-label="id">(\d+)</td>`).FindStringSubmatch(page)
	if id == nil || !strings.Contains(page, `<td data-label="cpm_critical">10</td>`) {
		t.Fatalf("fraud page:\n%s", page)
	}
	must("fraud", "set", url.Values{"id": {id[1]}, "cpm_critical": {"20"}}, `"cpm_critical":20`)
	if _, page := admin.get("/ui/fraud"); !strings.Contains(page, `<td data-label="cpm_critical">20</td>`) || !strings.Contains(page, `<td data-label="cpm_warning">5</td>`) {
		t.Fatalf("fraud page after the change:\n%s", page)
	}
	must("fraud-events", "reset", url.Values{"user": {"alice@example.com"}}, "counters_cleared")

	// uac: the passwords go in and never come out.
	must("trunks", "add", url.Values{"realm": {"carrier.example"}, "username": {"trunk1"}, "password": {"trunk secret 1"}}, `"secret":"password"`)
	must("uac-registrations", "add", url.Values{"aor": {"sip:+4930123@carrier.example"}, "registrar": {"127.0.0.1:9"}, "password": {"reg secret 2"}, "expires": {"600"}}, `"aor":"sip:+4930123@carrier.example"`)
	for _, p := range []string{"/ui/trunks", "/ui/uac-registrations"} {
		_, page := admin.get(p)
		if strings.Contains(page, "secret 1") || strings.Contains(page, "secret 2") || !strings.Contains(page, `data-label="username">trunk1</td>`) && p == "/ui/trunks" {
			t.Fatalf("%s:\n%s", p, page)
		}
	}
	_, page = admin.get("/ui/uac-registrations")
	if !strings.Contains(page, `<td data-label="aor">sip:&#43;4930123@carrier.example</td>`) || !strings.Contains(page, `<td data-label="expires">600</td>`) {
		t.Fatalf("registrations to carriers:\n%s", page)
	}
	// The row forms send the id as a number (uac.credentials.del takes
	// no string).
	cid := regexp.MustCompile(`action="/ui/trunks/del"[^>]*>\s*<input[^>]*><input[^>]*>\s*<input type="hidden" name="id" value="(\d+)">`).FindStringSubmatch(mustGet(admin, "/ui/trunks"))
	if cid == nil {
		t.Fatal("no delete form on the trunk credential's row")
	}
	must("trunks", "del", url.Values{"id": {cid[1]}}, `"deleted"`)

	// rtpengine: a table row added, disabled from its row, deleted; the
	// Delete button only on table rows.
	must("rtpengine", "add", url.Values{"socket": {"udp:127.0.0.1:9"}, "set": {"1"}, "weight": {"2"}, "description": {"media 1"}}, `"url":"udp:127.0.0.1:9"`)
	_, page = admin.get("/ui/rtpengine")
	if !strings.Contains(page, `<td data-label="source">table</td>`) || strings.Count(page, `action="/ui/rtpengine/del"`) != 1 {
		t.Fatalf("rtpengine page:\n%s", page)
	}
	must("rtpengine", "disable", url.Values{"instance": {"udp:127.0.0.1:9"}, "set": {"1"}}, `"state":"disabled"`)
	must("rtpengine", "enable", url.Values{"instance": {"udp:127.0.0.1:9"}, "set": {"1"}}, `"url":"udp:127.0.0.1:9"`)
	rid := regexp.MustCompile(`<td data-label="id">(\d+)</td>`).FindStringSubmatch(page)
	must("rtpengine", "del", url.Values{"id": {rid[1]}}, `"deleted"`)
	if _, page := admin.get("/ui/rtpengine"); !strings.Contains(page, "0 rows") {
		t.Fatalf("rtpengine page after the delete:\n%s", page)
	}

	// The read-only user.
	viewer := g.browser()
	vcsrf := viewer.login("viewer", "viewer password 1")
	for page, c := range map[string]struct{ shown, hidden []string }{
		"aliases":           {[]string{"lookup"}, []string{"add", "del", "reload"}},
		"groups":            {[]string{"check"}, []string{"add", "del", "reload"}},
		"fraud":             {nil, []string{"add", "set", "del", "reload"}},
		"fraud-events":      {[]string{"stats"}, []string{"reset", "rowreset"}},
		"trunks":            {nil, []string{"add", "del", "reload"}},
		"uac-registrations": {nil, []string{"add", "del", "reload"}},
		"rtpengine":         {nil, []string{"add", "reload", "disable", "enable", "del"}},
	} {
		resp, body := viewer.get("/ui/" + page)
		if resp.StatusCode != 200 || !strings.Contains(body, "Your role is read-only") {
			t.Errorf("%s as viewer: %d, no read-only hint", page, resp.StatusCode)
		}
		for _, f := range c.shown {
			if !strings.Contains(body, `action="/ui/`+page+`/`+f+`"`) {
				t.Errorf("%s as viewer: no %s form", page, f)
			}
		}
		for _, f := range c.hidden {
			if strings.Contains(body, `action="/ui/`+page+`/`+f+`"`) {
				t.Errorf("%s as viewer: the %s form is shown", page, f)
			}
		}
	}
	if code, fl := viewer.send(vcsrf, "groups", "check", url.Values{"user": {"alice@example.com"}, "group": {"pstn"}}); code != 303 || fl != `ok: groups.check: {"member":true}` {
		t.Fatalf("groups.check as viewer: %d %q", code, fl)
	}
	if code, fl := viewer.send(vcsrf, "aliases", "del", url.Values{"alias": {"+33123456789@example.com"}}); code != 403 || !strings.Contains(fl, "read-only") {
		t.Fatalf("aliases.del as viewer: %d %q", code, fl)
	}
	if _, page := viewer.get("/ui/aliases"); !strings.Contains(page, "&#43;33123456789@example.com") {
		t.Fatal("the viewer's refused delete removed the alias")
	}
}

func mustGet(b *browser, path string) string {
	_, body := b.get(path)
	return body
}

// TestSecretsNeverShown: whatever a command returns, fields named
// password, ha1 or ha1_sha256 appear neither in a table nor in the
// message after a form, at any depth.
func TestSecretsNeverShown(t *testing.T) {
	g := newRig(t)
	g.srv.Register("domains.list", mgmt.Command{ReadOnly: true, Run: func(context.Context, json.RawMessage) (any, error) {
		return []map[string]any{{"domain": "a.example", "password": "pw-in-a-list", "nested": map[string]any{"HA1": "ha1-nested"}}}, nil
	}})
	g.srv.Register("domains.add", mgmt.Command{Run: func(context.Context, json.RawMessage) (any, error) {
		return map[string]any{"added": []any{map[string]any{"domain": "b.example", "ha1_sha256": "sha-in-answer"}}}, nil
	}})
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"b.example"}})
	_, page := b.get("/ui/domains")
	for _, secret := range []string{"pw-in-a-list", "ha1-nested", "sha-in-answer", `data-label="password"`} {
		if strings.Contains(page, secret) {
			t.Errorf("the page shows %q:\n%s", secret, page)
		}
	}
	if !strings.Contains(page, `<td data-label="domain">a.example</td>`) || !strings.Contains(page, "b.example") {
		t.Fatalf("the rest is not shown:\n%s", page)
	}
}

// TestListMustBeReadOnly: a page whose list command changes state is not
// run on a page view (a GET, which another site can make a browser send).
func TestListMustBeReadOnly(t *testing.T) {
	g := newRig(t)
	var ran atomic.Int64
	g.srv.Register("domains.list", mgmt.Command{Run: func(context.Context, json.RawMessage) (any, error) {
		ran.Add(1)
		return []string{}, nil
	}})
	b := g.browser()
	b.login("admin", "admin password 1")
	resp, page := b.get("/ui/domains")
	if resp.StatusCode == 200 || ran.Load() != 0 || !strings.Contains(page, "changes state and is not run on a page view") {
		t.Fatalf("a mutating list: %d, ran %d\n%s", resp.StatusCode, ran.Load(), page)
	}
}

// TestSelectOptionsTaken: every option a form's select offers is a value
// its command takes (a command may still refuse the form's other sample
// values, but never by naming the option).
func TestSelectOptionsTaken(t *testing.T) {
	srv := moduleServer(t)
	ctx := context.Background()
	for _, pg := range Pages {
		for _, f := range pg.Forms {
			for _, fd := range f.Fields {
				if fd.Kind != "select" {
					continue
				}
				for _, opt := range fd.Options {
					if opt == "" {
						continue
					}
					vals := url.Values{}
					for _, o := range f.Fields {
						vals.Set(o.Name, sample(o))
					}
					vals.Set(fd.Name, opt)
					args, err := fieldArgs(f.Fields, vals)
					if err != nil {
						t.Fatal(err)
					}
					raw, _ := json.Marshal(args)
					if _, err := srv.Call(ctx, f.Cmd, raw); err != nil && strings.Contains(err.Error(), fd.Name) && strings.Contains(err.Error(), `"`+opt+`"`) {
						t.Errorf("page %s, form %s offers %s=%q, which %s refuses: %v", pg.Slug, f.ID, fd.Name, opt, f.Cmd, err)
					}
				}
			}
		}
	}
}
