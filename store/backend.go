package store

import "context"

// Backend is the database work behind a Store. It is kept small so that a
// PostgreSQL (or other) implementation needs only these methods: validation,
// credential hashing and error wording stay in Store and are shared.
//
// Implementations return the package's sentinel errors (ErrSubscriberExists,
// ErrNoSubscriber, ErrDomainExists, ErrUnknownDomain, ErrDomainInUse,
// ErrNoAddress) unwrapped or wrapped; Store adds the names. Every
// subscriber, domain and address write must append to the change log in
// the same transaction.
type Backend interface {
	AddDomain(ctx context.Context, domain string, created int64) error
	DeleteDomain(ctx context.Context, domain string) error
	ListDomains(ctx context.Context) ([]Domain, error)
	DomainExists(ctx context.Context, domain string) (bool, error)

	AddSubscriber(ctx context.Context, s *Subscriber) error
	// SetCredentials replaces password, ha1 and ha1_sha256 of one subscriber.
	SetCredentials(ctx context.Context, username, domain, password, ha1, ha1SHA256 string) error
	DeleteSubscriber(ctx context.Context, username, domain string) error
	// GetSubscriber fills s; it returns ErrNoSubscriber when there is none.
	GetSubscriber(ctx context.Context, username, domain string, s *Subscriber) error
	// ListSubscribers lists one domain, or all when domain is "".
	ListSubscribers(ctx context.Context, domain string) ([]Subscriber, error)

	// LoadBindings returns the bindings with expires > now.
	LoadBindings(ctx context.Context, now int64) ([]Binding, error)
	// ApplyBindings applies ops in order in one transaction.
	ApplyBindings(ctx context.Context, ops []BindingOp) error
	// DeleteExpiredBindings removes bindings with expires <= now.
	DeleteExpiredBindings(ctx context.Context, now int64) (int64, error)

	// Changes returns up to limit change-log entries with Seq > since, and
	// the latest Seq. When entries after since were already pruned (or since
	// is ahead of the log, e.g. the database was replaced) it returns a
	// single ChangeAll entry. With limit 0 it returns only the latest Seq.
	Changes(ctx context.Context, since uint64, limit int) ([]Change, uint64, error)

	// AddAddresses inserts validated addresses in one transaction and
	// sets their ID; a duplicate is an *addressExistsError (naming the
	// entry and the stored row's id). One ChangeAddress entry is logged.
	AddAddresses(ctx context.Context, as []Address) error
	// DeleteAddress removes and returns one entry (ErrNoAddress).
	DeleteAddress(ctx context.Context, id int64) (Address, error)
	// DeleteAddressesOf removes and returns the entries of group with
	// exactly this ip and mask (ErrNoAddress, and nothing logged, when
	// there is none).
	DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error)
	// ListAddresses lists one group, or all when group is 0, by group and id.
	ListAddresses(ctx context.Context, group int) ([]Address, error)

	// AddFraudRule inserts r and sets r.ID; UpdateFraudRule replaces the
	// row with r.ID (ErrNoFraudRule when there is none). Both return
	// ErrFraudRuleExists for a duplicate (profile, prefix, hours, days).
	// Every fraud rule write bumps the "fraud_rules" table version in the
	// same transaction.
	AddFraudRule(ctx context.Context, r *FraudRule) error
	UpdateFraudRule(ctx context.Context, r *FraudRule) error
	DeleteFraudRule(ctx context.Context, id int64) error
	// GetFraudRule fills r; ErrNoFraudRule when there is no such rule.
	GetFraudRule(ctx context.Context, id int64, r *FraudRule) error
	ListFraudRules(ctx context.Context) ([]FraudRule, error)
	// AddDialplanRules inserts validated rules in one transaction and
	// sets their IDs; with replace, every stored rule is deleted first in
	// the same transaction. A duplicate (dpid, pr, match_op, match_exp,
	// match_flags) is a *dialplanExistsError naming the rule's index and
	// the stored row's id.
	AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error
	// DeleteDialplanRule removes and returns one rule (ErrNoDialplanRule).
	DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error)
	// DeleteDialplan removes every rule of dpid and returns how many
	// (ErrNoDialplanRule, and nothing written, when there is none).
	DeleteDialplan(ctx context.Context, dpid int) (int, error)
	// ListDialplanRules lists one dpid, or all when dpid < 0, by dpid,
	// pr and id.
	ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error)

	// AddAliases inserts validated aliases in one transaction (with
	// replace, every stored alias is deleted first); a duplicate alias is
	// a *rowExistsError naming its index and the stored target.
	AddAliases(ctx context.Context, as []Alias, replace bool) error
	// DeleteAlias removes and returns one alias (ErrNoAlias).
	DeleteAlias(ctx context.Context, aliasUser, aliasDomain string) (Alias, error)
	// ListAliases lists one alias domain, or all for "".
	ListAliases(ctx context.Context, aliasDomain string) ([]Alias, error)
	// AddGroupMember inserts m (ErrGroupMemberExists).
	AddGroupMember(ctx context.Context, m *GroupMember) error
	// DeleteGroupMember removes one membership (ErrNoGroupMember).
	DeleteGroupMember(ctx context.Context, user, domain, group string) error
	// ListGroupMembers lists one group, or all for "".
	ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error)
	// Every write to the dialplan, aliases and grp tables bumps that
	// table's version in the same transaction.

	// AddDispatcherDests inserts validated destinations in one
	// transaction and sets their ID, after deleting every row first when
	// replace is set; a destination already in its set is a
	// *dispatcherExistsError. DeleteDispatcherDest removes and returns
	// the row with id, or (id 0) the one of set and destination;
	// SetDispatcherState changes the state of one. Both return
	// ErrNoDispatcher when there is none. Every write bumps the
	// "dispatcher" table version in the same transaction.
	AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error
	DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error)
	SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error)
	// ListDispatcherDests lists every row by set, priority (highest
	// first) and id.
	ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error)
	// The drouting tables. Every write bumps the table's version in the
	// same transaction. AddDR* insert all or none, emptying the table
	// first with replace; a duplicate gwid or carrierid is a
	// *drNameError wrapping ErrDRExists, a missing row one wrapping
	// ErrNoDR. DeleteDR removes the row of table with that key (gwid,
	// carrierid, or the rule ID in decimal).
	AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error
	UpdateDRGateway(ctx context.Context, g *DRGateway) error
	GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error
	ListDRGateways(ctx context.Context) ([]DRGateway, error)
	AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error
	UpdateDRCarrier(ctx context.Context, c *DRCarrier) error
	ListDRCarriers(ctx context.Context) ([]DRCarrier, error)
	AddDRRules(ctx context.Context, rs []DRRule, replace bool) error
	// ForEachDRRule walks the rules by ID with f's Prefix, AfterID and
	// Limit applied (not Group), reusing r.
	ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error
	DeleteDR(ctx context.Context, table, id string) error

	// AddUACCredential inserts c and sets c.ID (ErrUACExists for a
	// duplicate realm and gateway); DeleteUACCredential removes one
	// (ErrNoUAC). The same for registrations (duplicate: aor and
	// registrar). Every write bumps the table's version ("uac_credentials",
	// "uac_registrations") in the same transaction.
	AddUACCredential(ctx context.Context, c *UACCredential) error
	DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error)
	ListUACCredentials(ctx context.Context) ([]UACCredential, error)
	AddUACRegistration(ctx context.Context, r *UACRegistration) error
	DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error)
	ListUACRegistrations(ctx context.Context) ([]UACRegistration, error)
	// LoadDialogs returns every row of the dialog table by start_time
	// and dlg_id, its profiles column as stored (Dialog.profiles).
	LoadDialogs(ctx context.Context) ([]Dialog, error)
	// ApplyDialogs applies checked ops in order in one transaction,
	// each upsert's Updated set to now (ms) and its profiles column
	// taken from Dialog.profiles.
	ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error
	// DeleteDialog removes the row of id (ErrNoDialog).
	DeleteDialog(ctx context.Context, id uint64) error

	// AddCDRs inserts validated call records in one transaction, each in
	// acc or missed_calls (CDR.Missed), and sets their IDs. ForEachCDR
	// streams the records of one table that f selects (f.Missed), in f's
	// order, within f.Limit. DeleteCDRs removes the records of one table
	// that started before until (ms) and returns how many.
	AddCDRs(ctx context.Context, cs []CDR) error
	ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error
	DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error)
	// TableVersion returns the write counter of a table reloaded whole.
	TableVersion(ctx context.Context, name string) (int64, error)

	Close() error
}

// Domain is a SIP domain served by this proxy.
type Domain struct {
	Domain  string
	Created int64 // unix seconds
}

// ChangeKind says what a change-log entry invalidates.
type ChangeKind uint8

const (
	// ChangeSubscriber: the subscriber Username@Domain was added, changed or
	// deleted.
	ChangeSubscriber ChangeKind = 1
	// ChangeDomain: Domain was added or deleted.
	ChangeDomain ChangeKind = 2
	// ChangeAll: the reader fell behind the kept log; drop every cached
	// entry.
	ChangeAll ChangeKind = 3
	// ChangeAddress: the address table (permissions) changed; Username
	// and Domain are empty. Readers reload the whole table.
	ChangeAddress ChangeKind = 4
)

// Change is one entry of the change log.
type Change struct {
	Seq      uint64
	Kind     ChangeKind
	Username string
	Domain   string
}
