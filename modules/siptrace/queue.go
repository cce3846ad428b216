package siptrace

import (
	"net/netip"
	"sync/atomic"

	"switchboard/transport"
)

// queue is the bounded queue between the tap (many goroutines: the UDP
// readers, the stream event loops, timers) and the one goroutine that
// encodes and sends: a ring of slots allocated once, each with a buffer
// of max_message bytes. A producer claims the next slot with one
// compare-and-swap on the tail, copies the message into the slot's buffer
// and publishes it; when the ring is full it gives up at once (the message
// is dropped and counted), so a slow or dead collector costs the SIP path
// nothing but the drop. Producers do not wake the consumer per message
// (publish). The algorithm is Dmitry Vyukov's bounded queue:
// each slot's sequence number says whose turn it is, so producers never
// wait for each other and nothing is locked.
type queue struct {
	max   int // bytes per slot (max_message)
	mask  uint64
	half  uint64 // a backlog that wakes the consumer
	slots []slot
	_     [56]byte // keep tail off the slots' and head's cache lines
	tail  atomic.Uint64
	_     [56]byte
	head  atomic.Uint64 // written by the consumer only; read by len
	// sleeping is set by the consumer before it sleeps; the producer
	// that finds the queue half full clears it and sends the token.
	sleeping atomic.Bool
	wake     chan struct{}
}

// slot is one message waiting to be sent.
type slot struct {
	seq   atomic.Uint64
	proto transport.Proto
	src   netip.AddrPort
	dst   netip.AddrPort
	sec   int64
	nsec  int32
	typ   uint8  // 0: SIP; ProtoTypeLog: buf is the Call-ID (cid bytes), then the line
	cid   uint16 // the Call-ID's length at the start of buf, for a log line
	buf   []byte // len: the message; cap: max_message
}

// newQueue makes a ring of size slots (a power of two) of max bytes each.
func newQueue(size, max int) *queue {
	q := &queue{max: max, mask: uint64(size - 1), half: uint64(size / 2), slots: make([]slot, size), wake: make(chan struct{}, 1)}
	mem := make([]byte, size*max) // one block: no per-slot headers
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
		q.slots[i].buf = mem[i*max : i*max : (i+1)*max]
	}
	return q
}

// claim returns the next free slot and its position, or nil when the ring
// is full.
func (q *queue) claim() (*slot, uint64) {
	pos := q.tail.Load()
	for {
		s := &q.slots[pos&q.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if q.tail.CompareAndSwap(pos, pos+1) {
				return s, pos
			}
			pos = q.tail.Load()
		case d < 0:
			return nil, 0 // the consumer has not freed this slot yet: full
		default:
			pos = q.tail.Load() // another producer took it
		}
	}
}

// publish hands a filled slot to the consumer. The consumer is woken
// only when the queue is half full: otherwise it comes by itself within
// its flush interval (siptrace.go), and a message costs no wake-up.
func (q *queue) publish(s *slot, pos uint64) {
	s.seq.Store(pos + 1)
	if q.sleeping.Load() && pos+1-q.head.Load() >= q.half && q.sleeping.CompareAndSwap(true, false) {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// park tells producers the consumer is about to sleep; false when the
// queue is half full already (no sleep). Consumer only.
func (q *queue) park() bool {
	q.sleeping.Store(true)
	// A producer that published before seeing sleeping is seen here.
	if h := q.head.Load(); q.tail.Load()-h >= q.half {
		q.sleeping.Store(false)
		return false
	}
	return true
}

// unpark ends a sleep; a wake-up token left in the channel makes the next
// sleep short, which is harmless.
func (q *queue) unpark() { q.sleeping.Store(false) }

// peek returns the slot at the head when a producer has published it.
// Consumer only.
func (q *queue) peek() *slot {
	h := q.head.Load()
	s := &q.slots[h&q.mask]
	if s.seq.Load() != h+1 {
		return nil
	}
	return s
}

// release frees the head slot for producers. Consumer only.
func (q *queue) release(s *slot) {
	h := q.head.Load()
	s.seq.Store(h + q.mask + 1)
	q.head.Store(h + 1)
}

// len is the number of slots claimed and not yet released (approximate
// while producers run).
func (q *queue) len() int {
	h := q.head.Load() // first: the tail read after it is never behind it
	return int(q.tail.Load() - h)
}
