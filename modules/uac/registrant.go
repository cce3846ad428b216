package uac

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// The registrant keeps the registrations of the uac_registrations table
// with carriers, as a client (OpenSIPS uac_registrant, Kamailio's uac
// uac_reg_*): a REGISTER per row through the transaction core's own
// client transactions (txn SendLocal), answered challenges, a refresh
// when three quarters of the granted time have passed, a retry after a
// failure that waits retry_min, doubled after each further failure up to
// retry_max (or the registrar's Retry-After within those bounds). A row
// deleted from the table is unregistered (Expires: 0). Registrations are
// few and slow: timers are time.AfterFunc, state is under one lock.

// Registration states as management and metrics show them.
const (
	stateRegistering = "registering" // first attempt under way
	stateRegistered  = "registered"
	stateFailed      = "failed" // waiting to try again
)

var states = []string{stateRegistering, stateRegistered, stateFailed}

type registration struct {
	row store.UACRegistration

	// The REGISTER's fixed parts (RFC 3261 §10.2: one Call-ID, a CSeq
	// that grows, for every REGISTER of this binding).
	callID, tag string
	cseq        uint32
	expires     int // asked for (raised by a 423's Min-Expires)
	target      parser.URI
	proto       transport.Proto
	dst         netip.AddrPort // resolved once per attempt from the target

	state     string
	code      int
	reason    string
	lastErr   string
	until     time.Time // the binding is valid until then (last 2xx)
	next      time.Time // next attempt or refresh
	failures  int
	attempt   uint64 // ids the REGISTER in flight; a stale answer is dropped
	timer     *time.Timer
	answered  bool   // the challenge of this attempt was answered once
	stales    int    // challenges of this attempt answered again for a stale nonce
	contact   string // the Contact URI the last REGISTER sent
	minExp    bool   // a 423 was followed once in this attempt
	chName    string // "Authorization" or "Proxy-Authorization", "" for none
	challenge parser.Auth
	chBuf     []byte // the copied challenge value challenge points into
	gone      bool   // deleted from the table: unregistering
}

type registrant struct {
	u   *UAC
	h   *modules.Host
	mu  sync.Mutex
	reg map[int64]*registration
	ver int64
	on  bool // started and not stopped

	sent, failed, unregistered *metrics.Counter
}

func newRegistrant(u *UAC, h *modules.Host) *registrant {
	r := &registrant{u: u, h: h, reg: map[int64]*registration{}}
	r.sent = h.Metrics.GetOrCreateCounter("switchboard_uac_register_sent_total")
	r.failed = h.Metrics.GetOrCreateCounter("switchboard_uac_register_failures_total")
	r.unregistered = h.Metrics.GetOrCreateCounter("switchboard_uac_unregister_sent_total")
	for _, s := range states {
		s := s
		h.Metrics.GetOrCreateGauge(`switchboard_uac_registrations{state="`+s+`"}`, func() float64 { return float64(r.count(s)) })
	}
	return r
}

func (r *registrant) count(state string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.reg {
		if !g.gone && g.state == state {
			n++
		}
	}
	return n
}

func (r *registrant) loadedVersion() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ver
}

