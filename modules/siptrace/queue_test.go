package siptrace

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"switchboard/transport"
)

// TestQueueFullRefuses: a ring of 16 takes 16 messages and refuses the
// 17th at once; once the consumer frees a slot, one more fits. Order is
// kept.
func TestQueueFullRefuses(t *testing.T) {
	q := newQueue(16, 64)
	for i := 0; i < 16; i++ {
		s, pos := q.claim()
		if s == nil {
			t.Fatalf("slot %d refused", i)
		}
		s.buf = append(s.buf[:0], byte(i))
		q.publish(s, pos)
	}
	if s, _ := q.claim(); s != nil {
		t.Fatal("a full ring gave a slot")
	}
	if q.len() != 16 {
		t.Fatalf("len %d", q.len())
	}
	s := q.peek()
	if s == nil || s.buf[0] != 0 {
		t.Fatal("head is not the first message")
	}
	q.release(s)
	s2, pos := q.claim()
	if s2 == nil {
		t.Fatal("no slot after one was released")
	}
	s2.buf = append(s2.buf[:0], 16)
	q.publish(s2, pos)
	for want := byte(1); want <= 16; want++ {
		s := q.peek()
		if s == nil || s.buf[0] != want {
			t.Fatalf("want message %d", want)
		}
		q.release(s)
	}
	if q.peek() != nil || q.len() != 0 {
		t.Fatal("ring not empty")
	}
}

// TestQueueConcurrent: four producers against one consumer that sleeps
// when the ring is empty and is woken when it is half full. Every message is either received, once
// and in its producer's order, or refused; none is lost or duplicated.
func TestQueueConcurrent(t *testing.T) {
	q := newQueue(64, 16)
	const producers, each = 4, 20000
	var refused [producers]int
	stop := make(chan struct{})
	got := make(chan [producers]int)
	go func() {
		var last [producers]int
		var n [producers]int
		for i := range last {
			last[i] = -1
		}
		take := func() {
			for s := q.peek(); s != nil; s = q.peek() {
				p, seq := int(s.buf[0]), int(binary.BigEndian.Uint32(s.buf[1:]))
				if seq <= last[p] {
					t.Errorf("producer %d: message %d after %d", p, seq, last[p])
				}
				last[p] = seq
				n[p]++
				q.release(s)
			}
		}
		for {
			take()
			select {
			case <-stop:
				take()
				got <- n
				return
			default:
			}
			if q.park() { // as the sender does: a short sleep, or woken at half full
				select {
				case <-q.wake:
				case <-stop:
				case <-time.After(100 * time.Microsecond):
				}
				q.unpark()
			}
		}
	}()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s, pos := q.claim()
				if s == nil {
					refused[p]++
					continue
				}
				s.buf = binary.BigEndian.AppendUint32(append(s.buf[:0], byte(p)), uint32(i))
				q.publish(s, pos)
			}
		}(p)
	}
	wg.Wait()
	close(stop)
	n := <-got
	for p := 0; p < producers; p++ {
		if n[p]+refused[p] != each {
			t.Errorf("producer %d: %d received + %d refused, want %d", p, n[p], refused[p], each)
		}
	}
}

// TestCaptureFullQueueCounts: with nobody draining, a queue of 16 takes 16
// captures and counts the rest as dropped; a message longer than a slot is
// counted as too large. Neither waits.
func TestCaptureFullQueueCounts(t *testing.T) {
	st := &SipTrace{}
	st.q.Store(newQueue(16, 512))
	src, dst := netip.MustParseAddrPort("127.0.0.1:5070"), netip.MustParseAddrPort("127.0.0.1:5060")
	for i := 0; i < 20; i++ {
		st.capture(transport.UDP, src, dst, []byte("OPTIONS sip:a SIP/2.0\r\n\r\n"))
	}
	st.capture(transport.UDP, src, dst, make([]byte, 513))
	if q := st.q.Load(); q.len() != 16 || st.full.Load() != 4 || st.tooLarge.Load() != 1 {
		t.Fatalf("queued %d, full %d, too large %d; want 16, 4, 1", q.len(), st.full.Load(), st.tooLarge.Load())
	}
	if d := st.dropped(); d["queue_full"] != 4 || d["too_large"] != 1 {
		t.Fatalf("dropped %v", d)
	}
}
