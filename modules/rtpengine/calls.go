package rtpengine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"switchboard/modules/rtpengine/ng"
)

// callTable remembers the instance each call's session was created on,
// by Call-ID (Kamailio's rtpengine hash table), so that its answer,
// re-offers and delete reach that rtpengine whatever a reload did to the
// sets or weights meanwhile: a call keeps its instance while it lasts.
// Entries go at the delete, or call_timeout after the call's last
// command; past max_calls, a new call is not remembered and its commands
// go where its Call-ID hashes in its set (as they would without a
// reload).
type callTable struct {
	shards [64]callShard
	max    int64 // per shard
	n      atomic.Int64
}

type callShard struct {
	mu sync.Mutex
	m  map[string]callEntry
	_  [40]byte // one shard per cache line
}

type callEntry struct {
	in *ng.Instance
	at int64 // unix ms of the last command
}

func newCallTable(max int) *callTable {
	t := &callTable{max: int64((max + 63) / 64)}
	for i := range t.shards {
		t.shards[i].m = map[string]callEntry{}
	}
	return t
}

func (t *callTable) shard(callID []byte) *callShard {
	return &t.shards[xxhash.Sum64(callID)&63]
}

// get returns the call's instance, nil when it is not remembered.
func (t *callTable) get(callID []byte) *ng.Instance {
	s := t.shard(callID)
	s.mu.Lock()
	e := s.m[string(callID)]
	s.mu.Unlock()
	return e.in
}

// put remembers (or refreshes) the call's instance.
func (t *callTable) put(callID []byte, in *ng.Instance) {
	if t.max == 0 || len(callID) == 0 {
		return
	}
	s := t.shard(callID)
	now := time.Now().UnixMilli()
	s.mu.Lock()
	if _, ok := s.m[string(callID)]; ok {
		s.m[string(callID)] = callEntry{in: in, at: now}
	} else if int64(len(s.m)) < t.max {
		s.m[string(callID)] = callEntry{in: in, at: now}
		t.n.Add(1)
	}
	s.mu.Unlock()
}

// del forgets the call.
func (t *callTable) del(callID []byte) {
	s := t.shard(callID)
	s.mu.Lock()
	if _, ok := s.m[string(callID)]; ok {
		delete(s.m, string(callID))
		t.n.Add(-1)
	}
	s.mu.Unlock()
}

// sweep forgets the calls whose last command was before until (unix ms).
func (t *callTable) sweep(until int64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.at < until {
				delete(s.m, k)
				t.n.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}

func (t *callTable) len() int64 { return t.n.Load() }
