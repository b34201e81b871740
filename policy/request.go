package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/identity"
)

// A Request is a question for [Set.Decide]: an [EnrollRequest] or a
// [TokenRequest].
type Request interface {
	build(*callerCache) (built, error)
}

var (
	_ Request = EnrollRequest{}
	_ Request = TokenRequest{}
)

// built is a Request in Cedar's terms.
type built struct {
	req      cedar.Request
	entities cedar.EntityMap
}

// Entity types and the action type of the schema.
const (
	typeDevice   cedar.EntityType = "Sigil::Device"
	typeIdentity cedar.EntityType = "Sigil::Identity"
	typeWorkload cedar.EntityType = "Sigil::Workload"
	typeAudience cedar.EntityType = "Sigil::Audience"
	typeAction   cedar.EntityType = "Sigil::Action"
)

// DeviceAction is what a device asks to do with an identity.
type DeviceAction string

// Device actions, the Cedar actions Sigil::Action::"enroll" and so on.
const (
	Enroll DeviceAction = "enroll" // issue a first certificate
	Renew  DeviceAction = "renew"  // renew the certificate, with fresh evidence
	Rebind DeviceAction = "rebind" // bind the device's EK to a new AK
)

// DeviceFacts are what attest verified about a device. Digests are SHA-256
// and exactly 32 bytes.
type DeviceFacts struct {
	EKHash       []byte         // digest of the EK public key
	EKIssuer     string         // EK certificate issuer DN; "" if allow-listed by EK hash
	AKHash       []byte         // digest of the AK public key
	SecureBoot   bool           // UEFI Secure Boot enabled, per the event log
	PCRs         map[int][]byte // quoted SHA-256 PCR bank: index (0-23) → value
	EventDigests [][]byte       // SHA-256 digest of every replayed event-log event
}

// EnrollRequest asks whether a device may enroll as, renew, or rebind its EK
// to a new AK for, an identity.
type EnrollRequest struct {
	Action         DeviceAction // Enroll if empty
	Device         DeviceFacts
	Identity       string // the SPIFFE ID requested or held
	PreviousAKHash []byte // Rebind only: the AK the EK is bound to now
	// OtherHolders are the EK hashes (SHA-256) of the other active devices
	// that hold Identity now: a certificate for it, neither revoked nor
	// expired. Policies see them as context.other_holders.
	OtherHolders [][]byte
	// DeviceIdentities are the SPIFFE IDs the device itself holds now
	// (certificates neither revoked nor expired), Identity included when
	// it holds it: context.device_identities, so a policy can bound how
	// many identities, or which together, one host holds.
	DeviceIdentities []string
	// Workload, when a host agent enrolls or renews for a local process,
	// is what the agent asserts about it: context.workload.
	Workload *WorkloadFacts
}

// TokenRequest asks whether a caller may get a token for an audience with
// some scopes. With a Subject it is a token exchange (Cedar action
// "exchange"), without one a token for the caller itself ("token").
type TokenRequest struct {
	Caller   Caller
	Audience string
	Scopes   []string // requested scopes, each an RFC 6749 scope-token
	Subject  *Subject // the subject token of an exchange; nil otherwise
}

// Caller is the authenticated client of the token service.
type Caller struct {
	SPIFFEID      string      // from its verified X.509-SVID
	PolicyVersion string      // the policy set version recorded in that certificate
	Device        DeviceFacts // the evidence that certificate was issued on
}

// Subject is the verified subject token of a token exchange.
type Subject struct {
	Issuer string   // "iss"
	Sub    string   // "sub"
	Scopes []string // its scopes
	// ActChain is the "sub" of each actor nested in its "act" claim,
	// outermost first; its length is the act_depth policies see.
	ActChain []string
}

func (r EnrollRequest) build(*callerCache) (built, error) {
	action, ctx, err := r.actionContext()
	if err != nil {
		return built{}, err
	}
	device, err := r.Device.entity()
	if err != nil {
		return built{}, fmt.Errorf("device: %w", err)
	}
	identity, err := identityEntity(r.Identity)
	if err != nil {
		return built{}, err
	}
	return built{
		req: cedar.Request{
			Principal: device.UID,
			Action:    cedar.NewEntityUID(typeAction, cedar.String(action)),
			Resource:  identity.UID,
			Context:   ctx,
		},
		entities: entityMap(device, identity),
	}, nil
}

