package dialog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/parser"
	"switchboard/shards"
)

// Info is a dialog as the management API lists it.
type Info struct {
	ID      string `json:"id"`
	CallID  string `json:"call_id"`
	State   string `json:"state"`
	From    string `json:"from"`
	To      string `json:"to"`
	FromTag string `json:"from_tag"`
	ToTag   string `json:"to_tag,omitempty"`
	Caller  string `json:"caller"`           // first hop towards the caller
	Callee  string `json:"callee,omitempty"` // first hop towards the callee
	Start   string `json:"start"`            // RFC 3339
	Answer  string `json:"answer,omitempty"`
	// Duration is the seconds since the answer (since the start for a
	// dialog not answered); Remaining the seconds until the timeout.
	Duration  int64    `json:"duration_s"`
	Remaining int64    `json:"remaining_s"`
	Profiles  []string `json:"profiles,omitempty"` // name or name=value
	// Remote: a copy of a dialog another node set up, read from Redis
	// (dialog.sharing: redis) when one of its requests came here.
	Remote bool `json:"remote,omitempty"`
}

// ProfileValue is one value of a profile with values and its dialogs.
type ProfileValue struct {
	Value string `json:"value"`
	Size  int    `json:"size"`
}

// ProfileInfo is a profile's size, and its values with theirs.
type ProfileInfo struct {
	Name      string         `json:"name"`
	WithValue bool           `json:"with_value"`
	Size      int64          `json:"size"`
	Values    []ProfileValue `json:"values,omitempty"`
}

// maxList bounds a listing.
const maxList = 10_000

// List returns the dialogs whose From or To user is user (all when
// user is empty), longest first, at most limit (maxList).
func (d *Dialog) List(user string, limit int) []Info {
	if limit <= 0 || limit > maxList {
		limit = maxList
	}
	now := d.clock.Now()
	var out []Info
	d.tbl.Range(func(s *shards.Shard[dlg], e *shards.Entry[dlg]) bool {
		g := &e.Value
		if g.pflags&fEnding != 0 {
			return true
		}
		if user != "" && !hasUser(g.get(g.from), user) && !hasUser(g.get(g.to), user) {
			return true
		}
		out = append(out, d.info(s, e, now))
		return len(out) < limit
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// hasUser reports whether the URI of a From or To value has user as its
// user part.
func hasUser(v []byte, user string) bool {
	u, err := parser.ParseURI(uriOf(v))
	return err == nil && string(u.User) == user
}

// uriOf returns the URI of a name-addr ("Name" <uri>;params) or
// addr-spec (uri;params) value.
func uriOf(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		return v[:i]
	}
	return v
}

func (d *Dialog) info(s *shards.Shard[dlg], e *shards.Entry[dlg], now int64) Info {
	g := &e.Value
	var id [idLen]byte
	i := Info{
		ID: string(appendID(id[:0], g.id)), CallID: string(e.Key()), State: stateNames[g.state],
		From: string(g.get(g.from)), To: string(g.get(g.to)), FromTag: string(g.get(g.fromTag)), ToTag: string(g.get(g.toTag)),
		Caller: strings.ToLower(g.proto[toCaller].String()) + ":" + g.hop[toCaller].AddrPort().String(),
		Start:  time.UnixMilli(g.start).UTC().Format(time.RFC3339Nano),
	}
	if g.hasCallee {
		i.Callee = strings.ToLower(g.proto[toCallee].String()) + ":" + g.hop[toCallee].AddrPort().String()
	}
	since := g.start
	if g.answer != 0 {
		i.Answer = time.UnixMilli(g.answer).UTC().Format(time.RFC3339Nano)
		since = g.answer
	}
	i.Duration = (now - since) / 1000
	i.Remote = g.pflags&fRemote != 0
	if g.timer.Active() {
		i.Remaining = max(d.deadline(g)-now, 0) / 1000
	}
	for k := 0; k < int(g.nprof); k++ {
		p := d.profiles[g.profs[k].idx]
		name := p.name
		if p.withValue {
			name += "=" + string(g.get(g.profs[k].val))
		}
		i.Profiles = append(i.Profiles, name)
	}
	return i
}

// End ends the dialog id (hexadecimal, as listed), OpenSIPS
// dlg_end_dlg: an answered one with a BYE to each side, one not answered
// yet with a CANCEL of its INVITE (the caller gets 487). It returns the
// dialog as it was; mgmt.ErrNotFound when there is no such dialog.
func (d *Dialog) End(idHex string) (Info, error) {
	id, ok := parseID([]byte(idHex))
	if !ok {
		return Info{}, &mgmt.ArgError{Msg: fmt.Sprintf("id %q: want the 16 hexadecimal digits dialog.list shows", idHex)}
	}
	var info Info
	var err error = fmt.Errorf("%w: no dialog %s", mgmt.ErrNotFound, idHex)
	now := d.clock.Now()
	d.tbl.Range(func(s *shards.Shard[dlg], e *shards.Entry[dlg]) bool {
		if e.Value.id != id || e.Value.pflags&fEnding != 0 {
			return true
		}
		info = d.info(s, e, now)
		d.finish(s, e, ReasonEnded, Proxy, true)
		err = nil
		return false
	})
	return info, err
}

// Profiles returns the sizes of the profiles, with their values' when
// values is true; only the profile named name when it is not empty.
func (d *Dialog) Profiles(name string, values bool) ([]ProfileInfo, error) {
	var out []ProfileInfo
	for _, p := range d.profiles {
		if name != "" && p.name != name {
			continue
		}
		pi := ProfileInfo{Name: p.name, WithValue: p.withValue, Size: p.Total()}
		if values && p.withValue {
			pi.Values = p.values()
		}
		out = append(out, pi)
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: no profile %q (dialog.profiles)", mgmt.ErrNotFound, name)
	}
	return out, nil
}

func (d *Dialog) registerCommands(h *modules.Host) {
	h.Command("dialog.list", mgmt.Command{
		Help:     `dialogs in progress, oldest first; {"user": "alice"} those whose From or To user is alice, "limit": N`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				User  string `json:"user"`
				Limit num    `json:"limit"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			l := d.List(a.User, int(a.Limit))
			return map[string]any{"dialogs": l, "count": len(l)}, nil
		},
	})
	h.Command("dialog.end", mgmt.Command{
		Help: `end a dialog: an answered one with a BYE to each side, a ringing one with a CANCEL: {"id": "<id from dialog.list>"}`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				ID string `json:"id"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.ID == "" {
				return nil, &mgmt.ArgError{Msg: "id is required"}
			}
			info, err := d.End(a.ID)
			if err != nil {
				return nil, err
			}
			return map[string]any{"ended": info}, nil
		},
	})
	h.Command("dialog.profile", mgmt.Command{
		Help:     `profile sizes; {"name": "caller"} one profile, "values": true with the size of each value`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				Name   string  `json:"name"`
				Values boolArg `json:"values"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			ps, err := d.Profiles(a.Name, bool(a.Values))
			if err != nil {
				return nil, err
			}
			return map[string]any{"profiles": ps}, nil
		},
	})
}

// num is an integer argument given as a JSON number or a string ("5"),
// which is what `switchboard ctl dialog.list limit=5` sends.
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = num(v)
	return nil
}

// boolArg is a boolean given as JSON or as a string ("true", "1").
type boolArg bool

func (v *boolArg) UnmarshalJSON(b []byte) error {
	x, err := strconv.ParseBool(strings.Trim(string(b), `"`))
	if err != nil {
		return fmt.Errorf("%s is not a boolean", b)
	}
	*v = boolArg(x)
	return nil
}
