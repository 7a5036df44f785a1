package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// envName is the environment variable beside a flag.
func envName(flagName string) string {
	if flagName == "database-url" {
		return "DATABASE_URL"
	}
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v
	}
	return def
}

// stringFlag defines a string flag whose default comes from its variable.
func stringFlag(fs *flag.FlagSet, p *string, name, def, usage string) {
	fs.StringVar(p, name, envString(name, def), usage+" ["+envName(name)+"]")
}

func intFlag(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	v := def
	if s, ok := os.LookupEnv(envName(name)); ok {
		if n, err := strconv.Atoi(s); err == nil {
			v = n
		}
	}
	fs.IntVar(p, name, v, usage+" ["+envName(name)+"]")
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	v := def
	if s, ok := os.LookupEnv(envName(name)); ok {
		if d, err := time.ParseDuration(s); err == nil {
			v = d
		}
	}
	fs.DurationVar(p, name, v, usage+" ["+envName(name)+"]")
}

func boolFlag(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	v := def
	if s, ok := os.LookupEnv(envName(name)); ok {
		if b, err := strconv.ParseBool(s); err == nil {
			v = b
		}
	}
	fs.BoolVar(p, name, v, usage+" ["+envName(name)+"]")
}

// listFlag is a repeatable flag; its variable holds a comma-separated list.
type listFlag struct {
	vals []string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set { // the first flag on the command line replaces the variable's values
		l.vals, l.set = nil, true
	}
	l.vals = append(l.vals, s)
	return nil
}

func listVar(fs *flag.FlagSet, p *listFlag, name, usage string) {
	if s, ok := os.LookupEnv(envName(name)); ok && s != "" {
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				p.vals = append(p.vals, v)
			}
		}
	}
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

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}
