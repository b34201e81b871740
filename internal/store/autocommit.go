package store

import (
	"context"
	"time"
)

// Autocommit implements Writer by running each method in a transaction of
// its own through Run, a Store's Tx: a backend's Store embeds it for its
// write methods.
type Autocommit struct {
	Run func(ctx context.Context, fn func(Tx) error) error
}

var _ Writer = Autocommit{}

// CreateChallenge is Tx.CreateChallenge in a transaction of its own.
func (a Autocommit) CreateChallenge(ctx context.Context, c Challenge) error {
	return a.Run(ctx, func(tx Tx) error { return tx.CreateChallenge(ctx, c) })
}

// ConsumeChallenge is Tx.ConsumeChallenge in a transaction of its own.
func (a Autocommit) ConsumeChallenge(ctx context.Context, id string, now time.Time) (c Challenge, err error) {
	err = a.Run(ctx, func(tx Tx) error { c, err = tx.ConsumeChallenge(ctx, id, now); return err })
	return c, err
}

// PurgeExpiredChallenges is Tx.PurgeExpiredChallenges in a transaction of
// its own.
func (a Autocommit) PurgeExpiredChallenges(ctx context.Context, before time.Time) (n int64, err error) {
	err = a.Run(ctx, func(tx Tx) error { n, err = tx.PurgeExpiredChallenges(ctx, before); return err })
	return n, err
}

// BindDevice is Tx.BindDevice in a transaction of its own.
func (a Autocommit) BindDevice(ctx context.Context, d Device, now time.Time) (prev string, err error) {
	err = a.Run(ctx, func(tx Tx) error { prev, err = tx.BindDevice(ctx, d, now); return err })
	return prev, err
}

// SetDeviceStatus is Tx.SetDeviceStatus in a transaction of its own.
func (a Autocommit) SetDeviceStatus(ctx context.Context, ekHash string, st DeviceStatus, now time.Time) (revoked Revoked, err error) {
	err = a.Run(ctx, func(tx Tx) error { revoked, err = tx.SetDeviceStatus(ctx, ekHash, st, now); return err })
	return revoked, err
}

// InsertCertificate is Tx.InsertCertificate in a transaction of its own.
func (a Autocommit) InsertCertificate(ctx context.Context, c Certificate) error {
	return a.Run(ctx, func(tx Tx) error { return tx.InsertCertificate(ctx, c) })
}

// RevokeCertificate is Tx.RevokeCertificate in a transaction of its own.
func (a Autocommit) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) (revoked Revoked, err error) {
	err = a.Run(ctx, func(tx Tx) error { revoked, err = tx.RevokeCertificate(ctx, serial, reason, at); return err })
	return revoked, err
}

// PutEvidence is Tx.PutEvidence in a transaction of its own.
func (a Autocommit) PutEvidence(ctx context.Context, e Evidence) error {
	return a.Run(ctx, func(tx Tx) error { return tx.PutEvidence(ctx, e) })
}

// InsertToken is Tx.InsertToken in a transaction of its own.
func (a Autocommit) InsertToken(ctx context.Context, t Token) error {
	return a.Run(ctx, func(tx Tx) error { return tx.InsertToken(ctx, t) })
}

// InsertExternalToken is Tx.InsertExternalToken in a transaction of its
// own.
func (a Autocommit) InsertExternalToken(ctx context.Context, t Token) error {
	return a.Run(ctx, func(tx Tx) error { return tx.InsertExternalToken(ctx, t) })
}

// RevokeToken is Tx.RevokeToken in a transaction of its own.
func (a Autocommit) RevokeToken(ctx context.Context, jti, reason string, at time.Time) (revoked []string, err error) {
	err = a.Run(ctx, func(tx Tx) error { revoked, err = tx.RevokeToken(ctx, jti, reason, at); return err })
	return revoked, err
}

// PurgeExpiredTokens is Tx.PurgeExpiredTokens in a transaction of its own.
func (a Autocommit) PurgeExpiredTokens(ctx context.Context, before time.Time) (n int64, err error) {
	err = a.Run(ctx, func(tx Tx) error { n, err = tx.PurgeExpiredTokens(ctx, before); return err })
	return n, err
}

