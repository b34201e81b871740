package enroll

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// record stores device, evidence (bundle, its encoding, whose SHA-256 is
// digest), certificate and their audit entries in one transaction. A rebind that raced with another enrollment of the same
// EK fails, as does an enrollment of an identity another device came to
// hold since policy decided on held. Concurrent first enrollments of a
// device with the same AK (the host's) all succeed. A rebind (an AK
// replacement) also logs which identities the device held, mine, and how
// their workloads recover.
func (s *Service) record(ctx context.Context, res *attest.Result, cert *x509.Certificate, bundle []byte, digest string, d policy.Decision, prevAK string, held holders, mine []string) error {
	now := s.now()
	logged, err := enrollmentEntries(res, cert, bundle, digest, d, prevAK, now)
	if err != nil {
		return err
	}
	if prevAK != "" {
		replaced, err := store.NewAuditEntry(audit.DeviceAKReplaced, now, audit.AKReplacement{
			EKHash: res.EK.Hash, PreviousAK: prevAK, AKHash: res.AK.Hash, Serial: device.Serial(cert),
			Affected: mine, Recovery: akRecovery,
		})
		if err != nil {
			return err
		}
		logged = append(logged, replaced)
	}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		got, err := tx.BindDevice(ctx, store.Device{
			EKHash: res.EK.Hash, EKCertDER: res.Evidence.EKCertificate, EKPublicDER: res.Evidence.EKPublic,
			AKHash: res.AK.Hash, AKPublic: res.Evidence.AK.Public,
		}, now)
		if err != nil {
			return err
		}
		if got != prevAK && (prevAK != "" || got != res.AK.Hash) {
			return fmt.Errorf("%w: EK %s was rebound concurrently", store.ErrConflict, res.EK.Hash)
		}
		if err := held.recheck(ctx, tx, now); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, store.Evidence{Digest: digest, EKHash: res.EK.Hash, Kind: "enroll", Bundle: bundle, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, certificateRecord(cert, res.EK.Hash, digest, d.Version)); err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, logged...)
	})
	if err == nil {
		s.nudge()
	}
	return recordErr("issuance", err)
}

// akRecovery tells the workloads of a device whose AK was replaced what to
// do; it is logged with the replacement and said again to each of them when
// a renewal quotes with the old AK.
const akRecovery = "workloads that use the host state holding the new AK renew with it as before; " +
	"a workload whose state keeps the old AK (another host state, or state written before host state existed) " +
	"enrolls again with the host state that holds the new AK (sigil enroll --host-state DIR)"

// enrollmentEntries are the audit entries of an enrollment: the device with
// its full evidence, and the certificate.
func enrollmentEntries(res *attest.Result, cert *x509.Certificate, bundle []byte, digest string, d policy.Decision, prevAK string, now time.Time) ([]store.AuditEntry, error) {
	enrolled, err := store.NewAuditEntry(audit.DeviceEnrolled, now, audit.Enrollment{
		SPIFFEID: cert.URIs[0].String(), Serial: device.Serial(cert), EKHash: res.EK.Hash, AKHash: res.AK.Hash,
		EvidenceDigest: digest, PolicyVersion: d.Version, PolicyIDs: d.PolicyIDs, PreviousAK: prevAK, Evidence: bundle,
	})
	if err != nil {
		return nil, err
	}
	issued, err := certificateEntry(audit.CertificateIssued, cert, res.EK.Hash, digest, d.Version, nil, now)
	if err != nil {
		return nil, err
	}
	return []store.AuditEntry{enrolled, issued}, nil
}

// certificateEntry is the audit entry of an issued or renewed certificate,
// found again by its serial.
func certificateEntry(kind audit.Kind, cert *x509.Certificate, ekHash, digest, version string, evidence []byte, now time.Time) (store.AuditEntry, error) {
	return store.NewAuditEntry(kind, now, audit.Certificate{
		Serial: device.Serial(cert), SPIFFEID: cert.URIs[0].String(), EKHash: ekHash,
		EvidenceDigest: digest, PolicyVersion: version, NotAfter: cert.NotAfter, Evidence: evidence,
	}, "serial:"+device.Serial(cert))
}

// recordErr names a failed recording, keeping a device disabled meanwhile
// recognisable as such.
func recordErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrDeviceDisabled):
		return fmt.Errorf("%w: disabled during %s", ErrDeviceDisabled, what)
	}
	return fmt.Errorf("enroll: %w: %s: %w", ErrNotRecorded, what, err)
}

func certificateRecord(cert *x509.Certificate, ekHash, digest, version string) store.Certificate {
	return store.Certificate{
		Serial: device.Serial(cert), SPIFFEID: cert.URIs[0].String(), EKHash: ekHash,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		EvidenceDigest: digest, PolicyVersion: version, DER: cert.Raw,
	}
}

func (s *Service) answer(cert *x509.Certificate, digest []byte, version string) *api.Certificate {
	return &api.Certificate{
		Chain:    [][]byte{cert.Raw, s.CA.Issuer().Raw},
		SPIFFEID: cert.URIs[0].String(), ExpiresAt: cert.NotAfter,
		EvidenceDigest: hex.EncodeToString(digest), PolicyVersion: version,
	}
}
