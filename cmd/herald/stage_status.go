package main

import (
	"flag"
	"fmt"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/statusfeed"
)

type statusOptions struct {
	mode string
}

// register registers the status feed stage's flags on fs.
func (f *statusOptions) register(fs *flag.FlagSet) {
	cli.String(fs, &f.mode, "status-feed", string(statusfeed.DefaultMode),
		"what herald.status carries: all (every change of a notification's state), final (final statuses only), or off (no status stream)")
}

// startStatusFeed publishes herald.status from the dispatcher table's
// changelog (package statusfeed).
func startStatusFeed(env *runEnv, o *statusOptions) (stageLoop, error) {
	if o.mode == "off" {
		return nil, nil
	}
	mode, err := statusfeed.ParseMode(o.mode)
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
