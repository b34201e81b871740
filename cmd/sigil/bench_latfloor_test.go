package main_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

// The latency floor is half-load-p99-ms's baseline in the same run: the
// p99 of a server that does only what no token exchange can skip, driven
// as BenchmarkExchange drives sigild at half load (the same rate, 16
// goroutines, two HTTP/2 connections over TLS 1.3), pinned to sigild's CPU
// with GOMAXPROCS 1. Per request it reads the form, signs once with the
// HSM token key and records the token durably before it answers: one row
// in SQLite (WAL, synchronous=FULL, on sigild's disk), the rows of
// requests that wait together committed together. It is this test binary
// started again with latencyFloorDir set (see init), so that only it runs
// on that CPU.
const latencyFloorDir = "SIGIL_BENCH_LATENCY_FLOOR" // the server's directory: addr, cert.pem, floor.db

func init() {
	dir := os.Getenv(latencyFloorDir)
	if dir == "" {
		return
	}
	if err := latencyFloorServer(dir); err != nil {
		fmt.Fprintln(os.Stderr, "latency floor server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// floorRecord is one token to record; done says when it is durable.
type floorRecord struct {
	jti, token string
	done       chan error
}

// latencyFloorServer serves the floor until it is killed. It writes its
// certificate to dir/cert.pem, then its address to dir/addr.
func latencyFloorServer(dir string) error {
	ctx := context.Background()
	h, err := hsm.Open(ctx, os.Getenv("SIGIL_HSM_URI"))
	if err != nil {
		return err
	}
	key, err := h.Find(ctx, "sigil-token")
	if err != nil {
		return err
	}
	db, err := openDurableSQLite(filepath.Join(dir, "floor.db"), `CREATE TABLE tokens (jti TEXT PRIMARY KEY, token TEXT NOT NULL)`)
	if err != nil {
		return err
	}
	records := make(chan floorRecord, exchangeConcurrency)
	go commitFloorRecords(db, records)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil || r.PostForm.Get("subject_token") == "" {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		jti := rand.Text()
		digest := sha256.Sum256([]byte(jti + "." + r.PostForm.Get("subject_token")))
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		token := base64.RawURLEncoding.EncodeToString(sig)
		rec := floorRecord{jti: jti, token: token, done: make(chan error, 1)}
		records <- rec
		if err := <-rec.done; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"N_A","expires_in":300}`, token)
	})

	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "latency floor"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &tlsKey.PublicKey, tlsKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, TLSConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: tlsKey}},
	}}
	tmp := filepath.Join(dir, "addr.tmp")
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "addr")); err != nil {
		return err
	}
	return srv.ServeTLS(ln, "", "")
}

// commitFloorRecords commits, in one transaction, the records that wait
// when the last COMMIT ends.
func commitFloorRecords(db *sql.DB, in <-chan floorRecord) {
	for r := range in {
		batch := []floorRecord{r}
	gather:
		for {
			select {
			case r := <-in:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		err := func() error {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			defer tx.Rollback()
			for _, r := range batch {
				if _, err := tx.Exec(`INSERT INTO tokens (jti, token) VALUES (?, ?)`, r.jti, r.token); err != nil {
					return err
				}
			}
			return tx.Commit()
		}()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// latencyFloor starts the floor server on sigild's CPU and drives n
// requests at one per every from this process (pinned to the load's CPU),
// each with token as its subject token, as benchmarkExchange drives its
// half load.
func latencyFloor(b *testing.B, s *stack, n int, every time.Duration, token string) load {
	b.Helper()
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), latencyFloorDir+"="+dir, "GOMAXPROCS=1", "SIGIL_HSM_URI="+s.env["SIGIL_HSM_URI"])
	cmd.Env = append(cmd.Env, stackHSMEnv(s)...)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pin(b, cmd.Process.Pid, serverCPU)
	var addr []byte
	testenv.WaitForNil(b, 30*time.Second, "the latency floor server's address", func() (err error) {
		if addr, err = os.ReadFile(filepath.Join(dir, "addr")); err != nil {
			return fmt.Errorf("%w\n%s", err, stderr.String())
		}
		return nil
	})
	roots := x509.NewCertPool()
	for _, c := range readPEM(b, filepath.Join(dir, "cert.pem")) {
		roots.AddCert(c)
	}
	body := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {token}}.Encode()
	var posts []func() error
	for range 2 { // two connections, as the two workloads
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64,
		}}
		posts = append(posts, func() error {
			resp, err := c.Post("https://"+string(addr)+"/token", "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil && (resp.StatusCode != http.StatusOK || !bytes.Contains(got, []byte(`"access_token"`))) {
				err = fmt.Errorf("latency floor: %s: %s", resp.Status, got)
			}
			return err
		})
	}
	var next atomic.Uint64
	post := func() error { return posts[next.Add(1)%uint64(len(posts))]() }
	warm(b, exchangeConcurrency, 2*time.Second, post)
	return drive(b, exchangeConcurrency, n, every, post)
}
