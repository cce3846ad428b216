package ng

import (
	"bytes"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakePeer is a UDP socket on loopback that answers ng commands the way
// the test says (a fake for the client's own tests; the module's
// end-to-end tests run the real rtpengine).
type fakePeer struct {
	conn  *net.UDPConn
	got   atomic.Int64
	drop  atomic.Int64 // datagrams still to ignore
	mu    sync.Mutex
	seen  [][]byte
	reply func(cookie, cmd []byte) []byte
}

func newFakePeer(t *testing.T, reply func(cookie, cmd []byte) []byte) *fakePeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{conn: c, reply: reply}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.got.Add(1)
			msg := append([]byte(nil), buf[:n]...)
			p.mu.Lock()
			p.seen = append(p.seen, msg)
			p.mu.Unlock()
			if p.drop.Load() > 0 {
				p.drop.Add(-1)
				continue
			}
			i := bytes.IndexByte(msg, ' ')
			if out := p.reply(msg[:i], msg[i+1:]); out != nil {
				c.WriteToUDPAddrPort(out, src)
			}
		}
	}()
	return p
}

func (p *fakePeer) inst(t *testing.T, weight int) *Instance {
	in, err := ParseInstance("udp:" + p.conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	in.Weight = weight
	return in
}

func pong(cookie, cmd []byte) []byte {
	var d Decoder
	v, err := d.Decode(cmd)
	if err != nil {
		return nil
	}
	res := "ok"
	if string(v.Get("command").Bytes()) == "ping" {
		res = "pong"
	}
	return append(append(append([]byte(nil), cookie...), ' '), "d6:result"+itoaLen(res)+res+"e"...)
}

func itoaLen(s string) string { return string(rune('0'+len(s))) + ":" }

type result struct {
	inst   *Instance
	result string
	err    error
}

func do(c *Client, key string) chan result {
	ch := make(chan result, 1)
	c.Do([]byte(key), "ping", pingCmd, func(in *Instance, v Value, err error) {
		ch <- result{in, string(v.Get("result").Bytes()), err}
	})
	return ch
}

func wait(t *testing.T, ch chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no callback")
	}
	return result{}
}

