package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/statusfeed"
)

type statusOptions struct {
	mode string
}

// statusFlags are the status feed stage's flags.
var statusFlags statusOptions

// register registers the status feed stage's flags on fs.
func (f *statusOptions) register(fs *flag.FlagSet) {
	cli.String(fs, &f.mode, "status-feed", string(statusfeed.DefaultMode),
		"what herald.status carries: all (every change of a notification's state), final (final statuses only), or off (no status stream)")
}

// startStatusFeed publishes herald.status from the dispatcher table's
// changelog (package statusfeed).
func startStatusFeed(ctx context.Context, env *runEnv) (func(context.Context) error, error) {
	if statusFlags.mode == "off" {
		return nil, nil
	}
	mode, err := statusfeed.ParseMode(statusFlags.mode)
	if err != nil {
		return nil, fmt.Errorf("--status-feed: %w", err)
	}
	f, err := statusfeed.New(statusfeed.Config{Topology: env.Topology, Mode: mode, Mask: contract.MaskText,
		Log: env.Log.With("stage", "status")})
	if err != nil {
		return nil, err
	}
	return f.Run, nil
}
