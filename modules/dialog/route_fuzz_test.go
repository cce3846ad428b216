package dialog

import (
	"testing"

	"switchboard/parser"
)

// FuzzFirstRouteURI: the first URI of a route set as the dialog keeps it
// (routeValues of the Record-Route, in either order) is the URI the parse
// gives for that value, nil for one without "<" ">". The Record-Route is
// whatever the parties' proxies wrote.
func FuzzFirstRouteURI(f *testing.F) {
	for _, rr := range []string{
		"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr;ftag=a>\r\n",
		"Record-Route: \"a,b<c>\\\"\" <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n",
		"Record-Route: Proxy One <sip:[2001:db8::1]:5070;lr>;x=\"<y>\"\r\n",
		"Record-Route: sip:p1;lr\r\n",
		"",
	} {
		f.Add([]byte(rr))
	}
	f.Fuzz(func(t *testing.T, rr []byte) {
		data := append([]byte(sentHead), rr...)
		data = append(data, "Content-Length: 0\r\n\r\n"...)
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		var values []parser.NameAddr
		it := m.NameAddrs(parser.HdrRecordRoute)
		for it.Next() {
			values = append(values, it.NameAddr)
		}
		if it.Err() != nil || len(values) == 0 || len(values) > 32 {
			return // the dialog keeps no route set then
		}
		for _, reverse := range []bool{false, true} {
			first := values[0]
			if reverse {
				first = values[len(values)-1]
			}
			var want []byte
			if first.Bracketed {
				want = first.URI
			}
			rs := routeValues(nil, &m, parser.HdrRecordRoute, nil, reverse)
			if got := firstRouteURI(rs); string(got) != string(want) {
				t.Fatalf("route set %q (reverse %v): first URI %q, the parse %q", rs, reverse, got, want)
			}
		}
	})
}
