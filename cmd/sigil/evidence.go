package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
)

// auditEvidenceCmd writes one enrollment's or renewal's quote, found in an
// audit export by the serial of the certificate issued on it, in
// tpm2-tools' formats (attest.ToolsQuote), for an auditor to check with
// tpm2_checkquote.
type auditEvidenceCmd struct {
	Dir    string `help:"An export directory (sigild audit export)." type:"existingdir" required:""`
	Serial string `help:"Serial (hex) of the certificate an enrollment or renewal issued." required:""`
	Out    string `help:"Directory to write ak.pub, quote.msg, quote.sig, pcrs.bin, nonce.hex and eventlog.bin into." required:""`
}

func (c auditEvidenceCmd) Run(ctx context.Context) error {
	serial := strings.ToLower(strings.TrimPrefix(c.Serial, "0x"))
	q, kind, err := findQuote(ctx, audit.DirSource(c.Dir), serial)
	if err != nil {
		return err
	}
	if err := q.Write(c.Out); err != nil {
		return err
	}
	fmt.Printf("%s quote of certificate %s written to %s\ncheck it: tpm2_checkquote -u %[3]s/%s -m %[3]s/%s -s %[3]s/%s -f %[3]s/%s -g sha256 -q $(cat %[3]s/%s)\n",
		kind, serial, c.Out, attest.ToolsAKPublic, attest.ToolsMessage, attest.ToolsSignature, attest.ToolsPCRs, attest.ToolsNonce)
	return nil
}

// findQuote reads the export's entries in order, up to its end, and
// returns the quote of the enrollment or renewal that issued serial, with
// the entry's kind. It reads the export as it is: `sigil audit verify
// --dir` checks that the log is intact and the evidence verifies.
func findQuote(ctx context.Context, src audit.DirSource, serial string) (*attest.ToolsQuote, audit.Kind, error) {
	for start := uint64(0); ; start += audit.BundleSize {
		data, err := src.Entries(ctx, start, start+audit.BundleSize)
		if err != nil {
			return nil, "", err
		}
		for i, d := range data {
			e, err := audit.Decode(d)
			if err != nil {
				return nil, "", fmt.Errorf("audit entry %d: %w", start+uint64(i), err)
			}
			got, q, err := attest.EntryQuote(e)
			switch {
			case errors.Is(err, attest.ErrNoQuote):
			case err != nil && got == serial:
				return nil, "", fmt.Errorf("audit entry %d: %w", start+uint64(i), err)
			case err == nil && got == serial:
				return q, e.Kind, nil
			}
		}
		if len(data) < audit.BundleSize {
			return nil, "", &exitError{code: 1, err: fmt.Errorf("no enrollment or renewal in %s issued certificate %s", string(src), serial)}
		}
	}
}
