package audit_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
)

// BenchmarkIntegrate measures the Log integrating batches of new entries
// into the tree and signing one checkpoint per batch with a software key:
// ns/op is the checkpoint latency an operation waiting for its entry sees,
// entries/s the throughput.
func BenchmarkIntegrate(b *testing.B) {
	for _, batch := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newLogEnv(b, audit.WithLogger(slog.New(slog.DiscardHandler)))
			entries := make([][]byte, batch)
			for i := range entries {
				entries[i] = sampleEntry(b, i)
			}
			for b.Loop() {
				e.st.append(entries...)
				if err := e.log.Integrate(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkSignCheckpoint is the cost of one checkpoint signature, with the
// bare ECDSA signature as the baseline and SoftHSM for comparison.
func BenchmarkSignCheckpoint(b *testing.B) {
	cp := audit.Checkpoint{Origin: origin, Size: 123456, Hash: sha256Of("root"), Time: time.Now()}
	key := newKey(b)
	b.Run("baseline-ecdsa", func(b *testing.B) {
		d := sha256.Sum256([]byte("checkpoint text"))
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("software", func(b *testing.B) { benchSign(b, newSigner(b, origin, key), cp) })
	b.Run("softhsm", func(b *testing.B) { benchSign(b, newSigner(b, origin, hsmKey(b, hsm.ES256)), cp) })
}

func benchSign(b *testing.B, s *audit.Signer, cp audit.Checkpoint) {
	for b.Loop() {
		if _, err := s.Sign(cp); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEntries are a small entry (a token) and a large one (an enrollment
// with a 16 KiB evidence bundle).
func benchEntries(b *testing.B) map[string][]byte {
	evidence, _ := json.Marshal(map[string]string{"event_log": strings.Repeat("A", 16<<10)})
	return map[string][]byte{
		"token": encode(b, audit.TokenIssued, time.Now(), audit.Token{JTI: "jti", Sub: "spiffe://sigil.test/workload/a",
			Aud: []string{"api"}, Scope: "read write", Exp: time.Now(), CNF: "thumbprint"}),
		"enrollment": encode(b, audit.DeviceEnrolled, time.Now(), audit.Enrollment{SPIFFEID: "spiffe://sigil.test/workload/a",
			Serial: "1f", EKHash: "ek", AKHash: "ak", EvidenceDigest: "d", PolicyVersion: "v", Evidence: evidence}),
	}
}

func BenchmarkLeafHash(b *testing.B) {
	for name, data := range benchEntries(b) {
		b.Run(name+"/baseline-sha256", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				sha256.Sum256(data)
			}
		})
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				audit.LeafHash(data)
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for name, data := range benchEntries(b) {
		e, err := audit.Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := audit.Encode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for name, data := range benchEntries(b) {
		b.Run(name+"/baseline-unmarshal", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var v map[string]any
				if err := json.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := audit.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify is the auditor's throughput over a log of 10000 entries
// checkpointed in batches of 100.
func BenchmarkVerify(b *testing.B) {
	e := newLogEnv(b, audit.WithLogger(slog.New(slog.DiscardHandler)))
	for i := range 10000 {
		e.st.append(sampleEntry(b, i))
		if i%100 == 99 {
			if err := e.log.Integrate(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		if _, err := audit.Verify(b.Context(), e.st, e.signer.Verifier(), audit.VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkInclusionProof compares proofs recomputed from every leaf hash
// (a bare LeafHashReader: O(size)) with proofs from stored nodes (a
// NodeHashReader: O(log size)), in memory.
func BenchmarkInclusionProof(b *testing.B) {
	for _, size := range []int{1000, 100000} {
		t := newTiled(makeLeaves(size))
		for name, r := range map[string]audit.LeafHashReader{"leaves": t.leaves, "nodes": t} {
			b.Run(fmt.Sprintf("size=%d/%s", size, name), func(b *testing.B) {
				for b.Loop() {
					if _, err := audit.InclusionProof(b.Context(), r, uint64(size/3), uint64(size)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkInit is the start-up check of a log of a million entries: every
// entry the latest checkpoint covers is read and hashed, its leaf hash
// compared and the root recomputed (ns/op is the whole check; entries/s
// its rate). The baseline only rebuilds the tree from the stored leaf
// hashes, as Init did before it checked the entries' data.
func BenchmarkInit(b *testing.B) {
	const size = 1_000_000
	e := newLogEnv(b, audit.WithLogger(slog.New(slog.DiscardHandler)))
	samples := make([][]byte, 16)
	for i := range samples {
		samples[i] = sampleEntry(b, i)
	}
	for i := 0; i < size; i += len(samples) {
		e.st.append(samples...)
	}
	if err := e.log.Integrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Run("baseline-leaf-hashes", func(b *testing.B) {
		for b.Loop() {
			if _, err := audit.RootHash(b.Context(), e.st, size); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("entries", func(b *testing.B) {
		for b.Loop() {
			l := e.newLog(b, audit.WithLogger(slog.New(slog.DiscardHandler)))
			if err := l.Init(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// BenchmarkEncodeEntry encodes a renewal's certificate entry carrying 20
// KB of evidence (about what an event log makes): EncodeNew against
// Encode(NewEntry), its baseline, which reads the evidence twice more.
func BenchmarkEncodeEntry(b *testing.B) {
	evidence, err := json.Marshal(map[string]any{"version": 2, "event_log": bytes.Repeat([]byte{7}, 15<<10), "csr": bytes.Repeat([]byte{1}, 300)})
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now().UTC()
	p := audit.Certificate{Serial: "1f", SPIFFEID: "spiffe://sigil.test/workload/a", EKHash: "ek", EvidenceDigest: "d",
		PolicyVersion: "v", NotAfter: at.Add(time.Hour), Evidence: evidence}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := audit.NewEntry(audit.CertificateRenewed, at, p)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := audit.Encode(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EncodeNew", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := audit.EncodeNew(audit.CertificateRenewed, at, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
