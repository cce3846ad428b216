package parser

// AppendResponse appends a response to req to dst (RFC 3261 §8.2.6): the
// status line, every Via in order, From, To (with ";tag=" toTag added when
// the To has no tag and toTag is not empty), Call-ID, CSeq and
// "Content-Length: 0". A nil reason uses StatusText(code). It does not
// allocate when dst has room.
func AppendResponse(dst []byte, req *Message, code int, reason, toTag []byte) []byte {
	return AppendResponseHeaders(dst, req, code, reason, toTag, nil)
}

// AppendResponseHeaders is AppendResponse with extra header lines, written
// before Content-Length. extra must be complete lines, each ending in CRLF
// (e.g. "Unsupported: foo\r\nServer: switchboard\r\n").
func AppendResponseHeaders(dst []byte, req *Message, code int, reason, toTag, extra []byte) []byte {
	dst = append(dst, "SIP/2.0 "...)
	if code < 100 || code > 699 {
		code = 500
	}
	dst = appendUint(dst, uint64(code))
	dst = append(dst, ' ')
	if reason == nil {
		dst = append(dst, StatusText(code)...)
	} else {
		dst = append(dst, reason...)
	}
	dst = append(dst, "\r\n"...)
	b := req.st.buf
	topVia := req.st.src.IsValid() && req.st.via.Raw != nil
	for k := 0; k < req.st.nh; k++ {
		x := &req.hdrs[k]
		switch x.name {
		case HdrVia:
			dst = append(dst, "Via: "...)
			if topVia {
				// The first Via line holds the top via-parm.
				dst = req.appendReceivedVia(dst, b[x.vs:x.ve], int(x.vs))
				topVia = false
			} else {
				dst = append(dst, b[x.vs:x.ve]...)
			}
			dst = append(dst, "\r\n"...)
		case HdrFrom, HdrCallID, HdrCSeq:
			dst = append(dst, x.name.String()...)
			dst = append(dst, ": "...)
			dst = append(dst, b[x.vs:x.ve]...)
			dst = append(dst, "\r\n"...)
		case HdrTo:
			dst = append(dst, "To: "...)
			dst = append(dst, b[x.vs:x.ve]...)
			if len(toTag) > 0 && req.st.to.Tag == nil {
				dst = append(dst, ";tag="...)
				dst = append(dst, toTag...)
			}
			dst = append(dst, "\r\n"...)
		case HdrTimestamp:
			// RFC 3261 §8.2.6.1: a 100 copies Timestamp.
			if code == 100 {
				dst = append(dst, "Timestamp: "...)
				dst = append(dst, b[x.vs:x.ve]...)
				dst = append(dst, "\r\n"...)
			}
		}
	}
	dst = append(dst, extra...)
	dst = append(dst, "Content-Length: 0\r\n\r\n"...)
	return dst
}

// appendReceivedVia appends v, the value of the first Via line (at offset
// base of the message), with received and rport set on its top via-parm as
// SetSource asks. A parameter already there has its value replaced.
func (m *Message) appendReceivedVia(dst, v []byte, base int) []byte {
	via := &m.st.via
	src := m.st.src
	raw := m.off(via.Raw) - base
	if raw < 0 || raw+len(via.Raw) > len(v) {
		return append(dst, v...) // not the line that holds the top Via
	}
	// Up to two edits of v, each a range [s, e) replaced by a value.
	const (
		editPort = iota + 1
		editRecv
		editAddRecv
		editAddPort    // "=N" after a bare rport
		editAppendPort // ";rport=N" at the end (forced)
	)
	type edit struct{ s, e, kind int }
	var eds [2]edit
	n := 0
	switch {
	case via.HasRPort && via.RPort != nil:
		s := m.off(via.RPort) - base
		eds[n] = edit{s, s + len(via.RPort), editPort}
		n++
	case via.HasRPort:
		if s, ok := bareParamEnd(via.Params, "rport"); ok {
			s += m.off(via.Params) - base
			eds[n] = edit{s, s, editAddPort}
			n++
		}
	case m.st.srcPort:
		end := raw + len(via.Raw)
		eds[n] = edit{end, end, editAppendPort}
		n++
	}
	ip, isIP := ParseIP(via.Host)
	if !isIP || ip.Unmap() != src.Addr().Unmap() || via.HasRPort || m.st.srcPort {
		if via.Received != nil {
			s := m.off(via.Received) - base
			eds[n] = edit{s, s + len(via.Received), editRecv}
		} else {
			end := raw + len(via.Raw)
			eds[n] = edit{end, end, editAddRecv}
		}
		n++
	}
	if n == 2 && eds[1].s < eds[0].s {
		eds[0], eds[1] = eds[1], eds[0]
	}
	at := 0
	for _, ed := range eds[:n] {
		dst = append(dst, v[at:ed.s]...)
		switch ed.kind {
		case editPort:
			dst = appendUint(dst, uint64(src.Port()))
		case editAddPort:
			dst = append(dst, '=')
			dst = appendUint(dst, uint64(src.Port()))
		case editAppendPort:
			dst = append(dst, ";rport="...)
			dst = appendUint(dst, uint64(src.Port()))
		case editRecv:
			dst = src.Addr().Unmap().AppendTo(dst)
		case editAddRecv:
			dst = append(dst, ";received="...)
			dst = src.Addr().Unmap().AppendTo(dst)
		}
		at = ed.e
	}
	return append(dst, v[at:]...)
}

// bareParamEnd returns the offset in params (via-params without the first
// ";") just after the name of the parameter name, when it has no value.
func bareParamEnd(params []byte, name string) (int, bool) {
	for i := 0; i < len(params); {
		pn, val, next, ok := scanParam(params, i)
		if !ok {
			return 0, false
		}
		if val == nil && eqFold(pn, name) {
			return cap(params) - cap(pn) + len(pn), true
		}
		i = skipLWS(params, next)
		if i < len(params) && params[i] == ';' {
			i++
		}
	}
	return 0, false
}

// StatusText returns the RFC 3261 reason phrase for a code ("" if unknown).
func StatusText(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 181:
		return "Call Is Being Forwarded"
	case 182:
		return "Queued"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Moved Temporarily"
	case 305:
		return "Use Proxy"
	case 380:
		return "Alternative Service"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 410:
		return "Gone"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 421:
		return "Extension Required"
	case 423:
		return "Interval Too Brief"
	case 429:
		return "Provide Referrer Identity"
	case 430:
		return "Flow Failed"
	case 439:
		return "First Hop Lacks Outbound Support"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 484:
		return "Address Incomplete"
	case 485:
		return "Ambiguous"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 489:
		return "Bad Event"
	case 491:
		return "Request Pending"
	case 493:
		return "Undecipherable"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 505:
		return "Version Not Supported"
	case 513:
		return "Message Too Large"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	}
	return ""
}
