package sipdns

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// DNS messages are built, sent and read by github.com/miekg/dns. This
// file turns a question into a query and an answer into the few fields
// RFC 3263 uses (dnsRR), so the cache and the resolution steps keep small
// values of their own rather than the library's records.

// ednsSize is the UDP payload size advertised in the OPT record: the
// DNS flag day 2020 value, which avoids IP fragmentation.
const ednsSize = 1232

var (
	errDNSName     = errors.New("sipdns: bad DNS name")
	errDNSMismatch = errors.New("sipdns: DNS answer does not match the question")
)

// dnsRR is one resource record of an answer, decoded.
type dnsRR struct {
	name  string // lower case, no trailing dot
	typ   uint16
	ttl   uint32
	addr  netip.Addr // A, AAAA
	host  string     // CNAME target, SRV target, NAPTR replacement ("" for the root)
	prio  uint16     // SRV priority, NAPTR order
	wt    uint16     // SRV weight, NAPTR preference
	port  uint16     // SRV
	flags string     // NAPTR
	svc   string     // NAPTR services
	min   uint32     // SOA minimum
}

// dnsMsg is a decoded answer: the response code, the truncation flag and
// the records of the answer, authority and additional sections.
type dnsMsg struct {
	rcode int
	tc    bool
	ans   []dnsRR
	auth  []dnsRR
	extra []dnsRR
}

// newQuery returns a recursive query for name/qtype with an EDNS0 OPT
// record and a random id. A name the wire format cannot carry (an empty
// label, a label over 63 bytes, a name over 255) is an error.
func newQuery(name string, qtype uint16) (*dns.Msg, error) {
	fqdn := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
		return nil, errDNSName
	}
	q := new(dns.Msg)
	q.SetQuestion(fqdn, qtype)
	q.SetEdns0(ednsSize, false)
	return q, nil
}

// decodeAnswer checks that r answers q (a response, same id, same single
// question) and decodes it; records of classes and types not used are
// left out.
func decodeAnswer(q, r *dns.Msg) (*dnsMsg, error) {
	if !r.Response || r.Id != q.Id || len(r.Question) != 1 {
		return nil, errDNSMismatch
	}
	rq, qq := r.Question[0], q.Question[0]
	if rq.Qtype != qq.Qtype || !strings.EqualFold(rq.Name, qq.Name) {
		return nil, errDNSMismatch
	}
	m := &dnsMsg{rcode: r.Rcode, tc: r.Truncated}
	if m.tc {
		return m, nil // the caller asks again over TCP
	}
	m.ans = records(r.Answer)
	m.auth = records(r.Ns)
	m.extra = records(r.Extra)
	return m, nil
}

func records(rrs []dns.RR) []dnsRR {
	var out []dnsRR
	for _, rr := range rrs {
		if d, ok := record(rr); ok {
			out = append(out, d)
		}
	}
	return out
}

// record keeps what resolution uses of an A, AAAA, CNAME, SRV, NAPTR or
// SOA record of class IN.
func record(rr dns.RR) (dnsRR, bool) {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		return dnsRR{}, false
	}
	d := dnsRR{name: hostName(h.Name), typ: h.Rrtype, ttl: h.Ttl}
	if d.ttl > 1<<31-1 {
		d.ttl = 0 // RFC 2181 §8: treat as zero
	}
	var ok bool
	switch v := rr.(type) {
	case *dns.A:
		d.addr, ok = netip.AddrFromSlice(v.A.To4())
		return d, ok
	case *dns.AAAA:
		d.addr, ok = netip.AddrFromSlice(v.AAAA.To16())
		return d, ok && len(v.AAAA) == 16
	case *dns.CNAME:
		d.host = hostName(v.Target)
	case *dns.SRV:
		d.prio, d.wt, d.port, d.host = v.Priority, v.Weight, v.Port, hostName(v.Target)
	case *dns.NAPTR:
		// The regexp is not used for SIP (RFC 3263 §4.1: replacement only).
		d.prio, d.wt, d.flags, d.svc, d.host = v.Order, v.Preference, v.Flags, v.Service, hostName(v.Replacement)
	case *dns.SOA:
		d.min = v.Minttl
	default:
		return dnsRR{}, false
	}
	return d, true
}

// hostName is a domain name as the cache keys it: lower case, without the
// trailing dot ("" for the root).
func hostName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }
