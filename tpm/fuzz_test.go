package tpm

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// nopCloser is a byte stream standing in for a swtpm connection.
type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }

// FuzzChannelRead feeds arbitrary bytes as a swtpm's responses: framing must
// not panic, return more than the stream holds, or read beyond maxResponse.
func FuzzChannelRead(f *testing.F) {
	ok := []byte{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0xaa, 0xbb}
	f.Add(ok)
	f.Add(append(ok, ok...))
	f.Add([]byte{0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 0x09})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := &channel{rwc: nopCloser{bytes.NewBuffer(append([]byte(nil), stream...))}, framed: true}
		total := 0
		for range 4 {
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err != nil {
				if c.ioErr == nil {
					t.Fatal("read error did not break the channel")
				}
				return
			}
			total += n
			if n < 10 && total == n {
				t.Fatalf("first read returned %d bytes, less than a header", n)
			}
		}
		if total > len(stream) {
			t.Fatalf("read %d bytes from %d", total, len(stream))
		}
	})
}

// FuzzParseBlob checks AK and key blobs from disk fail cleanly.
func FuzzParseBlob(f *testing.F) {
	f.Add([]byte(`{"KeyEncoding":2,"TPMVersion":2,"Public":"AAE=","KeyBlob":"AAE="}`))
	f.Add([]byte(`{"KeyEncoding":1,"TPMVersion":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseBlob(b)
		if err == nil && (len(k.Public) == 0 || len(k.Blob) == 0 || k.TPMVersion != 2) {
			t.Fatalf("accepted %q", b)
		}
	})
}

// FuzzUnwrap2B checks the verifier's credential and secret framing.
func FuzzUnwrap2B(f *testing.F) {
	f.Add([]byte{0, 2, 1, 2})
	f.Add([]byte{0, 3, 1, 2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := unwrap2B(b)
		if err != nil {
			return
		}
		if int(binary.BigEndian.Uint16(b)) != len(out) || !bytes.Equal(out, b[2:]) {
			t.Fatalf("unwrap2B(%x) = %x", b, out)
		}
	})
}
