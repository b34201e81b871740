// Package postgres is the PostgreSQL backend of the store contract
// (package store), for several sigild replicas sharing one database.
//
// Open returns a store.Store for a "postgres://…" or "postgresql://…" URL
// (any parameter pgx and pgxpool take, such as pool_max_conns). The
// package is:
//
//   - postgres.go: the connection pools (transactions, reads) and Store.Tx;
//   - db.go: the querier the reader and the writer run statements on;
//   - migrate.go and migrations/: the schema, numbered migrations applied
//     at Open in one transaction under an advisory lock, so that replicas
//     starting at once migrate once;
//   - one file per domain with its SQL (challenges.go, devices.go,
//     certificates.go, evidence.go, tokens.go, revocations.go, audit.go,
//     auditnodes.go, signingkeys.go), the reader and writer over a
//     querier: the read pool, or a transaction;
//   - notify.go: store.FeedNotifier, LISTEN on the channel RevokeToken
//     notifies in its transaction;
//   - recordtoken.go: store.TokenRecorder, the token service's write in
//     one round trip (sigil_record_token, migration 0009), the records of
//     concurrent calls committed in one transaction.
//
// It uses pgx directly, not through database/sql: LISTEN/NOTIFY needs a
// pgx connection anyway, and pgx's native types (BYTEA, BIGINT, text
// arrays for = ANY($1)), its per-connection statement cache and its error
// codes need no adapter.
//
// Plans: pgx's cached statements and plpgsql's statements are planned once
// per connection, generic after five runs, with the statistics of that
// moment; on a new database every table is a page. A statement on a table
// that grows must be one whose plan stays an index lookup at any size (an
// equality on a key, not = ANY(…) with LIMIT, which a small table turns
// into a sequential scan for the connection's life; migration 0012).
// Tables written once per statement keep few CHECK constraints: they are
// parsed and planned for every statement (the tokens table's are a
// trigger, migration 0013).
//
// Every transaction runs at READ COMMITTED. What the contract promises
// under concurrency, across processes, is kept with statements that are
// correct at that level, never by a retry: a conditional UPDATE and its
// row count (ConsumeChallenge, RevokeCertificate, the token cascade),
// rows locked FOR SHARE by inserts against the UPDATE of a revocation or
// a disable (InsertToken, InsertCertificate), FOR UPDATE on the row a
// rebind changes (BindDevice), coordinator rows updated in the
// transaction for dense numbers (audit_head for audit indices,
// token_revocation_seq for feed events), a table lock for checkpoint
// fencing (PutCheckpoint), and INSERT … ON CONFLICT DO NOTHING for first
// writers (FirstSeen, BindDevice, PutEvidence). A statement waiting for a
// row another transaction changes re-reads that row when it commits
// (READ COMMITTED's re-check), which is what each of these relies on.
//
// TestConformance runs the contract's suite (internal/store/storetest)
// against a real PostgreSQL that testenv starts.
package postgres
