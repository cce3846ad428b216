package parser

import (
	"errors"
	"strings"
	"testing"
)

func TestFrameLength(t *testing.T) {
	msg := req("Content-Length: 5\r\n\r\nhello")
	cases := []struct {
		name    string
		in      string
		max     int
		skip, n int
		kind    ErrorKind
	}{
		{"whole", msg, 0, 0, len(msg), KindNone},
		{"keep-alives first", "\r\n\r\n" + msg, 0, 4, len(msg), KindNone},
		{"only keep-alive", "\r\n\r\n", 0, 4, 0, KindNone},
		{"empty", "", 0, 0, 0, KindNone},
		{"two messages", msg + msg, 0, 0, len(msg), KindNone},
		{"headers incomplete", msg[:40], 0, 0, 0, KindNone},
		{"body incomplete", msg[:len(msg)-2], 0, 0, 0, KindNone},
		{"compact l", strings.Replace(msg, "Content-Length", "l", 1), 0, 0, len(msg) - 13, KindNone},
		{"folded and spaced", req("content-length  :\r\n 5\r\n\r\nhello"), 0, 0, len(req("content-length  :\r\n 5\r\n\r\nhello")), KindNone},
		{"LF only", strings.ReplaceAll(msg, "\r\n", "\n"), 0, 0, len(msg) - 9, KindNone},
		{"missing Content-Length", req("\r\n"), 0, 0, 0, KindMissingContentLength},
		{"negative", req("Content-Length: -1\r\n\r\n"), 0, 0, 0, KindBadContentLength},
		{"conflicting", req("Content-Length: 1\r\nContent-Length: 2\r\n\r\n"), 0, 0, 0, KindBadContentLength},
		{"body over limit", req("Content-Length: 5000\r\n\r\n"), 1000, 0, 0, KindTooLarge},
		{"Content-Length overflow", req("Content-Length: 99999999999\r\n\r\n"), 1000, 0, 0, KindBadContentLength},
		{"header over limit", req(strings.Repeat("X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 40)), 1000, 0, 0, KindTooLarge},
		{"message over limit", req("Content-Length: 900\r\n\r\n"), 1000, 0, 0, KindTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			skip, n, err := FrameLength([]byte(c.in), c.max)
			if c.kind != KindNone {
				var pe *Error
				if !errors.As(err, &pe) || pe.Kind != c.kind {
					t.Fatalf("err %v, want %v", err, c.kind)
				}
				return
			}
			if err != nil || skip != c.skip || n != c.n {
				t.Fatalf("= %d, %d, %v; want %d, %d", skip, n, err, c.skip, c.n)
			}
			if n > 0 {
				var m Message
				if err := m.Parse([]byte(c.in)[skip : skip+n]); err != nil {
					t.Errorf("framed message does not parse: %v", err)
				}
			}
		})
	}
}

func TestFrameLengthByteByByte(t *testing.T) {
	msg := []byte("\r\n" + req("Content-Length: 5\r\n\r\nhello"))
	for i := 0; i < len(msg); i++ {
		_, n, err := FrameLength(msg[:i], 0)
		if err != nil || n != 0 {
			t.Fatalf("prefix %d: n=%d err=%v", i, n, err)
		}
	}
	skip, n, err := FrameLength(msg, 0)
	if err != nil || skip != 2 || n != len(msg)-2 {
		t.Fatalf("%d %d %v", skip, n, err)
	}
}
