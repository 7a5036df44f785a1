package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/statusfeed"
	"github.com/herald-dispatch/herald/internal/views"
)

var statusFlags struct {
	mode string
}

func init() {
	addStage(stage{
		name:  "status",
		order: 60,
		flags: func(fs *flag.FlagSet) {
			cli.String(fs, &statusFlags.mode, "status-feed", string(statusfeed.DefaultMode),
				"what herald.status carries: all (every change of a notification's state), final (final statuses only), or off (no status stream)")
		},
		start: startStatusFeed,
	})
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
	f, err := statusfeed.New(statusfeed.Config{Topology: env.Topology, Mode: mode, Mask: views.MaskText,
		Log: env.Log.With("stage", "status")})
	if err != nil {
		return nil, err
	}
	return f.Run, nil
}
