// Package ordered decodes JSON keeping the order of each object's keys, so
// that what shows a management command's result (`switchboard ctl`'s
// tables, the panel's) lists the fields in the order the server wrote them:
// Go's encoder keeps struct field order and sorts map keys, both of which
// read better than an order chosen by the reader.
package ordered

import (
	"bytes"
	"encoding/json"
)

// Object is a JSON object with its keys in document order. A key that
// repeats keeps its first place and its last value.
type Object struct {
	Keys []string
	Vals map[string]any
}

// Plain returns the object as a map, its nested objects too (for
// templates and encoders that want maps).
func (o *Object) Plain() map[string]any {
	m := make(map[string]any, len(o.Vals))
	for k, v := range o.Vals {
		if c, ok := v.(*Object); ok {
			v = c.Plain()
		}
		m[k] = v
	}
	return m
}

// Decode decodes one JSON value into nil, bool, json.Number, string, []any
// and *Object.
func Decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return decodeValue(dec)
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &Object{Vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string) // the decoder gives object keys as strings
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := o.Vals[k]; !dup {
					o.Keys = append(o.Keys, k)
				}
				o.Vals[k] = v
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			l := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token() // ']'
			return l, err
		}
	}
	return tok, nil
}

// MarshalJSON writes the object with its keys in document order, so that
// a decoded value re-encodes as the server wrote it (the panel shows a
// command's answer this way after removing fields it never shows).
func (o *Object) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, k := range o.Keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(o.Vals[k])
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}
