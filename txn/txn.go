package txn

import (
	"net/netip"
	"sync"
	"unsafe"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// MaxBranches is the number of client branches one proxied request can
// have over its life: parallel branches and the serial ones a failure
// route adds (Kamailio's default is 12). The branch index travels in the
// high nibble of a timer kind, hence at most 16.
const MaxBranches = 16

// Server transaction states (RFC 3261 §17.2, RFC 6026 for Accepted).
const (
	sTrying     uint8 = iota // non-INVITE, nothing sent yet
	sProceeding              // a provisional was sent (INVITE: 100 at once)
	sCompleted               // a non-2xx final was sent
	sConfirmed               // INVITE: the ACK for it arrived
	sAccepted                // INVITE: a 2xx was forwarded
	sTerminated
)

// Client branch states (RFC 3261 §17.1).
const (
	bNone       uint8 = iota // slot unused
	bResolving               // waiting for DNS
	bCalling                 // sent; INVITE Calling / non-INVITE Trying
	bProceeding              // a provisional arrived
	bCompleted               // a non-2xx final arrived (or a timeout ended it)
	bAccepted                // INVITE: a 2xx arrived (RFC 6026)
	bTerminated
)

// Timer kinds: the low nibble says which timer, the high nibble the
// branch it belongs to.
const (
	kG      uint8 = iota + 1 // server: retransmit the final response (INVITE, UDP)
	kH                       // server: end of Completed/Confirmed/Accepted (H, I, J, L)
	kA                       // branch: retransmit the request (A, E)
	kB                       // branch: transaction timeout (B, F)
	kC                       // branch: proxy INVITE timeout (§16.6 step 11)
	kD                       // branch: end of Completed/Accepted (D, K, M)
	kCancel                  // branch: retransmit the CANCEL, give up after 64·T1
	kTrying                  // server, non-INVITE: 100 once the client's timer E reached T2 (RFC 4320 §4.1)
	kHeld                    // server: a held 2xx not released in time (hold.go; a non-INVITE's too)
)

// txn is one proxied request: the server transaction, its client branches
// and the routing state. It lives in the transaction table, keyed by the
// request's branch, sent-by and method class inside the shard of its
// Call-ID; buffers keep their capacity across reuse.
type txn struct {
	id     uint32
	invite bool
	state  uint8
	proto  transport.Proto // of the server side

	canceled  bool // CANCEL received
	got2xx    bool
	got6xx    bool
	finalSent bool // the server side sent a final response
	inFailure bool
	relayed   bool
	// held: the Request hook or a resumed continuation is running on the
	// transaction. gc leaves a held transaction in the table even once it
	// terminated (a non-INVITE answered over a stream: timer J is 0); the
	// holder removes it when the hook returns. So the route can still read
	// the request after answering, and no action touches a pooled entry.
	held bool
	// heldLost: a 2xx held by a Reply hook was not released in time and
	// the caller was answered 500 (hold.go); no 2xx goes upstream now.
	heldLost bool

	// The request as received, copied once and parsed; buf2 holds a
	// version edited by the route when it used the Editor.
	buf, buf2 []byte
	msg       parser.Message
	// What the client sent when the route's edits changed it (restore.go):
	// its CSeq number, and its From and To values in up (From first,
	// upFrom bytes long).
	cseq   uint32
	up     []byte
	upFrom int
	upTag  bool // the To the client sent had a tag
	upSet  bool
	// kept holds what the route handed Request.Own.
	kept []byte

	// Where responses go (§18.2.2, RFC 3581) and the last one sent.
	respL   *transport.Listener
	respDst netip.AddrPort
	resp    []byte
	gInt    int64
	tG, tH  shards.Timer // tG: timer G (INVITE), the deadline of a held 2xx before it (INVITE), or the 100 of RFC 4320 §4.1 (non-INVITE)
	pending int          // branches in bResolving..bProceeding

	src  netip.AddrPort
	conn transport.ConnID
	rs   routeState
	ed   *parser.Editor // the route's editor for a suspended handle
	// The first branch lives in the transaction; the others, which only
	// forking needs, come from branchPool and go back when the
	// transaction is released. A Branch never moves: the timer wheel
	// links its timers.
	nbr  int
	step int // first branch of the latest serial step (started from Failure)
	br0  Branch
	more []*Branch

	// Branch URIs added by the route and not sent yet.
	uris  []byte
	queue [MaxBranches]span
	nq    int
	qi    int
}

type span struct{ off, n int32 }

// Branch is one client transaction of a proxied request. The Router sees
// it in Branch (before it is sent) and Reply; it lives inside the
// transaction.
type Branch struct {
	idx         uint8
	state       uint8
	code        int // final status, 0 while pending; 408/503 for local failures
	gotProv     bool
	cancelWant  bool
	cancelSent  bool
	cancelAcked bool
	destSet     bool
	proto       transport.Proto
	conn        transport.ConnID // the flow it goes over (flow.go); 0: none
	l           *transport.Listener
	dst         netip.AddrPort
	host        []byte   // hostname to resolve (owned)
	fo          failover // resolved targets (RFC 3263 §4.3), see srvcore.go
	interval    int64
	cancelStart int64
	cancelInt   int64
	uri         []byte // R-URI of the branch (owned)
	out         []byte // the request as sent (owned), for retransmission
	resp        []byte // its final non-2xx response (owned), for the best-response choice
	cancel      []byte // the CANCEL as sent
	ack         []byte // the ACK for a non-2xx final
	ed          *parser.Editor
	tRetr       shards.Timer // A/E, then D/K/M
	tTimeout    shards.Timer // B/F
	tC          shards.Timer
	tCancel     shards.Timer
}

// Index returns the branch number (0 for the first branch).
func (b *Branch) Index() int { return int(b.idx) }

// URI returns the Request-URI the branch is sent with.
func (b *Branch) URI() []byte { return b.uri }

// Sent returns the copy of the request sent on the branch (its latest
// attempt), with every edit made to it: the route's, the branch route's,
// the core's and the Rewriter's. Empty before it is sent. Read-only,
// valid inside a hook or a Watcher's Sent.
func (b *Branch) Sent() []byte { return b.out }

// SetURI changes the branch's Request-URI. Only in Router.Branch.
func (b *Branch) SetURI(uri []byte) { b.uri = append(b.uri[:0], uri...) }

// Editor returns the editor for the branch's copy of the request; valid
// only during Router.Branch. The core adds its own edits (Via,
// Max-Forwards, Record-Route, Route, Request-URI) after the hook returns.
func (b *Branch) Editor() *parser.Editor { return b.ed }

// SetDestination sends the branch to dst over proto instead of the
// address taken from Route or the Request-URI. Only in Router.Branch.
func (b *Branch) SetDestination(proto transport.Proto, dst netip.AddrPort) {
	b.proto, b.dst, b.destSet = proto, dst, true
	b.conn = 0
	b.host = b.host[:0]
}

// Destination returns where the branch is (or will be) sent.
func (b *Branch) Destination() (transport.Proto, netip.AddrPort) { return b.proto, b.dst }

// Code returns the branch's final status: 0 while it is pending, 408 for a
// timeout and 503 for a transport failure generated locally.
func (b *Branch) Code() int { return b.code }

func (b *Branch) active() bool { return b.state >= bResolving && b.state <= bProceeding }

// branchPool holds the Branches beyond the first, with their buffers.
var branchPool = sync.Pool{New: func() any { return new(Branch) }}

// branchSize is what one pooled Branch adds to a transaction, buffers
// aside.
const branchSize = int(unsafe.Sizeof(Branch{}))

// branch returns branch i (< t.nbr).
func (t *txn) branch(i int) *Branch {
	if i == 0 {
		return &t.br0
	}
	return t.more[i-1]
}

// newBranch appends a cleared branch; the caller checks MaxBranches.
func (t *txn) newBranch() *Branch {
	b := &t.br0
	if t.nbr > 0 {
		b = branchPool.Get().(*Branch)
		t.more = append(t.more, b)
	}
	b.idx = uint8(t.nbr)
	t.nbr++
	return b
}

// maxPooledBuf is the largest buffer a pooled transaction keeps for the
// next one. Everyday messages (1 to 4 KB, WebRTC offers up to about 8 KB)
// reuse their buffers without allocating; the buffer of a rare larger one
// (a 58 KB INVITE) is dropped when its transaction ends, rather than
// pinned in a free entry, where the memory cap does not see it.
const maxPooledBuf = 8 << 10

// keep returns b emptied for reuse, or nil when it grew past maxPooledBuf.
func keep(b []byte) []byte {
	if cap(b) > maxPooledBuf {
		return nil
	}
	return b[:0]
}

// resetBranch clears b, keeping its buffers' capacity up to maxPooledBuf.
func resetBranch(b *Branch) {
	host, uri, out, resp, cancel, ack := keep(b.host), keep(b.uri), keep(b.out), keep(b.resp), keep(b.cancel), keep(b.ack)
	*b = Branch{}
	b.host, b.uri, b.out, b.resp, b.cancel, b.ack = host, uri, out, resp, cancel, ack
}

// resetTxn prepares a pooled transaction for reuse, keeping buffers up to
// maxPooledBuf; the extra branches go back to branchPool. It runs once no
// timer of the transaction is left.
func resetTxn(t *txn) {
	buf, buf2, resp, uris, ruri, ed, up := keep(t.buf), keep(t.buf2), keep(t.resp), keep(t.uris), keep(t.rs.ruri), t.ed, keep(t.up)
	rrx, dlgx, kept, hop, rset := keep(t.rs.rrx), keep(t.rs.dlgx), keep(t.kept), keep(t.rs.hop), keep(t.rs.rset)
	more := t.more
	for i, b := range more {
		resetBranch(b)
		branchPool.Put(b)
		more[i] = nil
	}
	resetBranch(&t.br0)
	br0 := t.br0
	*t = txn{}
	t.buf, t.buf2, t.resp, t.uris, t.rs.ruri, t.ed, t.up = buf, buf2, resp, uris, ruri, ed, up
	t.rs.rrx, t.rs.dlgx, t.kept, t.rs.hop, t.rs.rset = rrx, dlgx, kept, hop, rset
	t.br0, t.more = br0, more[:0]
}

// Sizes of what a transaction may hold behind pointers.
const (
	editorSize = int(unsafe.Sizeof(parser.Editor{}))
	targetSize = int(unsafe.Sizeof(failover{}.targets[0]))
	ptrSize    = int(unsafe.Sizeof(uintptr(0)))
)

// owned returns the bytes the transaction holds beyond its fixed size:
// the capacity of every buffer (not the length: a buffer that grew for a
// large message holds all of it), the route's editor, the RFC 3263 target
// lists and the extra branches. The table accounts it (Charge).
func (t *txn) owned() int {
	n := cap(t.buf) + cap(t.buf2) + cap(t.resp) + cap(t.uris) + cap(t.rs.ruri) + cap(t.up) + cap(t.rs.rrx) + cap(t.rs.dlgx) + cap(t.kept) + cap(t.rs.hop) + cap(t.rs.rset)
	if t.ed != nil {
		n += editorSize
	}
	for i := 0; i < t.nbr; i++ {
		b := t.branch(i)
		n += cap(b.host) + cap(b.uri) + cap(b.out) + cap(b.resp) + cap(b.cancel) + cap(b.ack)
		n += cap(b.fo.targets) * targetSize
	}
	return n + len(t.more)*branchSize + cap(t.more)*ptrSize
}

// admission is what a new transaction is accounted at when it is
// admitted: what it owns, plus room for its request twice more (the copy
// relayed to the next hop, and a response such as the 100 Trying, which
// repeats the request's Via headers), so that serving it does not take
// the shard past its share of the cap. The first Charge after the copies
// exist replaces the reservation with the real figure.
func (t *txn) admission() int { return t.owned() + 2*len(t.buf) }