// reload reads the table: new rows start registering, deleted ones are
// unregistered. A row is never changed in place (delete and add).
func (r *registrant) reload(ctx context.Context) (int64, error) {
	v, err := r.u.st.UACRegistrationsVersion(ctx)
	var rows []store.UACRegistration
	if err == nil {
		rows, err = r.u.st.ListUACRegistrations(ctx)
	}
	if err == nil && int64(len(rows)) > r.u.maxReg.Load() {
		err = fmt.Errorf("the uac_registrations table has %d rows, more than uac.max_registrations (%d); the registrations in use stay", len(rows), r.u.maxReg.Load())
	}
	if err != nil {
		r.u.reloadErrors.Inc()
		r.u.log.Error("uac: loading the registrations failed", "err", err)
		return 0, fmt.Errorf("uac registrations: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int64]bool{}
	for _, row := range rows {
		seen[row.ID] = true
		if _, ok := r.reg[row.ID]; ok {
			continue
		}
		g, err := newRegistration(row)
		if err != nil {
			r.u.log.Warn("uac: registration skipped (kept for nothing until corrected)", "id", row.ID, "err", err)
			continue
		}
		r.reg[row.ID] = g
		if r.on {
			r.schedule(g, 0)
		}
	}
	for id, g := range r.reg {
		if seen[id] || g.gone {
			continue
		}
		g.gone = true
		if r.on && g.state == stateRegistered && time.Now().Before(g.until) {
			g.answered, g.minExp, g.chName = false, false, ""
			r.schedule(g, 0) // unregister
			continue
		}
		r.drop(g)
	}
	r.ver = v
	r.u.reloads.Inc()
	return v, nil
}

func newRegistration(row store.UACRegistration) (*registration, error) {
	if err := store.CheckUACRegistration(&row); err != nil {
		return nil, err
	}
	g := &registration{row: row, expires: row.Expires, state: stateRegistering}
	target := row.Registrar
	if row.Proxy != "" {
		target = row.Proxy
	}
	if err := g.target.Parse([]byte(target)); err != nil {
		return nil, err
	}
	g.proto = transport.UDP
	if g.target.Scheme == parser.SchemeSIPS {
		g.proto = transport.TLS
	}
	if tp := g.target.Transport(); tp != nil {
		p, ok := transport.ParseProto(string(tp))
		if !ok {
			return nil, fmt.Errorf("transport %q of %s", tp, target)
		}
		g.proto = p
	}
	g.callID = randomHex(12) + "@switchboard"
	g.tag = randomHex(8)
	return g, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// drop forgets g (under mu).
func (r *registrant) drop(g *registration) {
	if g.timer != nil {
		g.timer.Stop()
	}
	delete(r.reg, g.row.ID)
}

// start begins registering every row.
func (r *registrant) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = true
	for _, g := range r.reg {
		r.schedule(g, 0)
	}
}

// stopAll stops every timer; the bindings are left to expire.
func (r *registrant) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	for _, g := range r.reg {
		if g.timer != nil {
			g.timer.Stop()
		}
		g.attempt++ // answers still on the way are dropped
	}
}

// schedule runs the next attempt of g after d (under mu).
func (r *registrant) schedule(g *registration, d time.Duration) {
	if g.timer != nil {
		g.timer.Stop()
	}
	g.next = time.Now().Add(d)
	g.attempt++
	id := g.attempt
	g.timer = time.AfterFunc(d, func() { r.send(g, id) })
}

// send sends the REGISTER of attempt id, unless another was scheduled
// meanwhile. It runs on a timer goroutine: it may wait for DNS.
func (r *registrant) send(g *registration, id uint64) {
	r.mu.Lock()
	if !r.on || g.attempt != id {
		r.mu.Unlock()
		return
	}
	host, port := string(g.target.Host), g.target.Port
	proto := g.proto
	r.mu.Unlock()

	dst, err := resolve(host, port, proto)

	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on || g.attempt != id {
		return
	}
	if err != nil {
		r.fail(g, 0, "", err.Error(), 0)
		return
	}
	g.dst = dst
	l := r.h.Originator.Listener(proto, dst.Addr())
	if l == nil {
		r.fail(g, 0, "", "no listener for "+proto.String()+" to "+dst.String(), 0)
		return
	}
	msg, err := r.build(g, l)
	if err != nil {
		r.fail(g, 0, "", err.Error(), 0)
		return
	}
	err = r.h.Originator.SendLocal(txn.LocalRequest{Proto: proto, Dst: dst, Message: msg}, func(code int, resp *parser.Message) {
		r.done(g, id, code, resp)
	})
	if err != nil {
		r.fail(g, 0, "", err.Error(), 0)
		return
	}
	if g.gone {
		r.unregistered.Inc()
	} else {
		r.sent.Inc()
	}
}

// resolve finds the address of a registrar or proxy: an IP literal as it
// is, a name by its A/AAAA records (the first address; SRV and NAPTR are
// not looked up).
func resolve(host string, port int, proto transport.Proto) (netip.AddrPort, error) {
	if port == 0 {
		port = 5060
		if proto == transport.TLS {
			port = 5061
		}
	}
	h := host
	if len(h) > 1 && h[0] == '[' {
		h = h[1 : len(h)-1]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(as) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s did not resolve: %v", host, err)
	}
	return netip.AddrPortFrom(as[0].Unmap(), uint16(port)), nil
}

// build writes the REGISTER of g (under mu): the core adds the Via.
func (r *registrant) build(g *registration, l *transport.Listener) ([]byte, error) {
	expires := g.expires
	if g.gone {
		expires = 0
	}
	contact := g.row.Contact
	if contact == "" {
		contact = "sip:" + g.row.Username + "@" + l.AdvertisedHost + ":" + strconv.Itoa(int(l.AdvertisedPort))
		if l.Proto != transport.UDP {
			contact += ";transport=" + l.Proto.String()
		}
	}
	g.contact = contact
	g.cseq++
	b := make([]byte, 0, 1024)
	b = append(b, "REGISTER "+g.row.Registrar+" SIP/2.0\r\n"...)
	b = append(b, "Max-Forwards: 70\r\n"...)
	b = append(b, "From: <"+g.row.AOR+">;tag="+g.tag+"\r\n"...)
	b = append(b, "To: <"+g.row.AOR+">\r\n"...)
	b = append(b, "Call-ID: "+g.callID+"\r\n"...)
	b = append(b, "CSeq: "+strconv.FormatUint(uint64(g.cseq), 10)+" REGISTER\r\n"...)
	b = append(b, "Contact: <"+contact+">\r\n"...)
	b = append(b, "Expires: "+strconv.Itoa(expires)+"\r\n"...)
	if g.chName != "" {
		alg, _ := parseAlgorithm(g.challenge.Algorithm)
		c := &cred{user: g.row.Username, password: g.row.Password}
		sc := r.u.scratches.Get().(*scratch)
		hdr, ok := sc.answer(&g.challenge, alg, c, []byte("REGISTER"), []byte(g.row.Registrar), nil)
		if ok {
			b = append(b, g.chName+": "...)
			b = append(b, hdr...)
			b = append(b, "\r\n"...)
		}
		r.u.scratches.Put(sc)
	}
	b = append(b, "User-Agent: switchboard\r\nContent-Length: 0\r\n\r\n"...)
	return b, nil
}

// done handles the outcome of attempt id: on a transport reader or timer
// goroutine, so it only records and schedules.
func (r *registrant) done(g *registration, id uint64, code int, resp *parser.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on || g.attempt != id {
		return
	}
	reason := ""
	switch {
	case resp != nil:
		reason = string(resp.Reason())
	case code == 408:
		reason = "no response"
	default:
		reason = "not sent"
	}
	switch {
	case code >= 200 && code < 300:
		if g.gone {
			r.drop(g)
			return
		}
		granted := grantedExpires(resp, g.expires, g.contact)
		g.state, g.code, g.reason, g.lastErr = stateRegistered, code, reason, ""
		g.failures, g.answered, g.stales, g.minExp, g.chName = 0, false, 0, false, ""
		g.until = time.Now().Add(time.Duration(granted) * time.Second)
		r.schedule(g, max(time.Duration(granted)*time.Second*3/4, time.Second))
	case (code == 401 || code == 407) && resp != nil:
		stale := false
		if !r.takeChallenge(g, code, resp, &stale) {
			r.fail(g, code, reason, "no challenge we can answer", 0)
			return
		}
		if g.answered && !stale {
			r.fail(g, code, reason, "credentials refused", 0)
			return
		}
		if g.answered {
			// A new nonce for the same credentials, at once: twice. A
			// registrar that calls every nonce stale gets the back-off,
			// not a REGISTER a round trip.
			if g.stales++; g.stales > maxStaleAnswers {
				r.fail(g, code, reason, "the registrar calls every nonce stale", 0)
				return
			}
		}
		g.answered = true
		r.schedule(g, 0)
	case code == 423 && resp != nil && !g.minExp:
		if n, ok := resp.MinExpires(); ok && int(n) > g.expires && n <= store.MaxUACExpires {
			g.expires, g.minExp = int(n), true
			r.schedule(g, 0)
			return
		}
		r.fail(g, code, reason, "interval too brief and no usable Min-Expires", 0)
	default:
		retry := time.Duration(0)
		if resp != nil {
			if v := resp.GetByName([]byte("Retry-After")); v != nil {
				if n, ok := parseUint(leadingDigits(v), 86400); ok {
					retry = time.Duration(n) * time.Second
				}
			}
		}
		r.fail(g, code, reason, "", retry)
	}
}

func leadingDigits(v []byte) []byte {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	return v[:i]
}

// takeChallenge copies the first challenge of resp we can answer with a
// password into g (under mu).
func (r *registrant) takeChallenge(g *registration, code int, resp *parser.Message, stale *bool) bool {
	name, want := "Authorization", parser.HdrWWWAuthenticate
	if code == 407 {
		name, want = "Proxy-Authorization", parser.HdrProxyAuthenticate
	}
	if g.row.Password == "" {
		return false
	}
	for i := 0; i < resp.NumHeaders(); i++ {
		h := resp.HeaderAt(i)
		if h.Name != want {
			continue
		}
		g.chBuf = append(g.chBuf[:0], h.Value...)
		if !parser.ParseAuth(g.chBuf, &g.challenge) || !g.challenge.IsDigest() || !validChallengeText(&g.challenge) {
			continue
		}
		if _, ok := parseAlgorithm(g.challenge.Algorithm); !ok {
			continue
		}
		if _, ok := chooseQOP(g.challenge.QOP); !ok {
			continue
		}
		g.chName = name
		*stale = parser.EqualFold(g.challenge.Stale, []byte("true"))
		return true
	}
	return false
}

// maxStaleAnswers is how many stale-nonce challenges one attempt answers
// at once.
const maxStaleAnswers = 2

// grantedExpires is what the registrar granted, in 1 s to
// store.MaxUACExpires: the expires of our Contact (contact, the URI we
// sent) in the 2xx, which lists every binding of the AOR; when none is
// ours by its URI, the shortest listed; else its Expires header; else
// what we asked for.
func grantedExpires(resp *parser.Message, asked int, contact string) int {
	return min(max(granted(resp, asked, contact), 1), store.MaxUACExpires)
}

func granted(resp *parser.Message, asked int, contact string) int {
	if resp == nil {
		return asked
	}
	it := resp.NameAddrs(parser.HdrContact)
	best := -1
	for it.Next() {
		n, ok := it.NameAddr.Expires()
		if !ok || n == 0 {
			continue
		}
		if string(it.NameAddr.URI) == contact {
			return int(min(n, store.MaxUACExpires))
		}
		if best < 0 || int(n) < best {
			best = int(min(n, store.MaxUACExpires)) // ours may be among them: the shortest is the safe guess
		}
	}
	if best > 0 {
		return best
	}
	if n, ok := resp.Expires(); ok && n > 0 {
		return int(min(n, store.MaxUACExpires))
	}
	return asked
}

// fail records a failed attempt and schedules the next one (under mu).
func (r *registrant) fail(g *registration, code int, reason, why string, retryAfter time.Duration) {
	r.failed.Inc()
	if g.gone {
		r.drop(g) // the unregistration failed: the binding expires on its own
		return
	}
	g.code, g.reason, g.lastErr = code, reason, why
	if g.state != stateRegistered || time.Now().After(g.until) {
		g.state = stateFailed
	}
	g.failures++
	g.answered, g.stales, g.minExp, g.chName = false, 0, false, ""
	lo, hi := time.Duration(r.u.retryMin.Load()), time.Duration(r.u.retryMax.Load())
	wait := lo // doubled for each failure in a row, up to hi (never past it: no overflow)
	for i := 1; i < g.failures && wait < hi; i++ {
		wait *= 2
	}
	wait = min(wait, hi)
	if retryAfter >= lo && retryAfter <= hi {
		wait = retryAfter
	}
	r.h.Warn("uac: registration failed", "aor", g.row.AOR, "registrar", g.row.Registrar, "code", code, "reason", reason, "err", why, "retry_in", wait.String())
	r.schedule(g, wait)
}

// regView is a registration as management shows it (no password).
type regView struct {
	ID        int64  `json:"id"`
	AOR       string `json:"aor"`
	Registrar string `json:"registrar"`
	Proxy     string `json:"proxy,omitempty"`
	Username  string `json:"username"`
	Expires   int    `json:"expires"`
	Contact   string `json:"contact,omitempty"`
	State     string `json:"state"`
	Code      int    `json:"code,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Error     string `json:"error,omitempty"`
	Until     string `json:"registered_until,omitempty"`
	Next      string `json:"next"`
	Failures  int    `json:"failures"`
	Dst       string `json:"destination,omitempty"`
}

// views lists the registrations in use, by id.
func (r *registrant) views() []regView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]regView, 0, len(r.reg))
	for _, g := range r.reg {
		if g.gone {
			continue
		}
		v := regView{ID: g.row.ID, AOR: g.row.AOR, Registrar: g.row.Registrar, Proxy: g.row.Proxy, Username: g.row.Username,
			Expires: g.expires, Contact: g.row.Contact, State: g.state, Code: g.code, Reason: g.reason, Error: g.lastErr,
			Failures: g.failures}
		if !g.until.IsZero() {
			v.Until = g.until.UTC().Format(time.RFC3339)
		}
		if !g.next.IsZero() {
			v.Next = g.next.UTC().Format(time.RFC3339)
		}
		if g.dst.IsValid() {
			v.Dst = g.proto.String() + ":" + g.dst.String()
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
