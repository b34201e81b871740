// Package backend opens the store a DSN names, choosing its backend:
//
//	sqlite:/var/lib/sigil/sigil.db   SQLite file (internal/store/sqlite)
//	file:/var/lib/sigil/sigil.db     SQLite URI
//	/var/lib/sigil/sigil.db          SQLite file
//	postgres://…, postgresql://…     PostgreSQL (internal/store/postgres)
//
// It is the one package that links every backend; the contract (package
// store) links none. To add a backend: write it in a package beside
// internal/store/sqlite, run the conformance suite (internal/store/storetest)
// from its tests, then add its DSN scheme to Open here. Callers (sigild,
// its operator commands, the tests' stacks) call Open and see only
// store.Store.
package backend
