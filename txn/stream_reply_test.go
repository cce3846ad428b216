package txn

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/transport"
)

// Answers over a stream connection: a non-INVITE server transaction over
// TCP or TLS ends with its final response (timer J is 0), and the answer
// goes on the connection the request came in on (RFC 3261 §18.2.2).

// connSender is recSender plus SendConn, as *transport.Transport has: it
// records which connection each response went on. A connection listed in
// closed answers ErrNoConn.
type connSender struct {
	*recSender
	mu     sync.Mutex
	onConn []connMsg
	closed map[transport.ConnID]bool
}

type connMsg struct {
	id   transport.ConnID
	data string
}

func (s *connSender) SendConn(id transport.ConnID, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed[id] {
		return transport.ErrNoConn
	}
	s.onConn = append(s.onConn, connMsg{id, string(data)})
	return nil
}

func (s *connSender) takeConn() []connMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.onConn
	s.onConn = nil
	return m
}

// inConn delivers msg as received over TCP on connection id from src.
func (h *harness) inConn(src netip.AddrPort, id transport.ConnID, msg string) {
	p := transport.Packet{Data: []byte(fixCL(msg)), Src: src, Listener: h.tcp, Proto: transport.TCP, Conn: id}
	h.core.HandleMessage(&p)
}

func tcpRegister(branch string, cseq int) string {
	return strings.Replace(strings.Replace(request("REGISTER", branch, "reg@stream", "sip:127.0.0.1", "Contact: <sip:alice@127.0.0.1:5070;transport=tcp>\n"),
		"SIP/2.0/UDP", "SIP/2.0/TCP", 1), "CSeq: 1 REGISTER", "CSeq: "+itoa(cseq)+" REGISTER", 1)
}

// TestStreamStatelessReplyThenSuspended is the registration of a phone
// over TCP: the first REGISTER is challenged with ReplyStateless inside
// the Request hook, the second (same Call-ID, a moment later) waits for a
// credential lookup and is answered after Resume. The challenge ended the
// transaction at once (reliable transport), and ReplyStateless then armed
// a timer on the pooled entry: the stray timer marked the entry as
// answered, the next transaction of the shard took it over, and its 200
// was never sent. The request must also stay readable in the hook after
// the answer.
func TestStreamStatelessReplyThenSuspended(t *testing.T) {
	for _, resume := range []bool{true, false} {
		name := "Resume"
		if !resume {
			name = "handle"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			idle := h.core.Stats().Bytes // the shards' indexes
			var suspended *Request
			var afterReply string
			h.rt.request = func(r *Request) {
				if r.Msg.CSeq().Num == 1 {
					if err := r.ReplyStateless(401, "Unauthorized", []byte("WWW-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n")); err != nil {
						t.Errorf("401: %v", err)
					}
					afterReply = string(r.Msg.CallID())
					return
				}
				suspended = r.Suspend()
			}
			h.inConn(uacAddr, 7, tcpRegister("z9hG4bKreg1", 1))
			if afterReply != "reg@stream" {
				t.Errorf("Call-ID read in the hook after the answer: %q (the transaction was released under the hook)", afterReply)
			}
			h.only(h.snd.take(), "127.0.0.1:5070 SIP/2.0 401 Unauthorized")
			// The phone computes its credentials: ticks go by.
			h.advance(20 * time.Millisecond)
			if n := h.core.Stats().Transactions; n != 0 {
				t.Fatalf("%d transactions after the challenge, want 0", n)
			}
			h.inConn(uacAddr, 7, tcpRegister("z9hG4bKreg2", 2))
			if suspended == nil {
				t.Fatal("the second REGISTER was not routed")
			}
			h.advance(5 * time.Millisecond) // the lookup takes a moment
			var err error
			if resume {
				err = suspended.Resume(func(r *Request) { err = r.ReplyStateless(200, "OK", nil) })
			} else {
				err = suspended.ReplyStateless(200, "OK", nil)
			}
			if err != nil {
				t.Fatalf("200 after the lookup: %v", err)
			}
			h.only(h.snd.take(), "127.0.0.1:5070 SIP/2.0 200 OK")
			h.advance(time.Second)
			if st := h.core.Stats(); st.Transactions != 0 || st.Bytes != idle {
				t.Fatalf("left: %d transactions, %d bytes (%d idle)", st.Transactions, st.Bytes, idle)
			}
			if n := h.core.Table().Stats().Timers; n != 0 {
				t.Fatalf("%d timers left", n)
			}
		})
	}
}

// newConnHarness is a harness whose sender also sends on connections.
func newConnHarness(t *testing.T) (*harness, *connSender) {
	var cs *connSender
	h := newHarness(t, func(c *Config) {
		cs = &connSender{recSender: c.Sender.(*recSender), closed: map[transport.ConnID]bool{}}
		c.Sender = cs
	})
	return h, cs
}

