// Package sink owns the PostgreSQL status tables' only writer: it consumes
// the dispatcher table's changelog (herald-dispatcher-table, whole
// contract.State values keyed by notification id) and writes the newest
// state of each notification to dispatch_status, and every provider attempt
// in State.History to dispatch_attempts, in bulk. Package report reads
// what it writes (`herald report`, the HTTP API's campaigns).
//
// # How a batch is written
//
// The consumer (group "herald-sink", franz-go, manual commits) collects
// a batch whose limits follow the backlog (Batching): when it is caught
// up, a batch is written BatchMinInterval after its first record (or at
// BatchMinSize records), so a status reaches PostgreSQL a few tens of
// milliseconds after the dispatcher wrote it; when it is behind, a batch
// takes what waits, up to BatchSize records and BatchInterval, so the
// backlog is written in large batches, each collapsing the versions of a
// notification it holds into one row. Writer.Write then keeps only the newest version of each id in the batch
// and, in ONE transaction of three round trips (BEGIN; both INSERTs sent
// together in one pgx batch; COMMIT), runs one INSERT of the attempts
// ON CONFLICT (id, attempt, at) DO NOTHING, and one INSERT ... SELECT ...
// ON CONFLICT (id) DO UPDATE ... WHERE excluded.version >
// dispatch_status.version, which also stamps status_synced_at when a row's
// status changes. The rows travel as one array parameter per column,
// unnested by the INSERTs.
//
// Three goroutines of a session form a pipeline: the collector polls and
// decodes the next batch while the writer writes the one before it, and a
// committer commits the written batches' Kafka offsets while the writer
// goes on. At most one batch is written and one collected (memory is
// bounded by two batches of BatchSize): a collected batch that is
// complete by the policy while the writer is busy goes on taking records,
// up to BatchSize, and is handed over the moment the writer is free, so a
// burst is written in full batches back to back.
//
// # Guarantees
//
//   - Nothing is lost: a batch's Kafka offsets are handed to the committer
//     only after its PostgreSQL transaction has committed (and after any
//     dead letters of the batch are acknowledged by the broker), so no
//     offset is ever committed past a record whose rows PostgreSQL does
//     not have. The committer (committer, in sink.go) runs one commit at a
//     time, for the highest offset per partition of every batch handed to
//     it so far: batches written while a commit runs are committed
//     together by the next one, and the committed offsets of a session
//     only move forward. A failed commit is counted and not retried; the
//     next commit covers its partitions again. A crash anywhere before the
//     Kafka commit (including between the PostgreSQL commit and the Kafka
//     commit, or after a failed commit) replays the batches from the last
//     committed offsets, and the version-guarded upsert makes that replay
//     change nothing; a crash before the PostgreSQL commit rolls the
//     transaction back. A shutdown waits for the batch being written (and
//     the one collected), then commits what was written, within
//     ShutdownGrace; what is left is replayed.
//   - Replays and reordering are harmless: a row changes only when the
//     incoming version is higher than the stored one, and attempts are
//     keyed by (id, attempt). Writing the same changes twice, or an older
//     version after a newer one, leaves the newest. dispatch_status is
//     therefore eventually the newest state per id, never an older one.
//   - PostgreSQL down or refusing a batch for a reason that is not the
//     data (connection lost, shutdown, deadlock, disk full, schema missing):
//     the sink backs off (RetryMin doubling to RetryMax) and retries the
//     same batch for ever, polling at most one batch more (the next batch
//     is collected and decoded while one is written; it waits, at most
//     BatchSize records, and batches are written and committed one after
//     the other). Lag grows on the
//     changelog, nothing is lost, and the sink catches up when PostgreSQL
//     is back. Ready() is false meanwhile.
//   - A record that can never be written does not block its partition: an
//     undecodable changelog value, a state that fails the sink's checks (no
//     id, id and key differ, a count out of range), or a row PostgreSQL
//     rejects for its data (SQLSTATE classes 22 data exception, 23
//     integrity violation, 54 program limit: a NUL byte in a text, a key
//     too large for the index). The writer bisects a rejected batch (each
//     half in its own transaction) down to the rows at fault, sends each
//     to herald.dlq as a contract.DeadLetter with the original key and
//     value, the reason and the source offset, and writes the rest. Dead
//     letters are at-least-once: a crash before the Kafka commit sends them
//     again.
//   - Tombstones (nil values) are skipped, and so are remembered records
//     (contract.State.Remembered, the dispatcher's retention): the row
//     keeps what the last whole state wrote, for the reports. A final
//     state that shed its payload (content and addresses) changes no
//     column: the sink writes neither, and the policy's id and version
//     stay in the shed state.
//   - Rows are never deleted: the dispatcher's retention removes states
//     from Kafka, not from PostgreSQL, whose retention is the operator's.
//   - Superseded versions inside one batch are not written (only the newest
//     per id is): if the newest version of an id is rejected, the older
//     versions of that id in the same batch are dropped with it, and the
//     row keeps whatever an earlier batch wrote.
//
// Several sink instances share the work by partitions (the group protocol).
// A rebalance never waits for a batch in flight: a sink retrying a batch
// for as long as PostgreSQL is down would otherwise hold every other
// member of the group in the rebalance (the chaos suite saw the group
// stuck for minutes). A batch whose partitions moved meanwhile is still
// written when PostgreSQL is back (the version guard makes that harmless)
// and its commit, if the member's generation is gone, fails and is left to
// the new owner, which replays from the last commit: every offset
// committed, by either, is below records already in PostgreSQL. Two
// instances may briefly write the same ids; rows are locked in id order
// so they cannot deadlock each other (a deadlock would be retried anyway).
package sink
