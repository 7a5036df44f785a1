package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// watchSpec is what watchRun needs from a system under test (Herald or
// the baseline).
type watchSpec struct {
	plan  *Plan
	rec   *Recorder
	procs *ProcWatch
	// timeout bounds the run; quiet is how long to watch for late calls
	// after the last notification became final.
	timeout, quiet time.Duration
	out            io.Writer
	log            *slog.Logger
	// publish feeds the system (the batch); published counts records
	// accepted so far, lastAck is when the last was (Unix ns).
	publish   func(ctx context.Context) error
	published func() int64
	lastAck   func() int64
	// progress counts final notifications and the duplicates recorded.
	progress func(ctx context.Context) (final, dups int64, err error)
	// lag reads consumer lag per group (nil: none).
	lag func(ctx context.Context) (map[string]int64, error)
	// senders reads the senders' concurrency limits and provider calls in
	// flight per channel (nil: none).
	senders func(ctx context.Context) (limit, calls map[string]int64, err error)
	// alive fails when a process of the system has died (nil: never).
	alive func() error
	// observe reads the system's own records for the checks.
	observe func(ctx context.Context, o *Observed) []string
}

// watchRun publishes, samples once a second until every valid
// notification is final (or the timeout), then gathers the observations,
// checks them and fills res.
func watchRun(ctx context.Context, w watchSpec, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	plan := w.plan
	start := time.Now()
	res.Started = start
	pubDone := make(chan error, 1)
	go func() { pubDone <- w.publish(ctx) }()

	valid := int64(plan.Valid())
	wantDup := int64(len(plan.Rerun))
	var (
		final, dups int64
		lastDB      time.Time
		dbEvery     = time.Second
		published   bool
		allFinalAt  time.Time
		lastCalls   int64
		quietSince  time.Time
		lag         = map[string]int64{}
		sendLimit   map[string]int64
		sendCalls   map[string]int64
		prog        = newProgress(w.out, res.Name)
		tick        = time.NewTicker(time.Second)
	)
	defer tick.Stop()
	defer prog.done()
	res.PeakLagByGroup = map[string]int64{}
	res.Samples = append(res.Samples, Sample{})
	for {
		select {
		case err := <-pubDone:
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				return err
			}
			published = true
			res.PublishTook = time.Duration(w.lastAck() - start.UnixNano())
			pubDone = nil
			continue
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			res.Errors = append(res.Errors, fmt.Sprintf("timed out after %s: %d of %d notifications final", w.timeout, final, valid))
			return observeAndCheck(context.Background(), w, res, start)
		case <-tick.C:
		}
		if w.alive != nil {
			if err := w.alive(); err != nil {
				res.Errors = append(res.Errors, err.Error())
				return err
			}
		}
		now := time.Now()
		if now.Sub(lastDB) >= dbEvery {
			t0 := time.Now()
			if f, d, err := w.progress(ctx); err == nil {
				final, dups = f, d
			} else if ctx.Err() == nil {
				// The table appears when the sink starts; until then, and on
				// a transient error, keep the last figures.
				w.log.Debug("progress query", "err", err)
			}
			// Poll PostgreSQL at most a tenth of the time.
			dbEvery = max(time.Second, 10*time.Since(t0))
			lastDB = now
		}
		if w.lag != nil {
			lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
			if l, err := w.lag(lctx); err == nil {
				lag = l
			}
			lcancel()
		}
		if w.senders != nil {
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			if l, c, err := w.senders(sctx); err == nil {
				sendLimit, sendCalls = l, c
			}
			scancel()
		}
		procs := w.procs.Sample()
		sm := Sample{At: now.Sub(start), Published: w.published(), Calls: w.rec.Calls(),
			Delivered: w.rec.Accepted(), Completed: final, Lag: lag,
			CPU: map[string]float64{}, RSS: map[string]int64{}, SendLimit: sendLimit, SendCalls: sendCalls}
		for name, u := range procs {
			sm.CPU[name] = u.CPU
			sm.RSS[name] = u.RSS
		}
		res.Samples = append(res.Samples, sm)
		for g, v := range lag {
			res.PeakLagByGroup[g] = max(res.PeakLagByGroup[g], v)
		}
		res.PeakLag = max(res.PeakLag, sm.TotalLag())
		prog.line(sm, valid, int64(plan.Records()))

		if !published || final < valid {
			continue
		}
		if allFinalAt.IsZero() {
			allFinalAt = now
			res.Elapsed = now.Sub(start)
			res.Complete = true
			lastCalls, quietSince = sm.Calls, now
			// The run's figures stop here; the quiet period is idle.
			res.Procs = procs
		}
		if sm.Calls != lastCalls {
			lastCalls, quietSince = sm.Calls, now
		}
		// Done once the duplicates are all counted (or have had 30 s to
		// be) and no provider call came for the quiet period.
		if (dups >= wantDup || now.Sub(allFinalAt) > 30*time.Second) && now.Sub(quietSince) >= w.quiet {
			return observeAndCheck(ctx, w, res, start)
		}
	}
}

// observeAndCheck gathers the observations and runs the checks.
func observeAndCheck(ctx context.Context, w watchSpec, res *Result, start time.Time) error {
	plan := w.plan
	if res.Procs == nil {
		res.Procs = w.procs.Sample()
	}
	if res.Elapsed == 0 {
		res.Elapsed = time.Since(start)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	o := &Observed{FirstCall: make([]int64, plan.W.N), Provider: w.rec.Stats(),
		Forbidden: make([]int32, plan.W.N), ForbiddenBy: make([]time.Duration, plan.W.N), SlowReplays: w.rec.SlowReplays()}
	o.Answered = make([]int64, plan.W.N)
	for i := range o.FirstCall {
		o.FirstCall[i] = w.rec.FirstCall(i)
		o.Answered[i] = w.rec.Answered(i)
		n, by := w.rec.Forbidden(i)
		o.Forbidden[i], o.ForbiddenBy[i] = int32(n), by
	}
	ObservedFromDeliveries(plan, w.rec.Deliveries(), o)
	o.UnknownCalls += w.rec.Unknown()
	res.Errors = append(res.Errors, w.observe(ctx, o)...)
	res.ProviderStats = o.Provider
	res.Checks = Check(plan, o)
	lat := Measure(plan, o.FirstCall)
	res.endToEndHist, res.latenessHist = lat.EndToEnd, lat.Lateness
	res.EndToEnd, res.Lateness = Summarize(lat.EndToEnd), Summarize(lat.Lateness)
	res.Throughput = throughputOf(res.Samples, int64(plan.Valid()))
	if o.FinalSynced != nil {
		sb, _ := MeasureStatusBehind(o.Answered, o.FinalSynced)
		res.StatusBehind = &sb
	}
	return nil
}
