package ssf

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/token"
)

type nopStore struct{ store.Store }

type nopKeys struct{}

func (nopKeys) Sign(context.Context, token.Type, any) (string, string, error) { return "", "", nil }

type nopAuth struct{}

func (nopAuth) Bearer(context.Context, string, string, *x509.Certificate) (string, error) {
	return "", nil
}

// TestPushableOnlyAsConfigured: a push stream is pushed only while its
// receiver is configured with its endpoint: one taken out of the
// configuration after the stream was created gets nothing more.
func TestPushableOnlyAsConfigured(t *testing.T) {
	const siem, endpoint = "spiffe://sigil.test/workload/siem", "https://siem.example/events"
	tx, err := New(Config{Issuer: "https://sigil.test", Audience: "spiffe://sigil.test/sigild/ssf", Keys: nopKeys{}, Auth: nopAuth{},
		Store: nopStore{}, Receivers: []Receiver{{ID: siem, PushEndpoints: []string{endpoint}}, {ID: "spiffe://sigil.test/workload/other"}}})
	if err != nil {
		t.Fatal(err)
	}
	stream := func(receiver, method, url string) store.Stream {
		c, _ := json.Marshal(StreamConfig{Delivery: Delivery{Method: method, EndpointURL: url}})
		return store.Stream{ID: "s", Receiver: receiver, Config: c}
	}
	for _, tc := range []struct {
		name string
		s    store.Stream
		want bool
	}{
		{"configured", stream(siem, MethodPush, endpoint), true},
		{"endpoint removed", stream(siem, MethodPush, "https://old.example/events"), false},
		{"receiver removed", stream("spiffe://sigil.test/workload/gone", MethodPush, endpoint), false},
		{"another receiver's endpoint", stream("spiffe://sigil.test/workload/other", MethodPush, endpoint), false},
		{"a poll stream", stream(siem, MethodPoll, ""), false},
	} {
		if got := tx.pushable(tc.s); got != tc.want {
			t.Errorf("%s: pushable %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestInitiator(t *testing.T) {
	for reason, want := range map[string]string{
		store.ReasonDeviceDisabled:                                  "admin",
		store.CertificateRevokedPrefix + store.ReasonDeviceDisabled: "admin",
		store.ReasonKeyCompromise:                                   "admin",
		"revoked by its admin":                                      "admin",
		"attestation-failed":                                        "policy",
		store.CertificateRevokedPrefix + "policy-changed":           "policy",
		"revoked by its holder":                                     "",
		"revoked by its audience":                                   "",
		"":                                                          "",
	} {
		if got := initiator(reason); got != want {
			t.Errorf("initiator(%q) = %q, want %q", reason, got, want)
		}
	}
}
