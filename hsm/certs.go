package hsm

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrCertificateNotFound means the token holds no certificate under that
// label: create and store it (PutCertificate, `sigild init`).
var ErrCertificateNotFound = errors.New("hsm: certificate not found")

// maxCertLabel bounds a certificate label (CKA_LABEL).
const maxCertLabel = 128

// Certificate returns the X.509 certificate stored on the token under
// label, as PutCertificate left it. Certificates sit beside the keys they
// certify, so every replica sharing the token sees the same CA hierarchy.
func (h *HSM) Certificate(ctx context.Context, label string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.timeout)
	defer cancel()
	c, err := h.conn(ctx, "certificate", label)
	if err != nil {
		return nil, err
	}
	cert, err := do(ctx, func() (*x509.Certificate, error) {
		return c.ctx.FindCertificate(nil, []byte(label), nil)
	}, nil)
	if err != nil {
		return nil, h.fail(c, "certificate", label, err)
	}
	if cert == nil {
		return nil, &Error{Op: "certificate", Key: label, Kind: ErrCertificateNotFound}
	}
	return cert, nil
}

// PutCertificate stores cert on the token under label. It refuses to store
// a second certificate under a label already in use.
func (h *HSM) PutCertificate(ctx context.Context, label string, cert *x509.Certificate) error {
	if label == "" || len(label) > maxCertLabel {
		return &Error{Op: "put certificate", Key: label, Err: fmt.Errorf("label must be 1 to %d bytes", maxCertLabel)}
	}
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if _, err := h.Certificate(ctx, label); err == nil {
		return &Error{Op: "put certificate", Key: label, Err: errors.New("a certificate with this label exists")}
	} else if !errors.Is(err, ErrCertificateNotFound) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.timeout)
	defer cancel()
	c, err := h.conn(ctx, "put certificate", label)
	if err != nil {
		return err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	_, err = do(ctx, func() (struct{}, error) {
		return struct{}{}, c.ctx.ImportCertificateWithLabel(id, []byte(label), cert)
	}, nil)
	return h.fail(c, "put certificate", label, err)
}
