package panel

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"switchboard/mgmt"
	"switchboard/mgmt/ordered"
	"switchboard/store"
)

func (p *Panel) parseTemplates() error {
	funcs := template.FuncMap{
		"join": strings.Join,
		"q":    url.QueryEscape,
		// dict builds a map from key, value pairs for a sub-template.
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				k, _ := kv[i].(string)
				m[k] = kv[i+1]
			}
			return m
		},
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(webFS, "web/base.html")
	if err != nil {
		return err
	}
	p.tmpl = map[string]*template.Template{}
	for _, name := range []string{"login", "dashboard", "page"} {
		t, err := template.Must(base.Clone()).ParseFS(webFS, "web/"+name+".html")
		if err != nil {
			return err
		}
		p.tmpl[name] = t
	}
	return nil
}

func (p *Panel) render(w io.Writer, name string, data map[string]any) {
	if err := p.tmpl[name].ExecuteTemplate(w, name, data); err != nil {
		p.log.Error("panel: rendering a page failed", "page", name, "err", err)
	}
}

// nav is the menu: the dashboard, then Pages.
type navItem struct {
	Slug, Title string
	Current     bool
}

func (p *Panel) common(s *session, current string) map[string]any {
	nav := []navItem{{Slug: "", Title: "Dashboard", Current: current == ""}}
	for _, pg := range Pages {
		nav = append(nav, navItem{pg.Slug, pg.Title, pg.Slug == current})
	}
	p.mu.Lock()
	fl, role := s.flash, s.role
	s.flash = flash{}
	p.mu.Unlock()
	return map[string]any{"User": s.user, "Role": role, "Admin": role == "admin", "CSRF": s.csrf, "Nav": nav, "Flash": fl}
}

// table is a command's result as rows of strings.
type table struct {
	Columns []string
	Rows    []row
}

type row struct {
	Cells  []string
	Values map[string]string // by column
}

// toTable turns a command result into a table: a list of objects (the
// columns in the order of the first object's fields, then those that
// appear later), a list of plain values (one column, scalar), or an
// object holding one such list. Nested values are shown as JSON.
func toTable(res any, scalar string, only []string) (table, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return table{}, err
	}
	v, err := ordered.Decode(b)
	if err != nil {
		return table{}, err
	}
	v = withoutSecrets(v)
	if o, ok := v.(*ordered.Object); ok {
		// {"sets": [...]} or the like: the first list inside.
		for _, k := range o.Keys {
			if l, ok := o.Vals[k].([]any); ok {
				v = l
				break
			}
		}
	}
	list, ok := v.([]any)
	if !ok {
		if o, ok := v.(*ordered.Object); ok { // a single object: one row
			list = []any{o}
		} else {
			list = []any{v}
		}
	}
	var t table
	seen := map[string]bool{}
	for _, it := range list {
		if o, ok := it.(*ordered.Object); ok {
			for _, k := range o.Keys {
				if !seen[k] {
					seen[k] = true
					t.Columns = append(t.Columns, k)
				}
			}
		}
	}
	if len(t.Columns) == 0 {
		if scalar == "" {
			scalar = "value"
		}
		t.Columns = []string{scalar}
	}
	shown := t.Columns
	if len(only) > 0 {
		shown = only
	}
	for _, it := range list {
		r := row{Values: map[string]string{}}
		if o, ok := it.(*ordered.Object); ok {
			for k, v := range o.Vals {
				r.Values[k] = cell(v)
			}
		} else {
			r.Values[t.Columns[0]] = cell(it)
		}
		for _, c := range shown {
			r.Cells = append(r.Cells, r.Values[c])
		}
		t.Rows = append(t.Rows, r)
	}
	t.Columns = shown
	return t, nil
}

// secretKeys are fields the panel never shows, in a table or after a
// form, whatever a command returns: the commands leave secrets out
// (uac.credentials.list says which kind is stored, not the value), and
// this holds the line if one ever returned one. Page, form and screen
// share a browser history and over-the-shoulder views that a CLI does not.
var secretKeys = map[string]bool{"password": true, "ha1": true, "ha1_sha256": true, "ha1b": true}

