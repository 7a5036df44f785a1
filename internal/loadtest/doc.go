// Package loadtest is Herald's end-to-end load test, run by
// cmd/herald-loadtest and reused by the chaos suite (internal/chaos). It
// never runs inside the product binary.
//
// One run (Env.Run) starts real processes on the machine: a `herald
// broker`, one or more `herald run` instances, a throwaway PostgreSQL
// (internal/pglocal) and a simulated provider that records every call
// (provider.go). It publishes a generated billing run (workload.go: normal
// notifications plus shares with blackout windows, not_before, windows
// opening and expiries falling while commands queue, a provider slower
// than the provider timeout, malformed records, and a re-run of the batch
// that re-publishes duplicates), at a paced or unbounded rate (publish.go),
// and watches it to the end (watch.go, progress.go).
//
// It then checks every guarantee at the provider and in PostgreSQL
// (checks.go: every notification final, exactly once at the provider,
// nobody contacted inside a window or after expires_at, no second channel,
// Postgres counts equal to the provider's, every malformed record in the
// DLQ), measures throughput, latency, lateness, CPU and RSS per process
// (stats.go, procstat.go), the adaptive send limit (sendlimit.go) and how
// far the status in PostgreSQL trails the provider, runs the row-lock
// design it replaces on the same workload (baseline_run.go and package
// baseline), and writes a report with charts and a capacity
// recommendation over a sweep of partitions and instances (report.go,
// charts.go, sweep.go).
package loadtest
