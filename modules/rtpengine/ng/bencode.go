// Package ng speaks rtpengine's "ng" control protocol: bencoded
// dictionaries over UDP, each message prefixed by a cookie that its answer
// repeats (https://github.com/sipwise/rtpengine, docs "ng_control_protocol").
//
// bencode.go is the codec: an appending encoder and a decoder that
// records tokens (views into the datagram) in a reusable slice, so that
// encoding a command and decoding its answer allocate nothing once warm.
package ng

import (
	"errors"
	"strconv"
)

// Append* write bencode values onto dst (the encoder: a command is a
// sequence of these calls on one buffer).

// AppendString appends s as a bencode byte string ("4:spam").
func AppendString(dst, s []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// AppendStr is AppendString for a string.
func AppendStr(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// AppendInt appends an integer ("i42e").
func AppendInt(dst []byte, v int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, 'e')
}

// AppendDict and AppendList open a dictionary or a list; AppendEnd closes
// the innermost. Dictionary keys are strings and, for rtpengine, need not
// be sorted (it looks them up by name).
func AppendDict(dst []byte) []byte { return append(dst, 'd') }
func AppendList(dst []byte) []byte { return append(dst, 'l') }
func AppendEnd(dst []byte) []byte  { return append(dst, 'e') }

// AppendKeyString appends a dictionary entry whose value is a string.
func AppendKeyString(dst []byte, key string, v []byte) []byte {
	return AppendString(AppendStr(dst, key), v)
}

// AppendKeyStr appends a dictionary entry whose value is a string.
func AppendKeyStr(dst []byte, key, v string) []byte {
	return AppendStr(AppendStr(dst, key), v)
}

// Kind is the type of a decoded value.
type Kind uint8

const (
	KindNone Kind = iota // a Value that is not there (a missing key)
	KindString
	KindInt
	KindList
	KindDict
)

// Limits of the decoder: an answer that exceeds them is refused rather
// than followed (the datagram size bounds the rest).
const (
	MaxDepth  = 32
	MaxTokens = 8192
)

// Decode errors.
var (
	ErrSyntax   = errors.New("bencode: malformed")
	ErrTooDeep  = errors.New("bencode: nested too deeply")
	ErrTooLarge = errors.New("bencode: too many values")
	ErrTrailing = errors.New("bencode: data after the value")
)

type token struct {
	kind       Kind
	at         int32 // where the value's encoding starts
	start, end int32 // content: a string's bytes, an integer's digits; a container's encoding
	next       int32 // index of the token after this value and its children
}

// Decoder decodes one bencoded value at a time; the Values it returns are
// views into the decoded bytes and into the decoder, valid until the next
// Decode. Reuse a Decoder: once its token slice has grown, decoding
// allocates nothing.
type Decoder struct {
	buf  []byte
	toks []token
}

// Value is one decoded value (the zero Value is absent: KindNone).
type Value struct {
	d *Decoder
	i int32
}

// Decode parses b, which must hold exactly one value, and returns it.
func (d *Decoder) Decode(b []byte) (Value, error) {
	d.buf, d.toks = b, d.toks[:0]
	n, err := d.value(0, 0)
	if err != nil {
		return Value{}, err
	}
	if n != len(b) {
		return Value{}, ErrTrailing
	}
	return Value{d: d, i: 0}, nil
}

// value parses the value at b[p:] and returns the offset after it.
func (d *Decoder) value(p, depth int) (int, error) {
	b := d.buf
	if p >= len(b) {
		return 0, ErrSyntax
	}
	if len(d.toks) >= MaxTokens {
		return 0, ErrTooLarge
	}
	ti := len(d.toks)
	switch c := b[p]; {
	case c == 'i':
		q := p + 1
		if q < len(b) && b[q] == '-' {
			q++
		}
		s := q
		for q < len(b) && b[q] >= '0' && b[q] <= '9' {
			q++
		}
		if q == s || q >= len(b) || b[q] != 'e' || q-p > 21 ||
			(b[s] == '0' && q-s > 1) || (s > p+1 && b[s] == '0') {
			return 0, ErrSyntax // no digits, no end, too long, leading zero, -0
		}
		d.toks = append(d.toks, token{kind: KindInt, at: int32(p), start: int32(p + 1), end: int32(q), next: int32(ti + 1)})
		return q + 1, nil
	case c >= '0' && c <= '9':
		n, q := 0, p
		for q < len(b) && b[q] >= '0' && b[q] <= '9' {
			if q-p >= 9 {
				return 0, ErrSyntax
			}
			n = n*10 + int(b[q]-'0')
			q++
		}
		if q >= len(b) || b[q] != ':' || (b[p] == '0' && q-p > 1) {
			return 0, ErrSyntax
		}
		q++
		if n > len(b)-q {
			return 0, ErrSyntax
		}
		d.toks = append(d.toks, token{kind: KindString, at: int32(p), start: int32(q), end: int32(q + n), next: int32(ti + 1)})
		return q + n, nil
	case c == 'l' || c == 'd':
		if depth >= MaxDepth {
			return 0, ErrTooDeep
		}
		k := KindList
		if c == 'd' {
			k = KindDict
		}
		d.toks = append(d.toks, token{kind: k, at: int32(p), start: int32(p)})
		q := p + 1
		for n := 0; ; n++ {
			if q >= len(b) {
				return 0, ErrSyntax
			}
			if b[q] == 'e' {
				if k == KindDict && n%2 == 1 {
					return 0, ErrSyntax // a key without a value
				}
				break
			}
			if k == KindDict && n%2 == 0 && (b[q] < '0' || b[q] > '9') {
				return 0, ErrSyntax // keys are strings
			}
			var err error
			if q, err = d.value(q, depth+1); err != nil {
				return 0, err
			}
		}
		d.toks[ti].end = int32(q + 1)
		d.toks[ti].next = int32(len(d.toks))
		return q + 1, nil
	}
	return 0, ErrSyntax
}

func (v Value) tok() *token {
	if v.d == nil || int(v.i) >= len(v.d.toks) {
		return nil
	}
	return &v.d.toks[v.i]
}

// Kind is the value's type; KindNone for an absent value.
func (v Value) Kind() Kind {
	if t := v.tok(); t != nil {
		return t.kind
	}
	return KindNone
}

// Bytes is a string's content (a view); nil for other kinds.
func (v Value) Bytes() []byte {
	t := v.tok()
	if t == nil || t.kind != KindString {
		return nil
	}
	return v.d.buf[t.start:t.end:t.end]
}

// Int is an integer's value; ok is false for other kinds (and for an
// integer beyond int64).
func (v Value) Int() (int64, bool) {
	t := v.tok()
	if t == nil || t.kind != KindInt {
		return 0, false
	}
	b := v.d.buf[t.start:t.end]
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var n uint64
	for _, c := range b {
		n2 := n*10 + uint64(c-'0')
		if n2 < n || n2 > 1<<63 {
			return 0, false
		}
		n = n2
	}
	if neg {
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// Len is the number of elements of a list, or of entries of a dictionary.
func (v Value) Len() int {
	t := v.tok()
	if t == nil || (t.kind != KindList && t.kind != KindDict) {
		return 0
	}
	n := 0
	for i := v.i + 1; i < t.next; i = v.d.toks[i].next {
		n++
	}
	if t.kind == KindDict {
		n /= 2
	}
	return n
}

// Index is the i-th element of a list (absent when out of range).
func (v Value) Index(i int) Value {
	t := v.tok()
	if t == nil || t.kind != KindList {
		return Value{}
	}
	for j := v.i + 1; j < t.next; j = v.d.toks[j].next {
		if i == 0 {
			return Value{d: v.d, i: j}
		}
		i--
	}
	return Value{}
}

// Get is a dictionary's value for key (absent when there is none).
func (v Value) Get(key string) Value {
	t := v.tok()
	if t == nil || t.kind != KindDict {
		return Value{}
	}
	for j := v.i + 1; j < t.next; {
		k := &v.d.toks[j]
		val := k.next
		if string(v.d.buf[k.start:k.end]) == key {
			return Value{d: v.d, i: val}
		}
		j = v.d.toks[val].next
	}
	return Value{}
}

// Entry is the i-th key and value of a dictionary, in the order received.
func (v Value) Entry(i int) (key []byte, val Value) {
	t := v.tok()
	if t == nil || t.kind != KindDict {
		return nil, Value{}
	}
	for j := v.i + 1; j < t.next; {
		k := &v.d.toks[j]
		if i == 0 {
			return v.d.buf[k.start:k.end:k.end], Value{d: v.d, i: k.next}
		}
		i--
		j = v.d.toks[k.next].next
	}
	return nil, Value{}
}

// Raw is the value's bencoded bytes (a view).
func (v Value) Raw() []byte {
	t := v.tok()
	if t == nil {
		return nil
	}
	if t.kind == KindInt {
		return v.d.buf[t.at : t.end+1]
	}
	return v.d.buf[t.at:t.end]
}
