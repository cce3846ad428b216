// Package fieldtext turns the byte-slice fields of a record into strings
// with one allocation: the fields are gathered into a buffer, copied into
// one string at once, and taken back as substrings of it, in the order
// they were added. A writer off the receive path (a store row, a CDR)
// would otherwise make one string, and one allocation, a field.
//
//	var t fieldtext.Fields
//	t.Reset()
//	t.Add(callID)
//	t.Add(fromTag)
//	t.Copy()
//	row.CallID, row.FromTag = t.Next(), t.Next()
//
// The strings share one backing array, so one kept field keeps the
// record's text alive: for rows written and dropped, not for long-lived
// values.
package fieldtext

// Fields gathers one record's text. The zero value is ready; reused
// between records it allocates only the record's string.
type Fields struct {
	buf  []byte
	ends []int // where each field ends in buf
	text string
	next int // the field Next returns
}

// Reset starts a record.
func (f *Fields) Reset() { f.buf, f.ends, f.text, f.next = f.buf[:0], f.ends[:0], "", 0 }

// Add adds a field.
func (f *Fields) Add(b []byte) {
	f.buf = append(f.buf, b...)
	f.ends = append(f.ends, len(f.buf))
}

// Buf returns the buffer, for a field built by appending to it; End then
// takes what was appended as the next field.
func (f *Fields) Buf() []byte { return f.buf }

// End adds b[len(Buf()):] as a field; b is what the appends to Buf()
// returned.
func (f *Fields) End(b []byte) {
	f.buf = b
	f.ends = append(f.ends, len(b))
}

// Copy copies the fields added into the record's string.
func (f *Fields) Copy() { f.text = string(f.buf) }

// Next returns the next field, in the order added, after Copy.
func (f *Fields) Next() string {
	start := 0
	if f.next > 0 {
		start = f.ends[f.next-1]
	}
	s := f.text[start:f.ends[f.next]]
	f.next++
	return s
}
