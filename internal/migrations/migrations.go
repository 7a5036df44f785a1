// Package migrations owns Herald's PostgreSQL schema: the SQL files in
// sql/ (goose format, embedded in the binary) and Migrate, which applies
// the pending ones with goose. `herald migrate` runs it, and so does
// `herald run` before the sink starts.
//
// Tables: dispatch_status (one row per notification, written only by the
// sink, version-guarded), dispatch_attempts (append-only, one row per
// provider attempt, partitioned by month). Views: campaign_status_counts,
// campaign_delivery_spread, campaign_failures. Indexes for the API's lists
// (00004) hold only columns that never change, so status updates stay HOT.
// docs/sink.md describes them.
//
// Several processes may migrate the same database at once: goose holds a
// PostgreSQL advisory lock while it applies migrations, and each migration
// runs in its own transaction.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var files embed.FS

// FS is the migration files, at its root.
func FS() fs.FS {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// Result says what Migrate did.
type Result struct {
	// Applied lists the migrations applied now, in order.
	Applied []string
	// Version is the schema version after Migrate.
	Version int64
}

// Migrate applies the pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string, log *slog.Logger) (Result, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return Result{}, fmt.Errorf("migrations: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	return MigrateDB(ctx, db, log)
}

// MigrateDB applies the pending migrations through db.
func MigrateDB(ctx context.Context, db *sql.DB, log *slog.Logger) (Result, error) {
	if log == nil {
		log = slog.Default()
	}
	p, err := provider(db)
	if err != nil {
		return Result{}, err
	}
	results, err := p.Up(ctx)
	var res Result
	for _, r := range results {
		if r.Error == nil && !r.Empty {
			res.Applied = append(res.Applied, r.Source.Path)
			log.Info("migration applied", "migration", r.Source.Path, "took", r.Duration)
		}
	}
	if err != nil {
		return res, fmt.Errorf("migrations: %w", err)
	}
	if res.Version, err = p.GetDBVersion(ctx); err != nil {
		return res, fmt.Errorf("migrations: version: %w", err)
	}
	return res, nil
}

// Status reports each migration and whether it is applied.
func Status(ctx context.Context, db *sql.DB) ([]*goose.MigrationStatus, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	// goose creates its version table to read it: on a database that was
	// never migrated, say so without writing anything.
	var migrated bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, goose.DefaultTablename).Scan(&migrated); err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	if !migrated {
		var st []*goose.MigrationStatus
		for _, src := range p.ListSources() {
			st = append(st, &goose.MigrationStatus{Source: src, State: goose.StatePending})
		}
		return st, nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	return st, nil
}

func provider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migrations: locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(),
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}
