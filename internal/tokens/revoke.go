package tokens

import (
	"context"
	"crypto/x509"
	"slices"

	"github.com/sigil-dev/sigil/internal/store"
)

// Revoke revokes token (RFC 7009) for the holder of caller, and with it
// every token exchanged from it, transitively. It may be revoked by its
// holder (the certificate of its cnf), its client (client_id), a party in
// its audience, or an admin; anyone else gets unauthorized_client (RFC
// 7009 §2.1: the request is refused). An external issuer's token (a user
// IdP's) may be revoked by a party in its audience or an admin: it is
// recorded revoked, refused as a subject token from then on, with every
// token exchanged from it. A token that is none of these (unknown,
// malformed, expired) or already revoked is a success with nothing to do
// (RFC 7009 §2.2). Each revoked token gets a token.revoked
// audit entry, found by the key "revoked:<jti>", in the transaction that
// revokes it; the revocation feed publishes them once it commits. Errors:
// invalid_client, unauthorized_client, ErrNotRecorded (503), or a store
// failure.
func (s *Service) Revoke(ctx context.Context, caller *x509.Certificate, token string) error {
	c, err := s.authenticate(ctx, caller)
	if err != nil {
		return err
	}
	t, err := s.resolve(ctx, token)
	if err != nil {
		return err
	}
	if t == nil {
		return s.revokeExternal(ctx, c, token)
	}
	if t.record.RevokedAt != nil {
		return nil
	}
	role := s.revoker(c, t.record)
	if role == "" {
		s.log.InfoContext(ctx, "tokens: revocation refused", "jti", t.record.JTI, "caller", c.caller.ID)
		return newError(UnauthorizedClient, "the caller may not revoke this token: only its holder, its client, a party in its audience or an admin may")
	}
	revoked, err := s.revoke(ctx, t.record.JTI, "revoked by its "+role, nil)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "tokens: revoked", "jti", t.record.JTI, "by", c.caller.ID, "role", role, "revoked", revoked)
	return nil
}

// revoker names the role by which the caller may revoke rec, "" if none.
func (s *Service) revoker(c *client, rec store.Token) string {
	switch {
	case rec.CNF == c.caller.Thumbprint:
		return "holder"
	case rec.ClientID == c.caller.ID:
		return "client"
	case slices.Contains(rec.Aud, c.caller.ID):
		return "audience"
	case s.admin(c):
		return "admin"
	}
	return ""
}

// revoke revokes jti and its subtree with their audit entries in one
// transaction, then has the feed read the new events. external, if set, is
// jti's record, an external token's, stored first unless it is.
func (s *Service) revoke(ctx context.Context, jti, reason string, external *store.Token) ([]string, error) {
	var revoked []string
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		at := s.now()
		if external != nil {
			if err := tx.InsertExternalToken(ctx, *external); err != nil {
				return err
			}
		}
		var err error
		if revoked, err = tx.RevokeToken(ctx, jti, reason, at); err != nil {
			return err
		}
		entries, err := store.RevokedTokenEntries(ctx, tx, revoked, at)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, entries...)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "tokens: revocation not recorded, not done", "jti", jti, "err", err)
		return nil, notRecorded("revocation of "+jti, err)
	}
	if len(revoked) > 0 {
		s.nudge() // the store notifies the feed (store.FeedNotifier)
	}
	return revoked, nil
}
