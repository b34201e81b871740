package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// maxResponse bounds a TPM response read from the network.
const maxResponse = 1 << 16

// channel is the command channel to one TPM: go-attestation's
// attest.CommandChannelTPM20 over a TPM device or a swtpm TCP socket.
//
// It returns each response whole from the first Read after a Write, as
// go-tpm's RunCommand expects; a TCP read may return part of one. Any I/O
// error makes the channel unusable: the command and response streams may be
// out of step, so later commands would read stale responses.
type channel struct {
	rwc     io.ReadWriteCloser
	framed  bool // read the response header, then the size it gives
	logPath string
	rest    []byte
	ioErr   error
}

// openChannel opens path: a TPM device ("/dev/tpmrm0") or "swtpm:HOST:PORT".
func openChannel(ctx context.Context, path, logPath string) (*channel, error) {
	if hostport, ok := strings.CutPrefix(path, "swtpm:"); ok {
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			return nil, fmt.Errorf("tpm: address %q: want swtpm:HOST:PORT", path)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return nil, fmt.Errorf("tpm: connect to %s: %w", path, err)
		}
		return &channel{rwc: conn, framed: true, logPath: logPath}, nil
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("tpm: path %q: want a device such as /dev/tpmrm0 or swtpm:HOST:PORT", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm: open %s: %w", path, err)
	}
	return &channel{rwc: f, logPath: logPath}, nil
}

// Write sends one command, dropping any unread rest of the last response.
func (c *channel) Write(p []byte) (int, error) {
	if c.ioErr != nil {
		return 0, c.ioErr
	}
	c.rest = nil
	n, err := c.rwc.Write(p)
	return n, c.fail(err)
}

// Read returns the response to the last command.
func (c *channel) Read(p []byte) (int, error) {
	if c.ioErr != nil {
		return 0, c.ioErr
	}
	if !c.framed {
		n, err := c.rwc.Read(p)
		return n, c.fail(err)
	}
	if len(c.rest) == 0 {
		if err := c.readResponse(); err != nil {
			return 0, c.fail(err)
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *channel) readResponse() error {
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c.rwc, hdr); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return fmt.Errorf("response size %d out of range", size)
	}
	resp := make([]byte, size)
	copy(resp, hdr)
	if _, err := io.ReadFull(c.rwc, resp[10:]); err != nil {
		return err
	}
	c.rest = resp
	return nil
}

// fail records the first I/O error; the channel refuses work after it.
func (c *channel) fail(err error) error {
	if err != nil && c.ioErr == nil {
		c.ioErr = fmt.Errorf("%w: %w", ErrBroken, err)
	}
	return err
}

// Close closes the device or connection.
func (c *channel) Close() error { return c.rwc.Close() }

// MeasurementLog reads the event log file the TPM was opened with.
func (c *channel) MeasurementLog() ([]byte, error) {
	if c.logPath == "" {
		return nil, errors.New("no event log configured (use WithEventLog)")
	}
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("read event log: %w", err)
	}
	return b, nil
}

// setDeadline bounds the I/O of the next commands; a zero time removes the
// bound. Devices that cannot poll ignore it.
func (c *channel) setDeadline(t time.Time) {
	if d, ok := c.rwc.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(t)
	}
}
