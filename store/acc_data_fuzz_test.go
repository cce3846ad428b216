package store

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzCDRData: a call record of any text that CheckCDR takes reads back
// from SQLite (its data array through the acc and missed_calls views) as
// written, byte for byte: the From, To, tags and reason phrase are what
// the parties sent, and a billing run reads them back. The extra pairs
// but for bytes that are not UTF-8, which read back as U+FFFD: the object
// is read with encoding/json (parseExtra), as PostgreSQL and MySQL keep it
// (extraJSON), so the backends agree.
func FuzzCDRData(f *testing.F) {
	c := forgedCDR("forged@host", 1)
	f.Add(c.FromTag, c.ToURI, c.Reason, "account", "10\"01", false)
	f.Add("t\x00g", "caf\xe9", "\\u0000", "k\\", "\r\n", true)
	f.Add("", "", "", "", "", false)
	s := openT(f, f.TempDir(), Options{})
	n := 0
	f.Fuzz(func(t *testing.T, tag, uri, reason, k, v string, missed bool) {
		n++
		c := cdrAt("fuzz-"+strconv.Itoa(n)+"-"+tag, uri, reason, 1_700_000_000_000+int64(n), missed) // unique: n ends at the first "-"
		c.FromTag, c.ToTag, c.FromURI, c.ToURI, c.Caller = tag, reason, uri, tag+uri, v
		c.Reason, c.EndReason, c.EndedBy = reason, k, v
		if k != "" || v != "" {
			c.Extra = map[string]string{k: v}
		}
		if CheckCDR(&c) != nil {
			return
		}
		cs := []CDR{c}
		if err := s.AddCDRs(ctx, cs); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		got, err := s.ListCDRs(ctx, CDRFilter{CallID: c.CallID, Missed: missed})
		if err != nil || len(got) != 1 {
			t.Fatalf("%q: %d records, %v", c.CallID, len(got), err)
		}
		c.ID = cs[0].ID
		if len(c.Extra) > 0 {
			c.Extra = map[string]string{utf8Text(k): utf8Text(v)}
		}
		if len(got[0].Extra) == 0 && len(c.Extra) == 0 {
			got[0].Extra, c.Extra = nil, nil
		}
		if !reflect.DeepEqual(got[0], c) {
			t.Fatalf("read back\n%+v\nwant\n%+v", got[0], c)
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
