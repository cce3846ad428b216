package parser

import "testing"

// TestParseNameAddr: one From/To value on its own, as a dialog keeps it:
// the URI, display name and tag are found; anything but exactly one value
// is refused.
func TestParseNameAddr(t *testing.T) {
	for _, tc := range []struct{ in, uri, name, tag string }{
		{`"Alice" <sip:alice@example.com>;tag=1928`, "sip:alice@example.com", `"Alice"`, "1928"},
		{`<sip:bob@example.com>`, "sip:bob@example.com", "", ""},
		{`sip:carol@example.com;tag=x`, "sip:carol@example.com", "", "x"},
		{`Bob Smith <tel:+4930123>  `, "tel:+4930123", "Bob Smith", ""},
	} {
		na, ok := ParseNameAddr([]byte(tc.in))
		if !ok || string(na.URI) != tc.uri || string(na.DisplayName) != tc.name || string(na.Tag) != tc.tag {
			t.Errorf("%q: %v uri %q name %q tag %q", tc.in, ok, na.URI, na.DisplayName, na.Tag)
		}
	}
	for _, in := range []string{"", "<sip:a@b>, <sip:c@d>", "<sip:a@b> junk", "<>", `"open <sip:a@b>`} {
		if na, ok := ParseNameAddr([]byte(in)); ok {
			t.Errorf("%q: parsed as %+v", in, na)
		}
	}
}