// withoutSecrets drops secretKeys from the objects in v, at any depth.
func withoutSecrets(v any) any {
	switch x := v.(type) {
	case *ordered.Object:
		keys := x.Keys[:0:0]
		for _, k := range x.Keys {
			if secretKeys[strings.ToLower(k)] {
				delete(x.Vals, k)
				continue
			}
			keys = append(keys, k)
			x.Vals[k] = withoutSecrets(x.Vals[k])
		}
		x.Keys = keys
	case []any:
		for i := range x {
			x[i] = withoutSecrets(x[i])
		}
	}
	return v
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case *ordered.Object:
		b, _ := json.Marshal(x.Plain())
		return string(b)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}

// fieldArgs reads fields from vals into command arguments: empty
// optional fields are left out, numbers and booleans converted. The
// errors name the field as the form labels it.
func fieldArgs(fields []Field, vals url.Values) (map[string]any, error) {
	args := map[string]any{}
	for _, f := range fields {
		v := strings.TrimSpace(vals.Get(f.Name))
		if f.Kind == "password" {
			v = vals.Get(f.Name) // spaces are part of a password
		}
		if f.Kind == "const" {
			v = f.Value
		}
		label := f.Label
		if label == "" {
			label = f.Name
		}
		if v == "" {
			// Left out, as ctl would: the command says what is
			// missing, in its own words (the browser asks first for
			// the fields marked required).
			continue
		}
		switch {
		case f.Kind == "int", f.Number:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a whole number", label, v)
			}
			args[f.Name] = n
		case f.Kind == "bool":
			args[f.Name] = v == "on" || v == "true" || v == "1"
		default:
			args[f.Name] = v
		}
	}
	return args, nil
}

// maxRows is the most rows a page shows.
const maxRows = 1000

// page shows one table page: one command (its List) per view.
func (p *Panel) page(w http.ResponseWriter, r *http.Request, s *session) {
	pg := p.pages[r.PathValue("page")]
	if pg == nil {
		http.NotFound(w, r)
		return
	}
	data := p.common(s, pg.Slug)
	data["Page"] = pg
	q := r.URL.Query()
	data["Query"] = q
	data["Search"] = q.Get("q")
	data["Back"] = r.URL.RequestURI() // forms come back to the same filters
	if pg.CSV {
		data["CSVHref"] = "/ui/cdrs.csv?" + q.Encode()
	}
	t, err := p.listTable(r, s, pg, q)
	if err != nil {
		data["ListError"] = err.Error()
		w.WriteHeader(statusOf(err))
	}
	// A carrier's registrations run to hundreds of thousands: the page
	// shows the first maxRows, and says how many there are.
	data["Total"] = len(t.Rows)
	if len(t.Rows) > maxRows {
		t.Rows = t.Rows[:maxRows]
		data["Truncated"] = true
	}
	data["Table"] = t
	data["Enabled"] = !errors.Is(err, errNotEnabled)
	// The forms this user's role may run; those left out are why the
	// page says the role is read-only.
	forms, fewer := p.usable(s, pg.Forms)
	rowForms, fewerRow := p.usable(s, pg.RowForms)
	data["Forms"], data["RowForms"], data["FormsHidden"] = forms, rowForms, fewer || fewerRow
	p.render(w, "page", data)
}

// usable keeps the forms s's role may run (call checks again when one is
// sent) and says whether the role left any out. A form whose command
// the server does not have is left out too.
func (p *Panel) usable(s *session, forms []Form) (out []Form, refused bool) {
	admin := p.roleOf(s) == store.RoleAdmin
	for _, f := range forms {
		ro, ok := p.cfg.Commands.Lookup(f.Cmd)
		switch {
		case ok && (ro || admin):
			out = append(out, f)
		case ok:
			refused = true
		}
	}
	return out, refused
}

