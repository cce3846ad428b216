package siptrace

// batch is HEP packets encoded back to back by the sender goroutine, sent
// together: one sendmmsg per UDP collector, one append per TCP collector.
type batch struct {
	buf  []byte // the packets; cap batchBytes, never grown
	ends []int  // end of each packet in buf
}

const (
	batchMax   = 64      // packets per batch (and per sendmmsg)
	batchBytes = 1 << 19 // 512 KiB: at least 7 packets of the largest size
)

func newBatch() *batch {
	return &batch{buf: make([]byte, 0, batchBytes), ends: make([]int, 0, batchMax)}
}

func (b *batch) reset() { b.buf, b.ends = b.buf[:0], b.ends[:0] }

func (b *batch) len() int { return len(b.ends) }

// packet returns packet i.
func (b *batch) packet(i int) []byte {
	start := 0
	if i > 0 {
		start = b.ends[i-1]
	}
	return b.buf[start:b.ends[i]]
}

// fits reports whether a packet of n bytes can be added.
func (b *batch) fits(n int) bool {
	return len(b.ends) < batchMax && len(b.buf)+n <= cap(b.buf)
}