// actionContext checks the action and builds its context.
func (r EnrollRequest) actionContext() (DeviceAction, cedar.Record, error) {
	action := r.Action
	if action == "" {
		action = Enroll
	}
	holders, err := digestSet(r.OtherHolders)
	if err != nil {
		return "", cedar.Record{}, fmt.Errorf("other holders: %w", err)
	}
	ids, err := identitySet(r.DeviceIdentities)
	if err != nil {
		return "", cedar.Record{}, fmt.Errorf("device identities: %w", err)
	}
	ctx := cedar.RecordMap{"other_holders": holders, "device_identities": ids}
	if r.Workload != nil {
		w, err := r.Workload.record()
		if err != nil {
			return "", cedar.Record{}, fmt.Errorf("workload: %w", err)
		}
		ctx["workload"] = w
	}
	switch action {
	case Enroll, Renew:
		if r.PreviousAKHash != nil {
			return "", cedar.Record{}, fmt.Errorf("previous AK hash given for action %q; it belongs to %q only", action, Rebind)
		}
		return action, cedar.NewRecord(ctx), nil
	case Rebind:
		prev, err := digest(r.PreviousAKHash)
		if err != nil {
			return "", cedar.Record{}, fmt.Errorf("previous AK hash: %w", err)
		}
		ctx["previous_ak_hash"] = prev
		return action, cedar.NewRecord(ctx), nil
	}
	return "", cedar.Record{}, fmt.Errorf("unknown device action %q: want %q, %q or %q", action, Enroll, Renew, Rebind)
}

func (r TokenRequest) build(callers *callerCache) (built, error) {
	caller, device, err := callers.entities(r.Caller)
	if err != nil {
		return built{}, err
	}
	audience, err := audienceEntity(r.Audience)
	if err != nil {
		return built{}, err
	}
	action, ctx, err := r.actionContext()
	if err != nil {
		return built{}, err
	}
	return built{
		req: cedar.Request{
			Principal: caller.UID,
			Action:    cedar.NewEntityUID(typeAction, cedar.String(action)),
			Resource:  audience.UID,
			Context:   ctx,
		},
		entities: entityMap(caller, device, audience),
	}, nil
}

// actionContext picks "token" or "exchange" and builds its context.
func (r TokenRequest) actionContext() (string, cedar.Record, error) {
	scopes, err := scopeSet(r.Scopes)
	if err != nil {
		return "", cedar.Record{}, fmt.Errorf("scopes: %w", err)
	}
	if r.Subject == nil {
		return "token", cedar.NewRecord(cedar.RecordMap{"scopes": scopes}), nil
	}
	subject, err := r.Subject.record()
	if err != nil {
		return "", cedar.Record{}, fmt.Errorf("subject: %w", err)
	}
	return "exchange", cedar.NewRecord(cedar.RecordMap{"scopes": scopes, "subject": subject}), nil
}

func (d DeviceFacts) entity() (cedar.Entity, error) {
	ek, err := digest(d.EKHash)
	if err != nil {
		return cedar.Entity{}, fmt.Errorf("EK hash: %w", err)
	}
	ak, err := digest(d.AKHash)
	if err != nil {
		return cedar.Entity{}, fmt.Errorf("AK hash: %w", err)
	}
	pcrs, err := pcrSet(d.PCRs)
	if err != nil {
		return cedar.Entity{}, err
	}
	events, err := digestSet(d.EventDigests)
	if err != nil {
		return cedar.Entity{}, fmt.Errorf("event digests: %w", err)
	}
	return cedar.Entity{
		UID: cedar.NewEntityUID(typeDevice, ek),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"ek_hash":       ek,
			"ek_issuer":     cedar.String(d.EKIssuer),
			"ak_hash":       ak,
			"secure_boot":   cedar.Boolean(d.SecureBoot),
			"pcrs":          pcrs,
			"event_digests": events,
		}),
	}, nil
}

// entities builds the caller's Workload entity and its Device.
func (c Caller) entities() (cedar.Entity, cedar.Entity, error) {
	id, err := workloadID(c.SPIFFEID)
	if err != nil {
		return cedar.Entity{}, cedar.Entity{}, fmt.Errorf("caller: %w", err)
	}
	device, err := c.Device.entity()
	if err != nil {
		return cedar.Entity{}, cedar.Entity{}, fmt.Errorf("caller device: %w", err)
	}
	return cedar.Entity{
		UID: cedar.NewEntityUID(typeWorkload, cedar.String(id.String())),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"spiffe_id":      cedar.String(id.String()),
			"trust_domain":   cedar.String(id.TrustDomain().Name()),
			"path":           cedar.String(id.Path()),
			"policy_version": cedar.String(c.PolicyVersion),
			"device":         device.UID,
		}),
	}, device, nil
}

