// Package pglocal owns Herald's throwaway PostgreSQL: it starts a
// PostgreSQL server from the local binaries (initdb and postgres, found on
// PATH, in /usr/local/bin or in /usr/lib/postgresql/<version>/bin) in a
// data dir, on loopback only, with trust authentication, and creates a
// database. `herald run`, `herald migrate` and `herald report` use it when
// no --database-url is given (the cluster lives in <data-dir>/postgres), and
// tests use it through Test and TestServer (see testing.go).
//
// PostgreSQL refuses to run as root. When Herald runs as root, pglocal
// chowns the data dir to the `postgres` system user and runs initdb and
// postgres with that user's uid and gid (the same as `runuser -u postgres
// --`, without needing runuser). The server is a child of the calling
// process in its own process group: a Ctrl-C in the terminal reaches
// Herald, which stops PostgreSQL after its stages; if the caller dies, the
// kernel sends PostgreSQL SIGINT (a fast shutdown).
//
// A data dir that already holds a cluster is started again, keeping its
// data. If a server is already running on the data dir (another `herald
// run`, say), Start attaches to it instead: the returned Server's Stop
// then leaves it running.
package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultDatabase is the database Start creates when Config.Database is
// empty.
const DefaultDatabase = "herald"

// Superuser is the cluster's superuser, who connects without a password
// (trust authentication, loopback only).
const Superuser = "postgres"

// Config tells Start where and how to run the server.
type Config struct {
	// Dir is the data dir (PGDATA). It is created and initialised when it
	// does not hold a cluster yet. The server's log is written beside it,
	// to Dir + ".log".
	Dir string
	// Port to listen on, on 127.0.0.1. 0 picks a free port.
	Port int
	// Database is created if missing (default DefaultDatabase).
	Database string
	// Ephemeral turns durability off (fsync, synchronous_commit,
	// full_page_writes): for tests and throwaway clusters only. A crash of
	// the machine can then corrupt the cluster.
	Ephemeral bool
	// BinDir holds initdb and postgres; empty searches for them (the
	// HERALD_PG_BIN variable, PATH, /usr/local/bin,
	// /usr/lib/postgresql/*/bin).
	BinDir string
	// StartTimeout bounds initdb plus the wait for the server to accept
	// connections (default 2 minutes).
	StartTimeout time.Duration
	// Log receives progress messages (default slog.Default()).
	Log *slog.Logger
}

// Server is a running (or stopped) local PostgreSQL.
type Server struct {
	cfg  Config
	bin  string
	cred *syscall.Credential // nil: run as the current user
	port int
	// owned is false when Start attached to a server someone else started.
	owned bool

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts (or attaches to) the server in cfg.Dir and creates
// cfg.Database. It returns once the server accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pglocal: no data dir")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: data dir: %w", err)
	}
	cfg.Dir = dir
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	s := &Server{cfg: cfg, owned: true}
	if port, ok, err := s.running(ctx); err != nil {
		return nil, err
	} else if ok {
		s.port, s.owned = port, false
		cfg.Log.Info("local postgres already running, attaching", "dir", dir, "port", port)
		if err := s.createDatabase(ctx, cfg.Database); err != nil {
			return nil, err
		}
		return s, nil
	}

	if s.bin, err = findBinDir(cfg.BinDir); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(Superuser)
		if err != nil {
			return nil, fmt.Errorf("pglocal: running as root, PostgreSQL needs the %q system user (install postgresql, or run as another user): %w", Superuser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if err := s.startProcess(ctx); err != nil {
		return nil, err
	}
	if err := s.createDatabase(ctx, cfg.Database); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.port }

// Dir is the data dir.
func (s *Server) Dir() string { return s.cfg.Dir }

// URL is the connection URL of the configured database.
func (s *Server) URL() string { return s.DatabaseURL(s.cfg.Database) }

// DatabaseURL is the connection URL of database db on this server.
func (s *Server) DatabaseURL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Owned reports whether this Server started the process (and Stop stops it).
func (s *Server) Owned() bool { return s.owned }

// Stop shuts the server down (a fast shutdown: open transactions roll
// back, committed data stays) and waits for it to exit. It does nothing
// for a server Start attached to, or one already stopped.
func (s *Server) Stop() error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 5 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
		_ = p.cmd.Process.Signal(step.sig)
		select {
		case <-p.done:
			s.cfg.Log.Info("local postgres stopped", "dir", s.cfg.Dir)
			return nil
		case <-time.After(step.wait):
		}
	}
	return fmt.Errorf("pglocal: postgres pid %d did not stop", p.cmd.Process.Pid)
}

