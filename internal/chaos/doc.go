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
// TestChaosSmoke is the small run inside `make test`; `make chaos` runs
// TestChaos (2 and 3 instances, both provider modes). docs/operations.md
// describes the runs and how to read their report.
package chaos
