package store

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// A Migration is one schema change of a backend, from a file named
// NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads the migrations in dir of fsys, which must be
// numbered 1, 2, 3… without gaps.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql")) // sorted
	if err != nil {
		return nil, err
	}
	ms := make([]Migration, 0, len(files))
	for i, f := range files {
		num, name, _ := strings.Cut(strings.TrimSuffix(path.Base(f), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("migration %s: want number %04d", f, i+1)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	return ms, nil
}

// CheckApplied makes sure the applied migrations, by name, are a prefix
// of ms.
func CheckApplied(applied []string, ms []Migration) error {
	if len(applied) > len(ms) {
		return fmt.Errorf("schema version %d is newer than this build's %d", len(applied), len(ms))
	}
	for i, name := range applied {
		if name != ms[i].Name {
			return fmt.Errorf("schema migration %04d is %q in the database but %q in this build", i+1, name, ms[i].Name)
		}
	}
	return nil
}
