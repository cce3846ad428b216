package store

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The tables of the drouting module (OpenSIPS drouting's dr_gateways,
// dr_carriers and dr_rules): gateways to the PSTN, carriers (ordered lists
// of gateways) and rules that pick gateways and carriers by routing group,
// number prefix, time of the week and priority.

// DRGateway is one row of dr_gateways.
type DRGateway struct {
	// GWID names the gateway in gateway lists: letters, digits, '_', '-'
	// and '.', at most 64.
	GWID string
	// Type is a class of gateways a route may test for (is_from_gw(type)).
	Type int
	// Address is where calls go: an IPv4 address or a bracketed IPv6
	// address, with an optional port ("192.0.2.10", "192.0.2.10:5080",
	// "[2001:db8::1]:5060"). Stored in that canonical form.
	Address string
	// Transport is "udp" (the default), "tcp" or "tls".
	Transport string
	// Strip is how many leading characters of the number are removed
	// before PriPrefix is put in front.
	Strip int
	// PriPrefix is added in front of the number sent to the gateway.
	PriPrefix string
	// Attrs is free text handed to the route with the gateway.
	Attrs string
	// ProbeMode: 0 no OPTIONS probing, 1 only while the gateway is down,
	// 2 always.
	ProbeMode int
	// State: 0 active, 1 disabled (never used nor probed).
	State       int
	Description string
	Created     int64 // unix seconds
}

// DRCarrier is one row of dr_carriers: a named list of gateways used as
// one entry of a rule's list.
type DRCarrier struct {
	// CarrierID names the carrier ("#id" in a rule's list); the
	// characters of a GWID.
	CarrierID string
	// GWList is the carrier's gateways, comma-separated, each with an
	// optional weight: "gw1=70,gw2=30". Only gateways, no carriers.
	GWList string
	// Flags: DRUseFirst uses only the first usable gateway of the sorted
	// list.
	Flags int
	// SortAlg orders the list for each call: "N" as written, "W" by
	// weight (a weighted random order), "R" random.
	SortAlg string
	// State: 0 active, 1 disabled (skipped).
	State       int
	Attrs       string
	Description string
	Created     int64
}

// DRUseFirst is the DRCarrier flag that uses only the first usable
// gateway of the carrier: no fail-over inside it.
const DRUseFirst = 1

// DRRule is one row of dr_rules.
type DRRule struct {
	ID int64 // given by the store (ruleid)
	// Groups are the routing groups the rule belongs to, comma-separated:
	// "0" or "0,3". A route asks for the rules of one group.
	Groups string
	// Prefix is matched against the number: digits, '+', '*' and '#', at
	// most 64; "" matches every number.
	Prefix string
	// TimeRec is when the rule applies: "" always, or days of the week
	// and/or a span of hours: "Mon-Fri 08:00-17:59", "Sat,Sun",
	// "22:00-05:59" (a start after the end spans midnight).
	TimeRec string
	// Priority orders rules of one prefix: the highest that applies now
	// wins.
	Priority int
	// RouteID is free text the route can read for the matched rule
	// (OpenSIPS runs a script route of that name).
	RouteID string
	// GWList is the gateways and carriers to try, in order, comma
	// separated, each with an optional weight: "gw1,#carrier2=10".
	GWList string
	// SortAlg orders GWList for each call: "N", "W" or "R" (see
	// DRCarrier.SortAlg).
	SortAlg     string
	Attrs       string
	Description string
	Created     int64
}

// Limits of the drouting tables.
const (
	MaxDRID          = 64 // gwid and carrierid
	MaxDRPrefix      = 64
	MaxDRPriPrefix   = 32
	MaxDRStrip       = 64
	MaxDRListEntries = 32
	MaxDRGroups      = 16
	MaxDRGroup       = 1<<31 - 1
	MaxDRWeight      = 1_000_000
	maxDRText        = 255 // attrs, description, routeid
	maxDRPriority    = 1_000_000_000
)

// DRSortAlgs are the accepted values of SortAlg.
var DRSortAlgs = []string{"N", "W", "R"}

// drErr words a validation error: "dr gateway gw1: address: ...".
func drErr(table, name, field, format string, args ...any) error {
	what := "dr " + table
	if name != "" {
		what += " " + name
	}
	return errorf(ErrMalformedDR, what+": "+field+": "+format, args...)
}

// IsDRID reports whether s may name a gateway or a carrier.
func IsDRID(s string) bool {
	if s == "" || len(s) > MaxDRID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func checkDRID(table, field, id string) error {
	if !IsDRID(id) {
		return drErr(table, "", field, "%q: want 1 to %d letters, digits, '_', '-' or '.'", id, MaxDRID)
	}
	return nil
}

// IsDRDigit reports whether c may appear in a number prefix.
func IsDRDigit(c byte) bool {
	return c >= '0' && c <= '9' || c == '+' || c == '*' || c == '#'
}

func checkDRDigits(table, name, field, s string, max int) error {
	if len(s) > max {
		return drErr(table, name, field, "%.20q...: longer than %d characters", s, max)
	}
	for i := 0; i < len(s); i++ {
		if !IsDRDigit(s[i]) {
			return drErr(table, name, field, "%q: invalid character %q (digits, '+', '*' and '#' only)", s, s[i])
		}
	}
	return nil
}

func checkDRText(table, name, field, s string) error {
	if len(s) > maxDRText {
		return drErr(table, name, field, "%.20q...: longer than %d bytes", s, maxDRText)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
		return drErr(table, name, field, "%q: control characters or invalid UTF-8", s)
	}
	return nil
}

func checkDRSort(table, name string, s *string) error {
	v := strings.ToUpper(strings.TrimSpace(*s))
	if v == "" {
		v = "N"
	}
	for _, a := range DRSortAlgs {
		if a == v {
			*s = v
			return nil
		}
	}
	return drErr(table, name, "sort_alg", "%q: want N (as listed), W (weight) or R (random)", *s)
}

// ParseDRAddress parses a gateway address: an IP literal (IPv6 in
// brackets) with an optional port, 5060 when absent. Host names are not
// accepted: a gateway is matched by the address calls come from, and
// probed and reached without a DNS lookup on the call path.
func ParseDRAddress(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "sip:")
	if s == "" {
		return netip.AddrPort{}, errors.New("empty")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, errors.New("port 0")
		}
		if ap.Addr().Zone() != "" {
			return netip.AddrPort{}, errors.New("zones are not supported")
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Count(s, ":") > 1 {
		return netip.AddrPort{}, errors.New("an IPv6 address goes in brackets: [2001:db8::1]:5060")
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, errors.New("not an IP address with an optional port (host names are not supported)")
	}
	return netip.AddrPortFrom(a.Unmap(), 5060), nil
}

// CheckDRGateway validates g and puts it in canonical form (address with
// its port, transport lower-case), naming the field at fault.
func CheckDRGateway(g *DRGateway) error {
	if err := checkDRID("gateway", "gwid", g.GWID); err != nil {
		return err
	}
	name := g.GWID
	if g.Type < 0 || g.Type > MaxDRGroup {
		return drErr("gateway", name, "type", "%d: want 0 to %d", g.Type, MaxDRGroup)
	}
	ap, err := ParseDRAddress(g.Address)
	if err != nil {
		return drErr("gateway", name, "address", "%q: %v", g.Address, err)
	}
	g.Address = ap.String()
	g.Transport = strings.ToLower(strings.TrimSpace(g.Transport))
	switch g.Transport {
	case "":
		g.Transport = "udp"
	case "udp", "tcp", "tls":
	default:
		return drErr("gateway", name, "transport", "%q: want udp, tcp or tls", g.Transport)
	}
	if g.Strip < 0 || g.Strip > MaxDRStrip {
		return drErr("gateway", name, "strip", "%d: want 0 to %d", g.Strip, MaxDRStrip)
	}
	if err := checkDRDigits("gateway", name, "pri_prefix", g.PriPrefix, MaxDRPriPrefix); err != nil {
		return err
	}
	if g.ProbeMode < 0 || g.ProbeMode > 2 {
		return drErr("gateway", name, "probe_mode", "%d: want 0 (never), 1 (while down) or 2 (always)", g.ProbeMode)
	}
	if g.State < 0 || g.State > 1 {
		return drErr("gateway", name, "state", "%d: want 0 (active) or 1 (disabled)", g.State)
	}
	if err := checkDRText("gateway", name, "attrs", g.Attrs); err != nil {
		return err
	}
	return checkDRText("gateway", name, "description", g.Description)
}

// DRListEntry is one entry of a gateway list: a gateway, or a carrier
// ("#id"), with its weight (1 when not given).
type DRListEntry struct {
	ID      string
	Carrier bool
	Weight  int
}

// ParseDRList parses a gateway list: "gw1,gw2=10,#carrier=5". Carriers
// are refused when carriers is false (a carrier's own list).
func ParseDRList(s string, carriers bool) ([]DRListEntry, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty: name at least one gateway")
	}
	items := strings.Split(s, ",")
	if len(items) > MaxDRListEntries {
		return nil, errors.New("more than " + strconv.Itoa(MaxDRListEntries) + " entries")
	}
	out := make([]DRListEntry, 0, len(items))
	for _, it := range items {
		it = strings.TrimSpace(it)
		var e DRListEntry
		id, w, hasW := strings.Cut(it, "=")
		id = strings.TrimSpace(id)
		if strings.HasPrefix(id, "#") {
			if !carriers {
				return nil, errors.New(strconv.Quote(it) + ": a carrier's list holds gateways only")
			}
			e.Carrier, id = true, id[1:]
		}
		if !IsDRID(id) {
			return nil, errors.New(strconv.Quote(it) + ": not a gateway name (or #carrier) with an optional =weight")
		}
		e.ID, e.Weight = id, 1
		if hasW {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil || n < 1 || n > MaxDRWeight {
				return nil, errors.New(strconv.Quote(it) + ": weight " + strconv.Quote(w) + " is not 1 to " + strconv.Itoa(MaxDRWeight))
			}
			e.Weight = n
		}
		out = append(out, e)
	}
	return out, nil
}

// CheckDRCarrier validates c and puts it in canonical form.
func CheckDRCarrier(c *DRCarrier) error {
	if err := checkDRID("carrier", "carrierid", c.CarrierID); err != nil {
		return err
	}
	name := c.CarrierID
	list, err := ParseDRList(c.GWList, false)
	if err != nil {
		return drErr("carrier", name, "gwlist", "%v", err)
	}
	c.GWList = formatDRList(list)
	if c.Flags&^DRUseFirst != 0 {
		return drErr("carrier", name, "flags", "%d: want 0 or %d (use the first gateway only)", c.Flags, DRUseFirst)
	}
	if err := checkDRSort("carrier", name, &c.SortAlg); err != nil {
		return err
	}
	if c.State < 0 || c.State > 1 {
		return drErr("carrier", name, "state", "%d: want 0 (active) or 1 (disabled)", c.State)
	}
	if err := checkDRText("carrier", name, "attrs", c.Attrs); err != nil {
		return err
	}
	return checkDRText("carrier", name, "description", c.Description)
}

// formatDRList writes a parsed list back in canonical form.
func formatDRList(list []DRListEntry) string {
	var b strings.Builder
	for i, e := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		if e.Carrier {
			b.WriteByte('#')
		}
		b.WriteString(e.ID)
		if e.Weight != 1 {
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(e.Weight))
		}
	}
	return b.String()
}

