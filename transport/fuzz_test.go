package transport

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzStreamConsume feeds arbitrary bytes to the stream framing, whole and
// cut in two reads: it must never panic, never consume more than it was
// given, and deliver the same messages and pings either way.
func FuzzStreamConsume(f *testing.F) {
	f.Add([]byte("\r\n\r\n"+sipMsg("INVITE", "v=0\r\n")+"\r\n"+sipMsg("ACK", "")), 10)
	f.Add([]byte("OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabcREGISTER sip:b SIP/2.0\r\nContent-Length:0\r\n\r\n"), 40)
	f.Add([]byte("\r\n\r"), 1)
	f.Add([]byte("\n\nBYE sip:x SIP/2.0\nl:0\n\n"), 3)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		whole, wholePings, wholeErr := runConsume(t, [][]byte{data})
		split, splitPings, splitErr := runConsume(t, [][]byte{data[:cut], data[cut:]})
		if wholeErr != splitErr {
			// A split read may stop at an error the whole read reaches
			// only after a message, never the other way round.
			if !wholeErr || splitErr {
				t.Fatalf("error whole %v split %v", wholeErr, splitErr)
			}
		}
		if wholeErr || splitErr {
			return
		}
		if len(whole) != len(split) || wholePings != splitPings {
			t.Fatalf("whole %d msgs %d pings, split %d msgs %d pings", len(whole), wholePings, len(split), splitPings)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], split[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

// runConsume appends each read to a buffer and consumes like the TCP path.
func runConsume(t *testing.T, reads [][]byte) (msgs [][]byte, pings uint64, failed bool) {
	tr := &Transport{cfg: (&Config{MaxMessageSize: 4096}).withDefaults()}
	tr.handler = HandlerFunc(func(p *Packet) { msgs = append(msgs, append([]byte(nil), p.Data...)) })
	s := &streams{t: tr}
	c := s.newConn(TLS, &Listener{Proto: TLS}, netip.MustParseAddrPort("127.0.0.1:5061"), true)
	c.state = connDialing // pongs queue instead of writing
	var buf []byte
	for _, r := range reads {
		buf = append(buf, r...)
		used, err := c.consume(buf)
		if used < 0 || used > len(buf) {
			t.Fatalf("consumed %d of %d", used, len(buf))
		}
		buf = buf[used:]
		if err != nil {
			return msgs, tr.stats.keepalivePings.Load(), true
		}
	}
	return msgs, tr.stats.keepalivePings.Load(), false
}
