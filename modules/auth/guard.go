package auth

import (
	"net/netip"

	"switchboard/parser"
	"switchboard/routing"
)

// Failure says why a digest answer failed, as a Guard is told.
type Failure uint8

// The failures a Guard is told of.
const (
	// FailPassword: a subscriber's name with a wrong password, on a
	// nonce sent to the answer's source address (expired or not: the
	// password is compared before the nonce's freshness): the sender
	// received our challenge where it sends from, so the source is not
	// forged.
	FailPassword Failure = iota + 1
	// FailUnknownUser: a name that is no subscriber, on a nonce sent to
	// the answer's source address (an unknown name with any other nonce
	// is FailNonce: the nonce is checked first).
	FailUnknownUser
	// FailReplay: the right password on a nonce-count used before, not
	// a retransmission: a replayed request.
	FailReplay
	// FailExpired: the right password on an expired nonce; phones meet
	// it in normal operation and retry with the new nonce.
	FailExpired
	// FailBadURI: the digest uri is not the Request-URI (400). Checked
	// before the nonce, so it comes with any nonce (see Source).
	FailBadURI
	// FailMalformed: credentials that cannot be checked (no name, an
	// algorithm not offered, a bad qop or nonce-count). A missing or
	// oversized name is checked before the nonce, the rest after it
	// (see Source).
	FailMalformed
	// FailLocked: the right password for an account the Guard locked.
	FailLocked
	// FailNonce: a nonce not ours, or sent to another address than the
	// answer comes from (digest.go): what a forged UDP source sends, as
	// it never receives the challenge. The password was not compared,
	// and the answer is a new challenge whatever it is, so this says
	// nothing of the account: count it against the address only.
	FailNonce
)

var failureNames = [...]string{"", "password", "unknown_user", "replay", "expired", "bad_uri", "malformed", "locked", "nonce"}

func (f Failure) String() string {
	if int(f) < len(failureNames) && f != 0 {
		return failureNames[f]
	}
	return "unknown"
}

// Source says what a failed answer shows of its source address: whether
// its sender receives packets there (return routability). Over UDP a
// source can be forged; only an answer that carries a nonce we sent to
// that address (digest.go) comes from someone who received our
// challenge there.
type Source uint8

const (
	// SourceUnproven: the answer does not carry a nonce we sent to its
	// source address (one sent elsewhere, not ours, or none), with
	// auth.check_source on: what anyone forging that address can send.
	// A guard must not hold it against the address.
	SourceUnproven Source = iota
	// SourceProven: the answer carries a nonce we sent to its source
	// address (an IPv4 address, an IPv6 /64), expired or not: its sender
	// received our challenge there, or someone who did gave it the
	// nonce.
	SourceProven
	// SourceUnchecked: auth.check_source is off, so nonces are bound to
	// no address and no answer shows anything of its source; the
	// address is all a guard has to count failures by, as before the
	// check existed.
	SourceUnchecked
)

var sourceNames = [...]string{"unproven", "proven", "unchecked"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Guard watches failed authorizations and may lock accounts: the authban
// module (fail2ban for digest authentication) is one. Both methods run on
// the receive path or an auth worker and must be cheap, allocation-free
// and safe for concurrent use; the byte slices are only valid during the
// call.
type Guard interface {
	// Locked reports whether the account user@realm may not authenticate
	// now. It is asked for every digest answer checked against a
	// subscriber (before the password is compared); a locked account's
	// answer fails exactly as a wrong password does, with the same work
	// and the same challenge, so that the lock tells an attacker nothing.
	Locked(user, realm []byte) bool
	// Failed is told of every failed digest answer: the source address,
	// the user name and realm as sent, why, and whether the answer shows
	// that its sender receives packets at src (from).
	Failed(src netip.Addr, user, realm []byte, why Failure, from Source)
}

// SetGuard installs g. Call it while the server is built (from a module's
// New), before requests arrive; nil removes it.
func (a *Auth) SetGuard(g Guard) { a.guard = g }

// Guard returns the guard installed, or nil.
func (a *Auth) Guard() Guard { return a.guard }

// tell tells the guard of a failure; ours is whether the answer's nonce
// is one we sent to its source address (decodeNonce).
func (a *Auth) tell(c *routing.Ctx, cr *parser.Auth, why Failure, ours bool) {
	if a.guard == nil {
		return
	}
	from := SourceUnproven
	switch {
	case a.cfg.SkipSourceCheck:
		from = SourceUnchecked
	case ours:
		from = SourceProven
	}
	a.guard.Failed(c.SrcIP(), cr.Username, cr.Realm, why, from)
}

// failureOf names a failed password check: the user unknown, the digest
// wrong, or else the account locked.
func failureOf(known, right bool) Failure {
	switch {
	case !known:
		return FailUnknownUser
	case !right:
		return FailPassword
	}
	return FailLocked
}
