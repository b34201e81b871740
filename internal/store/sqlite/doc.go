// Package sqlite is the SQLite backend of the store contract (package
// store): one file in WAL mode, for one sigild process (other processes,
// such as sigild's operator commands, may write the same file; they wait
// for its lock up to busy_timeout).
//
// Open returns a store.Store for a DSN ("sqlite:PATH", "file:PATH" or a
// bare path). The package is:
//
//   - sqlite.go: the two pools on one file (one writer connection, a read
//     pool of query_only connections) and the DSN's pragmas;
//   - groupcommit.go: Store.Tx, which runs the fns of concurrent calls in
//     one transaction, each in a savepoint, to share one fsync;
//     recordtoken.go: store.TokenRecorder, a token exchange's record in
//     one Tx with fewer statements;
//   - checkpoint.go: WAL checkpoints on a connection of their own, off
//     the writer's COMMITs, keeping the WAL bounded;
//   - stmtcache.go: statements prepared once per connection;
//   - notify.go: store.FeedNotifier in process: a Tx that committed
//     revocation events (alone or in a batch, once per COMMIT) has the
//     handle read the committed head and hand it to the subscribers on
//     every handle of the file;
//   - migrate.go and migrations/: the schema, numbered migrations
//     applied in one transaction at Open, with Go steps where SQL is not
//     enough;
//   - one file per domain with its SQL (challenges.go, devices.go,
//     certificates.go, evidence.go, tokens.go, revocations.go, audit.go,
//     auditnodes.go, signingkeys.go), the reader and writer over a
//     querier shared by the read pool and a Tx.
//
// SQLite runs one writer at a time, but nothing here relies on it: every
// promise the contract makes under concurrency is kept with SQL that keeps
// it with several writers (see db.go), so that the SQL carries over to the
// PostgreSQL backend. TestConformance runs the contract's suite
// (internal/store/storetest); the other tests here are white-box: pragmas,
// group commit, the statement cache, the schema's own guards and the
// migrations of existing databases.
package sqlite
