package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The line the token service logs for every token it issues
// (tokens.LogIssued) is written to stderr in batches: with its own
// write(2) each it cost about 2 % of sigild's CPU per exchange. It waits
// at most logFlushInterval, or until logFlushSize bytes are waiting. Every
// other line is written at once, after the batched lines before it, so
// lines stay in order and every line but the per-token one appears when it
// did before. If the process dies abruptly (SIGKILL, a panic outside main)
// the per-token lines of the last interval are lost; every token is in the
// audit log, recorded before it was returned.
const (
	logFlushInterval = 100 * time.Millisecond
	logFlushSize     = 32 << 10
)

// logBuffer batches writes to w (see logFlushInterval). It is safe for
// concurrent use; each Write is kept whole.
type logBuffer struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	armed bool // the timer will flush
	timer *time.Timer
}

func newLogBuffer(w io.Writer) *logBuffer {
	b := &logBuffer{w: w, buf: make([]byte, 0, logFlushSize)}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write queues p, and writes what is queued once it reaches
// logFlushSize. Errors of the underlying writer are returned by the Write
// or Flush that meets them.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= logFlushSize {
		return len(p), b.flushLocked()
	}
	if !b.armed {
		b.armed = true
		b.timer.Reset(logFlushInterval)
	}
	return len(p), nil
}

// Flush writes what is queued.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *logBuffer) flushLocked() error {
	if b.armed {
		b.armed = false
		b.timer.Stop()
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > 4*logFlushSize { // one huge line does not keep its buffer
		b.buf = make([]byte, 0, logFlushSize)
	}
	b.buf = b.buf[:0]
	return err
}

// flushingHandler is a slog.Handler writing through a logBuffer. It
// flushes the buffer after every record but those whose message is in
// batched, so that only those wait.
type flushingHandler struct {
	slog.Handler
	b       *logBuffer
	batched map[string]bool
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if !h.batched[r.Message] {
		if ferr := h.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.b, h.batched}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.b, h.batched}
}

// newLogger returns sigild's JSON logger on w at level, the lines with a
// message in batched written in batches (logBuffer), and the buffer, to
// Flush before exiting.
func newLogger(w io.Writer, level slog.Leveler, batched ...string) (*slog.Logger, *logBuffer) {
	b := newLogBuffer(w)
	h := flushingHandler{slog.NewJSONHandler(b, &slog.HandlerOptions{Level: level}), b, map[string]bool{}}
	for _, m := range batched {
		h.batched[m] = true
	}
	return slog.New(h), b
}
