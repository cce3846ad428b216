package siptrace

import "testing"

func TestScanHeaders(t *testing.T) {
	for _, c := range []struct {
		name, msg, callID string
		cseq              uint32
	}{
		{"full names", "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\nCSeq: 12 INVITE\r\n\r\n", "abc@h", 12},
		{"compact, lower case, spaces", "SIP/2.0 200 OK\r\ncseq :  7 BYE\r\ni :  x-1 \r\n\r\n", "x-1", 7},
		{"upper case", "BYE sip:a SIP/2.0\r\nCALL-ID: Q\r\nCSEQ: 3 BYE\r\n\r\n", "Q", 3},
		{"bare LF", "BYE sip:a SIP/2.0\nCall-Id: lf\nCSeq: 4 BYE\n\n", "lf", 4},
		{"folded", "BYE sip:a SIP/2.0\r\nCall-ID:\r\n folded@h \r\nCSeq:\r\n\t5\r\n BYE\r\n\r\n", "folded@h", 5},
		{"folded inside", "BYE sip:a SIP/2.0\nCall-ID: a\n b\nCSeq: 6 BYE\n\n", "a\n b", 6},
		{"not in the body", "MESSAGE sip:a SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nCall-ID: body\r\n", "", 1},
		{"no headers", "OPTIONS sip:a SIP/2.0", "", 0},
		{"similar names", "OPTIONS sip:a SIP/2.0\r\nCall-Info: <x>\r\nim: y\r\nCall-ID: real\r\n\r\n", "real", 0},
	} {
		id, cseq := scanHeaders([]byte(c.msg))
		if string(id) != c.callID || cseq != c.cseq {
			t.Errorf("%s: Call-ID %q CSeq %d, want %q %d", c.name, id, cseq, c.callID, c.cseq)
		}
	}
}
