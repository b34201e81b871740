package testenv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// EventType is a TCG PC Client Platform Firmware Profile event type.
type EventType uint32

// Event types used by the synthetic measured boot.
const (
	EvPostCode                   EventType = 0x00000001
	EvNoAction                   EventType = 0x00000003
	EvSeparator                  EventType = 0x00000004
	EvSCRTMVersion               EventType = 0x00000008
	EvIPL                        EventType = 0x0000000d
	EvEFIVariableDriverConfig    EventType = 0x80000001
	EvEFIBootServicesApplication EventType = 0x80000003
	EvEFIAction                  EventType = 0x80000007
	EvEFIVariableAuthority       EventType = 0x800000e0
)

// Event is one measurement. The log records Data; the PCR is extended with
// the digest of Measured, or of Data when Measured is nil (an image's digest
// covers the image, not the load event that names it).
type Event struct {
	PCR      int
	Type     EventType
	Data     []byte
	Measured []byte
}

func (e Event) measured() []byte {
	if e.Measured != nil {
		return e.Measured
	}
	return e.Data
}

// MeasuredBoot is a synthetic boot: the events firmware and boot loader would
// measure. Extend puts their digests into a TPM's SHA-1 and SHA-256 PCR banks
// with TPM2_PCR_Extend; Log writes the matching TCG crypto-agile event log, so
// go-attestation's ParseEventLog(log).Verify(pcrs) replays to the quoted PCRs.
type MeasuredBoot struct {
	Events []Event
}

// banks are the PCR banks swtpm instances here have and the log describes.
var banks = []struct {
	alg  tpm2.TPMAlgID
	hash crypto.Hash
}{
	{tpm2.TPMAlgSHA1, crypto.SHA1},
	{tpm2.TPMAlgSHA256, crypto.SHA256},
}

// Run extends the TPM at addr ("swtpm:HOST:PORT") with m and returns the event
// log. Run it once per TPM start-up: PCRs only reset when swtpm restarts.
func (m MeasuredBoot) Run(ctx context.Context, addr string) ([]byte, error) {
	if err := m.Extend(ctx, addr); err != nil {
		return nil, err
	}
	return m.Log(), nil
}

// Boot runs m on the TPM and writes the event log to tp.EventLogPath.
func (tp *TPM) Boot(ctx context.Context, m MeasuredBoot) ([]byte, error) {
	log, err := m.Run(ctx, tp.Addr)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(tp.EventLogPath, log, 0o644); err != nil {
		return nil, fmt.Errorf("measured boot: %w", err)
	}
	return log, nil
}

// Boot runs m on the test's TPM, writes tp.EventLogPath and returns the log.
func Boot(t testing.TB, tp *TPM, m MeasuredBoot) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log, err := tp.Boot(ctx, m)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return log
}

// With returns a copy of m with event i replaced: a log built from it no longer
// matches a TPM extended with m, as with a tampered event log.
func (m MeasuredBoot) With(i int, e Event) MeasuredBoot {
	events := append([]Event(nil), m.Events...)
	events[i] = e
	return MeasuredBoot{Events: events}
}

// Find returns the index of the first event of type typ on pcr, or -1.
func (m MeasuredBoot) Find(pcr int, typ EventType) int {
	for i, e := range m.Events {
		if e.PCR == pcr && e.Type == typ {
			return i
		}
	}
	return -1
}

// PCRs returns the PCR values m leaves in a freshly started TPM's bank of hash
// h (crypto.SHA1 or crypto.SHA256), for the PCRs it extends: the golden values
// a policy can pin.
func (m MeasuredBoot) PCRs(h crypto.Hash) map[int][]byte {
	out := map[int][]byte{}
	for _, e := range m.Events {
		cur, ok := out[e.PCR]
		if !ok {
			cur = make([]byte, h.Size())
		}
		hh := h.New()
		hh.Write(cur)
		hh.Write(digest(h, e.measured()))
		out[e.PCR] = hh.Sum(nil)
	}
	return out
}

