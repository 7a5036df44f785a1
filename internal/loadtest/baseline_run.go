package loadtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/loadtest/baseline"
	"github.com/herald-dispatch/herald/internal/provider"
)

// BaselineConfig is one run of the row-lock baseline.
type BaselineConfig struct {
	Name     string
	Workload Workload
	// Rate is records per second the batch inserts (0: as fast as it can).
	Rate     float64
	Provider ProviderSpec
	// Concurrency is the number of provider calls in flight.
	Concurrency int
	// PageSize is the claim page (baseline.DefaultPageSize).
	PageSize                   int
	Timeout, RerunDelay, Quiet time.Duration
}

// DefaultBaselineBudget is how long a baseline run should take at most
// when sized by BaselineN.
const DefaultBaselineBudget = 2 * time.Minute

// BaselineN sizes a baseline run: the same n as Herald's run, unless that
// would take longer than budget at concurrency calls in flight of
// latency each (concurrency/latency notifications per second at best);
// then the most that fit. At the reference's 180 concurrent sends and 1 s
// per email, 100,000 notifications alone would take over nine minutes,
// and the design's rate is steady from its first seconds, so a smaller
// run measures it as well.
func BaselineN(n, concurrency int, latency, budget time.Duration) int {
	if latency <= 0 || budget <= 0 {
		return n
	}
	fit := int(float64(concurrency) * budget.Seconds() / latency.Seconds())
	return min(n, max(fit, 1000))
}

// ingestPage is how many records the baseline's batch inserts per
// statement.
const ingestPage = 500

// RunBaseline runs the workload through the baseline and checks it with
// the same checks as Herald.
func (e *Env) RunBaseline(ctx context.Context, bc BaselineConfig) (*Result, error) {
	if bc.Concurrency <= 0 {
		return nil, fmt.Errorf("baseline: concurrency must be positive")
	}
	if bc.Provider.Email == nil {
		bc.Provider = DefaultProviderSpec()
	}
	if bc.Timeout <= 0 {
		bc.Timeout = DefaultTimeout
	}
	if bc.RerunDelay <= 0 {
		bc.RerunDelay = DefaultRerunDelay
	}
	if bc.Quiet <= 0 {
		bc.Quiet = DefaultQuiet
	}
	if bc.Name == "" {
		bc.Name = fmt.Sprintf("baseline-c%d", bc.Concurrency)
	}
	// The baseline is measured for its throughput; it claims no send
	// cut-offs and no unknown outcomes, so the shares that test those are
	// Herald's alone.
	bc.Workload.WindowQueued, bc.Workload.Expiring, bc.Workload.SlowProvider = 0, 0, 0
	plan, err := NewPlan(bc.Workload)
	if err != nil {
		return nil, err
	}
	rec := NewRecorder(plan, bc.Provider.HonourIdempotency)
	prov, err := StartProvider(rec)
	if err != nil {
		return nil, err
	}
	defer prov.Close()
	dbURL, err := e.NewDatabase(ctx, bc.Name)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	pcfg.MaxConns = baseline.DefaultMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer pool.Close()
	if err := baseline.Schema(ctx, pool); err != nil {
		return nil, err
	}
	popts := provider.Options{Concurrency: bc.Concurrency, Log: e.cfg.Log}
	email, err := provider.NewWebhook(prov.ChannelURL("email", bc.Provider.Email), popts)
	if err != nil {
		return nil, err
	}
	defer email.Close()
	sms, err := provider.NewWebhook(prov.ChannelURL("sms", bc.Provider.SMS), popts)
	if err != nil {
		return nil, err
	}
	defer sms.Close()
	d, err := baseline.New(baseline.Config{Pool: pool, Concurrency: bc.Concurrency, PageSize: bc.PageSize,
		Providers: map[contract.Channel]provider.Provider{contract.ChannelEmail: email, contract.ChannelSMS: sms},
		Log:       e.cfg.Log})
	if err != nil {
		return nil, err
	}

	watch, err := NewProcWatch()
	if err != nil {
		return nil, err
	}
	watch.Watch("loadtest+provider+baseline", os.Getpid(), false)
	if pid := e.postgresPID(); pid > 0 {
		watch.Watch("postgres", pid, true)
	}

	res := &Result{Name: bc.Name, Concurrency: bc.Concurrency, Rate: bc.Rate, N: plan.W.N, Records: plan.Records(),
		Valid: plan.Valid(), Duplicates: len(plan.Rerun), Kinds: map[string]int{}, Provider: providerLabel(bc.Provider)}
	for _, k := range Kinds() {
		res.Kinds[k.String()] = plan.Count(k)
	}

	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(runCtx) }()
	defer func() {
		stop()
		<-runDone
	}()

	var ingested, lastAck atomic.Int64
	ingest := func(ctx context.Context) error {
		var lim *rate.Limiter
		if bc.Rate > 0 {
			lim = rate.NewLimiter(rate.Limit(bc.Rate), ingestPage)
		}
		page := make([]baseline.Record, 0, ingestPage)
		flush := func() error {
			if len(page) == 0 {
				return nil
			}
			if lim != nil {
				if err := lim.WaitN(ctx, len(page)); err != nil {
					return err
				}
			}
			if err := d.Ingest(ctx, page); err != nil {
				return err
			}
			ingested.Add(int64(len(page)))
			lastAck.Store(time.Now().UnixNano())
			page = page[:0]
			return nil
		}
		add := func(k, v []byte) error {
			page = append(page, baseline.Record{Key: k, Value: v})
			if len(page) == ingestPage {
				return flush()
			}
			return nil
		}
		for i := range plan.W.N {
			if err := add(plan.First(i, time.Now())); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if len(plan.Rerun) > 0 {
			select {
			case <-time.After(bc.RerunDelay):
			case <-ctx.Done():
				return ctx.Err()
			}
			for _, i := range plan.Rerun {
				if err := add(plan.Again(int(i), time.Now())); err != nil {
					return err
				}
			}
		}
		return flush()
	}
	err = watchRun(ctx, watchSpec{
		plan: plan, rec: rec, procs: watch, timeout: bc.Timeout, quiet: bc.Quiet,
		out: e.cfg.Progress, log: e.cfg.Log,
		publish: ingest, published: ingested.Load, lastAck: lastAck.Load,
		progress: func(ctx context.Context) (int64, int64, error) { return baselineProgress(ctx, pool) },
		observe: func(ctx context.Context, o *Observed) []string {
			var errs []string
			var err error
			if o.DB, err = baselineCounts(ctx, pool); err != nil {
				errs = append(errs, err.Error())
			}
			if o.DLQ, err = baselineDeadLetters(ctx, pool); err != nil {
				errs = append(errs, err.Error())
			}
			return errs
		},
	}, res)
	st := d.Stats()
	res.Baseline = &st
	return res, err
}

