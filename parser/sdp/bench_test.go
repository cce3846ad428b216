package sdp

import (
	"strings"
	"testing"
)

// benchBodies are the phone bodies of testdata by size: a plain audio
// offer, SRTP audio and video, ICE with DTLS, a WebRTC offer.
var benchBodies = []string{"yealink.sdp", "polycom.sdp", "baresip-ice.sdp", "chrome-webrtc.sdp"}

func benchName(file string) string { return strings.TrimSuffix(file, ".sdp") }

func BenchmarkParse(b *testing.B) {
	for _, name := range benchBodies {
		body := mustRead(b, name)
		b.Run(benchName(name), func(b *testing.B) {
			var s Session
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Parse(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseFields parses and reads every field, Validate included.
func BenchmarkParseFields(b *testing.B) {
	for _, name := range benchBodies {
		body := mustRead(b, name)
		b.Run(benchName(name), func(b *testing.B) {
			var s Session
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Parse(body); err != nil {
					b.Fatal(err)
				}
				sink += readEverything(&s)
			}
		})
	}
}

// BenchmarkParseEdit parses and rewrites the body as nathelper and a media
// relay do (every c= and o=, ports, a=rtcp, ICE removed, a direction and
// a=nortpproxy), written with AppendTo into a reused buffer.
func BenchmarkParseEdit(b *testing.B) {
	for _, name := range benchBodies {
		body := mustRead(b, name)
		b.Run(benchName(name), func(b *testing.B) {
			var s Session
			var e Editor
			out := make([]byte, 0, 2*len(body)+256)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Parse(body); err != nil {
					b.Fatal(err)
				}
				natEdit(&e, &s)
				out = e.AppendTo(out[:0])
			}
		})
	}
}
