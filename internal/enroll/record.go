package enroll

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
)

// record stores device, evidence and certificate in one transaction. A
// rebind that raced with another enrollment of the same EK fails.
func (s *Service) record(ctx context.Context, res *attest.Result, cert *x509.Certificate, digest, version, prevAK string) error {
	bundle, err := json.Marshal(res.Evidence)
	if err != nil {
		return fmt.Errorf("enroll: encode evidence: %w", err)
	}
	now := s.now()
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		got, err := tx.BindDevice(ctx, store.Device{
			EKHash: res.EK.Hash, EKCertDER: res.Evidence.EKCertificate, EKPublicDER: res.Evidence.EKPublic,
			AKHash: res.AK.Hash, AKPublic: res.Evidence.AK.Public,
		}, now)
		if err != nil {
			return err
		}
		if got != prevAK {
			return fmt.Errorf("%w: EK %s was rebound concurrently", store.ErrConflict, res.EK.Hash)
		}
		if err := tx.PutEvidence(ctx, store.Evidence{Digest: digest, EKHash: res.EK.Hash, Kind: "enroll", Bundle: bundle, CreatedAt: now}); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, certificateRecord(cert, res.EK.Hash, digest, version))
	})
	return recordErr("issuance", err)
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
	return fmt.Errorf("enroll: record %s: %w", what, err)
}

func certificateRecord(cert *x509.Certificate, ekHash, digest, version string) store.Certificate {
	return store.Certificate{
		Serial: Serial(cert), SPIFFEID: cert.URIs[0].String(), EKHash: ekHash,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		EvidenceDigest: digest, PolicyVersion: version, DER: cert.Raw,
	}
}

// Serial is the store's key for a certificate: its serial number in hex.
func Serial(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}

func (s *Service) answer(cert *x509.Certificate, digest []byte, version string) *api.Certificate {
	return &api.Certificate{
		Chain:    [][]byte{cert.Raw, s.CA.Issuer().Raw},
		SPIFFEID: cert.URIs[0].String(), ExpiresAt: cert.NotAfter,
		EvidenceDigest: hex.EncodeToString(digest), PolicyVersion: version,
	}
}
