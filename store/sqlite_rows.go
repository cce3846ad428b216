package store

import (
	"context"
	"database/sql"
	"math/bits"
	"strings"
	"sync"
	"unsafe"
)

// Multi-row statements for the writes that come in batches (the dialog
// module's write-back, the accounting records). One INSERT of 32 rows, or
// one DELETE of 32 ids, costs SQLite and the driver one statement: the
// bind, step and reset, database/sql's argument conversion and locking,
// the virtual machine's start, once instead of 32 times. Measured with
// BenchmarkApplyDialogs and BenchmarkAddCDRs (bench/results/dialog-acc.md).

// maxBatchRows is the most rows one statement carries: 32 dialog rows
// are 928 parameters, far below SQLite's limit (32766).
const maxBatchRows = 32

// chunkRows returns how many of n rows the next statement takes: 32, or
// the largest power of two not above n, so that a batch of any size uses
// at most six statements of different shapes (32, 16, 8, 4, 2, 1 rows),
// each prepared once.
func chunkRows(n int) int {
	if n >= maxBatchRows {
		return maxBatchRows
	}
	k := 1
	for k*2 <= n {
		k *= 2
	}
	return k
}

// eachChunk calls fn(i, n) for consecutive chunks of the items [0,
// total): a chunk starts at item i, takes the items k after it while
// same(i, k) (up to 32), and is cut to the size chunkRows gives. An error
// from fn ends it.
func eachChunk(total int, same func(i, k int) bool, fn func(i, n int) error) error {
	for i := 0; i < total; {
		j := i + 1
		for j < total && j-i < maxBatchRows && same(i, j) {
			j++
		}
		n := chunkRows(j - i)
		if err := fn(i, n); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// valuesSQL returns head followed by rows groups of cols parameters:
// "head (?, ?), (?, ?)".
func valuesSQL(head string, cols, rows int) string {
	var b strings.Builder
	b.Grow(len(head) + rows*(cols*3+4))
	b.WriteString(head)
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('?')
		}
		b.WriteByte(')')
	}
	return b.String()
}

// inSQL returns head followed by a list of n parameters: "head (?, ?)".
func inSQL(head string, n int) string { return valuesSQL(head, n, 1) }

// rowQueries are one multi-row statement's texts for each row count
// chunkRows returns (1, 2, 4, 8, 16, 32), built once: a writer looks its
// prepared statement up by the text for every chunk, and building a text
// of 32 rows costs more than the lookup.
type rowQueries [6]string

// valuesQueries are valuesSQL(head, cols, n) + tail for each row count.
func valuesQueries(head string, cols int, tail string) *rowQueries {
	var q rowQueries
	for i := range q {
		q[i] = valuesSQL(head, cols, 1<<i) + tail
	}
	return &q
}

// inQueries are inSQL(head, n) for each row count.
func inQueries(head string) *rowQueries {
	var q rowQueries
	for i := range q {
		q[i] = inSQL(head, 1<<i)
	}
	return &q
}

// rows returns the text for n rows, n a count chunkRows returned.
func (q *rowQueries) rows(n int) string { return q[bits.Len(uint(n))-1] }

// rowsStmt returns the statement q, prepared on the database the first
// time it is asked for and kept until Close.
func (b *SQLite) rowsStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	b.cdrMu.Lock()
	defer b.cdrMu.Unlock()
	if st := b.batchStmts[q]; st != nil {
		return st, nil
	}
	st, err := b.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if b.batchStmts == nil {
		b.batchStmts = map[string]*sql.Stmt{}
	}
	b.batchStmts[q] = st
	return st, nil
}

// textArg returns b, a row's text in a buffer of the statement being
// built, as a string argument that shares b's memory instead of a copy
// of it: a copy a row was an allocation of its length (a dialog's data
// is about half a kilobyte) for the collector to free at once. Safe
// because modernc's driver copies text into SQLite's memory when it binds
// it, and the writers reuse the buffer only once the statement has run
// (appending may move the buffer, but never writes over what an earlier
// string shares). TestBatchesOfManyRows reads back every row of batches
// of many statements.
func textArg(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// textBufs are the batch writers' statement buffers (textArg), kept
// between batches so that a batch does not grow one anew from a few
// bytes: a statement of 32 dialog rows takes about 16 KiB.
var textBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxKeptTextBuf is the largest buffer textBufs keeps: rows of kilobytes
// (a forged header at the limit) leave theirs to the collector.
const maxKeptTextBuf = 256 << 10

func getTextBuf() *[]byte { return textBufs.Get().(*[]byte) }

func putTextBuf(b *[]byte) {
	if cap(*b) <= maxKeptTextBuf {
		*b = (*b)[:0]
		textBufs.Put(b)
	}
}
