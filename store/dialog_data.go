package store

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// On SQLite a dialog is a row of seven columns: dlg_id, callid, state,
// start_time, timeout, updated, and data, a JSON object of the rest, keyed
// by the column names the server databases use (migration 13). A row of
// 29 bound parameters cost the dialog write-back twice what one of seven
// does: in modernc's SQLite every parameter is a bind, a copy into C
// memory and a reset, each under the connection's mutex, and the write-back
// is the proxy's own CPU (bench/results/dialog-acc.md). The object is read
// back only when the server starts; `SELECT data->>'from_uri' FROM dialog`
// answers an operator.
//
// Text is kept byte for byte: a value that is not UTF-8 (a forged header)
// is written as {"hex": "..."}, since a JSON string cannot hold it.

// appendDialogData appends d's data object. Empty text and zero numbers
// are left out.
func appendDialogData(dst []byte, d *Dialog) []byte {
	dst = append(dst, '{')
	text := func(name, v string) {
		if v != "" {
			dst = appendJSONKey(dst, name)
			dst = appendLosslessJSON(dst, v)
		}
	}
	num := func(name string, v int64) {
		if v != 0 {
			dst = appendJSONKey(dst, name)
			dst = strconv.AppendInt(dst, v, 10)
		}
	}
	text("from_uri", d.FromURI)
	text("from_tag", d.FromTag)
	text("to_uri", d.ToURI)
	text("to_tag", d.ToTag)
	text("from_hdr", d.FromHdr)
	text("to_hdr", d.ToHdr)
	text("callee_from_hdr", d.CalleeFromHdr)
	text("callee_to_hdr", d.CalleeToHdr)
	num("caller_cseq", int64(d.CallerCSeq))
	num("callee_cseq", int64(d.CalleeCSeq))
	num("cseq_offset", int64(d.CSeqOffset))
	text("caller_route_set", d.CallerRouteSet)
	text("callee_route_set", d.CalleeRouteSet)
	text("caller_contact", d.CallerContact)
	text("callee_contact", d.CalleeContact)
	text("caller_contact_sent", d.CallerContactSent)
	text("callee_contact_sent", d.CalleeContactSent)
	text("caller_hop", d.CallerHop)
	text("callee_hop", d.CalleeHop)
	num("answer_time", d.AnswerTime)
	num("code", int64(d.Code))
	text("phrase", d.Phrase)
	text("profiles", d.profiles)
	num("script_flags", int64(d.Flags))
	text("vars", d.vars)
	return append(dst, '}')
}

// appendJSONKey appends "name": after the opening brace or a member.
func appendJSONKey(dst []byte, name string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// appendLosslessJSON appends s as a JSON string, or, when s is not UTF-8,
// as {"hex": "<its bytes>"}.
func appendLosslessJSON(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		dst = append(dst, `{"hex":"`...)
		dst = hex.AppendEncode(dst, []byte(s))
		return append(dst, '"', '}')
	}
	return appendJSONText(dst, s)
}

// appendJSONText appends s as a JSON string, escaping only what JSON
// requires (quote, backslash, control characters): other bytes, those
// that are not UTF-8 included, go as they are.
func appendJSONText(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Runs of bytes that need no escape (all of most values) are copied
	// whole: a byte at a time was a sixth of BenchmarkApplyDialogs.
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[run:i]...)
		run = i + 1
		if c < 0x20 {
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigit[c>>4], hexDigit[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
	}
	dst = append(dst, s[run:]...)
	return append(dst, '"')
}

const hexDigit = "0123456789abcdef"

// dialogText is a text member of the data object: a JSON string, or
// {"hex": "..."} for bytes that are not UTF-8.
type dialogText string

func (t *dialogText) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var h struct {
			Hex string `json:"hex"`
		}
		if err := json.Unmarshal(b, &h); err != nil {
			return err
		}
		v, err := hex.DecodeString(h.Hex)
		if err != nil {
			return fmt.Errorf("hex %q: %v", h.Hex, err)
		}
		*t = dialogText(v)
		return nil
	}
	if len(b) >= 2 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 {
		*t = dialogText(b[1 : len(b)-1]) // nothing escaped: the bytes as they are
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = dialogText(s)
	return nil
}

// dialogData is the data object as read back.
type dialogData struct {
	FromURI        dialogText `json:"from_uri"`
	FromTag        dialogText `json:"from_tag"`
	ToURI          dialogText `json:"to_uri"`
	ToTag          dialogText `json:"to_tag"`
	FromHdr        dialogText `json:"from_hdr"`
	ToHdr          dialogText `json:"to_hdr"`
	CalleeFromHdr  dialogText `json:"callee_from_hdr"`
	CalleeToHdr    dialogText `json:"callee_to_hdr"`
	CallerCSeq     int64      `json:"caller_cseq"`
	CalleeCSeq     int64      `json:"callee_cseq"`
	CSeqOffset     int64      `json:"cseq_offset"`
	CallerRouteSet dialogText `json:"caller_route_set"`
	CalleeRouteSet dialogText `json:"callee_route_set"`
	CallerContact  dialogText `json:"caller_contact"`
	CalleeContact  dialogText `json:"callee_contact"`
	// The Contacts as relayed, added without a migration: a row written
	// before has none (the dialog module then validates by first hop).
	CallerContactSent dialogText `json:"caller_contact_sent"`
	CalleeContactSent dialogText `json:"callee_contact_sent"`
	CallerHop         dialogText `json:"caller_hop"`
	CalleeHop         dialogText `json:"callee_hop"`
	AnswerTime        int64      `json:"answer_time"`
	Code              int64      `json:"code"`
	Phrase            dialogText `json:"phrase"`
	Profiles          dialogText `json:"profiles"`
	ScriptFlags       int64      `json:"script_flags"`
	Vars              dialogText `json:"vars"`
}

