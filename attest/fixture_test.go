package attest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	gattest "github.com/google/go-attestation/attest"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

// requiredPCRs are the PCRs the test verifier's policy names.
var requiredPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}

// fixture is one enrollment played against a real swtpm, up to the point
// where the server verifies the completion.
type fixture struct {
	tp       *testenv.TPM
	tpm      *tpm.TPM
	ek       tpm.EK
	ak       *tpm.AK
	verifier *attest.Verifier
	pending  attest.Pending
	req      attest.Completion
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := ctxT(t)
	tp := testenv.SWTPM(t)
	testenv.Boot(t, tp, testenv.DevMeasurements())
	tt, err := tpm.Open(ctx, tp.Addr, tpm.WithEventLog(tp.EventLogPath))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tt.Close() })
	f := &fixture{tp: tp, tpm: tt, verifier: newVerifier(t, attest.Config{EKRoots: []*x509.Certificate{tp.EKCA.Cert}, PCRs: requiredPCRs})}
	f.ek = rsaEK(t, tt)
	if f.ak, err = tt.NewAK(ctx); err != nil {
		t.Fatal(err)
	}
	f.challenge(t)
	return f
}

func newVerifier(t *testing.T, c attest.Config) *attest.Verifier {
	t.Helper()
	v, err := attest.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rsaEK(t *testing.T, tt *tpm.TPM) tpm.EK {
	t.Helper()
	eks, err := tt.EKs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ek := range eks {
		if _, ok := ek.Public.(*rsa.PublicKey); ok && ek.Certificate != nil {
			return ek
		}
	}
	t.Fatal("swtpm has no RSA EK with a certificate")
	return tpm.EK{}
}

// challenge runs the protocol: server checks EK and AK and makes a
// challenge; the TPM activates it, certifies a key over the nonce, quotes.
func (f *fixture) challenge(t *testing.T) {
	t.Helper()
	ctx := ctxT(t)
	ekPub, _ := x509.MarshalPKIXPublicKey(f.ek.Public)
	akp := akParams(f.ak.AttestationParameters())
	ek, err := f.verifier.VerifyEK(f.ek.Certificate.Raw, ekPub)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := f.verifier.VerifyAK(ek, akp)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := attest.NewChallenge(ek, ak)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := f.ak.ActivateCredential(ctx, f.ek, ch.Credential)
	if err != nil {
		t.Fatal(err)
	}
	key := f.newKey(t, f.ak, ch.Nonce)
	sum := sha256.Sum256(ch.Secret)
	f.pending = attest.Pending{
		Identity: "spiffe://sigil.test/workload/a", EKCertificate: f.ek.Certificate.Raw, EKPublic: ekPub,
		AK: akp, Nonce: ch.Nonce, SecretHash: sum[:],
	}
	f.req = attest.Completion{
		Secret: secret, Platform: f.quote(t, f.ak, ch.Nonce, nil),
		Key: certified(key), CSR: csr(t, key),
	}
}

func (f *fixture) newKey(t *testing.T, ak *tpm.AK, nonce []byte) *tpm.Key {
	t.Helper()
	key, err := ak.NewKey(ctxT(t), nonce)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { key.Close() })
	return key
}

// quote quotes the SHA-256 bank: all PCRs, or only sel.
func (f *fixture) quote(t *testing.T, ak *tpm.AK, nonce []byte, sel []int) attest.Platform {
	t.Helper()
	var pp *gattest.PlatformParameters
	var err error
	if sel == nil {
		pp, err = ak.Quote(ctxT(t), nonce, gattest.HashSHA256)
	} else {
		pp, err = ak.QuotePCRs(ctxT(t), nonce, gattest.HashSHA256, sel)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := attest.Platform{EventLog: pp.EventLog}
	for _, q := range pp.Quotes {
		out.Quotes = append(out.Quotes, attest.Quote{Quote: q.Quote, Signature: q.Signature})
	}
	for _, p := range pp.PCRs {
		out.PCRs = append(out.PCRs, attest.PCR{Index: p.Index, Alg: "sha256", Digest: p.Digest})
	}
	return out
}

func akParams(p gattest.AttestationParameters) attest.AKParameters {
	return attest.AKParameters{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}
}

func certified(k *tpm.Key) attest.CertifiedKey {
	p := k.CertificationParameters()
	return attest.CertifiedKey{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}
}

func csr(t *testing.T, signer crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func softKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const cryptoSHA256 = crypto.SHA256

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
