// Package cli is how every Herald command reads its configuration: flags,
// each with an environment variable (HERALD_ plus the flag's name), and an
// optional config file, with a value that does not parse refused; and the
// logger every command builds from --log-level and --log-format.
package cli

import (
	"flag"
	"fmt"
	"log/slog"
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

// EnvPrefix is the prefix of every Herald variable.
const EnvPrefix = "HERALD"

// EnvName is the environment variable beside a flag.
func EnvName(flagName string) string {
	if flagName == "database-url" {
		return "DATABASE_URL"
	}
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// UsageWithEnv appends the flag's variable to its usage.
func UsageWithEnv(name, usage string) string {
	if name == "database-url" {
		return usage + " [HERALD_DATABASE_URL or DATABASE_URL]"
	}
	return usage + " [" + EnvName(name) + "]"
}

// String defines a string flag with its variable.
func String(fs *flag.FlagSet, p *string, name, def, usage string) {
	fs.StringVar(p, name, def, UsageWithEnv(name, usage))
}

// Int defines an int flag with its variable.
func Int(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	fs.IntVar(p, name, def, UsageWithEnv(name, usage))
}

// Duration defines a duration flag with its variable.
func Duration(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	fs.DurationVar(p, name, def, UsageWithEnv(name, usage))
}

// Bool defines a bool flag with its variable.
func Bool(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	fs.BoolVar(p, name, def, UsageWithEnv(name, usage))
}

// List is a repeatable flag. On the command line each flag is one
// value; in its variable or the config file a value is a comma-separated
// list.
type List struct {
	Vals []string
	// split is set once the command line is read: later values come from
	// the environment or the config file.
	split bool
}

func (l *List) String() string { return strings.Join(l.Vals, ",") }

func (l *List) Set(s string) error {
	if !l.split {
		l.Vals = append(l.Vals, s)
		return nil
	}
	l.Vals = append(l.Vals, SplitList(s)...)
	return nil
}

// ListVar defines a List flag.
func ListVar(fs *flag.FlagSet, p *List, name, usage string) {
	fs.Var(p, name, usage+" (repeatable) ["+EnvName(name)+", comma-separated]")
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Parse reads args, then the variables and the config file, into fs.
func Parse(fs *flag.FlagSet, args []string) error {
	if fs.Lookup("config") == nil {
		fs.String("config", "", "config file: one flag a line, \"name value\", # for comments; the command line and variables win over it ["+EnvName("config")+"]")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.VisitAll(func(f *flag.Flag) {
		if l, ok := f.Value.(*List); ok {
			l.split = true
		}
	})
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// DATABASE_URL is the variable most tools know; HERALD_DATABASE_URL
	// wins when both are set.
	if fs.Lookup("database-url") != nil && !given["database-url"] && os.Getenv(EnvPrefix+"_DATABASE_URL") == "" {
		if v := os.Getenv("DATABASE_URL"); v != "" {
			if err := fs.Set("database-url", v); err != nil {
				return fmt.Errorf("environment variable DATABASE_URL: %w", err)
			}
		}
	}
	// The command line is read already (its flags are not set again);
	// ff reads the variables and the config file.
	return ff.Parse(fs, nil,
		ff.WithEnvVarPrefix(EnvPrefix),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.PlainParser),
		// One file serves every command: a flag another command has is
		// not an error here.
		ff.WithIgnoreUndefined(true),
	)
}

// Float defines a float flag with its variable.
func Float(fs *flag.FlagSet, p *float64, name string, def float64, usage string) {
	fs.Float64Var(p, name, def, UsageWithEnv(name, usage))
}

// NewLogger returns the slog logger of a command: level is debug, info,
// warn or error; format is text or json. Logs go to stderr.
func NewLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
