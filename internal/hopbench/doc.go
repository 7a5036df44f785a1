// Package hopbench measures every hop of Herald's pipeline, per record, in
// one place: `make bench` runs it first, and docs/performance.md ("Per-hop
// costs") holds one run's figures. It has no product code; the benchmarks
// are in its test files, in the manner of River's benchmark command: b.N
// records are published to a hop's input first, the hop's stage is started,
// and from the first record the stage is handed the clock runs until its
// last output.
//
// The hops, in a notification's order (BenchmarkHop1 ... BenchmarkHop7), then
// the floors:
//
//  1. request -> dispatcher: a new request; a table write and a send command;
//  2. result -> dispatcher: a success for a sending state; a table write;
//  3. wake-up -> dispatcher: a due hold wake-up of a scheduled state; a table
//     write and a send command;
//  4. send command -> sender -> mock provider (mock://, no latency) -> result;
//  5. delay tier -> delay stage -> herald.wakeups (records already due);
//  6. changelog -> sink -> PostgreSQL (COPY and upsert per batch);
//  7. changelog -> a view of the table (gokax.VersionedUpdate), and
//     changelog -> status feed -> herald.status;
//  8. the floors: a bare Goka processor with Herald's settings (one table
//     write and one emit), the pure transition (dispatcher.Dispatch), the
//     request's decoding and the state's encoding and decoding.
//
// Every Kafka hop runs on the embedded test broker (heraldtest.StartKafka,
// 12 partitions, in the benchmark's own process) and the sink on a
// throwaway PostgreSQL (heraldtest.Postgres). Each reports, per record:
// ns/op (one op is one record), records/s, cpu-ns/record (the CPU time of
// the whole process from getrusage, so the broker's share is included:
// Herald in production pays only its client side) and the allocations
// (B/op, allocs/op, also the whole process's). PostgreSQL's own CPU is not
// in cpu-ns/record: it runs as another process.
//
// Compare two runs with benchstat:
//
//	go test -run '^$' -bench . -count 6 ./internal/hopbench/ > old.txt
//	(change something)
//	go test -run '^$' -bench . -count 6 ./internal/hopbench/ > new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt
package hopbench
