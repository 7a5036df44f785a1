package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
)

// Configuration comes from three places, in this order of priority: the
// command line, environment variables (HERALD_ plus the flag name in upper
// case, dashes as underscores; DATABASE_URL too for --database-url), and an
// optional config file (--config or HERALD_CONFIG: one flag a line, "name
// value", # comments). github.com/peterbourgon/ff/v3 does the reading; a
// value that does not parse stops the command with an error naming the flag
// and where the value came from.

// envPrefix is the prefix of every Herald variable.
const envPrefix = "HERALD"

// envName is the environment variable beside a flag.
func envName(flagName string) string {
	if flagName == "database-url" {
		return "DATABASE_URL"
	}
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func usageWithEnv(name, usage string) string {
	if name == "database-url" {
		return usage + " [HERALD_DATABASE_URL or DATABASE_URL]"
	}
	return usage + " [" + envName(name) + "]"
}

// stringFlag defines a string flag with its variable.
func stringFlag(fs *flag.FlagSet, p *string, name, def, usage string) {
	fs.StringVar(p, name, def, usageWithEnv(name, usage))
}

func intFlag(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	fs.IntVar(p, name, def, usageWithEnv(name, usage))
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	fs.DurationVar(p, name, def, usageWithEnv(name, usage))
}

func boolFlag(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	fs.BoolVar(p, name, def, usageWithEnv(name, usage))
}

// listFlag is a repeatable flag. On the command line each flag is one
// value; in its variable or the config file a value is a comma-separated
// list.
type listFlag struct {
	vals []string
	// split is set once the command line is read: later values come from
	// the environment or the config file.
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.split {
		l.vals = append(l.vals, s)
		return nil
	}
	l.vals = append(l.vals, splitList(s)...)
	return nil
}

func listVar(fs *flag.FlagSet, p *listFlag, name, usage string) {
	fs.Var(p, name, usage+" (repeatable) ["+envName(name)+", comma-separated]")
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// parseFlags reads args, then the variables and the config file, into fs.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if fs.Lookup("config") == nil {
		fs.String("config", "", "config file: one flag a line, \"name value\", # for comments; the command line and variables win over it ["+envName("config")+"]")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.VisitAll(func(f *flag.Flag) {
		if l, ok := f.Value.(*listFlag); ok {
			l.split = true
		}
	})
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// DATABASE_URL is the variable most tools know; HERALD_DATABASE_URL
	// wins when both are set.
	if fs.Lookup("database-url") != nil && !given["database-url"] && os.Getenv(envPrefix+"_DATABASE_URL") == "" {
		if v := os.Getenv("DATABASE_URL"); v != "" {
			if err := fs.Set("database-url", v); err != nil {
				return fmt.Errorf("environment variable DATABASE_URL: %w", err)
			}
		}
	}
	// The command line is read already (its flags are not set again);
	// ff reads the variables and the config file.
	return ff.Parse(fs, nil,
		ff.WithEnvVarPrefix(envPrefix),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.PlainParser),
		// One file serves every command: a flag another command has is
		// not an error here.
		ff.WithIgnoreUndefined(true),
	)
}
