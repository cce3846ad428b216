package rtpengine

import (
	"fmt"
	"strings"

	"switchboard/modules/rtpengine/ng"
)

// Flags are rtpengine options in OpenSIPS's flag-string form
// ("trust-address replace-origin replace-session-connection ICE=remove
// RTP/AVP direction=pub direction=priv"), compiled once into the bencoded
// dictionary entries a command carries, so that a call adds them with one
// copy. Build them with ParseFlags when the route set is built.
type Flags struct {
	src  string
	frag []byte // bencoded entries, without the enclosing d...e
	set  int    // the set of instances (InSet); -1: rtpengine.default_set
	dflt bool   // InSet on nil: rtpengine.flags, as they are when the command is sent
}

// InSet returns a copy of f whose commands go to the instances of set
// (OpenSIPS rtpengine_use_set(set) before the command); f nil: the
// configured flags in that set. Build it once, with the route set.
func (f *Flags) InSet(set int) *Flags {
	if f == nil {
		return &Flags{set: set, dflt: true}
	}
	cp := *f
	cp.set = set
	return &cp
}

// Set is the set f's commands go to; -1 for rtpengine.default_set.
func (f *Flags) Set() int {
	if f == nil {
		return -1
	}
	return f.set
}

// String is the flag string the Flags were parsed from.
func (f *Flags) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// transport protocols rtpengine knows (its "transport-protocol" key).
var transportProtocols = map[string]bool{
	"RTP/AVP": true, "RTP/SAVP": true, "RTP/AVPF": true, "RTP/SAVPF": true,
	"UDP/TLS/RTP/SAVP": true, "UDP/TLS/RTP/SAVPF": true,
}

// listKeys are the keys whose values collect into a list: "replace-origin"
// is "replace": ["origin"], "direction=pub direction=priv" is
// "direction": ["pub", "priv"].
var listPrefixes = []struct{ prefix, key string }{
	{"replace-", "replace"},
	{"SDES-", "SDES"},
	{"OSRTP-", "OSRTP"},
	{"rtcp-mux-", "rtcp-mux"},
}

// ParseFlags compiles a flag string. Words are separated by spaces:
//   - "replace-X", "SDES-X", "OSRTP-X", "rtcp-mux-X" go into the list of
//     that name ("replace": ["origin", "session-connection"]);
//   - "direction=X" (at most two) into the "direction" list;
//   - a transport protocol ("RTP/AVP", "RTP/SAVPF", ...) is
//     "transport-protocol";
//   - any other "key=value" is that string entry ("ICE=remove",
//     "DTLS=off", "address-family=IP6", "media-address=203.0.113.9");
//   - any other word is a flag of the "flags" list ("trust-address",
//     "symmetric", "asymmetric", "port-latching", "strict-source").
//
// The keys the module writes itself (command, call-id, from-tag, to-tag,
// sdp) cannot be set.
func ParseFlags(s string) (*Flags, error) {
	lists := map[string][]string{}
	var order []string
	add := func(k, v string) {
		if _, ok := lists[k]; !ok {
			order = append(order, k)
		}
		lists[k] = append(lists[k], v)
	}
	var plain [][2]string
	for _, w := range strings.Fields(s) {
		if k, v, ok := strings.Cut(w, "="); ok {
			if k == "" || v == "" {
				return nil, fmt.Errorf("flag %q: want key=value", w)
			}
			switch k {
			case "command", "call-id", "from-tag", "to-tag", "sdp", "via-branch":
				return nil, fmt.Errorf("flag %q: %s is set by the module", w, k)
			case "direction":
				add("direction", v)
				if len(lists["direction"]) > 2 {
					return nil, fmt.Errorf("flag %q: at most two directions", w)
				}
				continue
			}
			for _, p := range plain {
				if p[0] == k {
					return nil, fmt.Errorf("flag %q: %s given twice", w, k)
				}
			}
			plain = append(plain, [2]string{k, v})
			continue
		}
		if transportProtocols[w] {
			plain = append(plain, [2]string{"transport-protocol", w})
			continue
		}
		listed := false
		for _, lp := range listPrefixes {
			if v, ok := strings.CutPrefix(w, lp.prefix); ok && v != "" {
				add(lp.key, v)
				listed = true
				break
			}
		}
		if !listed {
			add("flags", w)
		}
	}
	var b []byte
	for _, p := range plain {
		b = ng.AppendKeyStr(b, p[0], p[1])
	}
	for _, k := range order {
		b = ng.AppendList(ng.AppendStr(b, k))
		for _, v := range lists[k] {
			b = ng.AppendStr(b, v)
		}
		b = ng.AppendEnd(b)
	}
	return &Flags{src: s, frag: b, set: -1}, nil
}

// MustParseFlags is ParseFlags for constants; it panics on an error.
func MustParseFlags(s string) *Flags {
	f, err := ParseFlags(s)
	if err != nil {
		panic(err)
	}
	return f
}
