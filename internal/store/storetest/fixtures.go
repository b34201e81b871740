package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
)

// T0 is the fixtures' clock, at microsecond precision so that it
// round-trips.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// HexHash is the hex SHA-256 of s.
func HexHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Device is an active device named name.
func Device(name string) store.Device {
	return store.Device{
		EKHash:      HexHash("ek-" + name),
		EKCertDER:   []byte("ek-cert-" + name),
		EKPublicDER: []byte("ek-pub-" + name),
		AKHash:      HexHash("ak-" + name),
		AKPublic:    []byte("ak-pub-" + name),
		Status:      store.DeviceActive,
	}
}

// Challenge is an enrollment challenge for d, valid for 5 minutes from T0.
func Challenge(id string, d store.Device) store.Challenge {
	secret := sha256.Sum256([]byte("secret-" + id))
	return store.Challenge{
		ID:         id,
		EKHash:     d.EKHash,
		AKHash:     d.AKHash,
		Nonce:      []byte("nonce-" + id),
		SecretHash: secret[:],
		SPIFFEID:   "spiffe://sigil.test/workload/" + id,
		Kind:       store.ChallengeEnroll,
		Pending:    []byte(`{"ak":"AAEC"}`),
		CreatedAt:  T0,
		ExpiresAt:  T0.Add(5 * time.Minute),
	}
}

// Evidence is an enrollment evidence record of d.
func Evidence(name string, d store.Device) store.Evidence {
	bundle := []byte(`{"quote":"` + name + `"}`)
	return store.Evidence{Digest: HexHash(string(bundle)), EKHash: d.EKHash, Kind: "enroll", Bundle: bundle, CreatedAt: T0}
}

// Certificate is a certificate of d issued on e, valid for an hour from T0.
func Certificate(serial string, d store.Device, e store.Evidence) store.Certificate {
	return store.Certificate{
		Serial:         serial,
		SPIFFEID:       "spiffe://sigil.test/workload/" + serial,
		EKHash:         d.EKHash,
		NotBefore:      T0,
		NotAfter:       T0.Add(time.Hour),
		EvidenceDigest: e.Digest,
		PolicyVersion:  "sha256:policy",
		DER:            []byte("der-" + serial),
	}
}

// Serial is the serial of the i-th certificate Enroll stores for name.
func Serial(name string, i int) string {
	return fmt.Sprintf("%s%02x", HexHash(name)[:8], i)
}

