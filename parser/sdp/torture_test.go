package sdp

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// sdp joins lines with CR LF and ends the body with one.
func sdp(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n") }

// head is the session level of most torture bodies, lines 1-5.
var head = []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"}

func withHead(lines ...string) []byte { return sdp(append(append([]string{}, head...), lines...)...) }

// noConn is head without its c= (lines 1-4).
func noConn(lines ...string) []byte {
	return sdp(append([]string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0"}, lines...)...)
}

func TestTortureErrors(t *testing.T) {
	long := "a=x:" + strings.Repeat("y", MaxLineLength-3) // MaxLineLength+1 bytes
	many := make([]string, 0, MaxLines)
	for len(many)+len(head) < MaxLines+1 {
		many = append(many, "a=x")
	}
	media17 := make([]string, 0, 17)
	for k := 0; k <= MaxMedia; k++ {
		media17 = append(media17, "m=audio "+strconv.Itoa(5000+2*k)+" RTP/AVP 0")
	}
	tests := []struct {
		name string
		body []byte
		kind ErrorKind
		line int
		typ  byte
		attr string
	}{
		{"empty body", nil, KindMissingVersion, 1, 0, ""},
		{"only line ends", []byte("\r\n\r\n"), KindMissingVersion, 1, 0, ""},
		{"no v=", sdp(head[1:]...), KindMissingVersion, 1, 'o', ""},
		{"v=1", sdp(append([]string{"v=1"}, head[1:]...)...), KindBadVersion, 1, 'v', ""},
		{"second v=", withHead("v=0"), KindDuplicateLine, 6, 'v', ""},
		{"no o=", sdp("v=0", "s=-", "t=0 0"), KindMissingOrigin, 0, 0, ""},
		{"no s=", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "t=0 0"), KindMissingName, 0, 0, ""},
		{"no t=", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-"), KindMissingTiming, 0, 0, ""},
		{"o= five fields", sdp("v=0", "o=- 1 1 IN IP4", "s=-", "t=0 0"), KindBadOrigin, 2, 'o', ""},
		{"o= seven fields", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1 x", "s=-", "t=0 0"), KindBadOrigin, 2, 'o', ""},
		{"o= bad address", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.300", "s=-", "t=0 0"), KindBadOrigin, 2, 'o', ""},
		{"second o=", withHead("o=- 2 2 IN IP4 192.0.2.1"), KindDuplicateLine, 6, 'o', ""},
		{"second s=", withHead("s=x"), KindDuplicateLine, 6, 's', ""},
		{"t= one field", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0"), KindBadTiming, 4, 't', ""},
		{"t= not a number", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=now 0"), KindBadTiming, 4, 't', ""},
		{"o= in a media section", withHead("m=audio 5000 RTP/AVP 0", "o=- 1 1 IN IP4 192.0.2.1"), KindMisplacedLine, 7, 'o', ""},
		{"t= in a media section", withHead("m=audio 5000 RTP/AVP 0", "t=0 0"), KindMisplacedLine, 7, 't', ""},
		{"c= missing for a media section", noConn("m=audio 5000 RTP/AVP 0"), KindMissingConnection, 5, 'm', ""},
		{"c= missing for the second section", noConn("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "m=video 5002 RTP/AVP 31"), KindMissingConnection, 7, 'm', ""},
		{"two c= in a section", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.2"), KindDuplicateLine, 8, 'c', ""},
		{"two c= at session level", withHead("c=IN IP4 192.0.2.2"), KindDuplicateLine, 6, 'c', ""},
		{"c= two fields", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4"), KindBadConnection, 7, 'c', ""},
		{"c= four fields", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.1 x"), KindBadConnection, 7, 'c', ""},
		{"c= bad IPv4", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 300.1.1.1"), KindBadConnection, 7, 'c', ""},
		{"c= IPv4 with three octets", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 10.1.1"), KindBadConnection, 7, 'c', ""},
		{"c= bad IPv6", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 2001:db8::g"), KindBadConnection, 7, 'c', ""},
		{"c= IPv6 with too many groups", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 1:2:3:4:5:6:7:8:9"), KindBadConnection, 7, 'c', ""},
		{"c= IPv4 TTL over 255", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 233.252.0.1/256"), KindBadConnection, 7, 'c', ""},
		{"c= IPv4 count 0", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 233.252.0.1/127/0"), KindBadConnection, 7, 'c', ""},
		{"c= IPv6 with a TTL and a count", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 ff15::101/3/2"), KindBadConnection, 7, 'c', ""},
		{"b= without a value", withHead("b=AS"), KindBadBandwidth, 6, 'b', ""},
		{"b= not a number", withHead("m=audio 5000 RTP/AVP 0", "b=AS:lots"), KindBadBandwidth, 7, 'b', ""},
		{"m= port over 65535", withHead("m=audio 65536 RTP/AVP 0"), KindBadPort, 6, 'm', ""},
		{"m= negative port", withHead("m=audio -1 RTP/AVP 0"), KindBadPort, 6, 'm', ""},
		{"m= port not a number", withHead("m=audio 5o00 RTP/AVP 0"), KindBadPort, 6, 'm', ""},
		{"m= port with six digits", withHead("m=audio 000080 RTP/AVP 0"), KindBadPort, 6, 'm', ""},
		{"m= port missing", withHead("m=audio"), KindBadPort, 6, 'm', ""},
		{"m= port count 0", withHead("m=audio 5000/0 RTP/AVP 0"), KindBadMedia, 6, 'm', ""},
		{"m= without proto", withHead("m=audio 5000"), KindBadMedia, 6, 'm', ""},
		{"m= without formats", withHead("m=audio 5000 RTP/AVP"), KindBadMedia, 6, 'm', ""},
		{"m= bad proto", withHead("m=audio 5000 RTP//AVP/ 0"), KindBadMedia, 6, 'm', ""},
		{"m= empty", withHead("m="), KindBadMedia, 6, 'm', ""},
		{"too many media sections", withHead(media17...), KindTooManyMedia, 6 + MaxMedia, 'm', ""},
		{"a= without a name", withHead("a=:x"), KindBadAttribute, 6, 'a', ""},
		{"a= empty", withHead("a="), KindBadAttribute, 6, 'a', ""},
		{"a= name with a space", withHead("a=send recv"), KindBadAttribute, 6, 'a', "send recv"},
		{"conflicting directions", withHead("m=audio 5000 RTP/AVP 0", "a=sendonly", "a=recvonly"), KindBadAttribute, 8, 'a', "recvonly"},
		{"a=rtcp port over 65535", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:70000"), KindBadPort, 7, 'a', "rtcp"},
		{"a=rtcp port not a number", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:x"), KindBadPort, 7, 'a', "rtcp"},
		{"a=rtcp with half an address", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP4"), KindBadAttribute, 7, 'a', "rtcp"},
		{"a=rtcp with a bad address", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP4 1.2.3.4.5"), KindBadAttribute, 7, 'a', "rtcp"},
		{"two a=rtcp", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001", "a=rtcp:5003"), KindBadAttribute, 8, 'a', "rtcp"},
		{"upper-case type", sdp("V=0"), KindBadLine, 1, 0, ""},
		{"no = after the type", withHead("a:x"), KindBadLine, 6, 0, ""},
		{"one letter", withHead("a"), KindBadLine, 6, 0, ""},
		{"space before the type", withHead(" a=x"), KindBadLine, 6, 0, ""},
		{"trailing garbage", append(withHead("m=audio 5000 RTP/AVP 0"), "this is not sdp\r\n"...), KindBadLine, 7, 0, ""},
		{"trailing NULs", append(withHead("m=audio 5000 RTP/AVP 0"), 0, 0, 0, 0), KindBadLine, 7, 0, ""},
		{"empty line inside", append(withHead("m=audio 5000 RTP/AVP 0"), "\r\na=sendrecv\r\n"...), KindBadLine, 7, 0, ""},
		{"two bodies", append(withHead("m=audio 5000 RTP/AVP 0"), append([]byte("\r\n"), withHead()...)...), KindBadLine, 7, 0, ""},
		{"leading line end", append([]byte("\r\n"), withHead()...), KindBadLine, 1, 0, ""},
		{"bare CR line ends", []byte("v=0\ro=- 1 1 IN IP4 192.0.2.1\rs=-\rt=0 0\r"), KindBadVersion, 1, 'v', ""},
		{"overlong line", withHead(long), KindLineTooLong, 6, 'a', ""},
		{"too many lines", withHead(many...), KindTooManyLines, MaxLines + 1, 'a', ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Session
			err := s.Parse(tt.body)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			if e.Kind != tt.kind || e.Line != tt.line || e.Type != tt.typ || string(e.Attr) != tt.attr {
				t.Errorf("got %v (kind %d line %d type %q attr %q), want kind %d line %d type %q attr %q",
					e, e.Kind, e.Line, e.Type, e.Attr, tt.kind, tt.line, tt.typ, tt.attr)
			}
			if e.Offset < 0 || e.Offset > len(tt.body) {
				t.Errorf("offset %d out of the body", e.Offset)
			}
			if tt.line > 0 && e.Offset != lineStart(tt.body, tt.line) && tt.typ != 'm' {
				t.Errorf("offset %d, line %d starts at %d", e.Offset, tt.line, lineStart(tt.body, tt.line))
			}
			if !errors.Is(err, &Error{Kind: tt.kind}) {
				t.Error("errors.Is does not match the kind")
			}
		})
	}
}

// lineStart returns the offset of line n (1-based) of b, lines ended by LF.
func lineStart(b []byte, n int) int {
	off := 0
	for k := 1; k < n; k++ {
		i := strings.IndexByte(string(b[off:]), '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	return off
}

func TestErrorText(t *testing.T) {
	var s Session
	tests := []struct {
		body []byte
		want string
	}{
		{withHead("m=audio 65536 RTP/AVP 0"), "sdp: bad port (m= line 6, offset 71)"},
		{noConn("m=audio 5000 RTP/AVP 0"), "sdp: no c= for a media section and none at session level (m= line 5, offset 43)"},
		{withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:x"), "sdp: bad port (a=rtcp line 7, offset 87)"},
		{sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "t=0 0"), "sdp: missing s= line"},
		{withHead("\x01bad"), "sdp: not a <type>=<value> line (line 6, offset 63)"},
	}
	for _, tt := range tests {
		err := s.Parse(tt.body)
		if err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %s", err, tt.want)
		}
	}
	// a peer-supplied attribute name is cut to token bytes in the text
	e := &Error{Kind: KindBadAttribute, Line: 3, Type: 'a', Attr: []byte("na\r\nme")}
	if got := e.Error(); got != "sdp: malformed attribute (a=name line 3, offset 0)" {
		t.Errorf("got %q", got)
	}
}

func TestTortureValid(t *testing.T) {
	tests := []struct {
		name  string
		body  []byte
		check func(t *testing.T, s *Session)
	}{
		{"port 0 without c=: a disabled stream", noConn("m=audio 0 RTP/AVP 0"), func(t *testing.T, s *Session) {
			m := s.Media(0)
			if !m.Disabled() || m.Port != 0 {
				t.Error("not disabled")
			}
			if _, ok := m.Connection(); ok {
				t.Error("a connection out of nowhere")
			}
		}},
		{"port 0 without formats", withHead("m=video 0 RTP/AVP"), func(t *testing.T, s *Session) {
			eq(t, "formats", s.Media(0).Formats, "")
			if it := s.Media(0).FormatIter(); it.Next() {
				t.Error("a format out of nowhere")
			}
		}},
		{"session c= IPv6", sdp("v=0", "o=- 1 1 IN IP6 2001:db8::1", "s=-", "c=IN IP6 2001:db8::1", "t=0 0", "m=audio 5000 RTP/AVP 0"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "2001:db8::1")
			eq(t, "addrtype", c.AddrType, "IP6")
		}},
		{"IPv6 with an IPv4 tail", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 ::ffff:192.0.2.7"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "::ffff:192.0.2.7")
		}},
		{"IPv4 multicast with TTL and count", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 233.252.0.1/127/3"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "233.252.0.1")
			eqInt(t, "TTL", c.TTL, 127)
			eqInt(t, "Count", c.Count, 3)
		}},
		{"IPv6 multicast with count", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP6 ff15::101/3"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "ff15::101")
			eqInt(t, "TTL", c.TTL, 0)
			eqInt(t, "Count", c.Count, 3)
		}},
		{"FQDN connection", withHead("m=audio 5000 RTP/AVP 0", "c=IN IP4 media.example.com"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "media.example.com")
		}},
		{"port count", withHead("m=video 49170/2 RTP/AVP 31"), func(t *testing.T, s *Session) {
			eqInt(t, "Port", s.Media(0).Port, 49170)
			eqInt(t, "NumPorts", s.Media(0).NumPorts, 2)
		}},
		{"port 65535", withHead("m=audio 65535 RTP/AVP 0"), func(t *testing.T, s *Session) {
			eqInt(t, "Port", s.Media(0).Port, 65535)
		}},
		{"LF line ends", []byte(strings.ReplaceAll(string(withHead("m=audio 5000 RTP/AVP 0", "a=sendonly")), "\r\n", "\n")), func(t *testing.T, s *Session) {
			eq(t, "name", s.Name(), "-")
			if s.Media(0).Direction() != SendOnly {
				t.Error("direction")
			}
		}},
		{"mixed line ends", []byte("v=0\no=- 1 1 IN IP4 192.0.2.1\r\ns=x\nc=IN IP4 192.0.2.1\r\nt=0 0\nm=audio 5000 RTP/AVP 0\r\na=recvonly"), func(t *testing.T, s *Session) {
			eq(t, "name", s.Name(), "x")
			eq(t, "formats", s.Media(0).Formats, "0")
			if s.Media(0).Direction() != RecvOnly {
				t.Error("direction")
			}
		}},
		{"no final line end", withHead("m=audio 5000 RTP/AVP 0", "a=inactive")[:len(withHead("m=audio 5000 RTP/AVP 0", "a=inactive"))-2], func(t *testing.T, s *Session) {
			if s.Media(0).Direction() != Inactive {
				t.Error("direction")
			}
		}},
		{"line ends after the last line", append(withHead("m=audio 5000 RTP/AVP 0"), "\r\n\r\n\n"...), func(t *testing.T, s *Session) {
			eqInt(t, "lines", s.NumLines(), 6)
		}},
		{"session direction inherited", withHead("a=sendonly", "m=audio 5000 RTP/AVP 0", "m=video 5002 RTP/AVP 31", "a=inactive"), func(t *testing.T, s *Session) {
			if s.Direction() != SendOnly || s.Media(0).Direction() != SendOnly || s.Media(1).Direction() != Inactive {
				t.Error(s.Direction(), s.Media(0).Direction(), s.Media(1).Direction())
			}
		}},
		{"the same direction twice", withHead("m=audio 5000 RTP/AVP 0", "a=sendonly", "a=sendonly"), func(t *testing.T, s *Session) {
			if s.Media(0).Direction() != SendOnly {
				t.Error("direction")
			}
		}},
		{"runs of spaces between fields", withHead("m=audio  5000  RTP/AVP  0 8 ", "c=IN  IP4  192.0.2.9"), func(t *testing.T, s *Session) {
			eqInt(t, "Port", s.Media(0).Port, 5000)
			eq(t, "formats", s.Media(0).Formats, "0 8")
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "192.0.2.9")
		}},
		{"lines in a loose order", sdp("v=0", "s=-", "t=0 0", "a=tool:x", "c=IN IP4 192.0.2.1", "o=- 1 1 IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "c=IN IP4 192.0.2.2", "b=AS:64"), func(t *testing.T, s *Session) {
			c, _ := s.Media(0).Connection()
			eq(t, "address", c.Address, "192.0.2.2")
			if n, ok := s.Media(0).Bandwidth("AS"); !ok || n != 64 {
				t.Error("b=AS")
			}
		}},
		{"unknown line types kept", withHead("x=extension", "k=prompt", "m=audio 5000 RTP/AVP 0", "i=audio", "k=clear:abc", "y=1"), func(t *testing.T, s *Session) {
			eqInt(t, "lines", s.NumLines(), 11)
		}},
		{"a line of MaxLineLength bytes", withHead("a=x:" + strings.Repeat("y", MaxLineLength-4)), func(t *testing.T, s *Session) {
			v, _ := s.Attr("x")
			eqInt(t, "value length", len(v), MaxLineLength-4)
		}},
		{"MaxMedia sections", func() []byte {
			l := []string{}
			for k := 0; k < MaxMedia; k++ {
				l = append(l, "m=audio "+strconv.Itoa(5000+2*k)+" RTP/AVP 0")
			}
			return withHead(l...)
		}(), func(t *testing.T, s *Session) {
			eqInt(t, "NumMedia", s.NumMedia(), MaxMedia)
			eqInt(t, "last port", s.Media(MaxMedia-1).Port, 5000+2*(MaxMedia-1))
		}},
		{"MaxLines lines", func() []byte {
			l := []string{}
			for len(l)+len(head) < MaxLines {
				l = append(l, "a=x")
			}
			return withHead(l...)
		}(), func(t *testing.T, s *Session) {
			eqInt(t, "lines", s.NumLines(), MaxLines)
		}},
		{"a=rtcp with an IPv6 address", withHead("m=audio 5000 RTP/AVP 0", "a=rtcp:5001 IN IP6 2001:db8::5"), func(t *testing.T, s *Session) {
			r, ok := s.Media(0).RTCP()
			if !ok || r.Port != 5001 || string(r.Address) != "2001:db8::5" || string(r.AddrType) != "IP6" {
				t.Errorf("%+v", r)
			}
		}},
		{"empty attribute value", withHead("a=x:", "a=y"), func(t *testing.T, s *Session) {
			v, ok := s.Attr("x")
			if !ok || v == nil || len(v) != 0 {
				t.Errorf("a=x: %q %v", v, ok)
			}
			v, ok = s.Attr("y")
			if !ok || v != nil {
				t.Errorf("a=y %q %v", v, ok)
			}
			var names []string
			for it := s.Attrs(); it.Next(); {
				names = append(names, string(it.Attr.Name)+"@"+strconv.Itoa(it.Attr.Line))
			}
			if strings.Join(names, " ") != "x@6 y@7" {
				t.Error(names)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Session
			if err := s.Parse(tt.body); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, &s)
		})
	}
}

func TestSizeLimit(t *testing.T) {
	body := withHead("m=audio 5000 RTP/AVP 0")
	s := Session{MaxSize: len(body) - 1}
	if err := s.Parse(body); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v", err)
	}
	s.MaxSize = len(body)
	if err := s.Parse(body); err != nil {
		t.Error(err)
	}
	big := make([]byte, DefaultMaxSize+1)
	s.MaxSize = 0
	if err := s.Parse(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("default limit: %v", err)
	}
}

// TestValidate checks each attribute grammar that Validate and the
// iterators know, on lines Parse accepts.
func TestValidate(t *testing.T) {
	m := []string{"m=audio 5000 RTP/AVP 0 101"}
	tests := []struct {
		name string
		line string
		kind ErrorKind // KindNone: valid
	}{
		{"candidate", "a=candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host", KindNone},
		{"candidate with raddr only", "a=candidate:1 1 UDP 1694498815 198.51.100.1 5000 typ srflx raddr 192.0.2.1", KindNone},
		{"candidate mDNS", "a=candidate:1 1 udp 2113937151 6f8b2c1e-3d4a-4b5c-8d9e-0f1a2b3c4d5e.local 54400 typ host generation 0", KindNone},
		{"candidate port over 65535", "a=candidate:1 1 UDP 2130706431 192.0.2.1 65536 typ host", KindBadPort},
		{"candidate rport over 65535", "a=candidate:1 1 UDP 1 198.51.100.1 5000 typ srflx raddr 192.0.2.1 rport 99999", KindBadPort},
		{"candidate without typ", "a=candidate:1 1 UDP 2130706431 192.0.2.1 5000 host", KindBadAttribute},
		{"candidate short", "a=candidate:1 1 UDP 2130706431 192.0.2.1 5000", KindBadAttribute},
		{"candidate component 0", "a=candidate:1 0 UDP 2130706431 192.0.2.1 5000 typ host", KindBadAttribute},
		{"candidate priority over 2^32", "a=candidate:1 1 UDP 4294967296 192.0.2.1 5000 typ host", KindBadAttribute},
		{"candidate bad foundation", "a=candidate:a-b 1 UDP 1 192.0.2.1 5000 typ host", KindBadAttribute},
		{"candidate bad address", "a=candidate:1 1 UDP 1 192.0.2 5000 typ host", KindBadAttribute},
		{"candidate bad raddr", "a=candidate:1 1 UDP 1 192.0.2.1 5000 typ srflx raddr ::g rport 1", KindBadAttribute},
		{"rtpmap", "a=rtpmap:101 telephone-event/8000", KindNone},
		{"rtpmap payload over 127", "a=rtpmap:128 x/8000", KindBadAttribute},
		{"rtpmap without clock", "a=rtpmap:101 telephone-event", KindBadAttribute},
		{"rtpmap clock 0", "a=rtpmap:101 telephone-event/0", KindBadAttribute},
		{"rtpmap extra field", "a=rtpmap:101 telephone-event/8000 x", KindBadAttribute},
		{"fmtp", "a=fmtp:101 0-15", KindNone},
		{"fmtp empty", "a=fmtp:", KindBadAttribute},
		{"crypto with session params", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 KDR=1 UNENCRYPTED_SRTCP", KindNone},
		{"crypto without key", "a=crypto:1 AES_CM_128_HMAC_SHA1_80", KindBadAttribute},
		{"crypto tag not a number", "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:abc", KindBadAttribute},
		{"fingerprint", "a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB", KindNone},
		{"fingerprint odd hex", "a=fingerprint:sha-1 4A:AD:B", KindBadAttribute},
		{"fingerprint without value", "a=fingerprint:sha-1", KindBadAttribute},
		{"setup", "a=setup:passive", KindNone},
		{"setup unknown", "a=setup:maybe", KindBadAttribute},
		{"mid", "a=mid:audio0", KindNone},
		{"mid empty", "a=mid:", KindBadAttribute},
		{"ice-ufrag", "a=ice-ufrag:F7gI", KindNone},
		{"ice-ufrag short", "a=ice-ufrag:F7g", KindBadAttribute},
		{"ice-pwd", "a=ice-pwd:x9cml/YzichV2+XlhiMu8g", KindNone},
		{"ice-pwd short", "a=ice-pwd:x9cml/YzichV2+Xlhi", KindBadAttribute},
		{"ice-pwd bad character", "a=ice-pwd:x9cml-YzichV2+XlhiMu8g", KindBadAttribute},
		{"unknown attribute", "a=x-anything:goes here", KindNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := withHead(append(m, tt.line)...)
			var s Session
			if err := s.Parse(body); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err := s.Validate()
			if tt.kind == KindNone {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || e.Line != 7 || e.Type != 'a' {
				t.Fatalf("Validate: %v, want %v on line 7", err, tt.kind)
			}
			// The iterator of the attribute stops with the same error.
			md := s.Media(0)
			var iterErr error
			switch name := string(e.Attr); name {
			case "candidate":
				it := md.Candidates()
				for it.Next() {
				}
				iterErr = it.Err()
			case "rtpmap":
				it := md.RTPMaps()
				for it.Next() {
				}
				iterErr = it.Err()
			case "fmtp":
				it := md.Fmtps()
				for it.Next() {
				}
				iterErr = it.Err()
			case "crypto":
				it := md.Cryptos()
				for it.Next() {
				}
				iterErr = it.Err()
			case "fingerprint":
				if _, ok := md.Fingerprint(); ok {
					t.Error("Fingerprint ok on a malformed line")
				}
				return
			default:
				return
			}
			var ie *Error
			if !errors.As(iterErr, &ie) || ie.Kind != tt.kind || ie.Line != 7 {
				t.Errorf("iterator: %v", iterErr)
			}
		})
	}
}