// Restart starts a stopped server again on the same port and data dir.
func (s *Server) Restart(ctx context.Context) error {
	if !s.owned {
		return errors.New("pglocal: cannot restart a server this process did not start")
	}
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return errors.New("pglocal: server is running")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	return s.startProcess(ctx)
}

// running looks for a live server on the data dir (postmaster.pid). A
// server that is shutting down is waited for; one that answers is
// attached to.
func (s *Server) running(ctx context.Context) (int, bool, error) {
	pidFile := filepath.Join(s.cfg.Dir, "postmaster.pid")
	for {
		pid, port, err := readPidFile(pidFile)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if pid <= 0 || !alive(pid) {
			return 0, false, nil // stale: postgres removes it itself
		}
		if port > 0 {
			s.port = port
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := s.ping(cctx, "postgres")
			cancel()
			if err == nil {
				return port, true, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, false, fmt.Errorf("pglocal: postgres pid %d holds %s but does not accept connections (stop it, or pass --database-url): %w",
				pid, s.cfg.Dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readPidFile reads the pid (line 1) and port (line 4) of postmaster.pid.
func readPidFile(path string) (pid, port int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan() && i <= 4; i++ {
		switch i {
		case 1:
			pid, _ = strconv.Atoi(strings.TrimSpace(sc.Text()))
		case 4:
			port, _ = strconv.Atoi(strings.TrimSpace(sc.Text()))
		}
	}
	return pid, port, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// findBinDir finds the directory holding initdb and postgres.
func findBinDir(dir string) (string, error) {
	var candidates []string
	if dir != "" {
		candidates = []string{dir}
	} else {
		if d := os.Getenv("HERALD_PG_BIN"); d != "" {
			candidates = append(candidates, d)
		}
		if p, err := exec.LookPath("postgres"); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
		candidates = append(candidates, "/usr/local/bin")
		versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(versions, func(i, j int) bool { return pgMajor(versions[i]) > pgMajor(versions[j]) })
		candidates = append(candidates, versions...)
	}
	for _, d := range candidates {
		ok := true
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				ok = false
			}
		}
		if ok {
			if real, err := filepath.EvalSymlinks(filepath.Join(d, "postgres")); err == nil {
				return filepath.Dir(real), nil
			}
			return d, nil
		}
	}
	return "", fmt.Errorf("pglocal: no PostgreSQL server binaries (initdb, postgres) in %s: install them (Debian: apt-get install postgresql) or pass a --database-url",
		strings.Join(candidates, ", "))
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// command builds a command that runs as the server's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = childEnv()
	cmd.Dir = filepath.Dir(s.cfg.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT, Credential: s.cred}
	return cmd
}

// childEnv is the environment without the libpq variables, which would
// otherwise point initdb or postgres elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// initdb creates the cluster unless the data dir already holds one.
func (s *Server) initdb(ctx context.Context) error {
	dir := s.cfg.Dir
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return s.prepareDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := s.prepareDir(); err != nil {
		return err
	}
	args := []string{"-D", dir, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"}
	if s.cfg.Ephemeral {
		args = append(args, "--no-sync")
	}
	start := time.Now()
	cmd := s.command("initdb", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pglocal: initdb %s: %w\n%s", dir, err, out)
	}
	s.cfg.Log.Info("local postgres initialised", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return ctx.Err()
}

// prepareDir gives the data dir to the server's user and checks it can
// reach it.
func (s *Server) prepareDir() error {
	dir := s.cfg.Dir
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if s.cred == nil {
		return nil
	}
	uid, gid := int(s.cred.Uid), int(s.cred.Gid)
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		return fmt.Errorf("pglocal: chown %s to %s: %w", dir, Superuser, err)
	}
	// The log file beside the data dir is opened by us, but keep it the
	// server user's too so that a manual pg_ctl can append to it.
	_ = os.Lchown(s.cfg.Dir+".log", uid, gid)
	return searchable(filepath.Dir(dir), uid)
}

// searchable makes sure uid can walk down to dir. Directories under the
// system temp dir (t.TempDir() makes them 0700) get the others' execute
// bit; anywhere else an unreachable directory is an error, not something
// to change behind the user's back.
func searchable(dir string, uid int) error {
	tmp := filepath.Clean(os.TempDir())
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pglocal: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o001 == 0 && (st == nil || int(st.Uid) != uid) {
			if p != tmp && strings.HasPrefix(p, tmp+string(filepath.Separator)) {
				if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
					return fmt.Errorf("pglocal: %w", err)
				}
			} else {
				return fmt.Errorf("pglocal: the %s user cannot reach the data dir: %s is not searchable by others (chmod o+x it, choose another data dir, or pass --database-url)", Superuser, p)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// startProcess starts postgres and waits until it accepts connections. With
// a free port it retries when another process took the port first.
func (s *Server) startProcess(ctx context.Context) error {
	fixed := s.cfg.Port != 0 || s.port != 0
	for try := 0; ; try++ {
		if s.port == 0 {
			s.port = s.cfg.Port
		}
		if s.port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		err := s.startOnce(ctx)
		if err == nil {
			return nil
		}
		if fixed || try >= 3 || !errors.Is(err, errBind) {
			return err
		}
		s.port = 0
	}
}

var errBind = errors.New("port in use")

func (s *Server) startOnce(ctx context.Context) error {
	args := []string{"-D", s.cfg.Dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200",
	}
	if s.cfg.Ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logPath := s.cfg.Dir + ".log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pglocal: log: %w", err)
	}
	logStart, _ := logf.Seek(0, 2)
	cmd := s.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pglocal: start postgres: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	start := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.ping(cctx, "postgres")
		cancel()
		if err == nil {
			s.cfg.Log.Info("local postgres started", "dir", s.cfg.Dir, "port", s.port, "pid", cmd.Process.Pid,
				"took", time.Since(start).Round(time.Millisecond), "log", logPath)
			return nil
		}
		select {
		case <-p.done:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			tail := logTail(logPath, logStart)
			if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
				return fmt.Errorf("pglocal: postgres on port %d: %w\n%s", s.port, errBind, tail)
			}
			return fmt.Errorf("pglocal: postgres exited (%v); its log %s says:\n%s", p.err, logPath, tail)
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("pglocal: postgres did not accept connections on port %d: %w (last error: %v)", s.port, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func logTail(path string, from int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return ""
	}
	b = b[from:]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pglocal: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ping connects to db and checks that the server answering on the port
// is the one of our data dir (not another server that holds the port).
func (s *Server) ping(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, s.DatabaseURL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return err
	}
	if !sameDir(dataDir, s.cfg.Dir) {
		return fmt.Errorf("pglocal: port %d is served by the cluster in %s, not %s", s.port, dataDir, s.cfg.Dir)
	}
	return nil
}

func sameDir(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(fa, fb)
}

// CreateDatabase creates db if it does not exist.
func (s *Server) CreateDatabase(ctx context.Context, db string) error {
	return s.createDatabase(ctx, db)
}

func (s *Server) createDatabase(ctx context.Context, db string) error {
	return CreateDatabase(ctx, s.DatabaseURL("postgres"), db)
}

// CreateDatabase creates database db on the server adminURL points to,
// unless it exists. Two callers racing are fine.
func CreateDatabase(ctx context.Context, adminURL, db string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("pglocal: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: another caller won
		return nil
	}
	if err != nil {
		return fmt.Errorf("pglocal: create database %s: %w", db, err)
	}
	return nil
}
