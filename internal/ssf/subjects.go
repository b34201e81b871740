package ssf

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
)

// A stream receives the events of every subject (default_subjects ALL)
// except those its receiver removed (SSF 1.0 §8.1.3): a receiver that
// does not act on a workload's or a token's revocations can stop hearing
// them, and add the subject back later. The removed subjects are kept in
// the stream's stored configuration, so every replica filters alike.

// SubjectRequest is the body of POST /ssf/subjects:add and
// /ssf/subjects:remove (SSF 1.0 §8.1.3.2 and §8.1.3.3). Verified, which a
// receiver may send when adding, is accepted and not used: sigil does not
// take a receiver's word about a subject.
type SubjectRequest struct {
	StreamID string          `json:"stream_id"`
	Subject  json.RawMessage `json:"subject"`
	Verified *bool           `json:"verified,omitempty"`
}

// Bounds of subject identifiers.
const (
	maxRemovedSubjects = 256  // per stream
	maxSubjectMember   = 1024 // bytes of one member's value
	maxAliases         = 8
)

// simpleFormats are the RFC 9493 (§3.2) and SSF 1.0 (§3.2) simple subject
// identifier formats a receiver may name, with the members each has.
var simpleFormats = map[string][]string{
	"account":           {"uri"},
	"did":               {"url"},
	"email":             {"email"},
	"iss_sub":           {"iss", "sub"},
	"jwt_id":            {"iss", "jti"},
	"opaque":            {"id"},
	"phone_number":      {"phone_number"},
	"saml_assertion_id": {"issuer", "assertion_id"},
	"uri":               {"uri"},
}

// complexMembers are the members a complex subject (SSF 1.0 §3.2) may
// have, each a simple subject identifier.
var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

// subject is a checked subject identifier. key is its canonical JSON
// (members sorted, no space): two identifiers are the same subject when
// their keys are equal. A simple identifier has itself in ids, an
// "aliases" one each of its identifiers; a complex one has members.
type subject struct {
	key     string
	ids     []string
	members map[string]string
}

// parseSubject checks raw as a subject identifier a receiver may name.
func parseSubject(raw []byte) (subject, error) {
	fields, format, err := identifier(raw)
	if err != nil {
		return subject{}, err
	}
	switch format {
	case "aliases":
		return parseAliases(fields)
	case "complex":
		return parseComplex(fields)
	}
	id, err := parseSimple(format, fields)
	if err != nil {
		return subject{}, err
	}
	return simpleSubject(id), nil
}

// simpleSubject is the subject of the simple identifier whose key is id.
func simpleSubject(id string) subject { return subject{key: id, ids: []string{id}} }

// parseSimple checks a simple identifier of format and returns its key.
func parseSimple(format string, fields map[string]json.RawMessage) (string, error) {
	members, ok := simpleFormats[format]
	if !ok {
		return "", fmt.Errorf("subject format %q is not supported (supported: aliases, complex, %s)", format, strings.Join(sortedFormats(), ", "))
	}
	id := map[string]any{"format": format}
	for _, m := range members {
		var v string
		if err := json.Unmarshal(fields[m], &v); err != nil || v == "" {
			return "", fmt.Errorf("a %q subject needs %q, a non-empty string", format, m)
		}
		if len(v) > maxSubjectMember {
			return "", fmt.Errorf("subject member %q is longer than %d bytes", m, maxSubjectMember)
		}
		id[m] = v
	}
	if len(fields) != len(members)+1 {
		return "", fmt.Errorf("a %q subject has no members but format, %s", format, strings.Join(members, ", "))
	}
	return canonical(id), nil
}

func sortedFormats() []string {
	var f []string
	for k := range simpleFormats {
		f = append(f, k)
	}
	slices.Sort(f)
	return f
}

// identifier decodes raw as a subject identifier's object: its members
// and its format.
func identifier(raw []byte) (fields map[string]json.RawMessage, format string, err error) {
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, "", errors.New("subject must be a JSON object")
	}
	if err := json.Unmarshal(fields["format"], &format); err != nil || format == "" {
		return nil, "", errors.New(`subject has no "format"`)
	}
	return fields, format, nil
}

// parseNested checks raw as a simple identifier inside an aliases or a
// complex one.
func parseNested(raw json.RawMessage) (string, error) {
	fields, format, err := identifier(raw)
	if err != nil {
		return "", err
	}
	return parseSimple(format, fields)
}

func parseAliases(fields map[string]json.RawMessage) (subject, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(fields["identifiers"], &list); err != nil || len(fields) != 2 || len(list) == 0 || len(list) > maxAliases {
		return subject{}, fmt.Errorf(`an "aliases" subject has the members format and identifiers, 1 to %d simple subjects`, maxAliases)
	}
	s := subject{}
	for _, raw := range list {
		id, err := parseNested(raw)
		if err != nil {
			return subject{}, fmt.Errorf("aliases: %w", err)
		}
		if !slices.Contains(s.ids, id) {
			s.ids = append(s.ids, id)
		}
	}
	slices.Sort(s.ids)
	s.key = canonical(map[string]any{"format": "aliases", "identifiers": rawList(s.ids)})
	return s, nil
}

