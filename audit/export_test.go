package audit_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

// export grows a log to n entries in batches of batch and exports it.
func export(t *testing.T, n, batch int) (*world, string) {
	t.Helper()
	w := newWorld(t)
	for done := 0; done < n; done += batch {
		w.grow(t, min(batch, n-done))
	}
	dir := filepath.Join(t.TempDir(), "export")
	if err := audit.WriteExport(t.Context(), w.st, dir); err != nil {
		t.Fatalf("WriteExport: %v", err)
	}
	return w, dir
}

func TestExportVerifies(t *testing.T) {
	w, dir := export(t, 2500, 700)
	for _, f := range []string{"checkpoint", "checkpoints/700", "checkpoints/2500", "entries/0.jsonl", "entries/1000.jsonl", "entries/2000.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
	rep, err := w.verify(t, audit.DirSource(dir), nil)
	if err != nil {
		t.Fatalf("Verify(export): %v\n%s", err, rep)
	}
	if rep.Size != 2500 || rep.Checkpoints != 4 {
		t.Fatalf("report %+v", rep)
	}
	// The export grows with the log, and the auditor follows it.
	w.grow(t, 10)
	if err := audit.WriteExport(t.Context(), w.st, dir); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.verify(t, audit.DirSource(dir), nil); err != nil || rep.PreviousSize != 2500 || rep.Size != 2510 {
		t.Fatalf("second Verify = %+v, %v", rep, err)
	}
}

// An export holds personal data (subjects, scopes, denial reasons): its
// directories and files are its owner's only, whatever the umask.
func TestExportNotWorldReadable(t *testing.T) {
	_, dir := export(t, 1200, 600)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExportEntriesRange(t *testing.T) {
	w, dir := export(t, 2100, 2100)
	src := audit.DirSource(dir)
	for _, r := range [][2]uint64{{0, 0}, {0, 1}, {999, 1001}, {1000, 2000}, {1500, 2100}, {2099, 2200}, {2100, 2200}, {5000, 6000}} {
		got, err := src.Entries(t.Context(), r[0], r[1])
		if err != nil {
			t.Fatalf("Entries%v: %v", r, err)
		}
		want, _ := w.st.Entries(t.Context(), r[0], r[1])
		if len(got) != len(want) {
			t.Fatalf("Entries%v: %d entries, want %d", r, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("Entries%v: entry %d differs", r, r[0]+uint64(i))
			}
		}
	}
}

func TestExportLayoutErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   error
	}{
		{"a line deleted from a full entries file", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "entries", "0.jsonl"), func(b []byte) []byte {
				i := bytes.IndexByte(b, '\n')
				return b[i+1:]
			})
		}, audit.ErrMalformedExport},
		{"an entries file missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "entries", "0.jsonl")); err != nil {
				t.Fatal(err)
			}
		}, audit.ErrMalformedExport},
		{"trailing garbage after the last entry", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "entries", "1000.jsonl"), func(b []byte) []byte { return append(b, "garbage"...) })
		}, audit.ErrMalformedExport},
		{"a stray file among the checkpoints", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "checkpoints", "latest"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, audit.ErrMalformedExport},
		{"no checkpoint", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "checkpoint")); err != nil {
				t.Fatal(err)
			}
		}, audit.ErrMalformedExport},
		{"trailing garbage after the checkpoint", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "checkpoint"), func(b []byte) []byte { return append(b, "garbage"...) })
		}, audit.ErrMalformedCheckpoint},
		{"an entry edited", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "entries", "1000.jsonl"), oneByte)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, dir := export(t, 1200, 400)
			tc.tamper(t, dir)
			_, err := w.verify(t, audit.DirSource(dir), nil)
			if tc.want == nil {
				var m *audit.MismatchError
				if !errors.As(err, &m) || m.From != 800 || m.Size != 1200 {
					t.Fatalf("Verify = %v, want a MismatchError for entries 800..1199", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestExportEntriesBeyondCheckpoint: entries an export holds beyond its
// checkpoint, well-formed ones copied from the log itself, fail
// verification naming how many and where they start, wherever they sit:
// appended to the last entries file or in a file further on (one right
// after a file that is not full breaks the layout: ErrMalformedExport). Nothing signed covers them; an auditor must not take them for
// logged entries.
func TestExportEntriesBeyondCheckpoint(t *testing.T) {
	firstLine := func(t *testing.T, dir string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "entries", "0.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return b[:bytes.IndexByte(b, '\n')+1]
	}
	for _, tc := range []struct {
		name  string
		file  string // under entries/
		lines int
		want  uint64
	}{
		{"appended to the last entries file", "1000.jsonl", 1, 1},
		{"several appended to the last entries file", "1000.jsonl", 5, 5},
		{"in an entries file further on", "9000.jsonl", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, dir := export(t, 1200, 400)
			line := firstLine(t, dir)
			f, err := os.OpenFile(filepath.Join(dir, "entries", tc.file), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(bytes.Repeat(line, tc.lines))
			f.Close()
			rep, err := w.verify(t, audit.DirSource(dir), nil)
			var ue *audit.UnsignedError
			if !errors.As(err, &ue) || ue.Size != 1200 || ue.Count != tc.want {
				t.Fatalf("Verify = %v, want an UnsignedError for %d entries from 1200", err, tc.want)
			}
			if rep.OK() || rep.FirstBad != 1200 || rep.StateUpdated {
				t.Fatalf("report %+v: want a failure at entry 1200 and the state left alone", rep)
			}
		})
	}
	for _, name := range []string{"1200.jsonl", "2000.jsonl", "extra.jsonl"} {
		t.Run("entries in "+name, func(t *testing.T) {
			w, dir := export(t, 1200, 400)
			if err := os.WriteFile(filepath.Join(dir, "entries", name), firstLine(t, dir), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := w.verify(t, audit.DirSource(dir), nil); !errors.Is(err, audit.ErrMalformedExport) {
				t.Fatalf("Verify = %v, want ErrMalformedExport", err)
			}
		})
	}
}

func TestWriteExportRefuses(t *testing.T) {
	st := newMemStorage()
	if err := audit.WriteExport(t.Context(), st, t.TempDir()); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("WriteExport of a log without checkpoint = %v, want ErrNoCheckpoint", err)
	}
	w := newWorld(t)
	w.st.append([]byte("{\n}"))
	w.integrate(t)
	if err := audit.WriteExport(t.Context(), w.st, t.TempDir()); err == nil {
		t.Fatal("WriteExport wrote an entry holding a newline")
	}
}

func editFile(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}
