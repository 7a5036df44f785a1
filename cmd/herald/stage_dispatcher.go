package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/metrics"
	"github.com/herald-dispatch/herald/processors"
	"github.com/herald-dispatch/herald/schedule"
	"github.com/herald-dispatch/herald/topology"
)

var dispatcherFlags struct {
	defaultTZ   string
	blackout    listFlag
	blackoutTZ  string
	sendTimeout time.Duration
}

func init() {
	addStage(stage{
		name:  "dispatcher",
		order: 10,
		flags: func(fs *flag.FlagSet) {
			f := &dispatcherFlags
			stringFlag(fs, &f.defaultTZ, "default-tz", "UTC", "time zone of recipients without recipient.tz")
			listVar(fs, &f.blackout, "blackout", "system-wide blackout window HH:MM-HH:MM, on top of each message's own")
			stringFlag(fs, &f.blackoutTZ, "blackout-tz", "UTC", "time zone of the --blackout windows")
			durationFlag(fs, &f.sendTimeout, "send-timeout", processors.DefaultSendTimeout, "a sending notification with no result after this is retried")
		},
		start: startDispatcher,
	})
}

// dispatchConfig builds the dispatcher's configuration from its flags.
func dispatchConfig() (processors.DispatchConfig, error) {
	f := &dispatcherFlags
	loc, err := contract.LoadLocation(f.defaultTZ)
	if err != nil {
		return processors.DispatchConfig{}, fmt.Errorf("--default-tz: %w", err)
	}
	bloc, err := contract.LoadLocation(f.blackoutTZ)
	if err != nil {
		return processors.DispatchConfig{}, fmt.Errorf("--blackout-tz: %w", err)
	}
	global := schedule.Rule{Loc: bloc}
	for _, s := range f.blackout.vals {
		w, err := contract.ParseWindow(s)
		if err != nil {
			return processors.DispatchConfig{}, fmt.Errorf("--blackout: %w", err)
		}
		global.Windows = append(global.Windows, w)
	}
	if f.sendTimeout <= 0 {
		return processors.DispatchConfig{}, fmt.Errorf("--send-timeout must be positive")
	}
	return processors.DispatchConfig{DefaultLoc: loc, Global: global, SendTimeout: f.sendTimeout}, nil
}

func startDispatcher(ctx context.Context, env *runEnv) (func(context.Context) error, error) {
	cfg, err := dispatchConfig()
	if err != nil {
		return nil, err
	}
	d := &processors.Dispatcher{Config: cfg, Observer: metrics.NewDispatch(env.Registry), Log: env.Log.With("stage", "dispatcher")}
	sup := &processors.Supervisor{
		Name:    string(topology.GroupDispatcher),
		Graph:   d.Graph(),
		Brokers: env.Brokers,
		Options: processors.GokaOptions(env.Topology, filepath.Join(env.DataDir, "goka"), env.Log),
		Log:     env.Log,
	}
	env.AddReady("dispatcher", sup.Ready)
	env.AddProcessor(sup.Processor)
	return sup.Run, nil
}
