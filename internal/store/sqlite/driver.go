package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// driverName is the database/sql name of the SQLite driver,
// github.com/mattn/go-sqlite3: SQLite's C code through cgo, which sigild
// needs anyway for PKCS#11. It replaced modernc.org/sqlite (SQLite
// translated to Go), measured in the same runs on this package's
// benchmarks: a token exchange's transaction (BenchmarkTokenTx, 64
// goroutines, group commit) took about a fifth less CPU, its reads
// (BenchmarkExchangeReads) up to half less, and the store conformance
// suite passes on both.
const driverName = "sqlite3"

// openDB opens dsn, a DSN of sqliteDSN's form: its _pragma parameters
// (modernc.org/sqlite's syntax, which operators' DSNs use) run as PRAGMA
// statements on every new connection, before any other; the rest goes to
// the driver.
func openDB(_ context.Context, dsn string) (*sql.DB, error) {
	c, err := newConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// connector opens connections of one DSN and runs its pragmas on each.
type connector struct {
	drv     *sqlite3.SQLiteDriver
	dsn     string
	pragmas []string
}

func newConnector(dsn string) (*connector, error) {
	name, query, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite DSN query: %w", err)
	}
	c := &connector{drv: &sqlite3.SQLiteDriver{}, pragmas: q["_pragma"]}
	q.Del("_pragma")
	c.dsn = name
	if len(q) > 0 {
		c.dsn += "?" + q.Encode()
	}
	return c, nil
}

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc := conn.(*sqlite3.SQLiteConn)
	for _, p := range c.pragmas {
		if _, err := sc.Exec("PRAGMA "+p, nil); err != nil {
			sc.Close()
			return nil, fmt.Errorf("store: sqlite pragma %s: %w", pragmaName(p), err)
		}
	}
	return conn, nil
}

func (c *connector) Driver() driver.Driver { return c.drv }

// constraint tells which constraint err broke.
func constraint(err error) constraintKind {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return notConstraint
	}
	switch se.ExtendedCode {
	case sqlite3.ErrConstraintPrimaryKey, sqlite3.ErrConstraintUnique:
		return uniqueConstraint
	case sqlite3.ErrConstraintForeignKey:
		return foreignKeyConstraint
	}
	return notConstraint
}
