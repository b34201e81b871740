package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// consumeRace: of the concurrent consumers of a challenge, exactly one
// wins and every other gets ErrChallengeUsed.
var consumeRace = race{
	name: "ConsumeChallengeOnce",
	setup: func(t testing.TB, st store.Store) {
		for i := range raceChallenges {
			if err := st.CreateChallenge(context.Background(), Challenge(raceChallenge(i), Device("d1"))); err != nil {
				t.Fatal(err)
			}
		}
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		var won []string
		for i := range raceChallenges {
			_, err := st.ConsumeChallenge(ctx, raceChallenge(i), T0.Add(time.Second))
			switch {
			case err == nil:
				won = append(won, raceChallenge(i))
			case !errors.Is(err, store.ErrChallengeUsed):
				return nil, err
			}
		}
		return won, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		wins := map[string]int{}
		for _, r := range reports {
			for _, id := range r {
				wins[id]++
			}
		}
		for i := range raceChallenges {
			if id := raceChallenge(i); wins[id] != 1 {
				t.Errorf("challenge %s consumed %d times, want once", id, wins[id])
			}
		}
	},
}

const raceChallenges = 5

func raceChallenge(i int) string { return fmt.Sprintf("race-%d", i) }

// bindRace: writers rebind one EK to AKs of their own, and bind EKs of
// their own to one shared AK. Every rebind returns the AK it replaced:
// the rebinds form one chain from the first AK to the last, no AK
// replaced twice; and exactly one EK gets the shared AK.
var bindRace = race{
	name: "BindDeviceChain",
	setup: func(t testing.TB, st store.Store) {
		if _, err := st.BindDevice(context.Background(), raceAK("first"), T0); err != nil {
			t.Fatal(err)
		}
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		var lines []string
		for i := range 3 {
			d := raceAK(fmt.Sprintf("w%d-%d", w, i))
			prev, err := st.BindDevice(ctx, d, T0)
			if err != nil {
				return nil, err
			}
			lines = append(lines, "rebind "+prev+" "+d.AKHash)
		}
		shared := Device(fmt.Sprintf("own-%d", w))
		shared.AKHash, shared.AKPublic = HexHash("ak-shared"), []byte("ak-pub-shared")
		switch _, err := st.BindDevice(ctx, shared, T0); {
		case err == nil:
			lines = append(lines, "shared "+shared.EKHash)
		case !errors.Is(err, store.ErrConflict):
			return nil, err
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		next := map[string]string{} // AK → the AK that replaced it
		var sharedBy []string
		rebinds := 0
		for _, r := range reports {
			for _, line := range r {
				f := strings.Fields(line)
				if f[0] == "shared" {
					sharedBy = append(sharedBy, f[1])
					continue
				}
				rebinds++
				if len(f) != 3 {
					t.Fatalf("a rebind reported no previous AK: %q", line)
				}
				if other, dup := next[f[1]]; dup {
					t.Fatalf("AK %s reported replaced twice, by %s and %s", f[1], other, f[2])
				}
				next[f[1]] = f[2]
			}
		}
		ak, steps := raceAK("first").AKHash, 0
		for ; next[ak] != ""; steps++ {
			ak = next[ak]
		}
		d, err := st.Device(context.Background(), raceAK("first").EKHash)
		if err != nil || steps != rebinds || d.AKHash != ak {
			t.Fatalf("the rebinds form a chain of %d of %d, ending at %s; the device is bound to %s (%v)", steps, rebinds, ak, d.AKHash, err)
		}
		if len(sharedBy) != 1 {
			t.Fatalf("the shared AK was bound to %d EKs, want 1", len(sharedBy))
		}
		if d, err := st.Device(context.Background(), sharedBy[0]); err != nil || d.AKHash != HexHash("ak-shared") {
			t.Fatalf("the EK that got the shared AK: %+v, %v", d, err)
		}
	},
}

// raceAK is the race's EK bound to the AK named ak.
func raceAK(ak string) store.Device {
	d := Device("race")
	d.AKHash, d.AKPublic = HexHash("ak-"+ak), []byte("ak-pub-"+ak)
	return d
}

// revokeCertificateRace: every writer revokes every certificate of a
// device; each is revoked by exactly one, whose reason is stored.
var revokeCertificateRace = race{
	name: "RevokeCertificateOnce",
	setup: func(t testing.TB, st store.Store) {
		Enroll(t, st, "race", raceCertificates)
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		var won []string
		for i := range raceCertificates {
			_, err := st.RevokeCertificate(ctx, Serial("race", i), fmt.Sprintf("w%d", w), T0.Add(time.Duration(w)*time.Second))
			switch {
			case err == nil:
				won = append(won, Serial("race", i)+" "+fmt.Sprintf("w%d", w))
			case !errors.Is(err, store.ErrConflict):
				return nil, err
			}
		}
		return won, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		winner := map[string]string{}
		for _, r := range reports {
			for _, line := range r {
				serial, reason, _ := strings.Cut(line, " ")
				if other, dup := winner[serial]; dup {
					t.Fatalf("certificate %s revoked by %s and %s", serial, other, reason)
				}
				winner[serial] = reason
			}
		}
		for i := range raceCertificates {
			c, err := st.Certificate(context.Background(), Serial("race", i))
			if err != nil || c.RevokedAt == nil || c.RevocationReason != winner[c.Serial] {
				t.Fatalf("certificate %s: revoked %v for %q (%v); the one revocation that succeeded was %q", c.Serial, c.RevokedAt, c.RevocationReason, err, winner[c.Serial])
			}
		}
	},
}

const raceCertificates = 4

// disableRace: writers issue certificates to a device, raceOps each, while
// writer 0, once every other one has issued one, disables it. Every
// certificate an insert stored is revoked, and an insert refused was
// refused for the disabled device and stored nothing.
var disableRace = race{
	name: "DisableDeviceRevokesAll",
	setup: func(t testing.TB, st store.Store) {
		Enroll(t, st, "race", 0)
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		d, e := Device("race"), Evidence("race", Device("race"))
		if w == 0 {
			err := waitFor(ctx, "a certificate from every writer", func() (bool, error) {
				cs, err := st.DeviceCertificates(ctx, d.EKHash)
				return len(cs) >= n-1, err
			})
			if err != nil {
				return nil, err
			}
			revoked, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceDisabled, T0)
			return []string{"disabled " + strconv.Itoa(len(revoked.Certificates))}, err
		}
		var lines []string
		for i := range raceOps {
			serial := fmt.Sprintf("w%d-%d", w, i)
			switch err := st.InsertCertificate(ctx, Certificate(serial, d, e)); {
			case err == nil:
				lines = append(lines, "stored "+serial)
			case errors.Is(err, store.ErrDeviceDisabled):
				return append(lines, "refused "+serial), nil
			default:
				return nil, err
			}
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		ctx := context.Background()
		certs, err := st.DeviceCertificates(ctx, Device("race").EKHash)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, c := range certs {
			stored[c.Serial] = true
			if c.RevokedAt == nil || c.RevocationReason != store.ReasonDeviceDisabled {
				t.Errorf("certificate %s of the disabled device: revoked %v for %q", c.Serial, c.RevokedAt, c.RevocationReason)
			}
		}
		for _, r := range reports[1:] {
			for _, line := range r {
				outcome, serial, _ := strings.Cut(line, " ")
				if stored[serial] != (outcome == "stored") {
					t.Errorf("certificate %s was %s, stored: %v", serial, outcome, stored[serial])
				}
			}
		}
		t.Logf("%d certificates stored, then revoked by the disable; %d inserts refused", len(certs), countPrefix(reports[1:], "refused"))
		if want := "disabled " + strconv.Itoa(len(certs)); len(reports[0]) != 1 || reports[0][0] != want {
			t.Errorf("writer 0 reports %q, want %q: every certificate revoked by the disable", reports[0], want)
		}
	},
}

// raceOps is how many writes a writer makes while another one acts. The
// writes are bounded, and so is the wait for them: a database may let a
// writer wait for a lock only so long (SQLite's busy_timeout).
const raceOps = 20

// insertUnderRevokedRace: writers exchange tokens, each from its own last
// one, starting from one root, raceOps each or until they get ErrRevoked;
// writer 0, once
// every other one has one, revokes the root. Every token stored is
// revoked by that one revocation, with one event each, and a refused
// insert stored nothing.
var insertUnderRevokedRace = race{
	name: "InsertTokenUnderRevoked",
	setup: func(t testing.TB, st store.Store) {
		InsertTokens(t, st, Token("root", ""))
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		if w == 0 {
			err := waitFor(ctx, "a token from every writer", func() (bool, error) {
				ts, err := st.TokenChildren(ctx, "root")
				return len(ts) >= n-1, err
			})
			if err != nil {
				return nil, err
			}
			return st.RevokeToken(ctx, "root", "logout", T0)
		}
		parent := "root"
		var lines []string
		for i := range raceOps {
			jti := fmt.Sprintf("w%d-%d", w, i)
			switch err := InsertAudited(ctx, st, Token(jti, parent)); {
			case err == nil:
				lines, parent = append(lines, "stored "+jti), jti
			case errors.Is(err, store.ErrRevoked):
				return append(lines, "refused "+jti), nil
			default:
				return nil, err
			}
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		ctx := context.Background()
		revoked := map[string]bool{}
		for _, jti := range reports[0] {
			revoked[jti] = true
		}
		for _, r := range reports[1:] {
			for _, line := range r {
				outcome, jti, _ := strings.Cut(line, " ")
				tok, err := st.Token(ctx, jti)
				switch {
				case outcome == "refused" && !errors.Is(err, store.ErrNotFound):
					t.Errorf("refused token %s: %v, want ErrNotFound", jti, err)
				case outcome == "stored" && (err != nil || tok.RevokedAt == nil || !revoked[jti]):
					t.Errorf("token %s exchanged under the root: revoked %v (%v); returned by the revocation: %v", jti, tok.RevokedAt, err, revoked[jti])
				}
			}
		}
		t.Logf("%d tokens revoked; %d writers refused", len(revoked), countPrefix(reports[1:], "refused"))
		subtree := descendants(t, st, "root")
		if len(subtree) != len(revoked) {
			t.Errorf("the root has %d descendants; the revocation revoked %d tokens", len(subtree), len(revoked))
		}
		events, err := st.RevocationEvents(ctx, 0, 0)
		if err != nil || len(events) != len(revoked) {
			t.Fatalf("%d revocation events, %v; want %d", len(events), err, len(revoked))
		}
		for i, e := range events {
			if e.Seq != uint64(i+1) || e.JTI != reports[0][i] {
				t.Fatalf("event %d is %d %s, want %d %s", i, e.Seq, e.JTI, i+1, reports[0][i])
			}
		}
	},
}

// descendants returns the jtis of jti and every token exchanged from it.
func descendants(t testing.TB, st store.Store, jti string) []string {
	t.Helper()
	out := []string{jti}
	for i := 0; i < len(out); i++ {
		children, err := st.TokenChildren(context.Background(), out[i])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range children {
			out = append(out, c.JTI)
		}
	}
	return out
}

// cascadeRace: writers revoke overlapping subtrees of one tree at once.
// Every token is revoked by exactly one call, has exactly one event, the
// events are numbered 1, 2, 3…, and each call's events are in a row, in
// the order it returned them.
var cascadeRace = race{
	name: "RevokeTokenCascadeOnce",
	setup: func(t testing.TB, st store.Store) {
		fanTree(t, st, "n", 3, 3)
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		jtis := fanTreeJTIs("n", 3, 3)
		var calls []string
		for i, target := range []string{jtis[(w*7)%len(jtis)], jtis[(w*11+5)%len(jtis)]} {
			reason := fmt.Sprintf("w%d-%d", w, i)
			got, err := st.RevokeToken(ctx, target, reason, T0)
			if err != nil {
				return nil, err
			}
			calls = append(calls, reason+" "+strings.Join(got, " "))
		}
		return calls, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		jtis := fanTreeJTIs("n", 3, 3)
		revokedBy := map[string]string{}
		var calls [][]string
		for _, r := range reports {
			for _, line := range r {
				f := strings.Fields(line)
				for _, jti := range f[1:] {
					if other, dup := revokedBy[jti]; dup {
						t.Fatalf("%s revoked by calls %s and %s", jti, other, f[0])
					}
					revokedBy[jti] = f[0]
				}
				calls = append(calls, f[1:])
			}
		}
		reasons, events := revocationState(t, st, jtis...)
		if len(revokedBy) != len(jtis) || len(reasons) != len(jtis) || len(events) != len(jtis) {
			t.Fatalf("%d tokens: %d returned revoked, %d revoked, %d events", len(jtis), len(revokedBy), len(reasons), len(events))
		}
		for i, e := range events {
			if e.Seq != uint64(i+1) || e.Reason != revokedBy[e.JTI] || reasons[e.JTI] != e.Reason {
				t.Fatalf("event %d = %+v; want seq %d for call %s, token reason %q", i, e, i+1, revokedBy[e.JTI], reasons[e.JTI])
			}
		}
		for _, got := range calls {
			if len(got) == 0 {
				continue
			}
			i := slices.IndexFunc(events, func(e store.RevocationEvent) bool { return e.JTI == got[0] })
			for j, jti := range got {
				if i+j >= len(events) || events[i+j].JTI != jti {
					t.Fatalf("the events of the call that revoked %q are not in a row", got)
				}
			}
		}
	},
}

// auditRace: writers append entries, each in a Tx of its own, and undo
// some appends; every entry gets an index of its own, the log is dense,
// and each index holds its entry, found by its key.
var auditRace = race{
	name:  "AuditAppendDense",
	setup: func(testing.TB, store.Store) {},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		errUndo := errors.New("undo")
		var lines []string
		for i := range 8 {
			name := fmt.Sprintf("w%d-%d", w, i)
			var idx uint64
			err := st.Tx(ctx, func(tx store.Tx) (err error) {
				if idx, err = tx.AppendAudit(ctx, Entry(name, "jti:"+name)); err != nil {
					return err
				}
				if i%3 == 2 {
					return errUndo
				}
				return nil
			})
			switch {
			case errors.Is(err, errUndo):
			case err != nil:
				return nil, fmt.Errorf("%s: %w", name, err)
			default:
				lines = append(lines, fmt.Sprintf("%s %d", name, idx))
			}
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		ctx := context.Background()
		byIndex := map[uint64]string{}
		for _, r := range reports {
			for _, line := range r {
				name, s, _ := strings.Cut(line, " ")
				idx, _ := strconv.ParseUint(s, 10, 64)
				if other, dup := byIndex[idx]; dup {
					t.Fatalf("index %d given to %s and %s", idx, other, name)
				}
				byIndex[idx] = name
			}
		}
		size, err := st.AuditSize(ctx)
		if err != nil || size != uint64(len(byIndex)) {
			t.Fatalf("AuditSize = %d, %v; want %d", size, err, len(byIndex))
		}
		data, err := st.AuditEntries(ctx, 0, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range slices.Sorted(maps.Keys(byIndex)) {
			name := byIndex[idx]
			if idx >= size || string(data[idx]) != string(Entry(name).Data) {
				t.Fatalf("entry %d is not %s's", idx, name)
			}
			if k, err := st.AuditIndex(ctx, "jti:"+name); err != nil || k != idx {
				t.Fatalf("AuditIndex(jti:%s) = %d, %v; want %d", name, k, err, idx)
			}
		}
	},
}

// firstSeenRace: of concurrent first sightings of a key, every caller
// gets the same, first recorded time, one of theirs.
var firstSeenRace = race{
	name:  "FirstSeenOnce",
	setup: func(testing.TB, store.Store) {},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		seen, err := st.FirstSeen(ctx, "kid-1", T0.Add(time.Duration(w)*time.Second))
		return []string{seen.Format(time.RFC3339Nano)}, err
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		first := reports[0][0]
		at, err := time.Parse(time.RFC3339Nano, first)
		if err != nil || at.Before(T0) || !at.Before(T0.Add(time.Duration(len(reports))*time.Second)) {
			t.Fatalf("first seen %s (%v), want one of the callers' times", first, err)
		}
		for w, r := range reports {
			if r[0] != first {
				t.Fatalf("writer %d saw %s, writer 0 %s", w, r[0], first)
			}
		}
	},
}

// countPrefix counts the report lines that start with prefix.
func countPrefix(reports [][]string, prefix string) int {
	n := 0
	for _, r := range reports {
		for _, line := range r {
			if strings.HasPrefix(line, prefix) {
				n++
			}
		}
	}
	return n
}
