package registrar

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"switchboard/store"
)

// FuzzBindingWire: a binding as another node reads it from Redis
// (encodeBinding, decodeBinding) is the binding this node wrote. Its text
// is what the phone's REGISTER held: the Contact, Path, Call-ID,
// User-Agent and +sip.instance; the instance and the Contact are the
// binding's key, which the phone's next REGISTER must find on any node.
// The wire is JSON: a byte that is not UTF-8 reads back as U+FFFD, which
// a User-Agent or a display name in the Path may hold (shown, never
// compared); a Contact, Call-ID and instance cannot (the parser takes
// only ASCII in the first two, Save refuses such an instance:
// TestBadRequests).
func FuzzBindingWire(f *testing.F) {
	f.Add("sip:alice@192.0.2.7:5062;ob", "<sip:edge.example.com;lr>", "a84b4c76e66710", "Phone/1.0", "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", int64(1_700_000_000_000), "node-1")
	f.Add("sip:alice@[2001:db8::1]", "\"Edge \xe9\" <sip:e;lr>", "c@h", "Ph\xffne", "<urn:\xfe>", int64(-1), "")
	f.Fuzz(func(t *testing.T, contact, path, callID, ua, instance string, ms int64, node string) {
		wb := wireBinding{Binding: store.Binding{AOR: "alice@example.com", Contact: contact, Received: "udp:192.0.2.7:5062",
			Path: path, Q: 500, Expires: ms / 1000, CallID: callID, CSeq: 7, UserAgent: ua, Instance: instance, RegID: 1,
			Socket: "udp:127.0.0.1:5060", Flags: 3, LastModified: ms / 1000}, ExpiresMs: ms, ModMs: ms - 1, Node: node,
			Flow: node, Outbound: node != ""}
		if !utf8.ValidString(contact) || !utf8.ValidString(callID) || !utf8.ValidString(instance) {
			return
		}
		back, ok := decodeBinding(encodeBinding(&wb))
		wb.Path, wb.UserAgent, wb.Node, wb.Flow = utf8Text(path), utf8Text(ua), utf8Text(node), utf8Text(node)
		if !ok || !reflect.DeepEqual(back, wb) {
			t.Fatalf("%+v reads back from Redis as\n%+v (%v)", wb, back, ok)
		}
	})
}

// utf8Text is what a string becomes in JSON and back: each byte that is
// not UTF-8 turns into U+FFFD.
func utf8Text(s string) string {
	var b strings.Builder
	for _, r := range s { // an invalid byte is one RuneError
		b.WriteRune(r)
	}
	return b.String()
}
