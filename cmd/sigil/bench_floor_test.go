package main_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goattest "github.com/google/go-attestation/attest"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
)

// The renewal floor's TLS client runs in a child process, this test binary
// started again with these variables set (see init), pinned to the load's
// CPU, so that only the server side of each handshake is counted.
const (
	floorClientAddr = "SIGIL_BENCH_FLOOR_CLIENT" // the floor's listener
	floorClientDir  = "SIGIL_BENCH_FLOOR_DIR"    // client.pem, client.key, ca.pem
	floorClientN    = "SIGIL_BENCH_FLOOR_N"      // handshakes to make
)

// floorClientConcurrency is how many handshakes the child keeps in flight.
const floorClientConcurrency = 4

func init() {
	if os.Getenv(floorClientAddr) == "" {
		return
	}
	if err := floorClient(os.Getenv(floorClientAddr), os.Getenv(floorClientDir), os.Getenv(floorClientN)); err != nil {
		fmt.Fprintln(os.Stderr, "renewal floor client:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// floorClient makes n mTLS handshakes with the server at addr, as a
// workload renewing does (Go's default key exchange, a P-256 client
// certificate), each on a new connection, and reads until the server
// closes it.
func floorClient(addr, dir, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("handshake count %q: %w", count, err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key"))
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(raw) {
		return errors.New("ca.pem: no certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"}
	var left atomic.Int64
	left.Store(int64(n))
	errs := make(chan error, floorClientConcurrency)
	for range floorClientConcurrency {
		go func() {
			for left.Add(-1) >= 0 {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = io.Copy(io.Discard, c)
				c.Close()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range floorClientConcurrency {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// floorParts are a renewal floor's CPU per operation, in µs; classicTLS is
// the handshake with X25519 alone instead of Go's default hybrid
// X25519MLKEM768 (which the floor, as sigild, uses): the post-quantum
// key exchange's own cost is tls - classicTLS.
type floorParts struct {
	tls, attest, sign, classicTLS float64
}

func (f floorParts) total() float64 { return f.tls + f.attest + f.sign }

// renewalFloor measures the work no implementation of the attested renewal
// can skip, in this process pinned to sigild's CPU with GOMAXPROCS 1 and
// exchangeConcurrency goroutines, as hsmSignCPU: the server side of one
// TLS 1.3 handshake with the server's key in the HSM and a P-256 client
// certificate verified up to the issuing CA (sigild's configuration; the
// client in a child process on the other CPU); the verification of a real
// renewal's quote by the pinned AK and of its CSR's signature; one
// certificate signed by the issuing CA's HSM key (x509.CreateCertificate,
// which checks the signature it made). A renewal certifies no new key: the
// key certification is enrollment's.
func renewalFloor(b *testing.B, s *stack, ev *attest.Renewal) floorParts {
	b.Helper()
	ctx := context.Background()
	h := openStackHSM(b, s)
	defer h.Close()
	issuerKey, err := h.Find(ctx, "sigil-issuer")
	if err != nil {
		b.Fatal(err)
	}
	tlsKey, err := h.Find(ctx, "sigil-tls")
	if err != nil {
		b.Fatal(err)
	}
	issuer, err := h.Certificate(ctx, "sigil-issuer")
	if err != nil {
		b.Fatal(err)
	}
	tlsCert, err := h.Certificate(ctx, "sigil-tls")
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	self := os.Getpid()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pin(b, self, serverCPU)

	var parts floorParts
	handshake := floorHandshakes(b, issuer, issuerKey, tlsCert, tlsKey, n, nil)
	cpu := cpuTime(b, self)
	drive(b, exchangeConcurrency, n, 0, handshake)
	parts.tls = us(cpuTime(b, self)-cpu) / n

	handshake = floorHandshakes(b, issuer, issuerKey, tlsCert, tlsKey, n, []tls.CurveID{tls.X25519})
	cpu = cpuTime(b, self)
	drive(b, exchangeConcurrency, n, 0, handshake)
	parts.classicTLS = us(cpuTime(b, self)-cpu) / n

	verify := floorVerify(b, ev)
	cpu = cpuTime(b, self)
	drive(b, exchangeConcurrency, n, 0, verify)
	parts.attest = us(cpuTime(b, self)-cpu) / n

	sign := floorSign(b, issuer, issuerKey, ev)
	cpu = cpuTime(b, self)
	drive(b, exchangeConcurrency, n, 0, sign)
	parts.sign = us(cpuTime(b, self)-cpu) / n
	return parts
}

// stackHSMEnv is the environment in which a process reaches the stack's
// HSM as sigild does: SoftHSM's configuration, and p11-kit server's address
// when the stack shares the HSM through it.
func stackHSMEnv(s *stack) []string {
	env := []string{"SOFTHSM2_CONF=" + s.env["SOFTHSM2_CONF"]}
	if a := s.env["P11_KIT_SERVER_ADDRESS"]; a != "" {
		env = append(env, "P11_KIT_SERVER_ADDRESS="+a)
	}
	return env
}

// openStackHSM opens the stack's HSM in this process, as sigild reaches it
// (stackHSMEnv); the caller closes it.
func openStackHSM(b *testing.B, s *stack) *hsm.HSM {
	b.Helper()
	for _, kv := range stackHSMEnv(s) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	h, err := hsm.Open(context.Background(), s.env["SIGIL_HSM_URI"])
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// floorHandshakes starts the child client for n handshakes and returns
// the server side of one: accept a connection, handshake, close. Non-nil
// curves restrict the server's key exchange (the client offers Go's
// default, the hybrid and X25519).
func floorHandshakes(b *testing.B, issuer *x509.Certificate, issuerKey crypto.Signer, tlsCert *x509.Certificate, tlsKey crypto.Signer, n int, curves []tls.CurveID) func() error {
	b.Helper()
	dir := b.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := url.Parse("spiffe://sigil.test/workload/floor")
	leaf, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"sigil"}},
		URIs: []*url.URL{id}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	for name, blocks := range map[string][]*pem.Block{
		"client.pem": {{Type: "CERTIFICATE", Bytes: leaf}, {Type: "CERTIFICATE", Bytes: issuer.Raw}},
		"client.key": {{Type: "EC PRIVATE KEY", Bytes: keyDER}},
		"ca.pem":     {{Type: "CERTIFICATE", Bytes: issuer.Raw}},
	} {
		var out []byte
		for _, blk := range blocks {
			out = append(out, pem.EncodeToMemory(blk)...)
		}
		if err := os.WriteFile(filepath.Join(dir, name), out, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	// sigild's server configuration (internal/daemon serverTLS).
	anchors := x509.NewCertPool()
	anchors.AddCert(issuer)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{tlsCert.Raw, issuer.Raw}, PrivateKey: tlsKey, Leaf: tlsCert}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    anchors,
		// nil: Go's default, X25519MLKEM768 first, as sigild.
		CurvePreferences: curves,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn)
	go func() {
		defer close(conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floorClientAddr+"="+ln.Addr().String(), floorClientDir+"="+dir, floorClientN+"="+strconv.Itoa(n))
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pin(b, cmd.Process.Pid, clientCPU)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	b.Cleanup(func() {
		ln.Close() // a client still dialing fails, and ends
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("renewal floor client: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			b.Errorf("renewal floor client did not end; killed\n%s", stderr.String())
		}
	})
	return func() error {
		var c net.Conn
		select {
		case c = <-conns:
		case err := <-done:
			done <- err
			return fmt.Errorf("renewal floor client ended early: %v\n%s", err, stderr.String())
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("floor handshake: %w", err)
		}
		if len(tc.ConnectionState().PeerCertificates) == 0 {
			return errors.New("floor handshake: no client certificate")
		}
		return nil
	}
}

// floorVerify returns the verification of ev's quotes by its pinned AK
// over its nonce, and of its CSR's signature.
func floorVerify(b *testing.B, ev *attest.Renewal) func() error {
	b.Helper()
	ak, err := goattest.ParseAKPublic(ev.AKPublic)
	if err != nil {
		b.Fatal(err)
	}
	quotes := make([]goattest.Quote, len(ev.Platform.Quotes))
	for i, q := range ev.Platform.Quotes {
		quotes[i] = goattest.Quote{Quote: q.Quote, Signature: q.Signature}
	}
	pcrs := make([]goattest.PCR, len(ev.Platform.PCRs))
	for i, p := range ev.Platform.PCRs {
		alg := crypto.SHA256
		if p.Alg == "sha1" {
			alg = crypto.SHA1
		}
		pcrs[i] = goattest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: alg}
	}
	csr, err := x509.ParseCertificateRequest(ev.CSR)
	if err != nil {
		b.Fatal(err)
	}
	return func() error {
		if err := ak.VerifyAll(quotes, pcrs, ev.Nonce); err != nil {
			return fmt.Errorf("floor quote: %w", err)
		}
		return csr.CheckSignature()
	}
}

// floorSign returns the issuance of one certificate for ev's CSR's key by
// the issuing CA's HSM key, with the fields sigil's certificates carry.
func floorSign(b *testing.B, issuer *x509.Certificate, key crypto.Signer, ev *attest.Renewal) func() error {
	b.Helper()
	csr, err := x509.ParseCertificateRequest(ev.CSR)
	if err != nil {
		b.Fatal(err)
	}
	id, err := url.Parse(ev.Identity)
	if err != nil {
		b.Fatal(err)
	}
	evidence := pkix.Extension{Id: []int{1, 3, 6, 1, 4, 1, 99999, 1}, Value: make([]byte, 80)}
	var serial atomic.Int64
	return func() error {
		now := time.Now()
		_, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{Organization: []string{"sigil"}},
			URIs: []*url.URL{id}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			ExtraExtensions: []pkix.Extension{evidence},
		}, issuer, csr.PublicKey, key)
		return err
	}
}

// loggedRenewal is the evidence of the last renewal in the stack's audit
// log (exported through DIR/sigild.yaml) that its checkpoint covers.
func loggedRenewal(b *testing.B, s *stack) *attest.Renewal {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "export")
	if out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "audit", "export", dir); code != 0 {
		b.Fatalf("export: %s", out)
	}
	src := audit.DirSource(dir)
	note, err := src.Checkpoint(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil {
		b.Fatal(err)
	}
	data, err := src.Entries(context.Background(), 0, cp.Size)
	if err != nil {
		b.Fatal(err)
	}
	for i := len(data) - 1; i >= 0; i-- {
		e, err := audit.Decode(data[i])
		if err != nil {
			b.Fatal(err)
		}
		if e.Kind != audit.CertificateRenewed {
			continue
		}
		p, err := e.Payload()
		if err != nil {
			b.Fatal(err)
		}
		ev, err := attest.ParseRenewal(p.(*audit.Certificate).Evidence)
		if err != nil {
			b.Fatal(err)
		}
		return ev
	}
	b.Fatalf("no %s entry among the log's %d checkpointed entries", audit.CertificateRenewed, len(data))
	return nil
}

// syncBuffer is a bytes buffer safe for a child's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
