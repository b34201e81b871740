// Package hsmkeys adapts the HSM to signer's key seam: it lists the
// HSM's key versions as signer.KeyInfo and hands out each as a
// crypto.Signer, so that signer never sees hsm's types. sigild wires it
// (internal/daemon), and tests that sign with SoftHSM keys use it too.
package hsmkeys

import (
	"context"
	"crypto"
	"fmt"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
)

// Source is an *hsm.HSM as a signer.KeySource that can rotate.
type Source struct{ h *hsm.HSM }

var (
	_ signer.KeySource = (*Source)(nil)
	_ signer.Rotator   = (*Source)(nil)
)

// New returns h as a key source.
func New(h *hsm.HSM) *Source { return &Source{h: h} }

// Keys lists every key version on the HSM token.
func (s *Source) Keys(ctx context.Context) ([]signer.KeyInfo, error) {
	infos, err := s.h.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]signer.KeyInfo, len(infos))
	for i, info := range infos {
		out[i] = infoOf(info)
	}
	return out, nil
}

// Signer finds the version info names by its label. A key under that
// label with another kid (replaced out of band) is an error.
func (s *Source) Signer(ctx context.Context, info signer.KeyInfo) (crypto.Signer, error) {
	k, err := s.h.Find(ctx, info.Label)
	if err != nil {
		return nil, err
	}
	if k.KID() != info.KID {
		return nil, fmt.Errorf("hsmkeys: key %s has kid %s, not the listed %s", info.Label, k.KID(), info.KID)
	}
	return k, nil
}

// Rotate makes the next version of the key name on the HSM.
func (s *Source) Rotate(ctx context.Context, name string) (signer.KeyInfo, error) {
	k, err := s.h.Rotate(ctx, name)
	if err != nil {
		return signer.KeyInfo{}, err
	}
	return infoOf(k.Info()), nil
}

func infoOf(i hsm.KeyInfo) signer.KeyInfo {
	return signer.KeyInfo{Name: i.Name, Version: i.Version, Label: i.Label, KID: i.KID, Alg: string(i.Alg)}
}
