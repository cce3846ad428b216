package main

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2ETransactionMemoryCap: a flood of 58 KB INVITEs relayed to a UAS
// that never answers, so every admitted transaction is held (with its
// relayed copy) until timer B. With limits.max_transaction_memory: 4 the
// transactions' bytes stay under 4 MiB throughout, the INVITEs past the
// cap get one stateless 503 each, and /metrics counts them.
func TestE2ETransactionMemoryCap(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	const (
		capMiB  = 4
		invites = 200
		size    = 58 << 10
	)
	uas, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	var mu sync.Mutex
	atUAS := map[string]bool{} // Call-IDs relayed to the UAS
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := uas.ReadFrom(buf)
			if err != nil {
				return
			}
			if msg := string(buf[:n]); strings.HasPrefix(msg, "INVITE ") {
				mu.Lock()
				atUAS[headerValue(msg, "Call-ID")] = true
				mu.Unlock()
			}
		}
	}()

	srv := startServer(t, "routes: relay\nlimits:\n  max_transaction_memory: "+strconv.Itoa(capMiB)+"\n")
	if got := srv.metrics()["switchboard_transactions_memory_limit_bytes"]; got != capMiB<<20 {
		t.Fatalf("memory limit metric %v, want %d", got, capMiB<<20)
	}
	if !srv.logged("transaction memory cap") {
		t.Errorf("the cap is not in the start log:\n%s", srv.Log)
	}

	// Sample the accounted bytes while the flood runs.
	stop := make(chan struct{})
	sampled := make(chan float64)
	go func() {
		peak := 0.0
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case <-time.After(20 * time.Millisecond):
			}
			peak = max(peak, srv.metrics()["switchboard_transactions_memory_bytes"])
		}
	}()

	uac, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uac.Close()
	replies := map[string][]string{} // Call-ID -> status codes, in order
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			uac.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := uac.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if code, ok := strings.CutPrefix(msg, "SIP/2.0 "); ok {
				mu.Lock()
				id := headerValue(msg, "Call-ID")
				replies[id] = append(replies[id], code[:3])
				mu.Unlock()
			}
		}
	}()
	uasAddr := uas.LocalAddr().String()
	uacPort := uac.LocalAddr().(*net.UDPAddr).Port
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srv.Port}
	body := strings.Repeat("a=x-pad:0123456789abcdef0123456789abcdef0123456789abcdef\r\n", size/58)
	for i := 0; i < invites; i++ {
		id := "flood" + strconv.Itoa(i) + "@test"
		msg := "INVITE sip:uas@" + uasAddr + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(uacPort) + ";branch=z9hG4bK-flood" + strconv.Itoa(i) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:attacker@127.0.0.1>;tag=f" + strconv.Itoa(i) + "\r\nTo: <sip:uas@" + uasAddr + ">\r\n" +
			"Call-ID: " + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:attacker@127.0.0.1:" + strconv.Itoa(uacPort) + ">\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := uac.WriteTo([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // let the reader keep up: no datagram lost to the socket buffer
	}
	// Well within timer B (64×T1 = 6.4 s): the admitted ones are held.
	time.Sleep(time.Second)
	close(stop)
	peak := <-sampled
	m := srv.metrics()
	<-done // 2 s without a reply: a stateful 503 would have been resent by now (T1 100 ms)

	mu.Lock()
	defer mu.Unlock()
	admitted, refused := 0, 0
	for i := 0; i < invites; i++ {
		id := "flood" + strconv.Itoa(i) + "@test"
		switch codes := strings.Join(replies[id], ","); {
		case codes == "503":
			refused++
			if atUAS[id] {
				t.Errorf("%s: refused with 503 and relayed", id)
			}
		case strings.HasPrefix(codes, "100"):
			admitted++
			if !atUAS[id] {
				t.Errorf("%s: 100 Trying but never relayed", id)
			}
		default:
			t.Errorf("%s: replies %q, want 100 (held) or one 503", id, codes)
		}
	}
	t.Logf("admitted %d, refused %d, peak %.0f bytes accounted, %v at the end", admitted, refused, peak, m["switchboard_transactions_memory_bytes"])
	if admitted == 0 || refused == 0 {
		t.Fatalf("admitted %d, refused %d: the cap did not act", admitted, refused)
	}
	if got := m["switchboard_overload_rejections_total"]; got != float64(refused) {
		t.Errorf("overload rejections metric %v, want %d", got, refused)
	}
	if peak > capMiB<<20 || m["switchboard_transactions_memory_bytes"] > capMiB<<20 {
		t.Errorf("transaction bytes reached %.0f (end %v), over the cap of %d", peak, m["switchboard_transactions_memory_bytes"], capMiB<<20)
	}
	// The figure counts what is held: each admitted INVITE and its relayed copy.
	if got := m["switchboard_transactions_memory_bytes"]; got < float64(admitted*2*size) {
		t.Errorf("%v bytes accounted for %d held transactions of two %d-byte copies each", got, admitted, size)
	}
}

// headerValue returns the value of the first header called name.
func headerValue(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
		if line == "" {
			break
		}
	}
	return ""
}
