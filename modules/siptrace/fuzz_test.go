package siptrace

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"switchboard/parser"
)

// addTorture seeds f with the RFC 4475 and RFC 5118 messages.
func addTorture(f *testing.F) {
	files, err := filepath.Glob("../../parser/testdata/torture/*/*/*.sip")
	if err != nil || len(files) == 0 {
		f.Fatalf("torture messages: %v (%d files)", err, len(files))
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzScanHeaders: for any message that parses, the line scan gives the
// Call-ID and CSeq number the parse gives. The core hands the tap the
// bytes it sends, whose header lines are the sender's own (a relayed
// request keeps them), and modeRoute picks the copy to capture by these
// two: a scan that reads them otherwise leaves the call's relayed
// messages out of the trace, or puts another call's in it.
func FuzzScanHeaders(f *testing.F) {
	addTorture(f)
	f.Add([]byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n" +
		"i :  abc@h \r\nCSeq: 12 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\n" +
		"Call-ID:\n folded@h\nCSeq:\t4294967295 BYE\nContent-Length: 0\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		callID, cseq := scanHeaders(data)
		if len(callID) > 0 && !bytes.Contains(data, callID) {
			t.Fatalf("%q: Call-ID %q is not a view of the message", data, callID)
		}
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		if string(callID) != string(m.CallID()) || cseq != m.CSeq().Num {
			t.Fatalf("%q: the scan reads Call-ID %q CSeq %d, the parse %q %d", data, callID, cseq, m.CallID(), m.CSeq().Num)
		}
	})
}
