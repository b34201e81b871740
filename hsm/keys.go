package hsm

import (
	"cmp"
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/ThalesGroup/crypto11"
)

// KeyInfo describes one version of a key on the token.
type KeyInfo struct {
	Name    string // e.g. "jwt"
	Version int    // 1, 2, ...
	Label   string // CKA_LABEL: Name + ".v" + Version
	Alg     Alg
	ID      []byte // CKA_ID: 16 random bytes for keys made here
	KID     string // RFC 7638 JWK SHA-256 thumbprint, base64url: stable across re-opens
}

// entry is a key found on a connection.
type entry struct {
	info   KeyInfo
	signer crypto11.Signer
}

var (
	errLabelTaken = errors.New("another key with this label appeared while generating; removed ours")
	errKeyChanged = errors.New("the key with this label and id is not the one handed out")
)

// List returns every key version on the token that follows the naming
// scheme, sorted by name and version.
func (h *HSM) List(ctx context.Context) ([]KeyInfo, error) {
	es, _, err := h.scan(ctx, "list")
	if err != nil {
		return nil, err
	}
	infos := make([]KeyInfo, len(es))
	for i, e := range es {
		infos[i] = e.info
	}
	return infos, nil
}

// Find returns the key for ref: "name" for the latest version, or
// "name.vN" for a given one. The Key stays bound to that version: after a
// Rotate, Find again to sign with the new one. Fails with ErrKeyNotFound.
func (h *HSM) Find(ctx context.Context, ref string) (*Key, error) {
	name, version, err := parseRef(ref)
	if err != nil {
		return nil, &Error{Op: "find", Key: ref, Err: err}
	}
	es, c, err := h.scan(ctx, "find")
	if err != nil {
		return nil, err
	}
	e, err := pick(es, name, version)
	if err != nil {
		return nil, &Error{Op: "find", Key: ref, Kind: ErrKeyNotFound, Err: err}
	}
	return h.newKey(c, e), nil
}

// Generate creates version 1 of a new key. It fails with ErrKeyExists if
// any version of name is on the token. Private keys are sensitive,
// non-extractable and sign-only.
func (h *HSM) Generate(ctx context.Context, name string, alg Alg) (*Key, error) {
	if err := checkNew(name, alg); err != nil {
		return nil, &Error{Op: "generate", Key: name, Err: err}
	}
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	es, c, err := h.scan(ctx, "generate")
	if err != nil {
		return nil, err
	}
	if _, err := pick(es, name, 0); err == nil {
		return nil, &Error{Op: "generate", Key: name, Kind: ErrKeyExists}
	}
	return h.create(ctx, c, "generate", name, 1, alg)
}

// Rotate creates the next version of an existing key, with the same
// algorithm, beside the old ones (which stay until deleted out of band, so
// tokens they signed keep verifying). Fails with ErrKeyNotFound. Rotation is
// serialised within a process only: rotate from one place.
func (h *HSM) Rotate(ctx context.Context, name string) (*Key, error) {
	if err := validKeyName(name); err != nil {
		return nil, &Error{Op: "rotate", Key: name, Err: err}
	}
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	es, c, err := h.scan(ctx, "rotate")
	if err != nil {
		return nil, err
	}
	latest, err := pick(es, name, 0)
	if err != nil {
		return nil, &Error{Op: "rotate", Key: name, Kind: ErrKeyNotFound, Err: err}
	}
	return h.create(ctx, c, "rotate", name, latest.info.Version+1, latest.info.Alg)
}

func checkNew(name string, alg Alg) error {
	if alg.hash() == 0 {
		return fmt.Errorf("unsupported algorithm %q: use ES256, ES384 or PS256", alg)
	}
	return validKeyName(name)
}

func (h *HSM) scan(ctx context.Context, op string) ([]entry, *conn, error) {
	c, err := h.conn(ctx, op, "")
	if err != nil {
		return nil, nil, err
	}
	es, err := do(ctx, c.scan, nil)
	return es, c, h.fail(c, op, "", err)
}

