package sdp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustParse(tb testing.TB, s *Session, b []byte) {
	tb.Helper()
	if err := s.Parse(b); err != nil {
		tb.Fatalf("Parse: %v\n%s", err, b)
	}
	if err := s.Validate(); err != nil {
		tb.Fatalf("Validate: %v", err)
	}
}

func eq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

// mediaWant is what a test expects of one m= section.
type mediaWant struct {
	typ, proto, formats string
	port, numPorts      int
	conn                string // effective connection address
	own                 bool   // c= of its own
	dir                 Direction
	rtcp                int // a=rtcp port, -1 when absent
	rtcpAddr            string
	mux                 bool
	candidates          int
	ufrag, mid, setup   string
}

func checkMedia(t *testing.T, s *Session, want []mediaWant) {
	t.Helper()
	eqInt(t, "NumMedia", s.NumMedia(), len(want))
	for i := 0; i < s.NumMedia() && i < len(want); i++ {
		m, w := s.Media(i), want[i]
		eq(t, "Type", m.Type, w.typ)
		eq(t, "Proto", m.Proto, w.proto)
		eq(t, "Formats", m.Formats, w.formats)
		eqInt(t, "Port", m.Port, w.port)
		eqInt(t, "NumPorts", m.NumPorts, w.numPorts)
		eqInt(t, "Index", m.Index(), i)
		c, ok := m.Connection()
		if !ok && w.conn != "" {
			t.Errorf("media %d: no connection", i)
		}
		eq(t, "Connection", c.Address, w.conn)
		if m.HasConnection() != w.own {
			t.Errorf("media %d: HasConnection = %v", i, m.HasConnection())
		}
		if m.Direction() != w.dir {
			t.Errorf("media %d: Direction = %v, want %v", i, m.Direction(), w.dir)
		}
		r, ok := m.RTCP()
		if !ok {
			r.Port = -1
		}
		eqInt(t, "RTCP port", r.Port, w.rtcp)
		eq(t, "RTCP address", r.Address, w.rtcpAddr)
		if m.RTCPMux() != w.mux {
			t.Errorf("media %d: RTCPMux = %v", i, m.RTCPMux())
		}
		n := 0
		for it := m.Candidates(); it.Next(); {
			n++
		}
		eqInt(t, "candidates", n, w.candidates)
		eq(t, "ICEUfrag", m.ICEUfrag(), w.ufrag)
		eq(t, "Mid", m.Mid(), w.mid)
		eq(t, "Setup", m.Setup(), w.setup)
	}
}