// Extend extends the TPM at addr with every event's digests.
func (m MeasuredBoot) Extend(ctx context.Context, addr string) error {
	conn, err := dialSWTPM(ctx, addr)
	if err != nil {
		return fmt.Errorf("measured boot: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tr := transport.FromReadWriter(&framedConn{Conn: conn})
	for i, e := range m.Events {
		var digests []tpm2.TPMTHA
		for _, b := range banks {
			digests = append(digests, tpm2.TPMTHA{HashAlg: b.alg, Digest: digest(b.hash, e.measured())})
		}
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(e.PCR), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: digests},
		}.Execute(tr)
		if err != nil {
			return fmt.Errorf("measured boot: extend event %d (pcr %d): %w", i, e.PCR, err)
		}
	}
	return nil
}

// Log returns the TCG PC Client crypto-agile event log for m: a
// TCG_PCClientPCREvent carrying the "Spec ID Event03" header (SHA-1 and
// SHA-256), then one TCG_PCR_EVENT2 per event. It touches no TPM.
func (m MeasuredBoot) Log() []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	spec := specIDEvent()
	le(uint32(0))
	le(uint32(EvNoAction))
	b.Write(make([]byte, sha1.Size))
	le(uint32(len(spec)))
	b.Write(spec)
	for _, e := range m.Events {
		le(uint32(e.PCR))
		le(uint32(e.Type))
		le(uint32(len(banks)))
		for _, bank := range banks {
			le(uint16(bank.alg))
			b.Write(digest(bank.hash, e.measured()))
		}
		le(uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes()
}

func specIDEvent() []byte {
	var b bytes.Buffer
	b.WriteString("Spec ID Event03\x00")
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	le(uint32(0))            // platformClass: client
	b.Write([]byte{0, 2, 0}) // specVersionMinor, specVersionMajor, specErrata
	b.WriteByte(2)           // uintnSize: UINT64
	le(uint32(len(banks)))   // numberOfAlgorithms
	for _, bank := range banks {
		le(uint16(bank.alg))
		le(uint16(bank.hash.Size()))
	}
	b.WriteByte(0) // vendorInfoSize
	return b.Bytes()
}

func digest(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(data)
		return d[:]
	default:
		d := sha256.Sum256(data)
		return d[:]
	}
}

// DevMeasurements is the boot of a dev machine: firmware version and code on
// PCR 0, Secure Boot enabled with a dev key in PK, KEK and db on PCR 7,
// separators on PCRs 0-7, a boot loader on PCR 4 verified by the db key, and
// the kernel and its command line on PCRs 9 and 8. It is deterministic: every
// TPM booted with it ends with the same PCR values (see PCRs), and
// go-attestation's ParseSecurebootState reports Secure Boot enabled.
func DevMeasurements() MeasuredBoot {
	cert := devSecureBootCert()
	x509List := efiSignatureList(efiCertX509GUID, cert)
	ev := []Event{
		{PCR: 0, Type: EvSCRTMVersion, Data: utf16z("sigil dev firmware 1.0")},
		{PCR: 0, Type: EvPostCode, Data: []byte("sigil dev firmware volume"), Measured: fakeImage("firmware", 64<<10)},
		{PCR: 7, Type: EvEFIVariableDriverConfig, Data: efiVariable(efiGlobalVariableGUID, "SecureBoot", []byte{1})},
		{PCR: 7, Type: EvEFIVariableDriverConfig, Data: efiVariable(efiGlobalVariableGUID, "PK", x509List)},
		{PCR: 7, Type: EvEFIVariableDriverConfig, Data: efiVariable(efiGlobalVariableGUID, "KEK", x509List)},
		{PCR: 7, Type: EvEFIVariableDriverConfig, Data: efiVariable(efiImageSecurityDatabaseGUID, "db", x509List)},
		{PCR: 7, Type: EvEFIVariableDriverConfig, Data: efiVariable(efiImageSecurityDatabaseGUID, "dbx", nil)},
	}
	for pcr := 0; pcr <= 7; pcr++ {
		ev = append(ev, Event{PCR: pcr, Type: EvSeparator, Data: []byte{0, 0, 0, 0}})
	}
	ev = append(ev,
		Event{PCR: 4, Type: EvEFIAction, Data: []byte("Calling EFI Application from Boot Option")},
		Event{PCR: 7, Type: EvEFIVariableAuthority, Data: efiVariable(efiImageSecurityDatabaseGUID, "db", append(sigilOwnerGUID[:], cert...))},
		Event{PCR: 4, Type: EvEFIBootServicesApplication, Data: imageLoadEvent(0x7e000000, 256<<10), Measured: fakeImage("bootloader", 256<<10)},
		Event{PCR: 9, Type: EvIPL, Data: []byte("/boot/vmlinuz-sigil-dev\x00"), Measured: fakeImage("kernel", 1<<20)},
		Event{PCR: 8, Type: EvIPL, Data: []byte("kernel_cmdline: /boot/vmlinuz-sigil-dev root=/dev/vda1 ro quiet\x00")},
	)
	return MeasuredBoot{Events: ev}
}

