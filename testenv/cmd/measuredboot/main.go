// Command measuredboot runs testenv's synthetic measured boot
// (testenv.DevMeasurements) on a freshly started swtpm and writes the event
// log the workload reads:
//
//	go run ./testenv/cmd/measuredboot -tpm swtpm:127.0.0.1:2321 -out DIR/eventlog.bin
//
// Run it once per swtpm start: it extends PCRs, which only a restart resets.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

func main() {
	addr := flag.String("tpm", "", "the TPM, as swtpm:HOST:PORT")
	out := flag.String("out", "", "where to write the event log")
	flag.Parse()
	if *addr == "" || *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*addr, *out); err != nil {
		fmt.Fprintln(os.Stderr, "measuredboot:", err)
		os.Exit(1)
	}
}

func run(addr, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log, err := testenv.DevMeasurements().Run(ctx, addr)
	if err != nil {
		return err
	}
	return os.WriteFile(out, log, 0o644)
}
