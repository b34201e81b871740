package trust

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
)

// sweepLock makes one replica at a time sweep; a certificate is revoked by
// exactly one transaction whatever the lock does.
const sweepLock = "sigil/attestation-sweep"

// Sweeper revokes the current certificates of every active device that
// has not attested successfully within MaxAge (attestation.max_age), with
// store.ReasonAttestationExpired. A device attests successfully when it
// enrolls or renews: each issues a certificate on fresh evidence.
type Sweeper struct {
	Store  store.Store
	MaxAge time.Duration
	Log    *slog.Logger
	Now    func() time.Time // nil: time.Now
	Nudge  func()           // nil, or asks the audit log for a checkpoint
}

// SweepInterval is how often a Sweeper for maxAge runs: a tenth of it,
// between 1 s and 1 min.
func SweepInterval(maxAge time.Duration) time.Duration {
	return min(max(maxAge/10, time.Second), time.Minute)
}

// Sweep revokes what is overdue now and returns what it revoked. Each
// device is revoked in a transaction of its own that reads its current
// certificates again, so of sweepers running at once on replicas exactly
// one revokes (and audits) each certificate.
func (s *Sweeper) Sweep(ctx context.Context) (store.Revoked, error) {
	now := s.now()
	devices, err := s.Store.Devices(ctx)
	if err != nil {
		return store.Revoked{}, fmt.Errorf("trust: list devices: %w", err)
	}
	var all store.Revoked
	for _, dev := range devices {
		if dev.Status == store.DeviceDisabled {
			continue
		}
		got, err := s.sweepDevice(ctx, dev.EKHash, now)
		if err != nil {
			return all, err
		}
		all.Certificates = append(all.Certificates, got.Certificates...)
		all.Tokens = append(all.Tokens, got.Tokens...)
	}
	if len(all.Certificates) > 0 && s.Nudge != nil {
		s.Nudge()
	}
	return all, nil
}

// sweepDevice revokes the device's current certificates if its last
// successful attestation is older than MaxAge.
func (s *Sweeper) sweepDevice(ctx context.Context, ekHash string, now time.Time) (store.Revoked, error) {
	last, ok, err := s.lastAttested(ctx, ekHash)
	if err != nil || !ok || now.Sub(last) <= s.MaxAge {
		return store.Revoked{}, err
	}
	d := device.Distrust{
		Reason:   store.ReasonAttestationExpired,
		Decision: fmt.Sprintf("last successful attestation at %s, more than attestation.max_age %s before %s", last.UTC().Format(time.RFC3339), s.MaxAge, now.UTC().Format(time.RFC3339)),
	}
	var revoked store.Revoked
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		certs, err := device.CurrentCertificates(ctx, tx, ekHash, now)
		if err != nil {
			return err
		}
		revoked, err = d.Revoke(ctx, tx, certs, now)
		return err
	})
	if err != nil {
		return store.Revoked{}, fmt.Errorf("trust: sweep device %s: %w", ekHash, err)
	}
	if len(revoked.Certificates) > 0 {
		s.log().WarnContext(ctx, "device overdue for attestation: certificates revoked", "ek_hash", ekHash,
			"last_attested", last, "max_age", s.MaxAge, "certificates", revoked.Certificates, "tokens", len(revoked.Tokens))
	}
	return revoked, nil
}

// lastAttested is when the device last attested successfully: when the
// evidence of its newest certificate was recorded. ok is false for a
// device without current certificates, which has nothing to revoke.
func (s *Sweeper) lastAttested(ctx context.Context, ekHash string) (last time.Time, ok bool, err error) {
	certs, err := s.Store.DeviceCertificates(ctx, ekHash)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("trust: certificates of %s: %w", ekHash, err)
	}
	var newest *store.Certificate
	for i, c := range certs {
		if c.RevokedAt == nil && s.now().Before(c.NotAfter) {
			ok = true
		}
		if newest == nil || c.NotBefore.After(newest.NotBefore) {
			newest = &certs[i]
		}
	}
	if !ok {
		return time.Time{}, false, nil
	}
	ev, err := s.Store.Evidence(ctx, newest.EvidenceDigest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("trust: evidence of certificate %s: %w", newest.Serial, err)
	}
	return ev.CreatedAt, true, nil
}

// SweepShared is Sweep by one replica at a time: it skips the round when
// another replica holds the sweep lock.
func (s *Sweeper) SweepShared(ctx context.Context) (store.Revoked, error) {
	if lk, ok := s.Store.(store.Locker); ok {
		l, got, err := lk.TryLock(ctx, sweepLock)
		if err != nil || !got {
			return store.Revoked{}, err
		}
		defer l.Unlock()
	}
	return s.Sweep(ctx)
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
