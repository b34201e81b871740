package postgres

import (
	"testing"

	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestKnownExternalNotInserted: an exchange from an external token this
// store has recorded sends no INSERT of it.
func TestKnownExternalNotInserted(t *testing.T) {
	t.Parallel()
	b := storetest.Backend{New: func(t testing.TB) string { return testenv.PostgresDB(t) }, Open: Open}
	storetest.KnownExternalNotInserted(t, b, func(t *testing.T, dsn string) {
		exec(t, dsn, `CREATE FUNCTION refuse_external() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'external token inserted'; END $$;
			CREATE TRIGGER refuse_external BEFORE INSERT ON tokens
			FOR EACH ROW WHEN (NEW.kind = 'external') EXECUTE FUNCTION refuse_external()`)
	})
}