func parseComplex(fields map[string]json.RawMessage) (subject, error) {
	members := map[string]string{}
	for name, raw := range fields {
		if name == "format" {
			continue
		}
		if !slices.Contains(complexMembers, name) {
			return subject{}, fmt.Errorf("a complex subject has no member %q (members: %s)", name, strings.Join(complexMembers, ", "))
		}
		id, err := parseNested(raw)
		if err != nil {
			return subject{}, fmt.Errorf("complex subject member %s: %w", name, err)
		}
		members[name] = id
	}
	if len(members) == 0 {
		return subject{}, errors.New("a complex subject needs at least one member")
	}
	return complexSubject(members), nil
}

// complexSubject is the complex subject of members, each a simple
// identifier's key by its member name.
func complexSubject(members map[string]string) subject {
	m := map[string]any{"format": "complex"}
	for name, id := range members {
		m[name] = json.RawMessage(id)
	}
	return subject{key: canonical(m), members: members}
}

func rawList(ids []string) []json.RawMessage {
	l := make([]json.RawMessage, len(ids))
	for i, id := range ids {
		l[i] = json.RawMessage(id)
	}
	return l
}

// canonical marshals v, a map of checked values, with sorted keys.
func canonical(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings and checked raw JSON
	}
	return string(b)
}

// covers reports whether removing s removes the events about ev, the
// subject of an event's SET. A simple or aliases identifier covers an
// event whose subject, or any member of whose complex subject, is one of
// its identifiers; a complex one covers an event whose complex subject
// has every member it names, the same.
func (s subject) covers(ev subject) bool {
	if s.members != nil {
		if ev.members == nil {
			return false
		}
		for name, id := range s.members {
			if ev.members[name] != id {
				return false
			}
		}
		return true
	}
	for _, id := range s.ids {
		if slices.Contains(ev.ids, id) {
			return true
		}
		for _, m := range ev.members {
			if m == id {
				return true
			}
		}
	}
	return false
}

// removedSubjects parses a stream's removed subjects, stored by
// RemoveSubject.
func (c storedConfig) removedSubjects() ([]subject, error) {
	subs := make([]subject, 0, len(c.Removed))
	for _, raw := range c.Removed {
		s, err := parseSubject(raw)
		if err != nil {
			return nil, fmt.Errorf("stored removed subject: %w", err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// AddSubject adds req.Subject back to the caller's stream (SSF 1.0
// §8.1.3.2): it receives that subject's events again, from the next one
// committed. Every subject not removed is already included, so adding one
// that was not removed changes nothing.
func (t *Transmitter) AddSubject(ctx context.Context, bearer string, peer *x509.Certificate, req SubjectRequest) error {
	return t.changeSubjects(ctx, bearer, peer, req, "added", func(c *storedConfig, s subject) error {
		c.Removed = slices.DeleteFunc(c.Removed, func(raw json.RawMessage) bool { return string(raw) == s.key })
		return nil
	})
}

// RemoveSubject removes req.Subject from the caller's stream (SSF 1.0
// §8.1.3.3): the events it covers (subject.covers), including those
// handed out and not yet acknowledged, are no longer delivered on it. A
// stream holds at most maxRemovedSubjects.
func (t *Transmitter) RemoveSubject(ctx context.Context, bearer string, peer *x509.Certificate, req SubjectRequest) error {
	return t.changeSubjects(ctx, bearer, peer, req, "removed", func(c *storedConfig, s subject) error {
		if slices.ContainsFunc(c.Removed, func(raw json.RawMessage) bool { return string(raw) == s.key }) {
			return nil
		}
		if len(c.Removed) >= maxRemovedSubjects {
			return &Error{Status: http.StatusConflict, Code: "too_many_subjects",
				Description: fmt.Sprintf("a stream may have at most %d removed subjects: add one back first", maxRemovedSubjects)}
		}
		c.Removed = append(c.Removed, json.RawMessage(s.key))
		return nil
	})
}

// changeSubjects applies change to the caller's stream req.StreamID with
// req's subject, checked, in a transaction.
func (t *Transmitter) changeSubjects(ctx context.Context, bearer string, peer *x509.Certificate, req SubjectRequest, verb string, change func(*storedConfig, subject) error) error {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return err
	}
	if req.StreamID == "" {
		return badRequest("stream_id is required")
	}
	if len(req.Subject) == 0 {
		return badRequest("subject is required")
	}
	sub, err := parseSubject(req.Subject)
	if err != nil {
		return badRequest(err.Error())
	}
	err = t.reconfigure(ctx, r, req.StreamID, func(_ store.Tx, _ *store.Stream, c *storedConfig) error {
		return change(c, sub)
	})
	if err != nil {
		return err
	}
	t.log.InfoContext(ctx, "ssf: subject "+verb, "stream", req.StreamID, "receiver", r.ID, "subject", sub.key)
	t.wake()
	return nil
}
