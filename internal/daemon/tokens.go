package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/signer"
)

// openTokens builds the token service: the key set over the HSM token key
// (first sightings shared through the store), the minter, the verifier of
// our tokens and the configured external issuers'.
func (d *Daemon) openTokens(ctx context.Context) (*tokens.Service, *signer.KeySet, error) {
	t := d.cfg.Tokens
	keys, err := signer.NewKeySet(hsmkeys.New(d.hsm), t.KeyLabel, d.store,
		signer.WithLead(t.RotationLead), signer.WithRetain(t.MaxTTL), signer.WithLogger(d.log))
	if err != nil {
		return nil, nil, err
	}
	if err := keys.Refresh(ctx); err != nil {
		return nil, nil, fmt.Errorf("daemon: token keys: %w (run `sigild init` first)", err)
	}
	issuer := d.cfg.TokenIssuer()
	mint, err := signer.NewMinter(issuer, keys, signer.WithLogger(d.log))
	if err != nil {
		return nil, nil, err
	}
	ext, err := externalIssuers(t.External)
	if err != nil {
		return nil, nil, err
	}
	verify, err := signer.NewVerifier(issuer, keys, signer.WithExternalIssuers(ext...), signer.WithLogger(d.log))
	if err != nil {
		return nil, nil, err
	}
	svc, err := tokens.New(tokens.Config{
		Issuer: issuer, TrustDomain: d.cfg.TrustDomain, Minter: mint, Keys: keys, Verifier: verify,
		Attest: d.verify, Policy: d.policy, Store: d.store,
		MaxLifetime: t.MaxTTL, DefaultTTL: t.DefaultTTL, MaxActDepth: t.MaxActDepth,
		OpaqueAudiences: t.OpaqueAudiences, Admins: t.Admins, Log: d.log, Nudge: d.audit.Nudge,
		MaxSubscribers: t.Feed.MaxStreams, // the server limits streams per identity within these
	})
	if err != nil {
		return nil, nil, err
	}
	return svc, keys, nil
}

func externalIssuers(cfg []config.ExternalIssuer) ([]signer.ExternalIssuer, error) {
	out := make([]signer.ExternalIssuer, 0, len(cfg))
	for i, e := range cfg {
		jwks, err := os.ReadFile(e.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("daemon: tokens.external_issuers[%d].jwks_file: %w", i, err)
		}
		out = append(out, signer.ExternalIssuer{
			Issuer: e.Issuer, JWKS: jwks, Algorithms: e.Algorithms,
			SubjectClaim: e.SubClaim, ScopeClaim: e.ScopeClaim,
		})
	}
	return out, nil
}

// keyRefresh is how often the token key set reads the HSM: well within the
// rotation lead, as the key set requires.
func keyRefresh(lead time.Duration) time.Duration {
	return min(max(lead/4, time.Second), time.Minute)
}

// purgeInterval is how often sigild deletes expired token records.
const purgeInterval = 10 * time.Minute

// purgeTokens deletes, every purgeInterval, the records of tokens expired
// for longer than tokens.retention, and the challenges expired as long:
// what an exchange adds to the store that no decision reads once the
// token has expired. Their audit entries stay. A failure is logged and
// retried at the next round.
func (d *Daemon) purgeTokens(ctx context.Context) error {
	keep := d.cfg.TokenRetention()
	if keep <= 0 {
		return nil
	}
	t := time.NewTicker(purgeInterval)
	defer t.Stop()
	for {
		before := time.Now().Add(-keep)
		tokens, err := d.store.PurgeExpiredTokens(ctx, before)
		if err == nil {
			var challenges int64
			challenges, err = d.store.PurgeExpiredChallenges(ctx, before)
			level := slog.LevelDebug
			if tokens+challenges > 0 {
				level = slog.LevelInfo
			}
			d.log.Log(ctx, level, "purged expired records", "tokens", tokens, "challenges", challenges, "expired_before", before)
		}
		if err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "purge of expired records failed; retrying later", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