func TestParseInstance(t *testing.T) {
	for in, want := range map[string]string{
		"udp:127.0.0.1:2223":   "127.0.0.1:2223",
		"127.0.0.1:2223":       "127.0.0.1:2223",
		"udp:[::1]:2223=3":     "[::1]:2223",
		"udp:127.0.0.1:2223=2": "127.0.0.1:2223",
	} {
		i, err := ParseInstance(in)
		if err != nil || i.Addr.String() != want {
			t.Errorf("%s: %v %v", in, i, err)
		}
	}
	if i, _ := ParseInstance("udp:127.0.0.1:2223=2"); i.Weight != 2 {
		t.Error("weight")
	}
	for _, bad := range []string{"udp:rtp.example.com:2223", "tcp:127.0.0.1:1", "udp:127.0.0.1:0", "udp:127.0.0.1:1=0", "udp:127.0.0.1"} {
		if _, err := ParseInstance(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// Answers are matched by cookie: two commands in flight, answered in the
// opposite order, each reach their own callback.
func TestAnswersMatchedByCookie(t *testing.T) {
	var mu sync.Mutex
	var held [][]byte
	var peer *fakePeer
	var to atomic.Value
	peer = newFakePeer(t, func(cookie, cmd []byte) []byte {
		var d Decoder
		v, _ := d.Decode(cmd)
		id, _ := v.Get("id").Int()
		mu.Lock()
		defer mu.Unlock()
		ans := append(append([]byte(nil), cookie...), ' ')
		ans = append(AppendInt(append(ans, "d6:result2:ok2:id"...), id), 'e')
		held = append(held, ans)
		if len(held) == 2 { // answer the second first
			peer.conn.WriteToUDPAddrPort(held[1], to.Load().(netip.AddrPort))
			peer.conn.WriteToUDPAddrPort(held[0], to.Load().(netip.AddrPort))
		}
		return nil
	})
	c, err := New(Config{Timeout: 2 * time.Second}, []*Instance{peer.inst(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to.Store(c.Locals()[0])
	type got struct{ sent, echo int64 }
	ch := make(chan got, 2)
	for i := int64(1); i <= 2; i++ {
		cmd := AppendEnd(AppendInt(append([]byte(nil), "d7:command4:ping2:id"...), i))
		c.Do([]byte("call"), "ping", cmd, func(in *Instance, v Value, err error) {
			e, _ := v.Get("id").Int()
			ch <- got{i, e}
		})
	}
	for i := 0; i < 2; i++ {
		g := wait2(t, ch)
		if g.sent != g.echo {
			t.Fatalf("command %d got the answer to %d", g.sent, g.echo)
		}
	}
	if c.Pending() != 0 {
		t.Fatal("pending left")
	}
}

func wait2[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no callback")
	}
	var z T
	return z
}

// A lost command is sent again after Timeout with the same cookie; the
// answer to the retransmission ends it.
func TestRetransmission(t *testing.T) {
	peer := newFakePeer(t, pong)
	peer.drop.Store(2)
	c, err := New(Config{Timeout: 50 * time.Millisecond, Retries: 3}, []*Instance{peer.inst(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := wait(t, do(c, "x"))
	if r.err != nil || r.result != "pong" {
		t.Fatalf("%+v", r)
	}
	if peer.got.Load() != 3 {
		t.Fatalf("peer got %d datagrams, want 3", peer.got.Load())
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if !bytes.Equal(peer.seen[0], peer.seen[2]) {
		t.Fatal("retransmission differs from the first send (cookie must stay)")
	}
}

// An instance that stays silent is marked down after its retries and the
// command goes to the next one; the down instance is out of the selection
// until DisableFor passed and a ping finds it answering again.
func TestFailoverAndRecheck(t *testing.T) {
	silent := newFakePeer(t, pong)
	silent.drop.Store(1 << 30)
	good := newFakePeer(t, pong)
	a, b := silent.inst(t, 1), good.inst(t, 1)
	var downs, ups atomic.Int64
	c, err := New(Config{Timeout: 30 * time.Millisecond, Retries: 1, DisableFor: 300 * time.Millisecond,
		StateChanged: func(in *Instance, up bool) {
			if up {
				ups.Add(1)
			} else {
				downs.Add(1)
			}
		}}, []*Instance{a, b})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A key that selects the silent instance first.
	key := ""
	for i := 0; ; i++ {
		k := string(rune('a'+i%26)) + string(rune('a'+i/26))
		if c.Select([]byte(k)) == a {
			key = k
			break
		}
	}
	start := time.Now()
	r := wait(t, do(c, key))
	if r.err != nil || r.inst != b {
		t.Fatalf("%+v", r)
	}
	if silent.got.Load() != 2 {
		t.Fatalf("silent instance got %d sends, want 2 (1 retry)", silent.got.Load())
	}
	if time.Since(start) < 60*time.Millisecond {
		t.Fatal("failed over before the retries")
	}
	if a.Up() || downs.Load() != 1 {
		t.Fatal("silent instance not marked down")
	}
	// While down, the same key goes straight to the other instance.
	n := silent.got.Load()
	if r := wait(t, do(c, key)); r.inst != b {
		t.Fatalf("%+v", r)
	}
	if silent.got.Load() != n {
		t.Fatal("a down instance was sent a command")
	}
	// It comes back: after DisableFor the health check pings it.
	silent.drop.Store(0)
	deadline := time.Now().Add(3 * time.Second)
	for !a.Up() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !a.Up() || ups.Load() != 1 {
		t.Fatal("instance not back after DisableFor")
	}
	if r := wait(t, do(c, key)); r.inst != a {
		t.Fatalf("back instance not selected: %+v", r)
	}
}

// Every instance silent: the command ends with ErrTimeout; none in
// service: ErrNoInstance at once.
func TestAllDown(t *testing.T) {
	silent := newFakePeer(t, pong)
	silent.drop.Store(1 << 30)
	c, err := New(Config{Timeout: 20 * time.Millisecond, Retries: 1, DisableFor: time.Hour}, []*Instance{silent.inst(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := wait(t, do(c, "k")); r.err != ErrTimeout {
		t.Fatalf("%+v", r)
	}
	if r := wait(t, do(c, "k")); r.err != ErrNoInstance {
		t.Fatalf("%+v", r)
	}
	// The operator's disable takes an instance out too.
	good := newFakePeer(t, pong)
	g := good.inst(t, 1)
	c.SetInstances([]*Instance{g})
	c.SetDisabled(g, true)
	if r := wait(t, do(c, "k")); r.err != ErrNoInstance {
		t.Fatalf("%+v", r)
	}
	c.SetDisabled(g, false)
	if r := wait(t, do(c, "k")); r.err != nil || r.inst != g {
		t.Fatalf("%+v", r)
	}
}

// An answer from another address than the instance's, with the right
// cookie, is ignored: the real answer still ends the command.
func TestForgedAnswerIgnored(t *testing.T) {
	var cookie atomic.Value
	got := make(chan struct{}, 1)
	peer := newFakePeer(t, func(ck, cmd []byte) []byte {
		cookie.Store(string(ck))
		got <- struct{}{}
		return nil
	})
	c, err := New(Config{Timeout: 2 * time.Second}, []*Instance{peer.inst(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := do(c, "k")
	<-got
	forger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	to := c.Locals()[0]
	forger.WriteToUDPAddrPort([]byte(cookie.Load().(string)+" d6:result5:errore"), to)
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("forged answer accepted: %+v", r)
	default:
	}
	peer.conn.WriteToUDPAddrPort([]byte(cookie.Load().(string)+" d6:result4:ponge"), to)
	if r := wait(t, ch); r.result != "pong" {
		t.Fatalf("%+v", r)
	}
}

// Weights: the share of keys each instance gets follows its weight.
func TestWeightedSelection(t *testing.T) {
	p1, p2 := newFakePeer(t, pong), newFakePeer(t, pong)
	a, b := p1.inst(t, 1), p2.inst(t, 3)
	c, err := New(Config{}, []*Instance{a, b})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := map[*Instance]int{}
	for i := 0; i < 4000; i++ {
		n[c.Select([]byte{byte(i), byte(i >> 8), 'x'})]++
	}
	if n[a] < 800 || n[a] > 1200 || n[b] < 2800 {
		t.Fatalf("weights 1:3 gave %d:%d", n[a], n[b])
	}
}

// The control sockets are bound to the instance's local address, never
// the wildcard one: by default the address that reaches it (loopback for
// a peer on loopback), or the one given. An answer with the right cookie
// from the instance's address that comes in on another local socket of
// the client is ignored.
func TestBoundLocalSockets(t *testing.T) {
	var cookie atomic.Value
	got := make(chan struct{}, 1)
	peer := newFakePeer(t, func(ck, cmd []byte) []byte {
		cookie.Store(string(ck))
		got <- struct{}{}
		return nil
	})
	in := peer.inst(t, 1)
	c, err := New(Config{Timeout: 2 * time.Second}, []*Instance{in})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if in.Local != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("local address %v, want 127.0.0.1", in.Local)
	}
	if err := c.Bind(netip.MustParseAddr("127.0.0.2")); err != nil {
		t.Fatal(err)
	}
	var own, other netip.AddrPort
	for _, l := range c.Locals() {
		if l.Addr().IsUnspecified() {
			t.Fatalf("a socket bound to the wildcard address: %v", l)
		}
		if l.Addr() == in.Local {
			own = l
		} else {
			other = l
		}
	}
	ch := do(c, "k")
	<-got
	peer.conn.WriteToUDPAddrPort([]byte(cookie.Load().(string)+" d6:result5:errore"), other)
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("answer on another socket accepted: %+v", r)
	default:
	}
	peer.conn.WriteToUDPAddrPort([]byte(cookie.Load().(string)+" d6:result4:ponge"), own)
	if r := wait(t, ch); r.result != "pong" {
		t.Fatalf("%+v", r)
	}
	// An instance whose local address is given uses it; the socket no
	// instance uses (127.0.0.2, bound by hand above) is closed.
	in2 := peer.inst(t, 1)
	in2.Local = netip.MustParseAddr("127.0.0.3")
	if err := c.SetInstances([]*Instance{in, in2}); err != nil {
		t.Fatal(err)
	}
	if got := localAddrs(c); got != "127.0.0.1,127.0.0.3" {
		t.Fatalf("locals %v", got)
	}
}

func localAddrs(c *Client) string {
	var out []string
	for _, l := range c.Locals() {
		out = append(out, l.Addr().String())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestRemovedInstanceSocketClosed: a reload that removes the only
// instance of a local address closes that address's control socket, once
// the commands in flight on it have their answers: a command sent before
// the reload still gets its answer on it, and the health checks close it
// within a second after.
func TestRemovedInstanceSocketClosed(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Bool
	slow := newFakePeer(t, func(ck, cmd []byte) []byte {
		if held.CompareAndSwap(false, true) {
			<-release // the first command waits for the test
		}
		return pong(ck, cmd)
	})
	fast := newFakePeer(t, pong)
	in1, in2 := fast.inst(t, 1), slow.inst(t, 1)
	in2.Local = netip.MustParseAddr("127.0.0.4")
	c, err := New(Config{Timeout: 5 * time.Second}, []*Instance{in1, in2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := make(chan result, 1)
	c.DoOn(in2, "ping", pingCmd, func(in *Instance, v Value, err error) { ch <- result{in, string(v.Get("result").Bytes()), err} })
	waitFor(t, "the slow peer got the command", func() bool { return slow.got.Load() == 1 })
	if err := c.SetInstances([]*Instance{in1}); err != nil {
		t.Fatal(err)
	}
	if got := localAddrs(c); got != "127.0.0.1,127.0.0.4" {
		t.Fatalf("locals with a command in flight on 127.0.0.4: %v", got)
	}
	close(release)
	if r := wait(t, ch); r.err != nil || r.result != "pong" {
		t.Fatalf("the command in flight: %+v", r)
	}
	waitFor(t, "127.0.0.4's socket closed", func() bool { return localAddrs(c) == "127.0.0.1" })
	if r := wait(t, do(c, "k")); r.err != nil || r.inst != in1 {
		t.Fatalf("after the reload: %+v", r)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTimedOutInstancesReported: DoInWatched names each instance a
// command was given up on, in order, the first marked first, before the
// command goes on to the next instance or ends with ErrTimeout.
func TestTimedOutInstancesReported(t *testing.T) {
	s1, s2 := newFakePeer(t, pong), newFakePeer(t, pong)
	s1.drop.Store(1 << 30)
	s2.drop.Store(1 << 30)
	good := newFakePeer(t, pong)
	a, b, g := s1.inst(t, 1), s2.inst(t, 1), good.inst(t, 1)
	c, err := New(Config{Timeout: 20 * time.Millisecond, Retries: 0, DisableFor: time.Hour}, []*Instance{a, b, g})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := ""
	for i := 0; ; i++ {
		k := string(rune('a'+i%26)) + string(rune('a'+i/26))
		if c.Select([]byte(k)) == a {
			key = k
			break
		}
	}
	type gaveUp struct {
		in    *Instance
		first bool
	}
	var mu sync.Mutex
	var seen []gaveUp
	watch := func(in *Instance, first bool) {
		mu.Lock()
		seen = append(seen, gaveUp{in, first})
		mu.Unlock()
	}
	run := func(set []*Instance) result {
		ch := make(chan result, 1)
		c.DoInWatched(set, nil, []byte(key), "ping", pingCmd, watch, func(in *Instance, v Value, err error) {
			ch <- result{in, string(v.Get("result").Bytes()), err}
		})
		return wait(t, ch)
	}
	if r := run([]*Instance{a, b, g}); r.err != nil || r.inst != g {
		t.Fatalf("%+v", r)
	}
	mu.Lock()
	if len(seen) != 2 || seen[0] != (gaveUp{a, true}) || seen[1] != (gaveUp{b, false}) {
		t.Fatalf("given up on %+v", seen)
	}
	seen = nil
	mu.Unlock()
	// Every instance silent: each reported before the ErrTimeout.
	c.SetDisabled(a, false)
	a.downUntil.Store(0)
	a.down.Store(false)
	if r := run([]*Instance{a}); r.err != ErrTimeout {
		t.Fatalf("%+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != (gaveUp{a, true}) {
		t.Fatalf("given up on %+v", seen)
	}
}
