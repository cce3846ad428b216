package store

import (
	"context"
	"time"
)

// AddDomain starts serving domain. Names are stored lower-case.
func (s *Store) AddDomain(ctx context.Context, domain string) error {
	d, err := normDomain(domain)
	if err != nil {
		return err
	}
	return s.nameErr(s.b.AddDomain(ctx, d, time.Now().Unix()), "", d)
}

// DeleteDomain stops serving domain. A domain that still has subscribers is
// refused with ErrDomainInUse rather than deleting them with it.
func (s *Store) DeleteDomain(ctx context.Context, domain string) error {
	d, err := normDomain(domain)
	if err != nil {
		return err
	}
	return s.nameErr(s.b.DeleteDomain(ctx, d), "", d)
}

// ListDomains lists the served domains in name order.
func (s *Store) ListDomains(ctx context.Context) ([]Domain, error) {
	return s.b.ListDomains(ctx)
}

// DomainExists reports whether domain is served.
func (s *Store) DomainExists(ctx context.Context, domain string) (bool, error) {
	d, err := normDomain(domain)
	if err != nil {
		return false, err
	}
	return s.b.DomainExists(ctx, d)
}
