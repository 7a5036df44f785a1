package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time by the Dockerfile and release
// builds: -ldflags "-X main.version=v1.2.3 -X main.commit=abc123". Without
// them, the module version and the VCS revision Go stamps into every build
// are used.
var version, commit string

func init() {
	register(command{name: "version", summary: "print Herald's version, commit and Go version (also --version)",
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments: %v", args)
			}
			printVersion(os.Stdout)
			return nil
		}})
}

// buildVersion returns the version, the commit ("+dirty" when the tree had
// changes) and the Go version of this binary.
func buildVersion() (ver, rev, goVersion string) {
	ver, rev, goVersion = version, commit, runtime.Version()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return orUnknown(ver), orUnknown(rev), goVersion
	}
	if ver == "" {
		ver = info.Main.Version
	}
	if rev == "" {
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" && modified {
			rev += "+dirty"
		}
	}
	return orUnknown(ver), orUnknown(rev), goVersion
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func printVersion(w io.Writer) {
	v, c, g := buildVersion()
	fmt.Fprintf(w, "herald %s\ncommit %s\ngo %s\n", v, c, g)
}
