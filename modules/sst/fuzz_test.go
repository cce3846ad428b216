package sst

import (
	"strconv"
	"testing"

	"switchboard/parser"
)

// FuzzInterval: Session-Expires and Min-SE, which any caller writes, are
// read without panicking; what reads as an interval has its digits as
// written (a view of the value), the number they make (at most 2^32-1)
// and a refresher of uac or uas; and the edit Manage makes, another number
// in place of the digits, reads back as that number with the same
// refresher: the callee gets the header the proxy meant.
func FuzzInterval(f *testing.F) {
	for _, v := range []string{
		"1800", "90;refresher=uac", "1800 ; Refresher = UAS ; x", "4294967296", "0",
		"99999999999999999999;refresher=uas", "60;x=\"q\"", "60;;", "60;refresher", "60;refresher=uac;refresher=bad",
		"60\r\n ;refresher=uac", " 60",
	} {
		f.Add([]byte(v), uint32(90))
	}
	head := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	f.Fuzz(func(t *testing.T, value []byte, n uint32) {
		for _, h := range []struct {
			name string
			read func(*parser.Message) (Interval, bool)
		}{{"Session-Expires", SessionExpires}, {"Min-SE", MinSE}} {
			data := []byte(head + h.name + ": ")
			data = append(data, value...)
			data = append(data, "\r\nContent-Length: 0\r\n\r\n"...)
			var m parser.Message
			if m.Parse(data) != nil {
				continue
			}
			iv, ok := h.read(&m)
			if !ok || !iv.Present {
				continue
			}
			var want uint64
			for _, c := range iv.Digits {
				if c < '0' || c > '9' {
					t.Fatalf("%s %q: digits %q", h.name, value, iv.Digits)
				}
				want = min(want*10+uint64(c-'0'), 1<<32-1)
			}
			if uint64(iv.Seconds) != want || len(iv.Digits) == 0 {
				t.Fatalf("%s %q: %d seconds from digits %q", h.name, value, iv.Seconds, iv.Digits)
			}
			if r := string(iv.Refresher); r != "" && !equalFold(iv.Refresher, "uac") && !equalFold(iv.Refresher, "uas") {
				t.Fatalf("%s %q: refresher %q", h.name, value, r)
			}
			var ed parser.Editor
			ed.Reset(&m)
			digits := strconv.AppendUint(nil, uint64(n), 10)
			if !ed.Replace(iv.Digits, digits) {
				t.Fatalf("%s %q: the digits cannot be replaced", h.name, value)
			}
			out := ed.AppendTo(nil)
			var m2 parser.Message
			if err := m2.Parse(out); err != nil {
				t.Fatalf("%s %q with %d: %q does not parse: %v", h.name, value, n, out, err)
			}
			iv2, ok := h.read(&m2)
			if !ok || !iv2.Present || iv2.Seconds != n || string(iv2.Refresher) != string(iv.Refresher) {
				t.Fatalf("%s %q with %d: %q reads as %+v %v", h.name, value, n, out, iv2, ok)
			}
		}
	})
}