// DebugMeasurements is DevMeasurements on a machine that booted debug
// firmware: an extra PCR 1 event whose digest is SHA-256("debug-firmware"),
// the marker the dev policy forbids.
func DebugMeasurements() MeasuredBoot {
	dev := DevMeasurements()
	events := append([]Event{}, dev.Events[:2]...)
	events = append(events, Event{PCR: 1, Type: EvPostCode, Data: []byte("debug-firmware")})
	return MeasuredBoot{Events: append(events, dev.Events[2:]...)}
}

// OptionROMDigest is the SHA-256 event digest, in policy form, of the
// option ROM OptionROMMeasurements measures: what a policy names to forbid
// that firmware.
const OptionROMDigest = "sha256:98b940b0542edb4cd5bc307f18891ee3fcf8a682f6bcda2d428bbe45637252f2"

// OptionROMMeasurements is DevMeasurements on a machine with a plug-in card:
// its option ROM, "sigil option ROM 2.1", measured into PCR 2 (which the dev
// policy does not pin, so the machine enrolls). An operator who learns that
// this firmware is vulnerable forbids its digest, OptionROMDigest.
func OptionROMMeasurements() MeasuredBoot {
	dev := DevMeasurements()
	events := append([]Event{}, dev.Events[:2]...)
	events = append(events, Event{PCR: 2, Type: EvPostCode, Data: []byte("sigil option ROM 2.1")})
	return MeasuredBoot{Events: append(events, dev.Events[2:]...)}
}

// fakeImage is a deterministic stand-in for a binary called name.
func fakeImage(name string, size int) []byte {
	out := make([]byte, 0, size+sha256.Size)
	seed := sha256.Sum256([]byte("sigil dev " + name))
	for len(out) < size {
		out = append(out, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	return out[:size]
}

type efiGUID [16]byte

// guid encodes a GUID the way EFI stores it: first three fields little-endian.
func guid(s string) efiGUID {
	var g efiGUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(g) {
		panic("testenv: bad GUID " + s)
	}
	copy(g[:], b)
	g[0], g[1], g[2], g[3] = g[3], g[2], g[1], g[0]
	g[4], g[5] = g[5], g[4]
	g[6], g[7] = g[7], g[6]
	return g
}

var (
	efiGlobalVariableGUID        = guid("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	efiImageSecurityDatabaseGUID = guid("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	efiCertX509GUID              = guid("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	sigilOwnerGUID               = guid("5349474c-0000-4000-8000-646576000001")
)

// efiVariable encodes a UEFI_VARIABLE_DATA structure.
func efiVariable(g efiGUID, name string, data []byte) []byte {
	var b bytes.Buffer
	u := utf16.Encode([]rune(name))
	b.Write(g[:])
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(u)))
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(data)))
	_ = binary.Write(&b, binary.LittleEndian, u)
	b.Write(data)
	return b.Bytes()
}

