// Package witness has sigild's checkpoints cosigned by C2SP tlog-witness
// witnesses: a Client posts one checkpoint with its consistency proof to
// one witness (add-checkpoint) and checks the cosignature it returns; the
// Cosigner submits every new checkpoint of the audit log to every
// configured witness and stores their cosignatures (only the replica that
// holds the checkpoint lease submits); Published serves the latest
// checkpoint with the cosignatures stored for it. A witness that is down
// does not hold anything up: the log keeps publishing, the Cosigner
// retries with the latest checkpoint (one consistency proof spans what
// the witness missed), and sigil_audit_witness_lag_entries says how far
// behind each witness is.
package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// MaxResponse bounds what is read of a witness's answer.
const MaxResponse = 64 << 10

// maxProof is the most consistency proof lines tlog-witness allows.
const maxProof = 63

// Errors of AddCheckpoint, from the witness's status code (C2SP
// tlog-witness). Each is a *SubmitError too, with the status and the
// witness's message.
var (
	// ErrUnknownLog (404): the witness does not know the log's origin.
	// Its operator must add the log, with the key audit's WitnessKey
	// prints.
	ErrUnknownLog = errors.New("the witness does not know this log (404)")
	// ErrLogSignature (403): the witness knows the origin under another
	// key. Its operator must configure the log's current key.
	ErrLogSignature = errors.New("the witness finds no log signature it trusts (403)")
	// ErrInconsistent (422): the consistency proof does not verify from
	// the checkpoint the witness has seen: the log shows it a tree that
	// does not extend the earlier one. Investigate: it is what a split
	// view looks like.
	ErrInconsistent = errors.New("the witness refuses the consistency proof (422)")
	// ErrConflict (409, without a size): the witness has a checkpoint of
	// the same size with another root. Investigate as ErrInconsistent.
	ErrConflict = errors.New("the witness has another checkpoint of this size (409)")
	// ErrPushback (429, 503): retry later.
	ErrPushback = errors.New("the witness asks to retry later")
	// ErrUnreachable: no answer (connection refused, timeout): the
	// witness is down or cut off. Retry later.
	ErrUnreachable = errors.New("the witness does not answer")
	// ErrBadCosignature: the answer is not a valid cosignature by the
	// witness's configured key. Check the key configured for it.
	ErrBadCosignature = errors.New("the witness's answer holds no valid cosignature by its key")
)

// SizeError is a 409 with the witness's latest size for the log
// (Content-Type text/x.tlog.size): submit again with old size Size and a
// consistency proof from it.
type SizeError struct{ Size uint64 }

func (e *SizeError) Error() string {
	return fmt.Sprintf("the witness has seen a checkpoint of size %d (409)", e.Size)
}

// SubmitError is a refusal by the witness: its HTTP status and the start
// of its message. It wraps one of the sentinels above when one fits.
type SubmitError struct {
	Status  int
	Message string
	Err     error
}

func (e *SubmitError) Error() string {
	msg := fmt.Sprintf("HTTP %d", e.Status)
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func (e *SubmitError) Unwrap() error { return e.Err }

// Client submits checkpoints to one witness.
type Client struct {
	url  string
	key  note.Verifier
	http *http.Client
}

// NewClient returns a client of the witness at base (add-checkpoint is
// base + "/add-checkpoint") whose cosignatures verify with vkey (see
// audit.ParseWitnessKey). hc carries the timeouts; nil is
// http.DefaultClient, which has none.
func NewClient(base, vkey string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness: url %q: want http(s)://host[:port][/path]", base)
	}
	v, err := audit.ParseWitnessKey(vkey)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{url: strings.TrimSuffix(u.String(), "/") + "/add-checkpoint", key: v, http: hc}, nil
}

// Name is the witness's key name.
func (c *Client) Name() string { return c.key.Name() }

// ID names the witness's key: "name+keyid".
func (c *Client) ID() string { return fmt.Sprintf("%s+%08x", c.key.Name(), c.key.KeyHash()) }

// Verifier returns the verifier of the witness's cosignatures.
func (c *Client) Verifier() note.Verifier { return c.key }

// AddCheckpoint posts the checkpoint signed (the log's note as the witness
// verifies it, audit.WitnessNote) with the consistency proof from old, the
// size of the last checkpoint the witness cosigned for the log (0 for
// none), and returns the witness's cosignature line for it: one signature
// line by its key, checked to verify over logNote (the log's note as it is
// published; the same text). Errors: *SizeError, *SubmitError, or a
// transport error.
func (c *Client) AddCheckpoint(ctx context.Context, old uint64, proof [][]byte, signed, logNote []byte) ([]byte, error) {
	if len(proof) > maxProof {
		return nil, fmt.Errorf("witness: a consistency proof of %d lines, at most %d", len(proof), maxProof)
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", old)
	for _, p := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(p) + "\n")
	}
	body.WriteString("\n")
	body.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, &body)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness: post checkpoint: %w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("witness: read answer: %w", err)
	case len(answer) > MaxResponse:
		return nil, fmt.Errorf("witness: answer longer than %d bytes", MaxResponse)
	}
	return c.answer(resp.StatusCode, resp.Header.Get("Content-Type"), answer, logNote)
}

// answer reads the witness's answer to a submission of logNote: its
// cosignature line, or the error its status says.
func (c *Client) answer(status int, contentType string, body, logNote []byte) ([]byte, error) {
	if status != http.StatusOK {
		return nil, refusal(status, contentType, body)
	}
	return c.cosignature(body, logNote)
}

// refusal is the error of a non-200 answer.
func refusal(status int, contentType string, answer []byte) error {
	msg := strings.TrimSpace(string(answer))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	e := &SubmitError{Status: status, Message: msg}
	switch status {
	case http.StatusConflict:
		if strings.HasPrefix(contentType, "text/x.tlog.size") {
			size, err := strconv.ParseUint(strings.TrimSpace(string(answer)), 10, 64)
			if err != nil {
				return fmt.Errorf("witness: 409 with a size that does not parse: %q", msg)
			}
			return &SizeError{Size: size}
		}
		e.Err = ErrConflict
	case http.StatusNotFound:
		e.Err = ErrUnknownLog
	case http.StatusForbidden:
		e.Err = ErrLogSignature
	case http.StatusUnprocessableEntity:
		e.Err = ErrInconsistent
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		e.Err = ErrPushback
	}
	return e
}

// cosignature picks the line of answer signed by the witness's key and
// checks it verifies over logNote's text.
func (c *Client) cosignature(answer, logNote []byte) ([]byte, error) {
	for _, line := range strings.SplitAfter(string(answer), "\n") {
		if !strings.HasPrefix(line, "— "+c.key.Name()+" ") || !strings.HasSuffix(line, "\n") {
			continue
		}
		n, err := note.Open(append(bytes.Clone(logNote), line...), note.VerifierList(c.key))
		if err == nil && len(n.Sigs) == 1 {
			return []byte(line), nil
		}
	}
	return nil, fmt.Errorf("witness %s: %w", c.ID(), ErrBadCosignature)
}
