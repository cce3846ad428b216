package parser

import (
	"errors"
	"strings"
	"testing"
)

const okHeaders = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n" +
	"From: <sip:a@example.com>;tag=1\r\n" +
	"To: <sip:b@example.com>\r\n" +
	"Call-ID: c1@192.0.2.1\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"Max-Forwards: 70\r\n"

func req(extra string) string {
	return "OPTIONS sip:b@example.com SIP/2.0\r\n" + okHeaders + extra
}

// TestErrorKinds produces every error kind from a message and checks the
// kind, the header, the offset and the status a server answers with.
func TestErrorKinds(t *testing.T) {
	many := strings.Repeat("X-H: 1\r\n", MaxHeaders)
	cases := []struct {
		name   string
		msg    string
		max    int
		kind   ErrorKind
		header HeaderName
		status int
		offset int // -1: not checked
	}{
		{"too large", req("Content-Length: 0\r\n\r\n"), 100, KindTooLarge, HdrOther, 513, 100},
		{"too many headers", req(many + "\r\n"), 0, KindTooManyHeaders, HdrOther, 513, -1},
		{"bad start line", "OPTIONS\r\n" + okHeaders + "\r\n", 0, KindBadStartLine, HdrOther, 400, 0},
		{"bad version", "OPTIONS sip:b@example.com SIP/2\r\n" + okHeaders + "\r\n", 0, KindBadStartLine, HdrOther, 400, 26},
		{"bad status", "SIP/2.0 99 Low\r\n" + okHeaders + "\r\n", 0, KindBadStartLine, HdrOther, 400, 8},
		{"status not 3 digits", "SIP/2.0 2000 OK\r\n" + okHeaders + "\r\n", 0, KindBadStartLine, HdrOther, 400, 8},
		{"bad request URI", "OPTIONS sip:b@exa mple.com SIP/2.0\r\n" + okHeaders + "\r\n", 0, KindBadStartLine, HdrOther, 400, -1},
		{"bad request URI port", "OPTIONS sip:b@example.com:99999 SIP/2.0\r\n" + okHeaders + "\r\n", 0, KindBadRequestURI, HdrOther, 400, 8},
		{"headers in request URI", "OPTIONS sip:b@example.com?X=1 SIP/2.0\r\n" + okHeaders + "\r\n", 0, KindBadRequestURI, HdrOther, 400, 8},
		{"header without colon", req("Bogus\r\n\r\n"), 0, KindBadHeader, HdrOther, 400, len(req(""))},
		{"header name not a token", req("Bad Name: x\r\n\r\n"), 0, KindBadHeader, HdrOther, 400, len(req(""))},
		{"bad Via", strings.Replace(req("\r\n"), "SIP/2.0/UDP 192.0.2.1", "SIP/2.0 192.0.2.1", 1), 0, KindBadHeader, HdrVia, 400, 35},
		{"bad From", strings.Replace(req("\r\n"), "<sip:a@example.com>", "<sip:a@example.com", 1), 0, KindBadHeader, HdrFrom, 400, -1},
		{"bad To", strings.Replace(req("\r\n"), "To: <sip:b@example.com>", "To: \"b <sip:b@example.com>", 1), 0, KindBadHeader, HdrTo, 400, -1},
		{"empty Call-ID", strings.Replace(req("\r\n"), "c1@192.0.2.1", "", 1), 0, KindBadHeader, HdrCallID, 400, -1},
		{"bad CSeq", strings.Replace(req("\r\n"), "CSeq: 1 OPTIONS", "CSeq: x OPTIONS", 1), 0, KindBadHeader, HdrCSeq, 400, -1},
		{"CSeq over 2^32", strings.Replace(req("\r\n"), "CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS", 1), 0, KindBadHeader, HdrCSeq, 400, -1},
		{"bad Max-Forwards", strings.Replace(req("\r\n"), "Max-Forwards: 70", "Max-Forwards: 256", 1), 0, KindBadHeader, HdrMaxForwards, 400, -1},
		{"missing Via", strings.Replace(req("\r\n"), "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n", "", 1), 0, KindMissingHeader, HdrVia, 400, -1},
		{"missing Call-ID", strings.Replace(req("\r\n"), "Call-ID: c1@192.0.2.1\r\n", "", 1), 0, KindMissingHeader, HdrCallID, 400, -1},
		{"missing CSeq", strings.Replace(req("\r\n"), "CSeq: 1 OPTIONS\r\n", "", 1), 0, KindMissingHeader, HdrCSeq, 400, -1},
		{"duplicate Call-ID", req("i: other\r\n\r\n"), 0, KindDuplicateHeader, HdrCallID, 400, len(req(""))},
		{"duplicate Max-Forwards", req("Max-Forwards: 70\r\n\r\n"), 0, KindDuplicateHeader, HdrMaxForwards, 400, len(req(""))},
		{"CSeq mismatch", strings.Replace(req("\r\n"), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1), 0, KindCSeqMismatch, HdrCSeq, 400, -1},
		{"CSeq mismatch, unknown method", strings.Replace(strings.Replace(req("\r\n"), "OPTIONS sip", "FOO sip", 1), "CSeq: 1 OPTIONS", "CSeq: 1 BAR", 1), 0, KindCSeqMismatch, HdrCSeq, 501, -1},
		{"no header end", req("Content-Length: 0\r\n"), 0, KindNoHeaderEnd, HdrOther, 400, -1},
		{"no line end", "OPTIONS sip:b@example.com SIP/2.0", 0, KindNoHeaderEnd, HdrOther, 400, -1},
		{"bad Content-Length", req("Content-Length: 1x\r\n\r\n"), 0, KindBadContentLength, HdrContentLength, 400, len(req(""))},
		{"conflicting Content-Length", req("Content-Length: 1\r\nl: 2\r\n\r\nab"), 0, KindBadContentLength, HdrContentLength, 400, -1},
		{"short body", req("Content-Length: 10\r\n\r\nabc"), 0, KindShortBody, HdrContentLength, 400, -1},
	}
	seen := map[ErrorKind]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Message
			m.MaxSize = c.max
			err := m.Parse([]byte(c.msg))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, want *Error", err)
			}
			if pe.Kind != c.kind || pe.Header != c.header {
				t.Fatalf("got %v/%v (%v), want %v/%v", pe.Kind, pe.Header, err, c.kind, c.header)
			}
			if pe.Status() != c.status {
				t.Errorf("status %d, want %d", pe.Status(), c.status)
			}
			if c.offset >= 0 && pe.Offset != c.offset {
				t.Errorf("offset %d, want %d", pe.Offset, c.offset)
			}
			if !errors.Is(err, &Error{Kind: c.kind}) {
				t.Error("errors.Is by kind failed")
			}
			if pe.Error() == "" || pe.Reason() == "" {
				t.Error("empty text")
			}
			r := string(pe.AppendReason(nil))
			if c.header != HdrOther && !strings.HasSuffix(r, c.header.String()) {
				t.Errorf("reason %q does not name %v", r, c.header)
			}
			seen[c.kind] = true
		})
	}
	// KindMissingContentLength comes from FrameLength (streams).
	_, _, err := FrameLength([]byte(req("\r\n")), 0)
	if !errors.Is(err, ErrMissingContentLength) {
		t.Errorf("FrameLength without Content-Length: %v", err)
	} else {
		seen[KindMissingContentLength] = true
	}
	for k := KindTooLarge; k < numKinds; k++ {
		if !seen[k] {
			t.Errorf("no test produces %v", k)
		}
	}
}

func TestErrorReasonUnknownHeader(t *testing.T) {
	var m Message
	err := m.Parse([]byte(req("X-Bad\r\n\r\n")))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	if got := string(pe.AppendReason(nil)); got != "Bad Request - Malformed Header X-Bad" {
		t.Errorf("reason %q", got)
	}
	if !errors.Is(err, ErrBadHeader) || errors.Is(err, ErrBadStartLine) {
		t.Error("errors.Is mismatch")
	}
}

// After a header error the index is complete, so a 400 can be built.
func TestIndexCompleteAfterError(t *testing.T) {
	var m Message
	msg := strings.Replace(req("\r\n"), "CSeq: 1 OPTIONS", "CSeq: x", 1)
	if err := m.Parse([]byte(msg)); err == nil {
		t.Fatal("no error")
	}
	out := AppendResponse(nil, &m, 400, nil, []byte("t1"))
	var r Message
	if err := r.Parse(out); err != nil && !errors.Is(err, ErrBadHeader) {
		t.Fatalf("%v\n%s", err, out)
	}
	if string(r.TopVia().Branch) != "z9hG4bKabc" || string(r.ToTag()) != "t1" {
		t.Errorf("response:\n%s", out)
	}
}