// ParseDRGroups parses a rule's groups: "0", "0,3".
func ParseDRGroups(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty: name at least one group")
	}
	items := strings.Split(s, ",")
	if len(items) > MaxDRGroups {
		return nil, errors.New("more than " + strconv.Itoa(MaxDRGroups) + " groups")
	}
	out := make([]int, 0, len(items))
	for _, it := range items {
		it = strings.TrimSpace(it)
		n, err := strconv.Atoi(it)
		if err != nil || n < 0 || n > MaxDRGroup || it[0] == '+' {
			return nil, errors.New(strconv.Quote(it) + " is not a group number (0 to " + strconv.Itoa(MaxDRGroup) + ")")
		}
		for _, g := range out {
			if g == n {
				return nil, errors.New("group " + it + " given twice")
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// DRTimeRec is a parsed TimeRec: the days of the week (bit d for
// time.Weekday d) and the minutes of the day, both included, the rule
// applies in. A Start after End spans midnight, and the days are those of
// the minute itself.
type DRTimeRec struct {
	Days       uint8
	Start, End int
}

// Always reports whether the rule applies at every minute.
func (t DRTimeRec) Always() bool { return t.Days == 0x7f && t.Start == 0 && t.End == 24*60-1 }

// ParseDRTimeRec parses a rule's TimeRec: "" (always), days ("Mon-Fri",
// "Sat,Sun"), hours ("08:00-17:59"), or days then hours.
func ParseDRTimeRec(s string) (DRTimeRec, error) {
	t := DRTimeRec{Days: 0x7f, Start: 0, End: 24*60 - 1}
	s = strings.TrimSpace(s)
	if s == "" {
		return t, nil
	}
	days := s
	if i := strings.LastIndexByte(s, ' '); i >= 0 && strings.Contains(s[i+1:], ":") || i < 0 && strings.Contains(s, ":") {
		hours := s[i+1:]
		days = strings.TrimSpace(s[:i+1])
		from, to, ok := strings.Cut(hours, "-")
		if !ok {
			return t, errors.New(strconv.Quote(hours) + ": want HH:MM-HH:MM")
		}
		var err error
		if t.Start, err = ParseFraudHour(from); err != nil {
			return t, err
		}
		if t.End, err = ParseFraudHour(to); err != nil {
			return t, err
		}
	}
	if days != "" {
		d, err := ParseFraudDays(days)
		if err != nil {
			return t, err
		}
		t.Days = d
	}
	return t, nil
}

// CheckDRRule validates r and puts it in canonical form.
func CheckDRRule(r *DRRule) error {
	name := ""
	if r.ID != 0 {
		name = strconv.FormatInt(r.ID, 10)
	}
	groups, err := ParseDRGroups(r.Groups)
	if err != nil {
		return drErr("rule", name, "groupid", "%v", err)
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(g))
	}
	r.Groups = b.String()
	if err := checkDRDigits("rule", name, "prefix", r.Prefix, MaxDRPrefix); err != nil {
		return err
	}
	r.TimeRec = strings.Join(strings.Fields(r.TimeRec), " ")
	if _, err := ParseDRTimeRec(r.TimeRec); err != nil {
		return drErr("rule", name, "timerec", "%q: %v", r.TimeRec, err)
	}
	if r.Priority < -maxDRPriority || r.Priority > maxDRPriority {
		return drErr("rule", name, "priority", "%d: want -%d to %d", r.Priority, maxDRPriority, maxDRPriority)
	}
	list, err := ParseDRList(r.GWList, true)
	if err != nil {
		return drErr("rule", name, "gwlist", "%v", err)
	}
	r.GWList = formatDRList(list)
	if err := checkDRSort("rule", name, &r.SortAlg); err != nil {
		return err
	}
	if err := checkDRText("rule", name, "routeid", r.RouteID); err != nil {
		return err
	}
	if err := checkDRText("rule", name, "attrs", r.Attrs); err != nil {
		return err
	}
	return checkDRText("rule", name, "description", r.Description)
}

// Table names whose version DRVersion reads.
const (
	DRGatewaysTable = "dr_gateways"
	DRCarriersTable = "dr_carriers"
	DRRulesTable    = "dr_rules"
)

// DRVersion is the write counter of one of the drouting tables
// (DRGatewaysTable...): the server polls it and reloads the table when it
// moved, whoever wrote (the CLI, another node).
func (s *Store) DRVersion(ctx context.Context, table string) (int64, error) {
	return s.b.TableVersion(ctx, table)
}

// AddDRGateways validates and stores gateways in one transaction (all or
// none); with replace the table is emptied first (an import of the whole
// table). A gwid that exists is ErrDRExists.
func (s *Store) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
	now := time.Now().Unix()
	seen := make(map[string]int, len(gs))
	for i := range gs {
		if err := CheckDRGateway(&gs[i]); err != nil {
			return drEntryErr(err, i, len(gs))
		}
		if j, dup := seen[gs[i].GWID]; dup {
			return errorf(ErrDRExists, "entries %d and %d: dr gateway %s given twice", j+1, i+1, gs[i].GWID)
		}
		seen[gs[i].GWID] = i
		if gs[i].Created == 0 {
			gs[i].Created = now
		}
	}
	return s.drNameErr(s.b.AddDRGateways(ctx, gs, replace))
}

// UpdateDRGateway replaces the gateway gwid with g (which may not rename
// it).
func (s *Store) UpdateDRGateway(ctx context.Context, g DRGateway) error {
	if err := CheckDRGateway(&g); err != nil {
		return err
	}
	return s.drNameErr(s.b.UpdateDRGateway(ctx, &g))
}

// DeleteDRGateway removes a gateway. Rules and carriers that name it skip
// it from then on.
func (s *Store) DeleteDRGateway(ctx context.Context, gwid string) error {
	return s.drNameErr(s.b.DeleteDR(ctx, DRGatewaysTable, gwid))
}

// GetDRGateway returns one gateway; ErrNoDR when there is none.
func (s *Store) GetDRGateway(ctx context.Context, gwid string) (DRGateway, error) {
	var g DRGateway
	return g, s.drNameErr(s.b.GetDRGateway(ctx, gwid, &g))
}

// ListDRGateways returns every gateway by gwid.
func (s *Store) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
	return s.b.ListDRGateways(ctx)
}

