package uac

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"switchboard/parser"
)

// FuzzReplaceHeader: the From or To uac_replace_from/to and Restore write,
// the caller's display name and parameters (tag included) with a URI the
// route or the token gives, is a header that parses, and reads back as
// that URI with the caller's parameters and tag: whatever the caller
// wrote, the callee gets the From the carrier wants and its dialog keeps
// the tag. The token carrying the two URIs opens as sealed, for the
// dialog's caller tag in either direction.
func FuzzReplaceHeader(f *testing.F) {
	for _, from := range []string{
		"\"Alice\" <sip:alice@example.com>;tag=a1",
		"Alice Smith <sip:alice@example.com;user=phone>;tag=a1;x=\"y;z\"",
		"sip:alice@example.com;tag=a1",
		"<tel:+15551234>;tag=a1",
		"\"A \\\"q\\\" \" <sip:a@b>;tag=1",
	} {
		f.Add([]byte(from), []byte("sip:+15550001@carrier.example.net"), []byte("Carrier"), true)
	}
	f.Add([]byte("<sip:a@b>;tag=1"), []byte(""), []byte("\"quoted\""), false)
	head := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"To: <sip:bob@example.com>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nFrom: "
	u := &UAC{}
	u.scratches.New = func() any { return newScratch() }
	block, _ := aes.NewCipher(make([]byte, 32))
	u.aead, _ = cipher.NewGCM(block)
	f.Fuzz(func(t *testing.T, from, uri, display []byte, keepDisplay bool) {
		if keepDisplay {
			display = nil
		}
		if !validDisplay(display) || !validURI(uri) {
			return
		}
		data := append([]byte(head), from...)
		data = append(data, "\r\nContent-Length: 0\r\n\r\n"...)
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		na := m.From()
		if len(na.URI) == 0 {
			return
		}
		d, newURI := display, uri
		if d == nil {
			d = na.DisplayName
		}
		if len(newURI) == 0 {
			newURI = na.URI
		}
		value := appendNameAddr(nil, d, newURI, na.Params)
		var ed parser.Editor
		ed.Reset(&m)
		if !ed.SetHeaderValue(parser.HdrFrom, value) {
			t.Fatalf("From %q: cannot be set to %q", from, value)
		}
		out := ed.AppendTo(nil)
		var m2 parser.Message
		if err := m2.Parse(out); err != nil {
			t.Fatalf("From %q replaced by %q: %v", from, value, err)
		}
		got := m2.From()
		if string(got.URI) != string(newURI) || string(got.Params) != string(na.Params) || string(m2.FromTag()) != string(m.FromTag()) {
			t.Fatalf("From %q replaced by %q reads as URI %q params %q tag %q", from, value, got.URI, got.Params, m2.FromTag())
		}

		sc := newScratch()
		if !u.seal(sc, &m, paramFrom, na.URI, newURI) {
			t.Fatal("seal failed")
		}
		tok := append([]byte(nil), sc.tok...)
		orig, repl, ok := u.open(newScratch(), &m, paramFrom, tok, true)
		if !ok || string(orig) != string(na.URI) || string(repl) != string(newURI) {
			t.Fatalf("token of %q, %q opens as %q, %q, %v", na.URI, newURI, orig, repl, ok)
		}
		if _, _, ok := u.open(newScratch(), &m, paramTo, tok, true); ok {
			t.Fatalf("the From token of %q opens as a To token", from)
		}
		// Garbage in the parameter's place (a forged Record-Route the
		// signature would refuse first) opens as nothing, without panic.
		if _, _, ok := u.open(newScratch(), &m, paramFrom, from, true); ok {
			t.Fatalf("%q opens as a token", from)
		}
	})
}