// decodeDialogData fills d's other fields from its data object. A number
// out of its field's range is an error, as is a text that is not a string.
func decodeDialogData(d *Dialog, data string) error {
	var v dialogData
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		return fmt.Errorf("data: %v", err)
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"caller_cseq", v.CallerCSeq}, {"callee_cseq", v.CalleeCSeq}, {"cseq_offset", v.CSeqOffset},
		{"script_flags", v.ScriptFlags}, {"code", v.Code},
	} {
		if n.v < 0 || n.v > 1<<32-1 {
			return fmt.Errorf("data: %s %d out of range", n.name, n.v)
		}
	}
	d.FromURI, d.FromTag, d.ToURI, d.ToTag = string(v.FromURI), string(v.FromTag), string(v.ToURI), string(v.ToTag)
	d.FromHdr, d.ToHdr, d.CalleeFromHdr, d.CalleeToHdr = string(v.FromHdr), string(v.ToHdr), string(v.CalleeFromHdr), string(v.CalleeToHdr)
	d.CallerCSeq, d.CalleeCSeq, d.CSeqOffset = uint32(v.CallerCSeq), uint32(v.CalleeCSeq), uint32(v.CSeqOffset)
	d.CallerRouteSet, d.CalleeRouteSet = string(v.CallerRouteSet), string(v.CalleeRouteSet)
	d.CallerContact, d.CalleeContact = string(v.CallerContact), string(v.CalleeContact)
	d.CallerContactSent, d.CalleeContactSent = string(v.CallerContactSent), string(v.CalleeContactSent)
	d.CallerHop, d.CalleeHop = string(v.CallerHop), string(v.CalleeHop)
	d.AnswerTime, d.Code, d.Phrase = v.AnswerTime, int(v.Code), string(v.Phrase)
	d.profiles, d.Flags, d.vars = string(v.Profiles), uint32(v.ScriptFlags), string(v.Vars)
	return nil
}

// dialogDataSQLite is migration 13 on SQLite: the dialog table rebuilt
// with the data column, each old row's other columns put into its object
// by SQLite's json_object, without the callid index. A text holding anything but printable ASCII is
// written in its {"hex": ...} form, which keeps every byte (SQLite cannot
// tell UTF-8 from other bytes; the reader takes both forms).
var dialogDataSQLite = func() []string {
	var obj strings.Builder
	for i, c := range []struct {
		name string
		text bool
	}{
		{"from_uri", true}, {"from_tag", true}, {"to_uri", true}, {"to_tag", true}, {"from_hdr", true}, {"to_hdr", true},
		{"callee_from_hdr", true}, {"callee_to_hdr", true}, {"caller_cseq", false}, {"callee_cseq", false},
		{"cseq_offset", false}, {"caller_route_set", true}, {"callee_route_set", true}, {"caller_contact", true},
		{"callee_contact", true}, {"caller_hop", true}, {"callee_hop", true}, {"answer_time", false}, {"code", false},
		{"phrase", true}, {"profiles", true}, {"script_flags", false}, {"vars", true},
	} {
		if i > 0 {
			obj.WriteString(", ")
		}
		obj.WriteString("'" + c.name + "', ")
		if c.text {
			obj.WriteString("CASE WHEN " + c.name + " GLOB '*[^ -~]*' THEN json_object('hex', lower(hex(" + c.name + "))) ELSE " + c.name + " END")
		} else {
			obj.WriteString(c.name)
		}
	}
	return []string{
		`CREATE TABLE dialog_data (
			dlg_id     INTEGER PRIMARY KEY NOT NULL,
			callid     TEXT NOT NULL,
			state      INTEGER NOT NULL,
			start_time INTEGER NOT NULL,
			timeout    INTEGER NOT NULL,
			updated    INTEGER NOT NULL,
			data       TEXT NOT NULL
		)`,
		`INSERT INTO dialog_data (` + sqliteDialogCols + `)
			SELECT dlg_id, callid, state, start_time, timeout, updated, json_object(` + obj.String() + `) FROM dialog`,
		`DROP TABLE dialog`,
		`ALTER TABLE dialog_data RENAME TO dialog`,
		// No callid index: nothing the server does looks a stored dialog
		// up by Call-ID, and the index was one more B-tree insert and
		// delete per call in the proxy's process. An operator's lookup
		// scans the calls in progress.
	}
}()
