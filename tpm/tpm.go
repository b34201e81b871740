package tpm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultEventLog is where Linux exposes the firmware's event log for the
// first TPM; Open uses it for TPM devices unless WithEventLog says otherwise.
const DefaultEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// ErrBroken means a command to the TPM was cut off (context cancelled or
// deadline passed mid-command, or the connection failed), so responses may no
// longer match commands. The TPM refuses further work: Close it and Open it
// again.
var ErrBroken = errors.New("tpm: connection broken")

// ErrClosed is returned for work on a TPM after Close.
var ErrClosed = errors.New("tpm: closed")

// TPM is an open TPM 2.0. Its methods are safe for concurrent use: commands
// go to the TPM one operation at a time (swtpm takes one connection, and an
// operation such as a quote is several commands).
type TPM struct {
	path string
	cfg  config
	sem  chan struct{} // one slot: holds the TPM for one operation
	ch   *channel
	at   *attest.TPM
	tr   transport.TPM
	done bool
	// resident is the one application key loaded, or nil.
	resident *Key
}

// Option configures Open.
type Option func(*config)

type config struct {
	eventLog    string
	signTimeout time.Duration
}

// WithEventLog reads the measured-boot event log from path. A swtpm has no
// default; a device defaults to DefaultEventLog.
func WithEventLog(path string) Option { return func(c *config) { c.eventLog = path } }

// WithSignTimeout bounds each Key.Sign, which takes no context (default 30 s).
func WithSignTimeout(d time.Duration) Option { return func(c *config) { c.signTimeout = d } }

// Open opens the TPM at path: a device such as "/dev/tpmrm0" (or "/dev/tpm0"
// when no resource manager is available), or a swtpm as "swtpm:HOST:PORT".
//
// ctx bounds Open. A swtpm serves one client at a time: while another holds
// it, Open waits until ctx ends. A swtpm has no resource manager either:
// objects a previous client left loaded stay loaded and only three fit. As
// Open holds swtpm's only connection, it flushes them; likewise for
// /dev/tpm0, which the kernel lets only one process open.
func Open(ctx context.Context, path string, opts ...Option) (*TPM, error) {
	cfg := config{signTimeout: 30 * time.Second}
	if strings.HasPrefix(path, "/") {
		cfg.eventLog = DefaultEventLog
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	ch, err := openChannel(ctx, path, cfg.eventLog)
	if err != nil {
		return nil, err
	}
	at, err := attest.OpenTPM(&attest.OpenConfig{CommandChannel: ch})
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("tpm: open %s: %w", path, err)
	}
	t := &TPM{
		path: path,
		cfg:  cfg,
		sem:  make(chan struct{}, 1),
		ch:   ch,
		at:   at,
		tr:   transport.FromReadWriter(ch),
	}
	if err := t.do(ctx, "open "+path, t.start); err != nil {
		ch.Close()
		return nil, err
	}
	return t, nil
}

// start checks the TPM answers and, where this client is the only one (a
// swtpm, or /dev/tpm0 without the kernel's resource manager), flushes
// leftovers.
func (t *TPM) start() error {
	if t.ch.framed || !strings.HasPrefix(filepath.Base(t.path), "tpmrm") {
		return t.flushLeftovers()
	}
	_, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: transientFirst, PropertyCount: 1}.Execute(t.tr)
	return err
}

const (
	transientFirst = 0x80000000 // TPM_HT_TRANSIENT
	hmacFirst      = 0x02000000 // TPM_HT_HMAC_SESSION
	policyFirst    = 0x03000000 // TPM_HT_POLICY_SESSION
)

// flushLeftovers flushes transient objects and sessions still loaded.
func (t *TPM) flushLeftovers() error {
	for _, first := range []uint32{transientFirst, hmacFirst, policyFirst} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(t.tr)
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		handles, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		for _, h := range handles.Handle {
			if !flushable(h) {
				continue
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tr); err != nil {
				return fmt.Errorf("flush handle %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// flushable reports whether h is a transient object or a session.
func flushable(h tpm2.TPMHandle) bool {
	switch uint32(h) >> 24 {
	case transientFirst >> 24, hmacFirst >> 24, policyFirst >> 24:
		return true
	}
	return false
}

// Close flushes the application key still loaded and closes the TPM. It
// waits for an operation in progress.
func (t *TPM) Close() error {
	t.sem <- struct{}{}
	defer func() { <-t.sem }()
	if t.done {
		return nil
	}
	t.done = true
	var errs []error
	if t.ch.ioErr == nil {
		if err := t.evict(); err != nil {
			errs = append(errs, fmt.Errorf("tpm: %w", err))
		}
	}
	if err := t.at.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tpm: close %s: %w", t.path, err))
	}
	return errors.Join(errs...)
}

// do runs op as one operation with the TPM to itself. ctx bounds the wait for
// the TPM and, where the channel supports deadlines (swtpm sockets), op's I/O;
// an op cut off that way breaks the channel (ErrBroken).
func (t *TPM) do(ctx context.Context, what string, op func() error) error {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("tpm: %s: wait for tpm: %w", what, ctx.Err())
	}
	defer func() { <-t.sem }()
	if t.done {
		return fmt.Errorf("tpm: %s: %w", what, ErrClosed)
	}
	if t.ch.ioErr != nil {
		return fmt.Errorf("tpm: %s: %w", what, t.ch.ioErr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tpm: %s: %w", what, err)
	}
	err := t.withDeadline(ctx, op)
	ctxErr := ctx.Err()
	if ctxErr == nil && errors.Is(t.ch.ioErr, os.ErrDeadlineExceeded) {
		// The channel's deadline is ctx's, and fired a moment before ctx's.
		ctxErr = context.DeadlineExceeded
	}
	switch {
	case err == nil:
		return nil
	case t.ch.ioErr != nil && ctxErr != nil:
		return fmt.Errorf("tpm: %s: %w: %w", what, ctxErr, t.ch.ioErr)
	case t.ch.ioErr != nil:
		return fmt.Errorf("tpm: %s: %w", what, t.ch.ioErr)
	default:
		return fmt.Errorf("tpm: %s: %w", what, err)
	}
}

// withDeadline runs op with the channel's I/O deadline following ctx.
func (t *TPM) withDeadline(ctx context.Context, op func() error) error {
	dl, _ := ctx.Deadline()
	t.ch.setDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t.ch.setDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := op()
	if !stop() {
		<-fired
	}
	t.ch.setDeadline(time.Time{})
	return err
}