func connLines(msgs []connMsg) []string {
	var out []string
	for _, m := range msgs {
		line, _, _ := strings.Cut(m.data, "\r\n")
		out = append(out, itoa(int(m.id))+" "+line)
	}
	return out
}

func expectOnConn(t *testing.T, cs *connSender, want ...string) {
	t.Helper()
	got := connLines(cs.takeConn())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("sent on connections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStreamAnswersOnConnection: every response to a request received
// over a stream goes on the connection it came in on, not to whatever
// connection the transport holds for the source address: answers from the
// hook, after Resume, from a suspended handle, stateless refusals of the
// core, the 100 Trying, and responses relayed from downstream. When the
// connection has closed, the response goes to the source address (the
// transport opens a new connection there).
func TestStreamAnswersOnConnection(t *testing.T) {
	h, cs := newConnHarness(t)
	var suspended *Request
	h.rt.request = func(r *Request) {
		switch string(r.Msg.CallID()) {
		case "hook@stream":
			r.ReplyStateless(401, "Unauthorized", nil)
		case "later@stream":
			suspended = r.Suspend()
		default:
			r.Relay()
		}
	}
	msg := func(callID, branch string) string {
		return strings.Replace(request("OPTIONS", branch, callID, "sip:127.0.0.1", ""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	}

	h.inConn(uacAddr, 7, msg("hook@stream", "z9hG4bKc1"))
	expectOnConn(t, cs, "7 SIP/2.0 401 Unauthorized")

	h.inConn(uacAddr, 8, msg("later@stream", "z9hG4bKc2"))
	if err := suspended.Resume(func(r *Request) { r.ReplyStateless(200, "OK", nil) }); err != nil {
		t.Fatal(err)
	}
	expectOnConn(t, cs, "8 SIP/2.0 200 OK")
	// From the handle itself, without Resume.
	h.inConn(uacAddr, 12, msg("later@stream", "z9hG4bKc3"))
	if err := suspended.Reply(486, ""); err != nil {
		t.Fatal(err)
	}
	expectOnConn(t, cs, "12 SIP/2.0 486 Busy Here")

	// A stateless refusal by the core (Max-Forwards 0).
	h.inConn(uacAddr, 9, strings.Replace(msg("mf@stream", "z9hG4bKc4"), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	expectOnConn(t, cs, "9 SIP/2.0 483 Too Many Hops")

	// An INVITE relayed over UDP: 100 and the callee's 180 and 200 come
	// back on the caller's connection.
	inv := strings.Replace(invite("z9hG4bKc5", "inv@stream"), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	h.inConn(uacAddr, 10, inv)
	expectOnConn(t, cs, "10 SIP/2.0 100 Trying")
	out := h.snd.take()
	if len(out) != 1 {
		t.Fatalf("relayed: %s", describe(out))
	}
	h.in(uasAddr, respond(out[0].data, 180, "b1"))
	h.in(uasAddr, respond(out[0].data, 200, "b1"))
	expectOnConn(t, cs, "10 SIP/2.0 180 Ringing", "10 SIP/2.0 200 OK")
	if out := h.snd.take(); len(out) != 0 {
		t.Fatalf("sent by address as well: %s", describe(out))
	}

	// A CANCEL's 200 (the CANCEL on a connection of its own), and a 400
	// for a request that does not parse.
	inv = strings.Replace(invite("z9hG4bKc7", "cancel@stream"), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	h.inConn(uacAddr, 13, inv)
	cancel := strings.Replace(request("CANCEL", "z9hG4bKc7", "cancel@stream", "sip:bob@127.0.0.1:5080", ""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	h.inConn(uacAddr, 14, cancel)
	h.inConn(uacAddr, 15, strings.Replace(msg("bad@stream", "z9hG4bKc8"), "CSeq: 1 OPTIONS", "CSeq: one OPTIONS", 1))
	var got []string
	for _, l := range connLines(cs.takeConn()) {
		if !strings.Contains(l, " 100 Trying") && !strings.Contains(l, " 487 ") {
			got = append(got, l)
		}
	}
	if len(got) != 2 || got[0] != "14 SIP/2.0 200 OK" || !strings.HasPrefix(got[1], "15 SIP/2.0 400 ") {
		t.Fatalf("CANCEL and malformed request answered on: %q", got)
	}
	h.snd.take()

	// The connection closed before the answer: to the source address.
	h.inConn(uacAddr, 11, msg("later@stream", "z9hG4bKc6"))
	cs.mu.Lock()
	cs.closed[11] = true
	cs.mu.Unlock()
	if err := suspended.ReplyStateless(200, "OK", nil); err != nil {
		t.Fatal(err)
	}
	expectOnConn(t, cs)
	h.only(h.snd.take(), "127.0.0.1:5070 SIP/2.0 200 OK")
}