// AddDRCarriers validates and stores carriers in one transaction; with
// replace the table is emptied first.
func (s *Store) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
	now := time.Now().Unix()
	seen := make(map[string]int, len(cs))
	for i := range cs {
		if err := CheckDRCarrier(&cs[i]); err != nil {
			return drEntryErr(err, i, len(cs))
		}
		if j, dup := seen[cs[i].CarrierID]; dup {
			return errorf(ErrDRExists, "entries %d and %d: dr carrier %s given twice", j+1, i+1, cs[i].CarrierID)
		}
		seen[cs[i].CarrierID] = i
		if cs[i].Created == 0 {
			cs[i].Created = now
		}
	}
	return s.drNameErr(s.b.AddDRCarriers(ctx, cs, replace))
}

// UpdateDRCarrier replaces the carrier c.CarrierID with c.
func (s *Store) UpdateDRCarrier(ctx context.Context, c DRCarrier) error {
	if err := CheckDRCarrier(&c); err != nil {
		return err
	}
	return s.drNameErr(s.b.UpdateDRCarrier(ctx, &c))
}

// DeleteDRCarrier removes a carrier.
func (s *Store) DeleteDRCarrier(ctx context.Context, id string) error {
	return s.drNameErr(s.b.DeleteDR(ctx, DRCarriersTable, id))
}

