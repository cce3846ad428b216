package nathelper

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"switchboard/parser"
	"switchboard/parser/sdp"
	"switchboard/routing"
)

// SDPFlags say what FixNATedSDP changes, with the bit values of OpenSIPS's
// fix_nated_sdp (whose 3.x scripts name them, as the configuration does).
type SDPFlags uint8

const (
	// AddDirActive (0x01, "add-dir-active"): adds a=direction:active at
	// session level (the phone sends first; symmetric RTP, comedia).
	AddDirActive SDPFlags = 0x01
	// RewriteMediaIP (0x02, "rewrite-media-ip"): every c= line gets the
	// address the message came from.
	RewriteMediaIP SDPFlags = 0x02
	// AddNoRTPProxy (0x04, "add-no-rtpproxy"): adds a=nortpproxy:yes, so
	// that a media relay further on leaves the body alone.
	AddNoRTPProxy SDPFlags = 0x04
	// RewriteOriginIP (0x08, "rewrite-origin-ip"): the o= line gets the
	// address the message came from.
	RewriteOriginIP SDPFlags = 0x08
	// RewriteNullIP (0x10, "rewrite-null-ip"): a c= of 0.0.0.0 or :: (a
	// call on hold, RFC 2543 style) is rewritten too; without it it stays
	// (Kamailio's 0x10).
	RewriteNullIP SDPFlags = 0x10
)

// DefaultSDPFlags is what fix_nated_sdp is usually called with: the media
// and origin addresses (0x0A).
const DefaultSDPFlags = RewriteMediaIP | RewriteOriginIP

var sdpFlagNames = []struct {
	name string
	f    SDPFlags
}{
	{"add-dir-active", AddDirActive},
	{"rewrite-media-ip", RewriteMediaIP},
	{"add-no-rtpproxy", AddNoRTPProxy},
	{"rewrite-origin-ip", RewriteOriginIP},
	{"rewrite-null-ip", RewriteNullIP},
}

const allSDPFlags = AddDirActive | RewriteMediaIP | AddNoRTPProxy | RewriteOriginIP | RewriteNullIP

// ParseSDPFlags turns names ("rewrite-media-ip") or the old numeric values
// ("10", "0x0A") into SDPFlags.
func ParseSDPFlags(names []string) (SDPFlags, error) {
	var f SDPFlags
	for _, n := range names {
		if v, err := strconv.ParseUint(n, 0, 8); err == nil {
			if SDPFlags(v)&^allSDPFlags != 0 {
				return 0, fmt.Errorf("fix_nated_sdp value %s has bits no change has (known: 0x01-0x10)", n)
			}
			f |= SDPFlags(v)
			continue
		}
		found := false
		for _, x := range sdpFlagNames {
			if n == x.name {
				f |= x.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown fix_nated_sdp flag %q; known: %s", n, strings.Join(SDPFlagNames(), ", "))
		}
	}
	return f, nil
}

// SDPFlagNames lists the names ParseSDPFlags knows.
func SDPFlagNames() []string {
	out := make([]string, 0, len(sdpFlagNames))
	for _, x := range sdpFlagNames {
		out = append(out, x.name)
	}
	return out
}

// Names returns the names of the changes in f.
func (f SDPFlags) Names() []string {
	out := []string{}
	for _, x := range sdpFlagNames {
		if f&x.f != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// sdpWork is the pooled state of one SDP rewrite.
type sdpWork struct {
	s    sdp.Session
	ed   sdp.Editor
	out  []byte
	addr []byte
}

// FixNATedSDP rewrites the SDP body of the request as f says, with the
// address the request came from (OpenSIPS and Kamailio fix_nated_sdp(f)):
// the other side then sends its media to the phone's public address.
// Without a media relay this works for phones that send and receive RTP on
// one port (symmetric RTP) behind a NAT that keeps the port; rtpengine is
// the general answer. It reports whether the body changed; a body that is
// not SDP, or does not parse, is left alone. Allocation-free once warm.
func (n *NATHelper) FixNATedSDP(c *routing.Ctx, f SDPFlags) bool {
	if n == nil || f == 0 {
		return false
	}
	m := c.Msg()
	w, body := n.rewriteSDP(m, c.SrcIP(), f)
	if w == nil {
		return false
	}
	ok := c.R.Editor().SetBody(c.R.Own(body), nil)
	n.sdpWork.Put(w)
	if ok {
		n.sdpFixed.Inc()
	}
	return ok
}

// FixNATedSDPReply is FixNATedSDP in a reply route, with the address the
// response came from (a callee behind NAT answering with its private
// address). Allocation-free once warm.
func (n *NATHelper) FixNATedSDPReply(c *routing.ReplyCtx, f SDPFlags) bool {
	if n == nil || f == 0 {
		return false
	}
	ed := c.Editor()
	if ed == nil {
		return false
	}
	w, body := n.rewriteSDP(c.Msg(), c.Source().Addr(), f)
	if w == nil {
		return false
	}
	ok := ed.SetBody(c.Own(body), nil)
	n.sdpWork.Put(w)
	if ok {
		n.sdpFixed.Inc()
	}
	return ok
}

// rewriteSDP parses m's SDP body and writes the rewritten body into the
// returned work's buffer (put the work back when done with the body);
// nil when there is nothing to change.
func (n *NATHelper) rewriteSDP(m *parser.Message, src netip.Addr, f SDPFlags) (*sdpWork, []byte) {
	body := m.Body()
	if len(body) == 0 || !isSDP(m) || !src.IsValid() {
		return nil, nil
	}
	w := n.sdpWork.Get().(*sdpWork)
	if w.s.Parse(body) != nil {
		n.sdpWork.Put(w)
		return nil, nil
	}
	src = src.Unmap().WithZone("")    // a zone means nothing in SDP
	w.addr = src.AppendTo(w.addr[:0]) // the editor keeps it until AppendTo
	addr := w.addr
	typ := sbIP4
	if src.Is6() {
		typ = sbIP6
	}
	e := &w.ed
	e.Reset(&w.s)
	edits := false
	if f&RewriteMediaIP != 0 {
		if c, ok := w.s.Connection(); ok && (f&RewriteNullIP != 0 || !isNull(c)) {
			edits = e.SetConnection(sdp.SessionLevel, typ, addr) || edits
		}
		for i := 0; i < w.s.NumMedia(); i++ {
			md := w.s.Media(i)
			if !md.HasConnection() {
				continue
			}
			if c, ok := md.Connection(); ok && (f&RewriteNullIP != 0 || !isNull(c)) {
				edits = e.SetConnection(i, typ, addr) || edits
			}
		}
	}
	if f&RewriteOriginIP != 0 {
		edits = e.SetOriginAddress(typ, addr) || edits
	}
	if f&AddDirActive != 0 {
		edits = e.SetAttribute(sdp.SessionLevel, "direction", sbActive) || edits
	}
	if f&AddNoRTPProxy != 0 && !w.s.HasAttr("nortpproxy") {
		edits = e.AddAttribute(sdp.SessionLevel, "nortpproxy", sbYes) || edits
	}
	if !edits {
		n.sdpWork.Put(w)
		return nil, nil
	}
	w.out = e.AppendTo(w.out[:0])
	return w, w.out
}

// isNull: the unspecified address, a call on hold the RFC 2543 way.
func isNull(c sdp.Connection) bool {
	a, ok := c.Addr()
	return ok && a.IsUnspecified()
}

var (
	sbIP4    = []byte("IP4")
	sbIP6    = []byte("IP6")
	sbActive = []byte("active")
	sbYes    = []byte("yes")
	sbSDP    = []byte("application/sdp")
)
