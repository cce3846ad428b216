package sdp

import "strconv"

// ErrorKind says what is wrong with a session description.
type ErrorKind uint8

const (
	KindNone              ErrorKind = iota
	KindTooLarge                    // body over the size limit
	KindTooManyLines                // more than MaxLines lines
	KindTooManyMedia                // more than MaxMedia m= sections
	KindLineTooLong                 // a line over MaxLineLength bytes
	KindBadLine                     // not "<letter>=<value>": garbage, an empty line before the end
	KindMissingVersion              // the first line is not v=
	KindBadVersion                  // v= other than 0
	KindDuplicateLine               // a second v=, o=, s=, or two c= in one section
	KindMisplacedLine               // a session-level line (o= s= t= ...) in a media section
	KindMissingOrigin               // no o=
	KindBadOrigin                   // o= without its six fields, or a bad address
	KindMissingName                 // no s=
	KindMissingTiming               // no t=
	KindBadTiming                   // t= not two decimal times
	KindBadConnection               // c= malformed: fields, address, TTL or count
	KindMissingConnection           // a media section with a port, no c= and no session c=
	KindBadBandwidth                // b= not "<type>:<number>"
	KindBadMedia                    // m= malformed: fields, port count, no format
	KindBadPort                     // a port (m=, a=rtcp, a=candidate) not a number up to 65535
	KindBadAttribute                // an attribute's name, or the value of one with a known grammar
	numKinds
)

var kindText = [numKinds]string{
	"no error",
	"body too large",
	"too many lines",
	"too many media sections",
	"line too long",
	"not a <type>=<value> line",
	"first line is not v=",
	"version is not 0",
	"line appears twice",
	"session-level line in a media section",
	"missing o= line",
	"malformed origin",
	"missing s= line",
	"missing t= line",
	"malformed timing",
	"malformed connection data",
	"no c= for a media section and none at session level",
	"malformed bandwidth",
	"malformed media description",
	"bad port",
	"malformed attribute",
}

func (k ErrorKind) String() string {
	if k < numKinds {
		return kindText[k]
	}
	return "unknown error"
}

// Error is what Parse, Validate and the attribute iterators return. It
// says what is wrong and where: the line number (1-based; 0 when the
// problem is the body as a whole, e.g. a missing s=), the byte offset in
// the body, the line's type letter and, for a= lines, the attribute name.
type Error struct {
	Kind   ErrorKind
	Line   int
	Offset int
	// Type is the line's type letter ('m', 'c', 'a', ...), 0 when the
	// error is not about one line.
	Type byte
	// Attr is the attribute name of an a= line (a view into the body).
	Attr []byte
}

// Sentinel errors for errors.Is; any *Error of the same kind matches.
var (
	ErrTooLarge          = &Error{Kind: KindTooLarge}
	ErrTooManyLines      = &Error{Kind: KindTooManyLines}
	ErrTooManyMedia      = &Error{Kind: KindTooManyMedia}
	ErrLineTooLong       = &Error{Kind: KindLineTooLong}
	ErrBadLine           = &Error{Kind: KindBadLine}
	ErrMissingVersion    = &Error{Kind: KindMissingVersion}
	ErrBadVersion        = &Error{Kind: KindBadVersion}
	ErrDuplicateLine     = &Error{Kind: KindDuplicateLine}
	ErrMisplacedLine     = &Error{Kind: KindMisplacedLine}
	ErrMissingOrigin     = &Error{Kind: KindMissingOrigin}
	ErrBadOrigin         = &Error{Kind: KindBadOrigin}
	ErrMissingName       = &Error{Kind: KindMissingName}
	ErrMissingTiming     = &Error{Kind: KindMissingTiming}
	ErrBadTiming         = &Error{Kind: KindBadTiming}
	ErrBadConnection     = &Error{Kind: KindBadConnection}
	ErrMissingConnection = &Error{Kind: KindMissingConnection}
	ErrBadBandwidth      = &Error{Kind: KindBadBandwidth}
	ErrBadMedia          = &Error{Kind: KindBadMedia}
	ErrBadPort           = &Error{Kind: KindBadPort}
	ErrBadAttribute      = &Error{Kind: KindBadAttribute}
)

// Is makes errors.Is(err, ErrBadPort) and friends match on the kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

// Error formats the error for logs, e.g.
// "sdp: bad port (m= line 7, offset 211)". It allocates; AppendTo does not.
func (e *Error) Error() string {
	return string(e.AppendTo(make([]byte, 0, 80)))
}

// AppendTo appends the text of Error to dst.
func (e *Error) AppendTo(dst []byte) []byte {
	dst = append(dst, "sdp: "...)
	dst = append(dst, e.Kind.String()...)
	if e.Line == 0 && e.Type == 0 {
		return dst
	}
	dst = append(dst, " ("...)
	if e.Type != 0 {
		dst = append(dst, e.Type, '=')
		if e.Type == 'a' && len(e.Attr) > 0 {
			dst = appendSafe(dst, e.Attr)
		}
		dst = append(dst, ' ')
	}
	dst = append(dst, "line "...)
	dst = strconv.AppendInt(dst, int64(e.Line), 10)
	dst = append(dst, ", offset "...)
	dst = strconv.AppendInt(dst, int64(e.Offset), 10)
	return append(dst, ')')
}

// appendSafe appends at most 32 token bytes of a peer-supplied name, so a
// log line built from it stays one well-formed line.
func appendSafe(dst, name []byte) []byte {
	n := 0
	for _, c := range name {
		if n == 32 {
			break
		}
		if tokenTab[c] {
			dst = append(dst, c)
			n++
		}
	}
	return dst
}
