package main

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
)

// The consumer groups `herald run` joins are exactly the groups whose lag
// /metrics exports by default (metrics.DefaultLagGroups): a stage whose
// group is left out would lag unseen. One notification, due a second
// later, goes through every stage (dispatcher, delay, sender, sink, status
// feed) first, so that every stage's group has joined when they are listed.
func TestDefaultLagGroupsAreTheGroupsHeraldRuns(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	dsn := heraldtest.Postgres(t)
	run := startRun(t, c, "--api-token", "lag-token", "--http-addr", freeAddr(t), "--database-url", dsn, "--log-level", "warn",
		"--provider", "email=mock://", "--sink-batch-interval", "50ms")

	cl := c.Client(t)
	due := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	c.Produce(t, cl, &kgo.Record{Topic: topology.TopicRequests, Key: []byte("lag-1"), Value: []byte(
		`{"schema":"herald.dispatch.v1","id":"lag-1","campaign":"lag","recipient":{"email":"kim@example.com"},` +
			`"channels":["email"],"content":{"subject":"hi"},"not_before":"` + due + `"}`)})
	c.Consume(t, topology.TopicStatus, 60*time.Second, func(rs []*kgo.Record) bool {
		return slices.ContainsFunc(rs, func(r *kgo.Record) bool { return bytes.Contains(r.Value, []byte(`"status":"sent"`)) })
	})
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	run.waitFor(60*time.Second, "the notification sent, in PostgreSQL", func() bool {
		var status string
		err := conn.QueryRow(context.Background(), `SELECT status FROM dispatch_status WHERE id = 'lag-1'`).Scan(&status)
		return err == nil && status == "sent"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups, want := listed.Groups(), metrics.DefaultLagGroups()
	for _, g := range groups {
		if !slices.Contains(want, g) {
			t.Errorf("herald run joins group %q, which metrics.DefaultLagGroups %v leaves out", g, want)
		}
	}
	for _, g := range want {
		if !slices.Contains(groups, g) {
			t.Errorf("metrics.DefaultLagGroups names %q, a group herald run does not join (it joins %v)", g, groups)
		}
	}
}
