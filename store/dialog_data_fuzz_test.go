package store

import (
	"reflect"
	"testing"
)

// FuzzDialogData: a dialog that CheckDialog takes reads back from its
// SQLite data object (appendDialogData, decodeDialogData) and its
// profiles and vars columns (encodeProfiles, encodeValues and their
// decoders) as it was written, whatever bytes its text holds: the From,
// To, Contacts, route sets, reason phrase and profile values are what the
// parties sent, and a dialog that comes back otherwise after a restart
// sends its BYEs and checks its requests with other values.
func FuzzDialogData(f *testing.F) {
	d := forgedDialog(1)
	f.Add(d.FromHdr, d.ToHdr, d.CalleeFromHdr, d.CallerRouteSet, d.Phrase, "al,ice=1%\xff", `"}\`, uint32(1<<32-1), 699)
	f.Add(`{"hex":"41"}`, "\t", "\u2028", "", "", "", "&=;,", uint32(0), 0)
	f.Fuzz(func(t *testing.T, a, b, c, route, phrase, profile, value string, n uint32, code int) {
		d := testDialog(1, "call@host")
		d.FromHdr, d.ToHdr, d.FromURI, d.ToTag = a+"x", b+"x", c+"x", a+b+"x"
		d.CalleeFromHdr, d.CalleeToHdr, d.CallerRouteSet, d.CalleeRouteSet = c, b, route, a
		d.CallerContact, d.CalleeContact, d.CallerContactSent, d.CalleeContactSent = route, phrase, c, route
		d.Phrase, d.Code = phrase, code
		d.CallerCSeq, d.CalleeCSeq, d.CSeqOffset, d.Flags = n, n/2, n/3, n
		d.Profiles = []DialogProfile{{Name: "caller", Value: profile}, {Name: "all"}, {Name: "callee", Value: value}}
		d.Values = []DialogValue{{Name: "note", Value: value}, {Name: "empty"}, {Name: "p", Value: profile}}
		if CheckDialog(&d) != nil {
			return
		}
		d.profiles, d.vars = encodeProfiles(d.Profiles), encodeValues(d.Values)
		data := appendDialogData(nil, &d)
		back := Dialog{ID: d.ID, CallID: d.CallID, CallerHop: d.CallerHop, CalleeHop: d.CalleeHop, State: d.State,
			StartTime: d.StartTime, AnswerTime: d.AnswerTime, Timeout: d.Timeout}
		if err := decodeDialogData(&back, string(data)); err != nil {
			t.Fatalf("%+v: data %q does not read back: %v", d, data, err)
		}
		var err1, err2 error
		if back.Profiles, err1 = decodeProfiles(back.profiles); err1 != nil {
			t.Fatalf("profiles %q: %v", back.profiles, err1)
		}
		if back.Values, err2 = decodeValues(back.vars); err2 != nil {
			t.Fatalf("vars %q: %v", back.vars, err2)
		}
		back.AnswerTime = d.AnswerTime // a column of its own on SQLite; the object has it too
		if !reflect.DeepEqual(back, d) {
			t.Fatalf("data %q reads back as\n%+v, want\n%+v", data, back, d)
		}
	})
}
