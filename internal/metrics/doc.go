// Package metrics owns Herald's Prometheus metrics: every metric's name,
// labels, help and buckets is written here and nowhere else.
//
// One pattern, for every stage:
//   - A stage reports events through a small Observer interface it
//     declares itself (dispatcher.DispatchObserver, sender.Observer,
//     delay.Observer, sink.Observer, views.Observer) and calls a no-op
//     when none is given; it never imports Prometheus. This package
//     implements each with Prometheus: Dispatch (which also counts the
//     sweep's wake-ups and the repartitioned records), Sender, Delay,
//     Sink, API.
//   - State that is read rather than counted is read through a small
//     interface too, at scrape time (DelayBacklog) or in the background
//     every interval (Held over the table view, Lag over the brokers).
//
// Every metric is registered on the registry the caller passes, never on
// the global one, so tests and several pipelines in one process do not
// collide. Labelled counters the dashboard (deploy/grafana/herald.json)
// reads exist at 0 from the start.
package metrics
