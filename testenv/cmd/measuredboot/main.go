// Command measuredboot runs testenv's synthetic measured boot
// (testenv.DevMeasurements, DebugMeasurements with -profile debug, or
// OptionROMMeasurements with -profile oprom) on a
// freshly started swtpm and writes the event
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
	profile := flag.String("profile", "dev", "the boot to measure: dev, debug (dev plus debug firmware) or oprom (dev plus an option ROM on PCR 2)")
	flag.Parse()
	if *addr == "" || *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	boot, ok := map[string]testenv.MeasuredBoot{
		"dev": testenv.DevMeasurements(), "debug": testenv.DebugMeasurements(), "oprom": testenv.OptionROMMeasurements(),
	}[*profile]
	if !ok {
		fmt.Fprintf(os.Stderr, "measuredboot: unknown profile %q: want dev, debug or oprom\n", *profile)
		os.Exit(2)
	}
	if err := run(boot, *addr, *out); err != nil {
		fmt.Fprintln(os.Stderr, "measuredboot:", err)
		os.Exit(1)
	}
}

func run(boot testenv.MeasuredBoot, addr, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log, err := boot.Run(ctx, addr)
	if err != nil {
		return err
	}
	return os.WriteFile(out, log, 0o644)
}
