// Package chaos owns Herald's chaos suite: real processes (a separate
// `herald broker`, two or three `herald run` instances, a throwaway
// PostgreSQL from pglocal and a recording webhook provider), paced
// publishing, and faults injected while work is in flight: kill -9 of
// instances and of the broker (restarted on the same data dir), PostgreSQL
// stopped, the provider answering 5xx, and an instance paused with SIGSTOP
// past its session timeout (a zombie) before it is resumed.
//
// The verdict is taken at the provider, never from Herald's own view: the
// provider's delivery log says what was delivered, and PostgreSQL is
// compared with it. A run passes when no valid notification is lost,
// none is delivered twice by a provider that honours Idempotency-Key
// (with one that does not, no more duplicates than provider calls were in
// flight at the kills), and every PostgreSQL status is final and agrees
// with the provider.
//
// Two runs aim at single windows: broker-restart kills the broker four
// times while both instances produce, beside a CPU hog (hog.go) and with a
// provider slow to accept connections (accept.go), and requires every
// status final within 30 s of the last restart; burst-kill kills an
// instance in a send burst with a fixed --send-concurrency and a provider
// that ignores the key, and allows no more notifications delivered twice
// than that concurrency and than the calls in flight at the kill.
//
// TestChaosSmoke is the small run inside `make test`; `make chaos` runs
// TestChaos (2 and 3 instances, both provider modes, then broker-restart
// and burst-kill). docs/operations.md describes the runs and how to read
// their report.
package chaos