// efiSignatureList encodes an EFI_SIGNATURE_LIST with one entry owned by sigil.
func efiSignatureList(typ efiGUID, sig []byte) []byte {
	var b bytes.Buffer
	b.Write(typ[:])
	_ = binary.Write(&b, binary.LittleEndian, uint32(28+16+len(sig))) // SignatureListSize
	_ = binary.Write(&b, binary.LittleEndian, uint32(0))              // SignatureHeaderSize
	_ = binary.Write(&b, binary.LittleEndian, uint32(16+len(sig)))    // SignatureSize
	b.Write(sigilOwnerGUID[:])
	b.Write(sig)
	return b.Bytes()
}

// imageLoadEvent encodes a UEFI_IMAGE_LOAD_EVENT with an empty device path
// (only the end node).
func imageLoadEvent(addr, length uint64) []byte {
	var b bytes.Buffer
	end := []byte{0x7f, 0xff, 0x04, 0x00}
	for _, v := range []uint64{addr, length, 0, uint64(len(end))} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.Write(end)
	return b.Bytes()
}

// utf16z encodes s as NUL-terminated UTF-16LE, as firmware version strings are.
func utf16z(s string) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, utf16.Encode([]rune(s+"\x00")))
	return b.Bytes()
}

// devSecureBootCertB64 is a fixed self-signed ECDSA P-256 certificate
// ("sigil dev Secure Boot signing", valid to 2126) standing in for the
// platform's Secure Boot keys. Its private key was discarded.
const devSecureBootCertB64 = "" +
	"MIIBzjCCAXWgAwIBAgIUPZi3sT5ytFM0qwTtfFDwgmX4lYEwCgYIKoZIzj0EAwIwPDESMBAGA1UE" +
	"CgwJc2lnaWwgZGV2MSYwJAYDVQQDDB1zaWdpbCBkZXYgU2VjdXJlIEJvb3Qgc2lnbmluZzAgFw0y" +
	"NjExMjYwODA2NTZaGA8yMTI2MTEwMjA4MDY1NlowPDESMBAGA1UECgwJc2lnaWwgZGV2MSYwJAYD" +
	"VQQDDB1zaWdpbCBkZXYgU2VjdXJlIEJvb3Qgc2lnbmluZzBZMBMGByqGSM49AgEGCCqGSM49AwEH" +
	"A0IABDUS1ptK8XdFu1bhnEz+dLlNIkHanpaTIMIIs8zYZIrQMPY2x6DHPACGqhgeop7Fa9KWt2yc" +
	"+cR3YJL5AemiX8OjUzBRMB0GA1UdDgQWBBQtiOkD4hP3y9eitjqAMpl9Sn7ZjzAfBgNVHSMEGDAW" +
	"gBQtiOkD4hP3y9eitjqAMpl9Sn7ZjzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQC" +
	"IGvOjKjbe7Ag9CIdWO868r3NBKSPDBUJIUjYvThLu61eAiBkgel52zqAX9bi5lVUJIU4szofMARi" +
	"ISFUUIF4MzN3ww=="

func devSecureBootCert() []byte {
	der, err := base64.StdEncoding.DecodeString(devSecureBootCertB64)
	if err != nil {
		panic("testenv: bad embedded certificate: " + err.Error())
	}
	return der
}

// dialSWTPM connects to "swtpm:HOST:PORT".
func dialSWTPM(ctx context.Context, addr string) (net.Conn, error) {
	hostport, ok := strings.CutPrefix(addr, "swtpm:")
	if !ok {
		return nil, fmt.Errorf("address %q is not swtpm:HOST:PORT", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", hostport)
}

// framedConn returns each TPM response whole from one Read, as go-tpm expects:
// a TCP read may return part of it.
type framedConn struct {
	net.Conn
	rest []byte
}

func (c *framedConn) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		hdr := make([]byte, 10)
		if _, err := io.ReadFull(c.Conn, hdr); err != nil {
			return 0, err
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > 1<<20 {
			return 0, errors.New("bad TPM response size")
		}
		c.rest = append(hdr, make([]byte, size-10)...)
		if _, err := io.ReadFull(c.Conn, c.rest[10:]); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}
