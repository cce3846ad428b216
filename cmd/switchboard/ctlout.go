package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"switchboard/mgmt/ordered"
)

// Output formats of `switchboard ctl -o`.
const (
	outTable = "table" // the default: columns for lists, KEY VALUE for objects
	outJSON  = "json"  // the API's result, indented
	outNames = "names" // the keys of an object result, one a line (shell completion)
)

// writeResult writes a command's result in format.
func writeResult(w io.Writer, res json.RawMessage, format string) error {
	switch format {
	case outJSON:
		var out bytes.Buffer
		if json.Indent(&out, res, "", "  ") != nil {
			out.Reset()
			out.Write(res)
		}
		out.WriteByte('\n')
		_, err := w.Write(out.Bytes())
		return err
	case outNames:
		v, err := decodeOrdered(res)
		if err != nil {
			return err
		}
		o, ok := v.(*ordered.Object)
		if !ok {
			return errors.New("-o names: the result is not an object")
		}
		keys := append([]string(nil), o.Keys...)
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintln(w, k)
		}
		return nil
	case outTable:
		v, err := decodeOrdered(res)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		writeValue(tw, v, "")
		return tw.Flush()
	}
	return fmt.Errorf("-o %s: want table, json or names", format)
}

// decodeOrdered decodes a command's result, keeping the order of the keys
// the server wrote.
func decodeOrdered(res []byte) (any, error) {
	v, err := ordered.Decode(res)
	if err != nil {
		return nil, fmt.Errorf("the result is not JSON: %w", err)
	}
	return v, nil
}

// writeValue writes v: a list of objects as a table with a header, an
// object as KEY VALUE lines (its lists and objects as sections), other
// lists one item a line, a scalar as itself.
func writeValue(w io.Writer, v any, indent string) {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			fmt.Fprintln(w, indent+"(none)")
			return
		}
		if cols := columns(x); cols != nil {
			writeTable(w, x, cols, indent)
			return
		}
		for _, e := range x {
			fmt.Fprintln(w, indent+cell(e))
		}
	case *ordered.Object:
		if len(x.Keys) == 0 {
			fmt.Fprintln(w, indent+"(none)")
			return
		}
		var sections []string
		for _, k := range x.Keys {
			if nested(x.Vals[k]) {
				sections = append(sections, k)
				continue
			}
			fmt.Fprintf(w, "%s%s\t%s\n", indent, k, cell(x.Vals[k]))
		}
		for _, k := range sections {
			fmt.Fprintf(w, "%s%s:\n", indent, k)
			writeValue(w, x.Vals[k], indent+"  ")
		}
	default:
		fmt.Fprintln(w, indent+cell(v))
	}
}

// nested says whether v is shown as a section of its own: a list with an
// object in it, or an object holding more than scalars.
func nested(v any) bool {
	switch x := v.(type) {
	case []any:
		return columns(x) != nil
	case *ordered.Object:
		return len(x.Keys) > 0
	}
	return false
}

// columns are the keys of the objects of l in the order first seen, or
// nil when l holds anything but objects.
func columns(l []any) []string {
	var cols []string
	seen := map[string]bool{}
	for _, e := range l {
		o, ok := e.(*ordered.Object)
		if !ok {
			return nil
		}
		for _, k := range o.Keys {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	return cols
}

func writeTable(w io.Writer, rows []any, cols []string, indent string) {
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(w, indent+strings.Join(head, "\t"))
	for _, r := range rows {
		o := r.(*ordered.Object)
		cells := make([]string, len(cols))
		for i, c := range cols {
			if v, ok := o.Vals[c]; ok {
				cells[i] = cell(v)
			}
		}
		fmt.Fprintln(w, indent+strings.Join(cells, "\t"))
	}
}

// cell is v on one line: strings as they are (control characters
// escaped, so that a value from a SIP message cannot forge lines of the
// table), lists of scalars comma-separated, anything else compact JSON.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return `""`
		}
		return escapeControl(x)
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case []any:
		if len(x) == 0 {
			return "(none)"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			if _, ok := e.(*ordered.Object); ok {
				b, _ := json.Marshal(toPlain(v))
				return string(b)
			}
			parts[i] = cell(e)
		}
		return strings.Join(parts, ",")
	case *ordered.Object:
		b, _ := json.Marshal(toPlain(v))
		return string(b)
	}
	return fmt.Sprint(v)
}

func escapeControl(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// toPlain turns an ordered value back into maps for json.Marshal.
func toPlain(v any) any {
	switch x := v.(type) {
	case *ordered.Object:
		m := make(map[string]any, len(x.Keys))
		for _, k := range x.Keys {
			m[k] = toPlain(x.Vals[k])
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = toPlain(e)
		}
		return l
	}
	return v
}
