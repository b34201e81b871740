package enroll

import (
	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
)

// The HTTP messages (package api) convert into attest's evidence format
// here, where the server receives them: the evidence kept forever does not
// change when the HTTP JSON does.

func akParameters(a api.AK) attest.AKParameters {
	return attest.AKParameters{
		Public: a.Public, CreateData: a.CreateData,
		CreateAttestation: a.CreateAttestation, CreateSignature: a.CreateSignature,
	}
}

func certifiedKey(k api.CertifiedKey) attest.CertifiedKey {
	return attest.CertifiedKey{
		Public: k.Public, CreateData: k.CreateData,
		CreateAttestation: k.CreateAttestation, CreateSignature: k.CreateSignature,
	}
}

func platform(p api.Platform) attest.Platform {
	out := attest.Platform{EventLog: p.EventLog}
	if p.Quotes != nil {
		out.Quotes = make([]attest.Quote, len(p.Quotes))
	}
	for i, q := range p.Quotes {
		out.Quotes[i] = attest.Quote{Quote: q.Quote, Signature: q.Signature}
	}
	if p.PCRs != nil {
		out.PCRs = make([]attest.PCR, len(p.PCRs))
	}
	for i, r := range p.PCRs {
		out.PCRs[i] = attest.PCR{Index: r.Index, Alg: r.Alg, Digest: r.Digest}
	}
	return out
}

func completion(req api.CompleteRequest) attest.Completion {
	return attest.Completion{Secret: req.Secret, Platform: platform(req.Platform), Key: certifiedKey(req.Key), CSR: req.CSR}
}
