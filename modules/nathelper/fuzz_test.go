package nathelper

import (
	"net/netip"
	"testing"

	"switchboard/parser"
)

// FuzzFixContact: the edit fix_nated_contact makes, the host and port of
// each Contact URI replaced by the source address, leaves a message that
// parses with the same Contacts, each rewritten one naming the source
// with its user, password, parameters, headers and header parameters as
// the phone wrote them. The Contact is whatever the sender wrote.
func FuzzFixContact(f *testing.F) {
	for _, c := range []string{
		"<sip:alice@10.0.0.5:5062;transport=tcp;ob>;expires=60;+sip.instance=\"<urn:uuid:1>\"",
		"\"A\" <sips:alice:pw@[fe80::1%25eth0]:5061?x=y>, sip:bob@10.0.0.6;q=0.5",
		"sip:alice@host.example.com:", "<sip:10.0.0.5:0005062>", "*", "<tel:+1555>", "<sip:a@[::1]>",
	} {
		f.Add([]byte(c), []byte{192, 0, 2, 1}, uint16(5060))
	}
	f.Add([]byte("<sip:x@h>"), []byte{0x20, 1, 0xd, 0xb8, 15: 1}, uint16(0))
	head := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: "
	f.Fuzz(func(t *testing.T, contact, ip []byte, port uint16) {
		src, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		data := append([]byte(head), contact...)
		data = append(data, "\r\nContent-Length: 0\r\n\r\n"...)
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		var before []parser.NameAddr
		var fixed []bool
		hp := appendHostPort(nil, src, port)
		var ed parser.Editor
		ed.Reset(&m)
		it := m.NameAddrs(parser.HdrContact)
		for it.Next() {
			before = append(before, it.NameAddr)
			view := hostPortView(&it.NameAddr)
			fixed = append(fixed, view != nil && len(before) <= maxFixedContacts)
			if fixed[len(fixed)-1] && !ed.Replace(view, hp) {
				fixed[len(fixed)-1] = false // out of edits: left as it is
			}
		}
		if it.Err() != nil {
			return
		}
		out := ed.AppendTo(nil)
		var m2 parser.Message
		if err := m2.Parse(out); err != nil {
			t.Fatalf("Contact %q fixed to %s: %q does not parse: %v", contact, hp, out, err)
		}
		it = m2.NameAddrs(parser.HdrContact)
		for i := 0; it.Next(); i++ {
			if i >= len(before) {
				t.Fatalf("Contact %q fixed to %s: more Contacts in %q", contact, hp, out)
			}
			got, was := it.NameAddr, before[i]
			if string(got.Params) != string(was.Params) || string(got.DisplayName) != string(was.DisplayName) || got.Star != was.Star {
				t.Fatalf("Contact %q fixed to %s: %q became %q", contact, hp, was.Raw, got.Raw)
			}
			if !fixed[i] {
				if string(got.URI) != string(was.URI) {
					t.Fatalf("Contact %q: %q not fixed but became %q", contact, was.Raw, got.Raw)
				}
				continue
			}
			var u, w parser.URI
			if err := u.Parse(got.URI); err != nil || w.Parse(was.URI) != nil {
				t.Fatalf("Contact %q fixed to %s: URI %q: %v", contact, hp, got.URI, err)
			}
			a, ok := parser.ParseIP(u.Host)
			if !ok || a != src.Unmap().WithZone("") || u.Port != int(port) || string(u.User) != string(w.User) ||
				string(u.Password) != string(w.Password) || string(u.Params) != string(w.Params) ||
				string(u.Headers) != string(w.Headers) || u.Scheme != w.Scheme {
				t.Fatalf("Contact %q fixed to %s: URI %q became %q", contact, hp, was.URI, got.URI)
			}
		}
	})
}
