package fraud

import (
	"bytes"
	"testing"
	"time"

	"switchboard/store"
)

func TestCheckAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, envOptions{})
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Warning: 1000, Critical: 2000},
		TotalCalls: store.FraudLimit{Critical: 1_000_000}, SequentialCalls: store.FraudLimit{Warning: 3}})
	e.rule(store.FraudRule{Prefix: "0800", CPM: store.FraudLimit{Critical: 1}})
	user := []byte("alice@example.com")
	for _, c := range []struct {
		name   string
		number string
		want   Result
	}{
		{"no rule", "0700123", NoRule},
		{"ok", "0900123", OK},           // different numbers: no sequential warning
		{"warning", "0900555", Warning}, // the same number: sequential warning
		{"critical", "0800123", Critical},
	} {
		numbers := [][]byte{[]byte(c.number), []byte(c.number)}
		if c.want == OK {
			numbers[1] = []byte("0900124")
		}
		i := 0
		// Enough calls first that this second's event lines are spent.
		for j := 0; j < 2*logPerSecond; j++ {
			e.f.Check(nil, user, numbers[j%2], 1)
		}
		var got Result
		allocs := testing.AllocsPerRun(200, func() {
			got = e.f.Check(nil, user, numbers[i%2], 1)
			i++
		})
		if allocs != 0 || got != c.want {
			t.Errorf("%s: %v allocations per Check, result %v (want %v)", c.name, allocs, got, c.want)
		}
	}
	if allocs := testing.AllocsPerRun(200, func() { e.f.CountsConcurrent(1) }); allocs != 0 {
		t.Errorf("%v allocations per CountsConcurrent", allocs)
	}
}

func TestTrackedCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	// A whole INVITE through the core: parse, transaction, Check counting
	// it as concurrent (Track), the route refusing it after all
	// (CallFailed releases the lease), the stateless answer.
	p := newProxy(t, envOptions{})
	p.Keep = false
	p.refuseAfterCheck = true
	p.rule(store.FraudRule{Prefix: "0900", ConcurrentCalls: store.FraudLimit{Warning: 1000, Critical: 2000}})
	msg := []byte("INVITE sip:0900123@gw.example.net SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=00000000\r\nTo: <sip:0900123@gw.example.net>\r\n" +
		"Call-ID: 00000000@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	i := 0
	// send numbers the branch, tag and Call-ID, and moves the clock a
	// minute every 1000 calls so that finished transactions go back to
	// their pool.
	send := func() {
		numberMessage(msg, i)
		p.Handle(packet(p, msg))
		if i%1000 == 999 {
			p.clock.Advance(time.Minute)
		}
		i++
	}
	for i < 5000 {
		send()
	}
	allocs := testing.AllocsPerRun(2000, send)
	if allocs != 0 {
		t.Errorf("%v allocations per tracked INVITE", allocs)
	}
	if p.last != OK || p.concurrent("0900") != 0 || p.f.calls.Len() != 0 {
		t.Fatalf("result %v, concurrent %d, tracked %d", p.last, p.concurrent("0900"), p.f.calls.Len())
	}
	// The same INVITE relayed is tracked: the path measured counted calls.
	p.refuseAfterCheck = false
	send()
	if p.concurrent("0900") != 1 || p.f.calls.Len() != 1 {
		t.Fatalf("relayed: concurrent %d, tracked %d", p.concurrent("0900"), p.f.calls.Len())
	}
}

// numberMessage writes n as 8 digits over every "00000000"-sized number
// field of msg (the first time: the zeros; later: the previous number).
func numberMessage(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=", "Call-ID: "} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}