func (s *Subject) record() (cedar.Record, error) {
	if s.Issuer == "" {
		return cedar.Record{}, errors.New("issuer is empty")
	}
	if s.Sub == "" {
		return cedar.Record{}, errors.New("sub is empty")
	}
	scopes, err := scopeSet(s.Scopes)
	if err != nil {
		return cedar.Record{}, fmt.Errorf("scopes: %w", err)
	}
	chain := make([]cedar.Value, len(s.ActChain))
	for i, actor := range s.ActChain {
		if actor == "" {
			return cedar.Record{}, fmt.Errorf("act chain entry %d is empty", i)
		}
		chain[i] = cedar.String(actor)
	}
	return cedar.NewRecord(cedar.RecordMap{
		"issuer":    cedar.String(s.Issuer),
		"sub":       cedar.String(s.Sub),
		"scopes":    scopes,
		"act_chain": cedar.NewSet(chain...),
		"act_depth": cedar.Long(len(s.ActChain)),
	}), nil
}

func identityEntity(spiffeID string) (cedar.Entity, error) {
	id, err := workloadID(spiffeID)
	if err != nil {
		return cedar.Entity{}, fmt.Errorf("identity: %w", err)
	}
	return cedar.Entity{
		UID: cedar.NewEntityUID(typeIdentity, cedar.String(id.String())),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"trust_domain": cedar.String(id.TrustDomain().Name()),
			"path":         cedar.String(id.Path()),
		}),
	}, nil
}

// workloadID parses the SPIFFE ID of a workload within the standard's
// grammar and limits (identity.Workload); a trust domain ID (no path)
// names no workload.
func workloadID(s string) (spiffeid.ID, error) {
	return identity.Workload(s)
}

// audienceEntity builds the Audience; a SPIFFE ID audience also gets
// trust_domain and path.
func audienceEntity(aud string) (cedar.Entity, error) {
	if aud == "" {
		return cedar.Entity{}, errors.New("audience is empty")
	}
	for _, r := range aud {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return cedar.Entity{}, fmt.Errorf("audience %q: contains space or control character", aud)
		}
	}
	attrs := cedar.RecordMap{"name": cedar.String(aud)}
	if id, err := identity.Parse(aud); err == nil {
		attrs["trust_domain"] = cedar.String(id.TrustDomain().Name())
		attrs["path"] = cedar.String(id.Path())
	}
	return cedar.Entity{
		UID:        cedar.NewEntityUID(typeAudience, cedar.String(aud)),
		Attributes: cedar.NewRecord(attrs),
	}, nil
}

// scopeSet checks scope-token syntax (RFC 6749 §3.3) and builds the set.
func scopeSet(scopes []string) (cedar.Set, error) {
	vals := make([]cedar.Value, len(scopes))
	for i, s := range scopes {
		if !validScope(s) {
			return cedar.Set{}, fmt.Errorf("%q is not a valid scope", s)
		}
		vals[i] = cedar.String(s)
	}
	return cedar.NewSet(vals...), nil
}

func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// digest formats a SHA-256 digest as "sha256:<hex>".
func digest(b []byte) (cedar.String, error) {
	if len(b) != 32 {
		return "", fmt.Errorf("want 32 bytes (SHA-256), got %d", len(b))
	}
	return cedar.String("sha256:" + hex.EncodeToString(b)), nil
}

func digestSet(ds [][]byte) (cedar.Set, error) {
	vals := make([]cedar.Value, len(ds))
	for i, d := range ds {
		v, err := digest(d)
		if err != nil {
			return cedar.Set{}, fmt.Errorf("entry %d: %w", i, err)
		}
		vals[i] = v
	}
	return cedar.NewSet(vals...), nil
}

// maxPCR is the highest PCR index of a TPM 2.0 PC client.
const maxPCR = 23

// pcrSet formats PCR values as "sha256:<index>:<hex>".
func pcrSet(pcrs map[int][]byte) (cedar.Set, error) {
	vals := make([]cedar.Value, 0, len(pcrs))
	for _, idx := range slices.Sorted(maps.Keys(pcrs)) {
		v := pcrs[idx]
		if idx < 0 || idx > maxPCR {
			return cedar.Set{}, fmt.Errorf("PCR index %d out of range 0-%d", idx, maxPCR)
		}
		if len(v) != 32 {
			return cedar.Set{}, fmt.Errorf("PCR %d: want 32 bytes (SHA-256), got %d", idx, len(v))
		}
		vals = append(vals, cedar.String("sha256:"+strconv.Itoa(idx)+":"+hex.EncodeToString(v)))
	}
	return cedar.NewSet(vals...), nil
}

func entityMap(es ...cedar.Entity) cedar.EntityMap {
	m := make(cedar.EntityMap, len(es))
	for _, e := range es {
		m[e.UID] = e
	}
	return m
}
