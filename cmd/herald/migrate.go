package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/pglocal"
)

func init() {
	register(command{name: "migrate", summary: "apply Herald's PostgreSQL migrations (herald run does it too); --status lists them",
		run: func(ctx context.Context, args []string) error { return runMigrate(ctx, os.Stdout, args) }})
}

// dbFlags are the flags of the commands that only need PostgreSQL.
type dbFlags struct {
	databaseURL, dataDir, logLevel string
	pgPort                         int
}

func (f *dbFlags) register(fs *flag.FlagSet) {
	cli.String(fs, &f.databaseURL, "database-url", "", "PostgreSQL URL; empty uses the local Postgres in <data-dir>/postgres")
	cli.String(fs, &f.dataDir, "data-dir", "./data", "Herald's data dir (for the local Postgres)")
	cli.String(fs, &f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	pgPortFlag(fs, &f.pgPort)
}

// open returns the database URL, starting (or attaching to) the local
// Postgres when no URL is given; stop stops what open started.
func (f *dbFlags) open(ctx context.Context, mustExist bool) (string, func(), *slog.Logger, error) {
	log, err := cli.NewLogger(f.logLevel, "text")
	if err != nil {
		return "", nil, nil, err
	}
	if f.databaseURL != "" {
		return f.databaseURL, func() {}, log, nil
	}
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return "", nil, nil, fmt.Errorf("--data-dir: %w", err)
	}
	url, stop, err := localDatabase(ctx, log, dir, f.pgPort, mustExist)
	return url, stop, log, err
}

// localDatabase starts the local Postgres in <dataDir>/postgres, or
// attaches to it when a herald run already started it. With mustExist a
// data dir without a cluster is an error instead of a new cluster. stop
// stops the server if this call started it.
func localDatabase(ctx context.Context, log *slog.Logger, dataDir string, port int, mustExist bool) (string, func(), error) {
	dir := filepath.Join(dataDir, "postgres")
	if mustExist {
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("no local Postgres in %s (run `herald run` first, or pass --database-url)", dir)
		}
	}
	srv, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Port: port, Log: log})
	if err != nil {
		return "", nil, fmt.Errorf("local postgres: %w (or pass --database-url)", err)
	}
	return srv.URL(), func() {
		if err := srv.Stop(); err != nil {
			log.Error("local postgres", "err", err)
		}
	}, nil
}

func runMigrate(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("herald migrate", flag.ContinueOnError)
	var f dbFlags
	f.register(fs)
	var status bool
	cli.Bool(fs, &status, "status", false, "list the migrations and whether each is applied, change nothing")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	url, stop, log, err := f.open(ctx, status) // --status is read-only: it never creates a Postgres
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if status {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return err
		}
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		st, err := migrations.Status(ctx, db)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tMIGRATION\tSTATE\tAPPLIED AT")
		for _, m := range st {
			at := ""
			if !m.AppliedAt.IsZero() {
				at = m.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Source.Version, filepath.Base(m.Source.Path), m.State, at)
		}
		return tw.Flush()
	}
	res, err := migrations.Migrate(ctx, url, log)
	if err != nil {
		return err
	}
	for _, m := range res.Applied {
		fmt.Fprintln(out, "applied", m)
	}
	fmt.Fprintf(out, "schema at version %d (%d migration(s) applied now)\n", res.Version, len(res.Applied))
	return nil
}