func (p *Panel) listTable(r *http.Request, s *session, pg *Page, q url.Values) (table, error) {
	// A page view is a GET, which carries no CSRF token and which a link
	// on another site can make the browser send: it runs only a
	// command registered as read-only, for every role.
	if ro, ok := p.cfg.Commands.Lookup(pg.List); ok && !ro {
		return table{}, fmt.Errorf("the page's list command %s changes state and is not run on a page view", pg.List)
	}
	args, err := fieldArgs(pg.Filters, q)
	if err != nil {
		return table{}, err
	}
	res, err := p.call(r.Context(), s, pg.List, args)
	if err != nil {
		return table{}, err
	}
	t, err := toTable(res, pg.Scalar, pg.Columns)
	if err != nil {
		return t, err
	}
	if needle := strings.ToLower(strings.TrimSpace(q.Get("q"))); pg.Search && needle != "" {
		kept := t.Rows[:0]
		for _, rw := range t.Rows {
			for _, c := range rw.Values {
				if strings.Contains(strings.ToLower(c), needle) {
					kept = append(kept, rw)
					break
				}
			}
		}
		t.Rows = kept
	}
	return t, nil
}

func statusOf(err error) int {
	var ae *mgmt.ArgError
	switch {
	case errors.Is(err, errReadOnly):
		return http.StatusForbidden
	case errors.Is(err, errNotEnabled), isNotFound(err):
		return http.StatusNotFound
	case errors.As(err, &ae):
		return http.StatusBadRequest
	}
	return http.StatusBadRequest
}

// submit runs one form of a page (one command) and goes back to the page
// with the command's answer, or its error text, shown once.
func (p *Panel) submit(w http.ResponseWriter, r *http.Request, s *session) {
	pg := p.pages[r.PathValue("page")]
	var f *Form
	if pg != nil {
		for _, list := range [][]Form{pg.Forms, pg.RowForms} {
			for i := range list {
				if list[i].ID == r.PathValue("form") {
					f = &list[i]
				}
			}
		}
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	var fl flash
	args, err := fieldArgs(f.Fields, r.PostForm)
	if err == nil {
		var res any
		res, err = p.call(r.Context(), s, f.Cmd, args)
		if err == nil {
			fl.OK = summary(f, res)
			p.log.Info("panel command", "user", s.user, "cmd", f.Cmd)
		}
	}
	if err != nil {
		fl.Err = err.Error()
	}
	p.mu.Lock()
	s.flash = fl
	p.mu.Unlock()
	// Back to the page the form was on, with its filters; only ever a
	// path of this page, never another site.
	back := "/ui/" + pg.Slug
	if ref, err := url.Parse(r.PostForm.Get("back")); err == nil && ref.Path == back && ref.Scheme == "" && ref.Host == "" && ref.User == nil {
		back = ref.Path + "?" + ref.Query().Encode()
	}
	if errors.Is(err, errReadOnly) {
		w.Header().Set("Location", back)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// summary is the line shown after a form succeeded.
func summary(f *Form, res any) string {
	switch v := res.(type) {
	case string:
		return v
	case nil:
		return f.Cmd + ": done"
	}
	b, _ := json.Marshal(res)
	if v, err := ordered.Decode(b); err == nil {
		b, _ = json.Marshal(withoutSecrets(v))
	}
	if len(b) > 300 {
		b = append(b[:300], "..."...)
	}
	return f.Cmd + ": " + string(b)
}

// cdrsCSV writes the CDRs the page would show as CSV (one acc.list).
func (p *Panel) cdrsCSV(w http.ResponseWriter, r *http.Request, s *session) {
	pg := p.pages["cdrs"]
	t, err := p.listTable(r, s, pg, r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="cdrs-`+time.Now().UTC().Format("20060102-150405")+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(t.Columns)
	for _, rw := range t.Rows {
		cells := make([]string, len(rw.Cells))
		for i, c := range rw.Cells {
			// A cell starting with = + - @ is a formula to a spreadsheet:
			// a From user an attacker chose must stay text.
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				c = "'" + c
			}
			cells[i] = c
		}
		cw.Write(cells)
	}
	cw.Flush()
}
