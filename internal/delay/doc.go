// Package delay is Herald's delayed delivery on plain Kafka topics: how a
// record waits seconds to days and comes back when it is due, with no
// external scheduler, no timer per record, and nothing held only in memory.
//
// # Tiers
//
// A record that must wait is published to a tier topic (herald.delay.100ms
// ... herald.delay.24h). Each tier holds every record for one fixed delay,
// so a tier partition's order is its due order and its consumer only ever
// waits for its head. Every delayed record carries two headers, named in
// internal/topology with the routing every stage that delays a record
// uses: topology.HeaderDue, the instant it may be released (Unix
// nanoseconds, decimal), and topology.HeaderTarget, the topic it goes to
// then. Its key and value (and headers) pass through untouched, so the
// target sees the record as it was published, on the same partition (the
// key hash is the same everywhere).
//
// A record in tier T leaves it at min(timestamp + T, due). If it is due by
// then it is forwarded to its target; otherwise it hops: it is published
// again to topology.Route(due, now, target), the largest tier not longer
// than what remains. A long wait therefore hops through several tiers,
// largest first; TestSimulatedTiers measures a mean of about 4 hops for
// delays under a minute, 7 under an hour and 10 under a day (at most 19).
// Because a record is forwarded only when the clock has reached its due
// time, nothing is ever released early, whatever the record's timestamp
// says.
//
// # The stage
//
// Stage consumes every tier topic in one consumer group (franz-go). Each
// assigned tier partition has one worker goroutine and one timer: it looks
// at the head of its buffered records (Plan), releases everything that may
// leave now in one batch, and otherwise sleeps until the head's release time
// or until a record arrives in an empty buffer. Nothing polls: an idle stage
// with a million held records sleeps on one timer per partition. A
// partition buffers at most Config.MaxBuffer records; then its fetching is
// paused (PauseFetchPartitions) and the rest waits in Kafka, so memory stays
// bounded and the other partitions keep flowing. Fetching resumes when the
// buffer has drained to half.
//
// # Guarantees
//
//   - Never early: a record is forwarded only when now >= due.
//   - Lateness: a record is held in tier T only until min(timestamp+T,
//     due), and a tier's head can delay the records behind it by at most
//     the tier's remaining time, so the worst-case lateness is about the
//     smallest tier (100 ms) plus processing (a fetch, a produce; a
//     resumed partition waits up to Config.FetchMaxWait for its fetch).
//   - Offsets: a partition's offset is marked for commit only after the
//     produce of its forward, hop or dead letter is acknowledged (acks=all,
//     idempotent producer), and only up to the last record of a released
//     run: records leave a partition strictly in order, so a commit never
//     moves past a record that is still held. Marked offsets are committed
//     every Config.CommitInterval, and synchronously when partitions are
//     revoked and at shutdown.
//   - Crash: a process killed after a release was acknowledged but before
//     its offset was committed releases it again after the restart: the
//     delay stage is at-least-once. The dispatcher ignores the duplicate (a
//     hold wake-up must match the state's next_attempt_at; a send-timeout
//     must match the attempt). A held record is never lost: it stays in its
//     tier topic until the record that replaces it (hop or forward) is
//     acknowledged, and the tier topics' retention outlives the largest tier.
//   - Clean restart and rebalance: a waiting partition stops at once (its
//     worker only sleeps), a release already in flight is allowed to be
//     acknowledged (up to Config.ShutdownGrace at shutdown), and the offsets
//     are committed before the partition is given up, so a clean restart or
//     rebalance releases nothing twice. Rebalance callbacks never wait for
//     a due time.
//   - Bad input: a record with a missing or bad HeaderDue or HeaderTarget,
//     or a target that is not one of Config.Targets, goes to the DLQ as a
//     contract.DeadLetter (reason "malformed", original key and bytes,
//     source topic/partition/offset) and is committed past.
//
// See docs/architecture.md, "Delayed delivery", for why tiers and not a
// due-time index, and for the measured figures.
package delay