// ListDRCarriers returns every carrier by carrierid.
func (s *Store) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
	return s.b.ListDRCarriers(ctx)
}

// AddDRRules validates and stores rules in one transaction (all or none),
// setting their IDs; with replace the table is emptied first. Bulk
// imports of a million rules go through here: one transaction, one
// version step, one reload of the running server.
func (s *Store) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
	now := time.Now().Unix()
	for i := range rs {
		rs[i].ID = 0
		if err := CheckDRRule(&rs[i]); err != nil {
			return drEntryErr(err, i, len(rs))
		}
		if rs[i].Created == 0 {
			rs[i].Created = now
		}
	}
	return s.b.AddDRRules(ctx, rs, replace)
}

// DeleteDRRule removes the rule with id.
func (s *Store) DeleteDRRule(ctx context.Context, id int64) error {
	return s.drNameErr(s.b.DeleteDR(ctx, DRRulesTable, strconv.FormatInt(id, 10)))
}

// DRRuleFilter selects rules for ListDRRules: of one group (Group >= 0),
// whose prefix starts with Prefix, with IDs above AfterID, at most Limit
// (0: all).
type DRRuleFilter struct {
	Group   int // -1: every group
	Prefix  string
	AfterID int64
	Limit   int
}

// ListDRRules returns the rules f selects, by ID.
func (s *Store) ListDRRules(ctx context.Context, f DRRuleFilter) ([]DRRule, error) {
	var out []DRRule
	err := s.ForEachDRRule(ctx, f, func(r *DRRule) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// ForEachDRRule calls fn for each rule f selects, by ID, without holding
// the whole table in memory; r is reused between calls. An error from fn
// stops the walk and is returned.
func (s *Store) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
	if f.Group >= 0 {
		// Groups are stored canonically ("0,3"): a LIKE on the
		// comma-separated list would need four patterns; the walk filters.
		inner := fn
		want := f.Group
		fn = func(r *DRRule) error {
			gs, err := ParseDRGroups(r.Groups)
			if err != nil {
				return nil
			}
			for _, g := range gs {
				if g == want {
					return inner(r)
				}
			}
			return nil
		}
	}
	if f.Limit > 0 && f.Group >= 0 {
		// The limit counts matches, which the backend cannot see.
		n, limit, inner := 0, f.Limit, fn
		fn = func(r *DRRule) error {
			if n >= limit {
				return errStopWalk
			}
			n++
			return inner(r)
		}
		f.Limit = 0
	}
	err := s.b.ForEachDRRule(ctx, f, fn)
	if errors.Is(err, errStopWalk) {
		return nil
	}
	return err
}

var errStopWalk = errors.New("stop")

func drEntryErr(err error, i, n int) error {
	if n > 1 {
		return &wordedError{msg: "entry " + strconv.Itoa(i+1) + ": " + err.Error(), sentinel: ErrMalformedDR}
	}
	return err
}

// drNameError is how a backend names the row a write was about.
type drNameError struct {
	sentinel error
	table    string
	id       string
}

func (e *drNameError) Error() string { return e.sentinel.Error() }
func (e *drNameError) Unwrap() error { return e.sentinel }

func (s *Store) drNameErr(err error) error {
	var ne *drNameError
	if !errors.As(err, &ne) {
		return err
	}
	what := map[string]string{DRGatewaysTable: "dr gateway ", DRCarriersTable: "dr carrier ", DRRulesTable: "dr rule "}[ne.table] + ne.id
	if errors.Is(ne.sentinel, ErrNoDR) {
		return errorf(ErrNoDR, "%s does not exist", what)
	}
	return errorf(ErrDRExists, "%s exists already", what)
}