func TestParsePhones(t *testing.T) {
	tests := []struct {
		file   string
		origin Origin
		name   string
		conn   string
		dir    Direction
		media  []mediaWant
		extra  func(t *testing.T, s *Session)
	}{
		{
			file:   "yealink.sdp",
			origin: Origin{Username: b("-"), SessID: b("20018"), SessVersion: b("20018"), NetType: b("IN"), AddrType: b("IP4"), Address: b("192.168.1.20")},
			name:   "SDP data", conn: "192.168.1.20", dir: SendRecv,
			media: []mediaWant{{typ: "audio", proto: "RTP/AVP", formats: "0 8 9 18 101", port: 11796, conn: "192.168.1.20", dir: SendRecv, rtcp: -1}},
			extra: func(t *testing.T, s *Session) {
				m := s.Media(0)
				r, ok := m.RTPMap(18)
				if !ok || string(r.Encoding) != "G729" || r.ClockRate != 8000 || r.Params != nil {
					t.Errorf("rtpmap 18: %+v %v", r, ok)
				}
				p, ok := m.Fmtp("101")
				if !ok || string(p) != "0-15" {
					t.Errorf("fmtp 101: %q %v", p, ok)
				}
				v, ok := m.Attr("ptime")
				if !ok || string(v) != "20" {
					t.Errorf("ptime: %q %v", v, ok)
				}
				var fs []string
				for it := m.FormatIter(); it.Next(); {
					fs = append(fs, string(it.Format))
				}
				if strings.Join(fs, ",") != "0,8,9,18,101" {
					t.Errorf("formats %v", fs)
				}
			},
		},
		{
			file:   "polycom.sdp",
			origin: Origin{Username: b("-"), SessID: b("1629385726"), SessVersion: b("1629385726"), NetType: b("IN"), AddrType: b("IP4"), Address: b("192.168.1.30")},
			name:   "Polycom IP Phone", conn: "192.168.1.30", dir: SendRecv,
			media: []mediaWant{
				// the session-level a=sendrecv applies to both
				{typ: "audio", proto: "RTP/SAVP", formats: "9 102 0 8 18 127", port: 2222, conn: "192.168.1.30", dir: SendRecv, rtcp: -1},
				{typ: "video", proto: "RTP/SAVP", formats: "109 34", port: 2224, conn: "192.168.1.30", dir: SendRecv, rtcp: -1},
			},
			extra: func(t *testing.T, s *Session) {
				var tags []uint32
				it := s.Media(0).Cryptos()
				for it.Next() {
					tags = append(tags, it.Crypto.Tag)
					if it.Crypto.Tag == 2 {
						eq(t, "suite", it.Crypto.Suite, "AES_CM_128_HMAC_SHA1_32")
						eq(t, "key", it.Crypto.KeyParams, "inline:Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa9Zy8|2^31")
						eqInt(t, "crypto line", it.Crypto.Line, 17)
					}
				}
				if it.Err() != nil || len(tags) != 2 {
					t.Errorf("cryptos %v %v", tags, it.Err())
				}
				if bw, ok := s.Media(1).Bandwidth("TIAS"); !ok || bw != 1024000 {
					t.Errorf("b=TIAS %d %v", bw, ok)
				}
				if _, ok := s.Media(0).Bandwidth("TIAS"); ok {
					t.Error("audio has no b=")
				}
				r, _ := s.Media(0).RTPMap(102)
				eq(t, "G7221", r.Encoding, "G7221")
				eqInt(t, "G7221 rate", r.ClockRate, 16000)
			},
		},
		{
			file:   "linphone.sdp",
			origin: Origin{Username: b("linphone"), SessID: b("3400"), SessVersion: b("1437"), NetType: b("IN"), AddrType: b("IP6"), Address: b("fd00::30")},
			name:   "Talk", conn: "fd00::30", dir: SendRecv,
			media: []mediaWant{
				{typ: "audio", proto: "RTP/AVP", formats: "96 97 98 0 8 18 99 100 101", port: 14314, conn: "fd00::30", dir: SendRecv, rtcp: -1, candidates: 4, ufrag: "325e197f"},
				{typ: "video", proto: "RTP/AVP", formats: "96 97", port: 11812, conn: "fd00::30", dir: SendRecv, rtcp: -1, candidates: 4, ufrag: "325e197f"},
			},
			extra: func(t *testing.T, s *Session) {
				c, _ := s.Connection()
				eq(t, "c= addrtype", c.AddrType, "IP6")
				it := s.Media(0).Candidates()
				var got []Candidate
				for it.Next() {
					got = append(got, it.Candidate)
				}
				if len(got) != 4 {
					t.Fatal(got)
				}
				c2 := got[3]
				eq(t, "foundation", c2.Foundation, "2")
				eqInt(t, "component", c2.Component, 2)
				eq(t, "transport", c2.Transport, "UDP")
				if c2.Priority != 2130706430 {
					t.Errorf("priority %d", c2.Priority)
				}
				eq(t, "address", c2.Address, "fd00::30")
				eqInt(t, "port", c2.Port, 14315)
				eq(t, "type", c2.Type, "host")
				eqInt(t, "rport", c2.RelPort, -1)
				if c2.RelAddr != nil || c2.Ext != nil {
					t.Errorf("raddr %q ext %q", c2.RelAddr, c2.Ext)
				}
				eqInt(t, "line", c2.Line, 23)
				r, ok := s.Media(0).RTPMap(96)
				if !ok || string(r.Encoding) != "opus" || r.ClockRate != 48000 || string(r.Params) != "2" {
					t.Errorf("opus %+v", r)
				}
				// a=fmtp:18 without an rtpmap (static payload type)
				if p, ok := s.Media(0).Fmtp("18"); !ok || string(p) != "annexb=yes" {
					t.Errorf("fmtp 18 %q", p)
				}
				v, ok := s.Attr("rtcp-xr")
				if !ok || !strings.HasPrefix(string(v), "rcvr-rtt=all:10000 ") {
					t.Errorf("rtcp-xr %q", v)
				}
			},
		},
		{
			file:   "baresip-srtp.sdp",
			origin: Origin{Username: b("-"), SessID: b("2552785991"), SessVersion: b("1467026867"), NetType: b("IN"), AddrType: b("IP4"), Address: b("192.168.1.40")},
			name:   "-", conn: "192.168.1.40", dir: SendRecv,
			media: []mediaWant{{typ: "audio", proto: "RTP/AVP", formats: "0 8 101", port: 11470, conn: "192.168.1.40", dir: SendRecv, rtcp: -1}},
			extra: func(t *testing.T, s *Session) {
				it := s.Media(0).Cryptos()
				if !it.Next() || it.Crypto.Tag != 1 || string(it.Crypto.Suite) != "AES_CM_128_HMAC_SHA1_80" ||
					string(it.Crypto.KeyParams) != "inline:CV7m1pSjS7kyHVAVvsMdvzdwZiwUJIigx8ncYLtO" || it.Crypto.SessionParams != nil || it.Next() {
					t.Errorf("crypto %+v", it.Crypto)
				}
				if v, _ := s.Attr("tool"); string(v) != "baresip 1.0.0" {
					t.Errorf("tool %q", v)
				}
			},
		},
		{
			file:   "baresip-ice.sdp",
			origin: Origin{Username: b("-"), SessID: b("3013067263"), SessVersion: b("1148290588"), NetType: b("IN"), AddrType: b("IP4"), Address: b("192.168.1.40")},
			name:   "-", conn: "192.168.1.40", dir: SendRecv,
			media: []mediaWant{
				{typ: "audio", proto: "UDP/TLS/RTP/SAVPF", formats: "96 9 0 8 101", port: 15668, conn: "192.168.1.40", own: true, dir: SendRecv, rtcp: 15669, rtcpAddr: "192.168.1.40", candidates: 4, ufrag: "MS2mDg8", setup: "actpass"},
				{typ: "video", proto: "UDP/TLS/RTP/SAVPF", formats: "96", port: 15156, conn: "192.168.1.40", own: true, dir: SendRecv, rtcp: 15157, rtcpAddr: "192.168.1.40", candidates: 4, ufrag: "MS2mDg8", setup: "actpass"},
			},
			extra: func(t *testing.T, s *Session) {
				// the session-level fingerprint applies to both sections
				for i := 0; i < 2; i++ {
					f, ok := s.Media(i).Fingerprint()
					if !ok || string(f.Hash) != "SHA-256" || !strings.HasPrefix(string(f.Value), "61:F2:FD:") || len(f.Value) != 95 {
						t.Errorf("fingerprint %d: %q %q", i, f.Hash, f.Value)
					}
				}
				eq(t, "ICEPwd", s.Media(1).ICEPwd(), "xiPHLc0dp5Hba8zyRKtJxfXzhRtumgT")
				r, _ := s.Media(0).RTCP()
				eq(t, "rtcp nettype", r.NetType, "IN")
				eq(t, "rtcp addrtype", r.AddrType, "IP4")
			},
		},
		{
			file:   "chrome-webrtc.sdp",
			origin: Origin{Username: b("-"), SessID: b("4611731400430051336"), SessVersion: b("2"), NetType: b("IN"), AddrType: b("IP4"), Address: b("127.0.0.1")},
			name:   "-", dir: SendRecv,
			media: []mediaWant{
				{typ: "audio", proto: "UDP/TLS/RTP/SAVPF", formats: "111 63 9 0 8 13 110 126", port: 54400, conn: "203.0.113.50", own: true, dir: SendRecv, rtcp: 9, rtcpAddr: "0.0.0.0", mux: true, candidates: 4, ufrag: "Oq4L", mid: "0", setup: "actpass"},
				{typ: "video", proto: "UDP/TLS/RTP/SAVPF", formats: "96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 114", port: 54400, conn: "203.0.113.50", own: true, dir: SendRecv, rtcp: 9, rtcpAddr: "0.0.0.0", mux: true, candidates: 4, ufrag: "Oq4L", mid: "1", setup: "actpass"},
				{typ: "application", proto: "UDP/DTLS/SCTP", formats: "webrtc-datachannel", port: 54400, conn: "203.0.113.50", own: true, dir: SendRecv, rtcp: -1, candidates: 4, ufrag: "Oq4L", mid: "2", setup: "actpass"},
			},
			extra: func(t *testing.T, s *Session) {
				eqInt(t, "lines", s.NumLines(), 180)
				if v, _ := s.Attr("group"); string(v) != "BUNDLE 0 1 2" {
					t.Errorf("group %q", v)
				}
				if !s.HasAttr("extmap-allow-mixed") {
					t.Error("extmap-allow-mixed")
				}
				if v, ok := s.Attr("extmap-allow-mixed"); !ok || v != nil {
					t.Errorf("property attribute value %q", v)
				}
				var srflx, relay, tcp Candidate
				for it := s.Media(0).Candidates(); it.Next(); {
					switch string(it.Candidate.Type) {
					case "srflx":
						srflx = it.Candidate
					case "relay":
						relay = it.Candidate
					case "host":
						if string(it.Candidate.Transport) == "tcp" {
							tcp = it.Candidate
						}
					}
				}
				eq(t, "srflx address", srflx.Address, "203.0.113.50")
				eq(t, "srflx raddr", srflx.RelAddr, "192.168.1.50")
				eqInt(t, "srflx rport", srflx.RelPort, 54400)
				eq(t, "srflx ext", srflx.Ext, "generation 0 network-id 1 network-cost 10")
				eq(t, "relay address", relay.Address, "198.51.100.20")
				if relay.Priority != 41885695 {
					t.Errorf("relay priority %d", relay.Priority)
				}
				eqInt(t, "tcp port", tcp.Port, 9)
				eq(t, "tcp ext", tcp.Ext, "tcptype active generation 0 network-id 1 network-cost 10")
				f, ok := s.Media(2).Fingerprint()
				if !ok || string(f.Hash) != "sha-256" {
					t.Errorf("fingerprint %q", f.Hash)
				}
				n := 0
				for it := s.Media(1).RTPMaps(); it.Next(); {
					n++
				}
				eqInt(t, "video rtpmaps", n, 23)
				if p, _ := s.Media(1).Fmtp("127"); string(p) != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f" {
					t.Errorf("fmtp 127 %q", p)
				}
				if v, _ := s.Media(2).Attr("sctp-port"); string(v) != "5000" {
					t.Errorf("sctp-port %q", v)
				}
			},
		},
		{
			file:   "freeswitch-answer.sdp",
			origin: Origin{Username: b("FreeSWITCH"), SessID: b("1700380262"), SessVersion: b("1700380263"), NetType: b("IN"), AddrType: b("IP4"), Address: b("203.0.113.10")},
			name:   "FreeSWITCH", conn: "203.0.113.10", dir: SendRecv,
			media: []mediaWant{{typ: "audio", proto: "RTP/AVP", formats: "8 101", port: 16384, conn: "203.0.113.10", dir: SendRecv, rtcp: 16385, rtcpAddr: "203.0.113.10"}},
		},
		{
			// RFC 8866 §5: LF line ends, i= u= e= p=, two m= without
			// attributes, an IPv6 c= in the last section only
			file:   "rfc8866.sdp",
			origin: Origin{Username: b("jdoe"), SessID: b("3724394400"), SessVersion: b("3724394405"), NetType: b("IN"), AddrType: b("IP4"), Address: b("198.51.100.1")},
			name:   "Call to John Smith", conn: "198.51.100.1", dir: SendRecv,
			media: []mediaWant{
				{typ: "audio", proto: "RTP/AVP", formats: "0", port: 49170, conn: "198.51.100.1", dir: SendRecv, rtcp: -1},
				{typ: "audio", proto: "RTP/AVP", formats: "0", port: 49180, conn: "198.51.100.1", dir: SendRecv, rtcp: -1},
				{typ: "video", proto: "RTP/AVP", formats: "99", port: 51372, conn: "2001:db8::2", own: true, dir: SendRecv, rtcp: -1},
			},
			extra: func(t *testing.T, s *Session) {
				c, _ := s.Media(2).Connection()
				eq(t, "addrtype", c.AddrType, "IP6")
				r, _ := s.Media(2).RTPMap(99)
				eq(t, "encoding", r.Encoding, "h263-1998")
				var types []byte
				for it := s.Lines(); it.Next(); {
					types = append(types, it.Line.Type)
				}
				eq(t, "line types", types, "vosiuepctmmmca")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := mustRead(t, tt.file)
			var s Session
			mustParse(t, &s, body)
			o := s.Origin()
			for k, f := range [][2][]byte{{o.Username, tt.origin.Username}, {o.SessID, tt.origin.SessID},
				{o.SessVersion, tt.origin.SessVersion}, {o.NetType, tt.origin.NetType},
				{o.AddrType, tt.origin.AddrType}, {o.Address, tt.origin.Address}} {
				eq(t, "origin field "+string(rune('0'+k)), f[0], string(f[1]))
			}
			eq(t, "Name", s.Name(), tt.name)
			c, ok := s.Connection()
			if ok != (tt.conn != "") {
				t.Errorf("session c= present %v", ok)
			}
			eq(t, "session c=", c.Address, tt.conn)
			if tm := s.Timing(); tm.Start != 0 || tm.Stop != 0 {
				t.Errorf("timing %+v", tm)
			}
			if s.Direction() != tt.dir {
				t.Errorf("session direction %v", s.Direction())
			}
			checkMedia(t, &s, tt.media)
			if tt.extra != nil {
				tt.extra(t, &s)
			}
			if string(s.Bytes()) != string(body) {
				t.Error("Bytes differs from the body")
			}
		})
	}
}

func b(s string) []byte { return []byte(s) }
