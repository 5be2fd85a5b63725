// Command herald runs Herald, the webhook delivery service.
//
//	herald serve     run the API and the dispatcher
//	herald migrate   apply pending schema migrations, then exit
//	herald listen    a local receiver that prints and verifies webhooks
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/heraldhq/herald"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr, getenv)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr, getenv)
	case "listen":
		err = runListenEnv(ctx, args[1:], stdout, stderr, getenv)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "herald %s\n", herald.Version)
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case err == errHelp:
		return 0
	case err == errUsage:
		return 2
	default:
		fmt.Fprintf(stderr, "herald: %v\n", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `Herald %s: webhook delivery.

Usage:
  herald serve [flags]     run the API and the dispatcher (applies migrations itself)
  herald migrate [flags]   apply pending schema migrations, then exit
  herald listen [flags]    run a local receiver that prints, verifies and decrypts webhooks
  herald version           print the version

Every flag has an environment variable (shown in brackets); a flag wins.

`, herald.Version)
	fs, _ := serveFlags(func(string) string { return "" })
	fmt.Fprintln(w, "Settings of serve and migrate:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintln(w, "\nRun 'herald listen --help' for the receiver's settings.")
}
