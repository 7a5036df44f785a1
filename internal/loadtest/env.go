package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-dispatch/herald/internal/pglocal"
)

// EnvConfig configures the infrastructure shared by every run of one
// invocation.
type EnvConfig struct {
	// Binary is the herald binary the runs start (`herald broker`,
	// `herald run`).
	Binary string
	// WorkDir holds the broker's, the processes' and PostgreSQL's data.
	WorkDir string
	// DatabaseURL is an existing PostgreSQL to use (each run gets a
	// database of its own on it); empty starts a local one in WorkDir.
	DatabaseURL string
	// PGEphemeral turns the local PostgreSQL's durability off (fsync,
	// synchronous_commit). Off by default: both Herald's sink and the
	// baseline then pay for durable commits, as in production.
	PGEphemeral bool
	Log         *slog.Logger
	// Progress receives a status line every second (nil: none).
	Progress io.Writer
}

// Env is the infrastructure of one invocation: the herald binary, a work
// dir and one PostgreSQL server.
type Env struct {
	cfg      EnvConfig
	pg       *pglocal.Server
	adminURL string
	flags    map[string]string
	dbs      []string
	seq      int
}

// NewEnv starts PostgreSQL (unless cfg.DatabaseURL is given) and reads
// the flags `herald run` accepts.
func NewEnv(ctx context.Context, cfg EnvConfig) (*Env, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	flags, err := FlagDefaults(cfg.Binary, "run")
	if err != nil {
		return nil, err
	}
	e := &Env{cfg: cfg, flags: flags}
	if cfg.DatabaseURL != "" {
		e.adminURL = cfg.DatabaseURL
		return e, nil
	}
	e.pg, err = pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(cfg.WorkDir, "postgres"),
		Ephemeral: cfg.PGEphemeral, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	e.adminURL = e.pg.DatabaseURL("postgres")
	return e, nil
}

// Close drops the databases made on an external server and stops the
// local PostgreSQL.
func (e *Env) Close() error {
	if e.pg != nil {
		return e.pg.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, db := range e.dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			e.cfg.Log.Warn("drop database", "db", db, "err", err)
		}
	}
	return nil
}

// HasRunFlag reports whether `herald run` accepts --name.
func (e *Env) HasRunFlag(name string) bool {
	_, ok := e.flags[name]
	return ok
}

// SenderConcurrency is the sender's in-flight limit per process that a
// run with concurrency c uses: c, or the sender's default.
func (e *Env) SenderConcurrency(c int) int {
	if c > 0 {
		return c
	}
	n, _ := strconv.Atoi(e.flags[e.concurrencyFlag()])
	return n
}

// NewDatabase creates a fresh database for one run and returns its URL.
func (e *Env) NewDatabase(ctx context.Context, label string) (string, error) {
	e.seq++
	name := fmt.Sprintf("herald_lt_%d_%d_%s", time.Now().Unix(), e.seq, sanitize(label))
	if err := pglocal.CreateDatabase(ctx, e.adminURL, name); err != nil {
		return "", err
	}
	e.dbs = append(e.dbs, name)
	u, err := url.Parse(e.adminURL)
	if err != nil {
		return "", fmt.Errorf("database url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// postgresPID is the local server's postmaster pid, or 0.
func (e *Env) postgresPID() int {
	if e.pg == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(e.pg.Dir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
