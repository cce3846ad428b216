package parser

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, FrameLength, every accessor and
// the editor. Nothing may panic, and whatever parses must write back (with
// no edits and with the proxy edits) to bytes that parse again to the same
// fields.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/torture/*/*/*.sip", "testdata/bench/*.sip"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(editBase))
	f.Add([]byte("\r\n\r\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP h\nFrom: a:b\nTo: c:d\nCall-ID: x\nCSeq: 1 X\n\n"))
	scratch := make([]byte, 0, 4096)
	f.Fuzz(func(t *testing.T, b []byte) {
		skip, n, err := FrameLength(b, 0)
		if err == nil && (skip > len(b) || skip+n > len(b)) {
			t.Fatalf("FrameLength out of range: %d %d of %d", skip, n, len(b))
		}
		var m Message
		if err := m.Parse(b); err != nil {
			pe, ok := err.(*Error)
			if !ok || pe.Kind == KindNone || pe.Offset < 0 || pe.Offset > len(b)+DefaultMaxSize {
				t.Fatalf("bad error %#v", err)
			}
			_ = pe.AppendReason(scratch[:0])
			// the partial index must still be safe to read
			readEverything(&m, scratch)
			if m.IsRequest() && m.NumHeaders() > 0 {
				_ = AppendResponse(scratch[:0], &m, 400, nil, nil)
			}
			return
		}
		readEverything(&m, scratch)
		_ = AppendResponse(scratch[:0], &m, 200, nil, []byte("t"))
		checkRoundTrip(t, &m)
	})
}
