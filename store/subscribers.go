package store

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Subscriber is a user allowed to register and call. The digest realm is the
// subscriber's domain, as OpenSIPS' default calculate_ha1 does.
type Subscriber struct {
	Username string
	Domain   string
	// Password is empty unless Options.StorePasswords is set.
	Password string
	// HA1 is hex MD5(username:domain:password), HA1SHA256 the same with
	// SHA-256 (RFC 7616). HA1SHA256 may be empty for a subscriber added with
	// an MD5 ha1 only; SHA-256 challenges then cannot succeed for it.
	HA1       string
	HA1SHA256 string
	Email     string
	Created   int64 // unix seconds
}

// HA1MD5 returns hex MD5(user:realm:password) (RFC 2617 §3.2.2.2).
func HA1MD5(user, realm, password string) string {
	h := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}

// HA1SHA256 returns hex SHA-256(user:realm:password) (RFC 7616 §3.4.2).
func HA1SHA256(user, realm, password string) string {
	h := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}

// AddSubscriber adds s. With s.Password set both HA1 values are derived from
// it (any given HA1 is ignored); otherwise s.HA1 (and optionally s.HA1SHA256)
// must be given as hex (stored lower-case). The domain must already be served.
func (s *Store) AddSubscriber(ctx context.Context, sub Subscriber) error {
	if err := checkUser(sub.Username); err != nil {
		return err
	}
	d, err := normDomain(sub.Domain)
	if err != nil {
		return err
	}
	sub.Domain = d
	if err := s.fillCredentials(&sub); err != nil {
		return fmt.Errorf("subscriber %s@%s: %w", sub.Username, d, err)
	}
	if sub.Created == 0 {
		sub.Created = time.Now().Unix()
	}
	return s.nameErr(s.b.AddSubscriber(ctx, &sub), sub.Username, d)
}

func (s *Store) fillCredentials(sub *Subscriber) error {
	if sub.Password != "" {
		sub.HA1 = HA1MD5(sub.Username, sub.Domain, sub.Password)
		sub.HA1SHA256 = HA1SHA256(sub.Username, sub.Domain, sub.Password)
		if !s.opts.StorePasswords {
			sub.Password = ""
		}
		return nil
	}
	if sub.HA1 == "" {
		return ErrNoCredentials
	}
	// Digests copied from other systems are sometimes upper case; the
	// comparison in auth is on lower-case hex.
	sub.HA1, sub.HA1SHA256 = strings.ToLower(sub.HA1), strings.ToLower(sub.HA1SHA256)
	if !isHex(sub.HA1, 32) {
		return errorf(ErrMalformedHA1, "ha1 must be 32 hex digits (MD5)")
	}
	if sub.HA1SHA256 != "" && !isHex(sub.HA1SHA256, 64) {
		return errorf(ErrMalformedHA1, "ha1_sha256 must be 64 hex digits (SHA-256)")
	}
	return nil
}

// SetPassword replaces the credentials of an existing subscriber with ones
// derived from password.
func (s *Store) SetPassword(ctx context.Context, username, domain, password string) error {
	if password == "" {
		return errorf(ErrNoCredentials, "subscriber %s@%s: empty password", username, domain)
	}
	return s.SetCredentials(ctx, Subscriber{Username: username, Domain: domain, Password: password})
}

// SetCredentials replaces the credentials of an existing subscriber: from
// sub.Password when set, otherwise from sub.HA1 and sub.HA1SHA256, as in
// AddSubscriber. Other fields of sub are ignored.
func (s *Store) SetCredentials(ctx context.Context, sub Subscriber) error {
	if err := checkUser(sub.Username); err != nil {
		return err
	}
	d, err := normDomain(sub.Domain)
	if err != nil {
		return err
	}
	sub.Domain = d
	if err := s.fillCredentials(&sub); err != nil {
		return fmt.Errorf("subscriber %s@%s: %w", sub.Username, d, err)
	}
	return s.nameErr(s.b.SetCredentials(ctx, sub.Username, d, sub.Password, sub.HA1, sub.HA1SHA256), sub.Username, d)
}

// DeleteSubscriber removes a subscriber. Its bindings are the registrar's to
// remove.
func (s *Store) DeleteSubscriber(ctx context.Context, username, domain string) error {
	if err := checkUser(username); err != nil {
		return err
	}
	d, err := normDomain(domain)
	if err != nil {
		return err
	}
	return s.nameErr(s.b.DeleteSubscriber(ctx, username, d), username, d)
}

// GetSubscriber returns one subscriber: the credential lookup that auth
// caches. A missing subscriber is ErrNoSubscriber.
func (s *Store) GetSubscriber(ctx context.Context, username, domain string) (Subscriber, error) {
	var sub Subscriber
	if err := checkUser(username); err != nil {
		return sub, err
	}
	d, err := normDomain(domain)
	if err != nil {
		return sub, err
	}
	err = s.b.GetSubscriber(ctx, username, d, &sub)
	return sub, s.nameErr(err, username, d)
}

// ListSubscribers lists the subscribers of domain ordered by username, or of
// every domain (ordered by domain, then username) when domain is "".
func (s *Store) ListSubscribers(ctx context.Context, domain string) ([]Subscriber, error) {
	if domain != "" {
		d, err := normDomain(domain)
		if err != nil {
			return nil, err
		}
		ok, err := s.b.DomainExists(ctx, d)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errorf(ErrUnknownDomain, "domain %q is not served", d)
		}
		domain = d
	}
	return s.b.ListSubscribers(ctx, domain)
}

// nameErr words a backend sentinel error with the names involved.
func (s *Store) nameErr(err error, user, domain string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrSubscriberExists):
		return errorf(ErrSubscriberExists, "subscriber %s@%s already exists", user, domain)
	case errors.Is(err, ErrNoSubscriber):
		return errorf(ErrNoSubscriber, "subscriber %s@%s does not exist", user, domain)
	case errors.Is(err, ErrUnknownDomain):
		return errorf(ErrUnknownDomain, "domain %q is not served (add it first)", domain)
	case errors.Is(err, ErrDomainExists):
		return errorf(ErrDomainExists, "domain %q already exists", domain)
	case errors.Is(err, ErrDomainInUse):
		return errorf(ErrDomainInUse, "domain %q still has subscribers (delete them first)", domain)
	}
	return err
}
