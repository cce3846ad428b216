package uac

import (
	"fmt"
	"net/netip"

	"switchboard/store"
)

// cred is a trunk's credential as used to answer a challenge.
type cred struct {
	id       int64
	realm    string // "" answers any realm (with a password only)
	user     string
	password string
	ha1      [numAlgs]string // per algorithm (hex); "" when not stored
}

// credTable is an immutable snapshot of the uac_credentials table, swapped
// whole on reload. A lookup is at most six map probes and allocates
// nothing.
type credTable struct {
	// byGateway: credentials bound to a next hop, by its address and port
	// (port 0: any port of that address), then by realm ("" any).
	byGateway map[netip.AddrPort]map[string]*cred
	// gateways: the addresses byGateway has credentials for, any port.
	gateways map[netip.Addr]struct{}
	// byRealm: credentials for any next hop, by realm.
	byRealm map[string]*cred
	n       int
}

// lookup returns the credential for a challenge of realm from dst: the
// most specific first (address and port, then address, then realm only
// when anyHop; under a gateway, its realm before "any realm"). A gateway
// with credentials of its own gets only those: a credential for a realm
// alone answering it would give one carrier a digest of another's
// password, for the other's realm and a nonce of its choosing.
func (t *credTable) lookup(dst netip.AddrPort, realm []byte, anyHop bool) *cred {
	a := dst.Addr().Unmap()
	for _, gw := range [2]netip.AddrPort{netip.AddrPortFrom(a, dst.Port()), netip.AddrPortFrom(a, 0)} {
		if m := t.byGateway[gw]; m != nil {
			if c := m[string(realm)]; c != nil {
				return c
			}
			if c := m[""]; c != nil {
				return c
			}
		}
	}
	if _, own := t.gateways[a]; own || !anyHop {
		return nil
	}
	return t.byRealm[string(realm)]
}

// buildCredTable builds a snapshot from the stored rows; rows that do not
// validate (edited by hand in the database) are skipped and reported.
func buildCredTable(rows []store.UACCredential) (*credTable, []error) {
	t := &credTable{byGateway: map[netip.AddrPort]map[string]*cred{}, gateways: map[netip.Addr]struct{}{}, byRealm: map[string]*cred{}}
	var skipped []error
	for _, r := range rows {
		if err := store.CheckUACCredential(&r); err != nil {
			skipped = append(skipped, fmt.Errorf("id %d: %w", r.ID, err))
			continue
		}
		c := &cred{id: r.ID, realm: r.Realm, user: r.Username, password: r.Password}
		c.ha1[algMD5], c.ha1[algSHA256] = r.HA1, r.HA1SHA256
		if r.Gateway == "" {
			t.byRealm[r.Realm] = c
			t.n++
			continue
		}
		gw, err := gatewayKey(r.Gateway)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("id %d: %w", r.ID, err))
			continue
		}
		m := t.byGateway[gw]
		if m == nil {
			m = map[string]*cred{}
			t.byGateway[gw] = m
		}
		m[r.Realm] = c
		t.gateways[gw.Addr()] = struct{}{}
		t.n++
	}
	return t, skipped
}

// gatewayKey turns a stored gateway ("192.0.2.10", "192.0.2.10:5060")
// into its key: the address, and the port or 0.
func gatewayKey(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}
