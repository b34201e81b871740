package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Token is an access token from the Client's cache, bound to the
// certificate the Client presented when it was fetched.
type Token struct {
	AccessToken string
	ExpiresAt   time.Time
}

// CachedToken returns an access token for audience with scope from the
// cache Transport uses: one fetch in flight per key, a new token fetched at
// 80% of the cached one's lifetime, bound to the current certificate. The
// token is the workload's own (client_credentials), or, with subject, one
// exchanged for subject (RFC 8693), so the workload acts on its behalf.
// Errors are Transport's: errors.Is ErrDenied or ErrUnavailable.
func (c *Client) CachedToken(ctx context.Context, audience string, scope []string, subject string) (Token, error) {
	s := slices.Clone(scope)
	slices.Sort(s)
	s = slices.Compact(s)
	id := c.w.cur.Load()
	key := cacheKey{thumb: id.thumb, audience: audience, scope: strings.Join(s, " "), subject: subjectDigest(subject)}
	e, err := c.tokens.entry(ctx, key, func(ctx context.Context) (*TokenResponse, error) {
		return c.w.token(ctx, id, TokenRequest{Audience: []string{audience}, Scope: s, SubjectToken: subject})
	})
	if err != nil {
		return Token{}, fmt.Errorf("client: token for %s: %w", audience, err)
	}
	return Token{AccessToken: e.token, ExpiresAt: e.expiresAt}, nil
}