func baselineProgress(ctx context.Context, pool *pgxpool.Pool) (final, dups int64, err error) {
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status IN ('sent', 'failed')), coalesce(sum(duplicates), 0)
		FROM baseline_notification`).Scan(&final, &dups)
	return final, dups, err
}

func baselineCounts(ctx context.Context, pool *pgxpool.Pool) (DBCounts, error) {
	c := DBCounts{ByStatus: map[string]int64{}, SentByChannel: map[string]int64{}, NotSent: map[string]string{}}
	rows, err := pool.Query(ctx, `SELECT id, status, channel, duplicates FROM baseline_notification`)
	if err != nil {
		return c, fmt.Errorf("baseline counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, status, channel string
		var dups int64
		if err := rows.Scan(&id, &status, &channel, &dups); err != nil {
			return c, fmt.Errorf("baseline counts: %w", err)
		}
		// The baseline's 'pending' and 'sending' are Herald's non-final
		// statuses.
		switch status {
		case "pending":
			status = string(contract.StatusRetrying)
		case "sending":
			status = string(contract.StatusSending)
		}
		c.Rows++
		c.Duplicates += dups
		c.ByStatus[status]++
		if status == string(contract.StatusSent) {
			c.SentByChannel[channel]++
		} else {
			c.NotSent[id] = status
		}
	}
	return c, rows.Err()
}

func baselineDeadLetters(ctx context.Context, pool *pgxpool.Pool) ([]contract.DeadLetter, error) {
	rows, err := pool.Query(ctx, `SELECT key, value, reason, error FROM baseline_dead_letter`)
	if err != nil {
		return nil, fmt.Errorf("baseline dead letters: %w", err)
	}
	defer rows.Close()
	var out []contract.DeadLetter
	for rows.Next() {
		var d contract.DeadLetter
		if err := rows.Scan(&d.Key, &d.Value, &d.Reason, &d.Error); err != nil {
			return nil, fmt.Errorf("baseline dead letters: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
