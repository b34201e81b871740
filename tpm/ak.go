package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-attestation/attest"
)

// AK is an attestation key: a restricted signing key the TPM made, loaded
// only for the operation that needs it so it never holds one of the few
// transient object slots.
type AK struct {
	t      *TPM
	blob   []byte
	params attest.AttestationParameters
	pub    *attest.AKPublic
}

// AKOption configures NewAK.
type AKOption func(*akConfig)

type akConfig struct{ alg attest.Algorithm }

// AKAlgorithm selects the AK type: attest.ECDSA (P-256, the default) or
// attest.RSA (2048 bits).
func AKAlgorithm(alg attest.Algorithm) AKOption {
	return func(c *akConfig) { c.alg = alg }
}

// NewAK creates an attestation key under go-attestation's storage root key
// (persistent handle 0x81000001, created if missing).
func (t *TPM) NewAK(ctx context.Context, opts ...AKOption) (*AK, error) {
	cfg := akConfig{alg: attest.ECDSA}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.alg != attest.ECDSA && cfg.alg != attest.RSA {
		return nil, fmt.Errorf("tpm: create ak: unsupported algorithm %q", cfg.alg)
	}
	var blob []byte
	err := t.do(ctx, "create ak", func() error {
		if err := t.evict(); err != nil {
			return err
		}
		ak, err := t.at.NewAK(&attest.AKConfig{Algorithm: cfg.alg})
		if err != nil {
			return err
		}
		blob, err = ak.Marshal()
		return errors.Join(err, ak.Close(t.at))
	})
	if err != nil {
		return nil, err
	}
	return t.akFromBlob(blob)
}

// LoadAK returns the AK that AK.Marshal encoded. It loads it once to check
// that it belongs to this TPM.
func (t *TPM) LoadAK(ctx context.Context, blob []byte) (*AK, error) {
	err := t.do(ctx, "load ak", func() error {
		return t.withAK(blob, func(*attest.AK) error { return nil })
	})
	if err != nil {
		return nil, err
	}
	return t.akFromBlob(blob)
}

func (t *TPM) akFromBlob(blob []byte) (*AK, error) {
	raw, err := parseBlob(blob)
	if err != nil {
		return nil, fmt.Errorf("tpm: ak: %w", err)
	}
	pub, err := attest.ParseAKPublic(raw.Public)
	if err != nil {
		return nil, fmt.Errorf("tpm: ak: %w", err)
	}
	params := attest.AttestationParameters{
		Public:            raw.Public,
		CreateData:        raw.CreateData,
		CreateAttestation: raw.CreateAttestation,
		CreateSignature:   raw.CreateSignature,
	}
	return &AK{t: t, blob: blob, params: params, pub: pub}, nil
}

// withAK loads the AK, runs fn with it and flushes it. The caller holds the TPM.
func (t *TPM) withAK(blob []byte, fn func(*attest.AK) error) error {
	if err := t.evict(); err != nil {
		return err
	}
	ak, err := t.at.LoadAK(blob)
	if err != nil {
		return err
	}
	return errors.Join(fn(ak), ak.Close(t.at))
}

// Marshal returns the AK's encrypted blob and creation data, for LoadAK. Only
// this TPM can load it.
func (a *AK) Marshal() []byte { return append([]byte(nil), a.blob...) }

// AttestationParameters returns what a verifier needs to check the AK and
// challenge it (attest.ActivationParameters).
func (a *AK) AttestationParameters() attest.AttestationParameters { return a.params }

// Public returns the AK's public key.
func (a *AK) Public() crypto.PublicKey { return a.pub.Public }

// Quote quotes all 24 PCRs of each bank in banks (all active banks when none
// are given) with nonce as qualifying data, and returns the quotes, the PCR
// values they cover and the event log.
func (a *AK) Quote(ctx context.Context, nonce []byte, banks ...attest.HashAlg) (*attest.PlatformParameters, error) {
	return a.quote(ctx, nonce, banks, allPCRs)
}

// QuotePCRs quotes only the given PCRs of one bank. A verifier must refuse a
// quote that leaves out a PCR its policy names; this is how a workload (or a
// test playing an attacker) produces one.
func (a *AK) QuotePCRs(ctx context.Context, nonce []byte, bank attest.HashAlg, pcrs []int) (*attest.PlatformParameters, error) {
	for _, p := range pcrs {
		if p < 0 || p >= len(allPCRs) {
			return nil, fmt.Errorf("tpm: quote: PCR %d out of range", p)
		}
	}
	return a.quote(ctx, nonce, []attest.HashAlg{bank}, pcrs)
}

var allPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}

func (a *AK) quote(ctx context.Context, nonce []byte, banks []attest.HashAlg, sel []int) (*attest.PlatformParameters, error) {
	if len(nonce) == 0 {
		return nil, errors.New("tpm: quote: empty nonce")
	}
	log, err := a.t.ch.MeasurementLog()
	if err != nil {
		return nil, fmt.Errorf("tpm: quote: %w", err)
	}
	out := &attest.PlatformParameters{Public: a.params.Public, EventLog: log}
	err = a.t.do(ctx, "quote", func() error {
		if len(banks) == 0 {
			active, err := a.t.at.PCRBanks()
			if err != nil {
				return err
			}
			banks = active
		}
		return a.t.withAK(a.blob, func(ak *attest.AK) error {
			for _, alg := range banks {
				q, pcrs, err := a.quoteBank(ak, nonce, alg, sel)
				if err != nil {
					return err
				}
				out.Quotes = append(out.Quotes, *q)
				out.PCRs = append(out.PCRs, pcrs...)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// quoteBank reads a bank's PCRs and quotes them, again if a PCR changed in
// between.
func (a *AK) quoteBank(ak *attest.AK, nonce []byte, alg attest.HashAlg, sel []int) (*attest.Quote, []attest.PCR, error) {
	var lastErr error
	for range 3 {
		all, err := a.t.at.PCRs(alg)
		if err != nil {
			return nil, nil, fmt.Errorf("read %v pcrs: %w", alg, err)
		}
		pcrs := slices.DeleteFunc(all, func(p attest.PCR) bool { return !slices.Contains(sel, p.Index) })
		q, err := ak.QuotePCRs(a.t.at, nonce, alg, sel)
		if err != nil {
			return nil, nil, fmt.Errorf("quote %v: %w", alg, err)
		}
		// Verify a copy: Verify marks the PCRs it checked, and the caller's
		// verifier must do that itself.
		check := append([]attest.PCR(nil), pcrs...)
		if lastErr = a.pub.Verify(*q, check, nonce); lastErr == nil {
			return q, pcrs, nil
		}
	}
	return nil, nil, fmt.Errorf("quote %v does not match the pcrs: %w", alg, lastErr)
}