// Enroll stores the device name, its evidence and n certificates on it,
// each a minute after the one before, in one Tx.
func Enroll(t testing.TB, st store.Store, name string, n int) (store.Device, store.Evidence, []store.Certificate) {
	t.Helper()
	ctx := context.Background()
	d := Device(name)
	e := Evidence(name, d)
	var certs []store.Certificate
	err := st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.BindDevice(ctx, d, T0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		for i := range n {
			c := Certificate(Serial(name, i), d, e)
			c.NotBefore = T0.Add(time.Duration(i) * time.Minute)
			c.NotAfter = c.NotBefore.Add(time.Hour)
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
			certs = append(certs, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	d.CreatedAt, d.UpdatedAt = T0, T0
	return d, e, certs
}

// CompleteEnrollment is what the server does in one transaction on
// POST /v1/enroll/complete; fail, if set, runs last and fails it.
func CompleteEnrollment(ctx context.Context, st store.Store, id string, d store.Device, e store.Evidence, c store.Certificate, fail func(store.Tx) error) error {
	return st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.ConsumeChallenge(ctx, id, T0.Add(time.Second)); err != nil {
			return err
		}
		if _, err := tx.BindDevice(ctx, d, T0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, c); err != nil {
			return err
		}
		if fail != nil {
			return fail(tx)
		}
		return nil
	})
}

// Token is a JWT exchanged from parent ("" for a root token), valid for an
// hour from T0.
func Token(jti, parent string) store.Token {
	return store.Token{
		JTI:       jti,
		ParentJTI: parent,
		Sub:       "spiffe://sigil.test/user/alice",
		ClientID:  "spiffe://sigil.test/workload/" + jti,
		Aud:       []string{"spiffe://sigil.test/api"},
		Scope:     "read write",
		IssuedAt:  T0,
		ExpiresAt: T0.Add(time.Hour),
		CNF:       "x5t-" + jti,
		Kind:      store.TokenJWT,
		KID:       "token-1",
	}
}

// HandleHash is the hash of the handle of the opaque token jti.
func HandleHash(jti string) []byte {
	h := sha256.Sum256([]byte("handle-" + jti))
	return h[:]
}

// OpaqueToken is Token for an opaque token.
func OpaqueToken(jti, parent string) store.Token {
	t := Token(jti, parent)
	t.Kind, t.HandleHash = store.TokenOpaque, HandleHash(jti)
	return t
}

// ExternalToken is the record of a user IdP's token for the frontend,
// valid for an hour from T0.
func ExternalToken(jti string) store.Token {
	return store.Token{
		JTI: jti, Sub: "alice@idp.test", Aud: []string{"spiffe://sigil.test/workload/frontend"},
		Scope: "read", IssuedAt: T0, ExpiresAt: T0.Add(time.Hour), Kind: store.TokenExternal,
	}
}

// InsertTokens stores ts in one Tx.
func InsertTokens(t testing.TB, st store.Store, ts ...store.Token) {
	t.Helper()
	err := st.Tx(context.Background(), func(tx store.Tx) error {
		for _, tok := range ts {
			if err := tx.InsertToken(context.Background(), tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert tokens: %v", err)
	}
}

// InsertAudited stores tok and its audit entry as the token service does
// before returning a token (store.RecordToken: the backend's RecordToken
// if it has one, else one Tx).
func InsertAudited(ctx context.Context, st store.Store, tok store.Token) error {
	return store.RecordToken(ctx, st, store.TokenRecord{Token: tok, Entry: Entry(tok.JTI, "jti:"+tok.JTI)})
}

// Entry is an audit entry named name with keys.
func Entry(name string, keys ...string) store.AuditEntry {
	data := []byte(`{"kind":"test","name":"` + name + `"}`)
	h := sha256.Sum256(append([]byte{0}, data...))
	return store.AuditEntry{Data: data, LeafHash: h[:], Keys: keys, CreatedAt: T0}
}

// AppendEntries appends n entries named prefix-i with key jti:prefix-i,
// each in a Tx of its own, and returns them with their indices.
func AppendEntries(t testing.TB, st store.Store, prefix string, n int) []store.AuditEntry {
	t.Helper()
	var es []store.AuditEntry
	for i := range n {
		e := Entry(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("jti:%s-%d", prefix, i))
		idx, err := st.AppendAudit(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		e.Index = idx
		es = append(es, e)
	}
	return es
}

// LeafHashes is a bare audit.LeafHashReader over hashes: proofs from it
// recompute the tree from every leaf.
type LeafHashes [][]byte

// LeafHashes returns hashes [start, end).
func (l LeafHashes) LeafHashes(_ context.Context, start, end uint64) ([][]byte, error) {
	if start > end || end > uint64(len(l)) {
		return nil, fmt.Errorf("[%d, %d) out of range", start, end)
	}
	return l[start:end], nil
}

// LeafHashesOf returns the leaf hashes of es.
func LeafHashesOf(es []store.AuditEntry) LeafHashes {
	out := make(LeafHashes, len(es))
	for i, e := range es {
		out[i] = e.LeafHash
	}
	return out
}

// JTIs are the jti generators the backends' BenchmarkRecordToken compare,
// by name: 128 random bits (as jtis were) and signer.NewID, the
// time-ordered jtis tokens have (their index inserts share pages).
var JTIs = []struct {
	Name string
	New  func() string
}{
	{"jti=random", func() string { return rand.Text()[:22] }},
	{"jti=NewID", signer.NewID},
}
