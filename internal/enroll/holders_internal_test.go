package enroll

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// TestRecheckRefusesNewHolder: a device that came to hold the identity
// between the policy decision and the transaction recording the new
// certificate fails that transaction (ErrConflict): two devices racing for
// one identity cannot both pass a policy that saw neither.
func TestRecheckRefusesNewHolder(t *testing.T) {
	ctx := context.Background()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "sigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, _, certs := storetest.Enroll(t, st, "holder", 1)
	id, asker := certs[0].SPIFFEID, storetest.HexHash("ek-asker")
	held, err := otherHolders(ctx, st, id, asker, storetest.T0)
	if err != nil || len(held.others) != 1 || len(held.digests) != 1 {
		t.Fatalf("otherHolders = %+v, %v; want the holder", held, err)
	}
	recheck := func() error {
		return st.Tx(ctx, func(tx store.Tx) error { return held.recheck(ctx, tx, storetest.T0) })
	}
	if err := recheck(); err != nil {
		t.Fatalf("recheck with the holders policy saw: %v", err)
	}

	d := storetest.Device("racer")
	e := storetest.Evidence("racer", d)
	c := storetest.Certificate(storetest.Serial("racer", 0), d, e)
	c.SPIFFEID = id
	err = st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.BindDevice(ctx, d, storetest.T0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := recheck(); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("recheck after another device came to hold %s = %v, want ErrConflict", id, err)
	}
}