// AppendAudit is Tx.AppendAudit in a transaction of its own.
func (a Autocommit) AppendAudit(ctx context.Context, e AuditEntry) (idx uint64, err error) {
	err = a.Run(ctx, func(tx Tx) error { idx, err = tx.AppendAudit(ctx, e); return err })
	return idx, err
}

// PutCheckpoint is Tx.PutCheckpoint in a transaction of its own.
func (a Autocommit) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	return a.Run(ctx, func(tx Tx) error { return tx.PutCheckpoint(ctx, size, note) })
}

// StartAuditShard is Tx.StartAuditShard in a transaction of its own
// (which leaves the new shard empty until its first entry: use a Tx).
func (a Autocommit) StartAuditShard(ctx context.Context, name, origin string, at time.Time) (start uint64, err error) {
	err = a.Run(ctx, func(tx Tx) error { start, err = tx.StartAuditShard(ctx, name, origin, at); return err })
	return start, err
}

// ArchiveAuditShard is Tx.ArchiveAuditShard in a transaction of its own.
func (a Autocommit) ArchiveAuditShard(ctx context.Context, start, end uint64, at time.Time) error {
	return a.Run(ctx, func(tx Tx) error { return tx.ArchiveAuditShard(ctx, start, end, at) })
}

// AddCosignature is Tx.AddCosignature in a transaction of its own.
func (a Autocommit) AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	return a.Run(ctx, func(tx Tx) error { return tx.AddCosignature(ctx, size, witness, line) })
}

// FirstSeen is Tx.FirstSeen in a transaction of its own.
func (a Autocommit) FirstSeen(ctx context.Context, kid string, now time.Time) (seen time.Time, err error) {
	err = a.Run(ctx, func(tx Tx) error { seen, err = tx.FirstSeen(ctx, kid, now); return err })
	return seen, err
}

// NewEpoch is Tx.NewEpoch in a transaction of its own.
func (a Autocommit) NewEpoch(ctx context.Context) (epoch string, err error) {
	err = a.Run(ctx, func(tx Tx) error { epoch, err = tx.NewEpoch(ctx); return err })
	return epoch, err
}

// PutCRL is Tx.PutCRL in a transaction of its own.
func (a Autocommit) PutCRL(ctx context.Context, c CRL) error {
	return a.Run(ctx, func(tx Tx) error { return tx.PutCRL(ctx, c) })
}

// PutAppliedPolicy is Tx.PutAppliedPolicy in a transaction of its own.
func (a Autocommit) PutAppliedPolicy(ctx context.Context, p AppliedPolicy) error {
	return a.Run(ctx, func(tx Tx) error { return tx.PutAppliedPolicy(ctx, p) })
}

// CreateStream is Tx.CreateStream in a transaction of its own.
func (a Autocommit) CreateStream(ctx context.Context, s Stream, limit int) error {
	return a.Run(ctx, func(tx Tx) error { return tx.CreateStream(ctx, s, limit) })
}

// LockStream is Tx.LockStream in a transaction of its own, which ends
// before it returns: the lock is useful only inside a Tx.
func (a Autocommit) LockStream(ctx context.Context, id string) (s Stream, err error) {
	err = a.Run(ctx, func(tx Tx) error { s, err = tx.LockStream(ctx, id); return err })
	return s, err
}

// UpdateStream is Tx.UpdateStream in a transaction of its own.
func (a Autocommit) UpdateStream(ctx context.Context, s Stream) error {
	return a.Run(ctx, func(tx Tx) error { return tx.UpdateStream(ctx, s) })
}

// DeleteStream is Tx.DeleteStream in a transaction of its own.
func (a Autocommit) DeleteStream(ctx context.Context, id string) error {
	return a.Run(ctx, func(tx Tx) error { return tx.DeleteStream(ctx, id) })
}

// UseChallenge is Tx.UseChallenge in a transaction of its own.
func (a Autocommit) UseChallenge(ctx context.Context, id string, expiresAt time.Time) error {
	return a.Run(ctx, func(tx Tx) error { return tx.UseChallenge(ctx, id, expiresAt) })
}

// ChallengeKey is Tx.ChallengeKey in a transaction of its own.
func (a Autocommit) ChallengeKey(ctx context.Context, candidate []byte) (key []byte, err error) {
	err = a.Run(ctx, func(tx Tx) error { key, err = tx.ChallengeKey(ctx, candidate); return err })
	return key, err
}
