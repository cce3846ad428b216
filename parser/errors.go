package parser

// ErrorKind says what is wrong with a message.
type ErrorKind uint8

const (
	KindNone                 ErrorKind = iota
	KindTooLarge                       // message over the size limit
	KindTooManyHeaders                 // more than MaxHeaders header lines
	KindBadStartLine                   // request or status line malformed
	KindBadRequestURI                  // Request-URI malformed, or headers in a SIP Request-URI
	KindBadHeader                      // a header line or a header value is malformed
	KindMissingHeader                  // a mandatory header is absent
	KindDuplicateHeader                // a single-valued header appears more than once
	KindCSeqMismatch                   // CSeq method differs from the request method
	KindNoHeaderEnd                    // header section not closed by an empty line
	KindBadContentLength               // Content-Length malformed, negative or conflicting
	KindShortBody                      // Content-Length larger than the data
	KindMissingContentLength           // no Content-Length on a stream
	numKinds
)

var kindText = [numKinds]string{
	"no error",
	"message too large",
	"too many headers",
	"malformed start line",
	"malformed Request-URI",
	"malformed header",
	"missing header",
	"duplicate header",
	"CSeq method does not match the request method",
	"header section not terminated",
	"malformed Content-Length",
	"Content-Length larger than the message",
	"missing Content-Length on a stream",
}

// reasonText is what follows "400 " (or 513/501) in a response reason phrase.
var reasonText = [numKinds]string{
	"Bad Request",
	"Message Too Large",
	"Message Too Large",
	"Bad Request - Malformed Start Line",
	"Bad Request - Malformed Request-URI",
	"Bad Request - Malformed Header",
	"Bad Request - Missing Header",
	"Bad Request - Duplicate Header",
	"Bad Request - CSeq Method Mismatch",
	"Bad Request - Header Section Not Terminated",
	"Bad Request - Malformed Content-Length",
	"Bad Request - Content-Length Larger Than Message",
	"Bad Request - Missing Content-Length",
}

func (k ErrorKind) String() string {
	if k < numKinds {
		return kindText[k]
	}
	return "unknown error"
}

// Error is what Parse and FrameLength return. Offset is the byte offset in
// the input where the problem was found; Header names the header when the
// problem is in one (HdrOther with a non-nil Name for an unknown header).
type Error struct {
	Kind   ErrorKind
	Offset int
	Header HeaderName
	// Name is the raw header name for HdrOther (a view into the input).
	Name []byte
	// Code is the status a server answers a request with: 400 in general,
	// 501 for a CSeq mismatch on an unknown method (RFC 4475 §3.1.2.18),
	// 513 for an oversized message. Responses with errors are dropped.
	Code int
}

// Sentinel errors for errors.Is; any *Error of the same kind matches.
var (
	ErrTooLarge             = &Error{Kind: KindTooLarge, Code: 513}
	ErrTooManyHeaders       = &Error{Kind: KindTooManyHeaders, Code: 513}
	ErrBadStartLine         = &Error{Kind: KindBadStartLine, Code: 400}
	ErrBadRequestURI        = &Error{Kind: KindBadRequestURI, Code: 400}
	ErrBadHeader            = &Error{Kind: KindBadHeader, Code: 400}
	ErrMissingHeader        = &Error{Kind: KindMissingHeader, Code: 400}
	ErrDuplicateHeader      = &Error{Kind: KindDuplicateHeader, Code: 400}
	ErrCSeqMismatch         = &Error{Kind: KindCSeqMismatch, Code: 400}
	ErrNoHeaderEnd          = &Error{Kind: KindNoHeaderEnd, Code: 400}
	ErrBadContentLength     = &Error{Kind: KindBadContentLength, Code: 400}
	ErrShortBody            = &Error{Kind: KindShortBody, Code: 400}
	ErrMissingContentLength = &Error{Kind: KindMissingContentLength, Code: 400}
)

// Error formats the error for logs. It allocates; the hot path uses the
// fields, Reason and AppendReason instead.
func (e *Error) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, "sip: "...)
	b = append(b, e.Kind.String()...)
	if e.Header != HdrOther || e.Name != nil {
		b = append(b, " ("...)
		b = e.appendHeaderName(b)
		b = append(b, ')')
	}
	b = append(b, " at offset "...)
	b = appendUint(b, uint64(e.Offset))
	return string(b)
}

// Is makes errors.Is(err, ErrBadHeader) and friends match on the kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

// Status returns the response code for the error (see Code).
func (e *Error) Status() int {
	if e.Code == 0 {
		return 400
	}
	return e.Code
}

// Reason returns a static reason phrase for the error, e.g.
// "Bad Request - Malformed Header". It does not allocate.
func (e *Error) Reason() string {
	if e.Code == 501 {
		return "Not Implemented"
	}
	if e.Kind < numKinds {
		return reasonText[e.Kind]
	}
	return "Bad Request"
}

// AppendReason appends the reason phrase and, when the error concerns a
// header, its name: "Bad Request - Malformed Header CSeq".
func (e *Error) AppendReason(dst []byte) []byte {
	dst = append(dst, e.Reason()...)
	if e.Header != HdrOther || len(e.Name) > 0 {
		dst = append(dst, ' ')
		dst = e.appendHeaderName(dst)
	}
	return dst
}

func (e *Error) appendHeaderName(dst []byte) []byte {
	if e.Header != HdrOther {
		return append(dst, e.Header.String()...)
	}
	// Unknown names come from the peer: keep only token bytes, bounded, so a
	// reason phrase built from them is always well-formed.
	n := 0
	for _, c := range e.Name {
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