func (h *HSM) create(ctx context.Context, c *conn, op, name string, version int, alg Alg) (*Key, error) {
	label := keyLabel(name, version)
	e, err := do(ctx, func() (entry, error) { return c.generate(label, alg) }, nil)
	if err != nil {
		return nil, h.fail(c, op, label, err)
	}
	h.log.Info("hsm: key created", "label", label, "alg", alg, "kid", e.info.KID)
	return h.newKey(c, e), nil
}

// pick returns the given version of name, or the latest if version is 0.
// es must be sorted.
func pick(es []entry, name string, version int) (entry, error) {
	var found []entry
	for _, e := range es {
		if e.info.Name == name && (version == 0 || e.info.Version == version) {
			found = append(found, e)
		}
	}
	switch n := len(found); {
	case n == 0 && version == 0:
		return entry{}, fmt.Errorf("no version of %q on the token", name)
	case n == 0:
		return entry{}, fmt.Errorf("no %s on the token", keyLabel(name, version))
	case n > 1 && found[n-2].info.Version == found[n-1].info.Version:
		return entry{}, fmt.Errorf("%d keys share the label %s: delete the stray one", n, found[n-1].info.Label)
	}
	return found[len(found)-1], nil
}

// scan lists the key pairs on the token that follow the naming scheme.
func (c *conn) scan() ([]entry, error) {
	signers, err := c.ctx.FindAllKeyPairs()
	if err != nil {
		return nil, err
	}
	var es []entry
	for _, s := range signers {
		e, ok, err := c.entry(s)
		if err != nil {
			return nil, err
		}
		if ok {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.info.Name, b.info.Name), cmp.Compare(a.info.Version, b.info.Version))
	})
	return es, nil
}

func (c *conn) entry(s crypto11.Signer) (entry, bool, error) {
	attrs, err := c.ctx.GetAttributes(s, []crypto11.AttributeType{crypto11.CkaLabel, crypto11.CkaId})
	if err != nil {
		return entry{}, false, err
	}
	label, id := attrs[crypto11.CkaLabel], attrs[crypto11.CkaId]
	if label == nil || id == nil {
		return entry{}, false, nil
	}
	info, ok := describe(string(label.Value), id.Value, s)
	return entry{info, s}, ok, nil
}

func describe(label string, id []byte, s crypto11.Signer) (KeyInfo, bool) {
	name, version, ok1 := parseLabel(label)
	alg, ok2 := algOf(s.Public())
	kid, err := thumbprint(s.Public())
	info := KeyInfo{Name: name, Version: version, Label: label, Alg: alg, ID: id, KID: kid}
	return info, ok1 && ok2 && err == nil
}

// generate makes a key pair, then checks no other process made the same
// label meanwhile.
func (c *conn) generate(label string, alg Alg) (entry, error) {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	pub, priv := templates(id, label)
	s, err := c.generatePair(pub, priv, alg)
	if err != nil {
		return entry{}, err
	}
	if err := c.unique(label, s); err != nil {
		return entry{}, err
	}
	info, _ := describe(label, id, s)
	return entry{info, s}, nil
}

func (c *conn) generatePair(pub, priv crypto11.AttributeSet, alg Alg) (crypto11.Signer, error) {
	switch alg {
	case ES256:
		return c.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	case ES384:
		return c.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
	}
	return c.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, rsaBits)
}

// templates make sign-only pairs: no encrypt, decrypt, wrap, unwrap or
// derive; the private half is private, sensitive and never extractable.
func templates(id []byte, label string) (pub, priv crypto11.AttributeSet) {
	pub, _ = crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	priv = pub.Copy()
	for _, t := range []crypto11.AttributeType{crypto11.CkaEncrypt, crypto11.CkaWrap} {
		_ = pub.Set(t, false)
	}
	for t, v := range map[crypto11.AttributeType]bool{
		crypto11.CkaSign: true, crypto11.CkaPrivate: true, crypto11.CkaSensitive: true,
		crypto11.CkaExtractable: false, crypto11.CkaDecrypt: false, crypto11.CkaUnwrap: false, crypto11.CkaDerive: false,
	} {
		_ = priv.Set(t, v)
	}
	return pub, priv
}

func (c *conn) unique(label string, s crypto11.Signer) error {
	same, err := c.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil || len(same) <= 1 {
		return err
	}
	_ = s.Delete()
	return errLabelTaken
}
