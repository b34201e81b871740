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
