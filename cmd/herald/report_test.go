package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
	"github.com/herald-dispatch/herald/internal/sink"
)

// herald migrate creates the schema, the sink writes, and herald report
// prints what it wrote, as tables and as JSON, with addresses in provider
// errors masked unless --reveal.
func TestMigrateAndReport(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dsn := heraldtest.Postgres(t)
	var out bytes.Buffer
	if err := runMigrate(ctx, &out, []string{"--database-url", dsn}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "schema at version 6 (6 migration(s) applied now)") {
		t.Fatalf("migrate said:\n%s", out.String())
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now().UTC().Truncate(time.Second)
	var changes []sink.Change
	for i, id := range []string{"a", "b", "c", "d"} {
		s := &contract.State{ID: id, Campaign: "nov", Status: contract.StatusSent, Channel: contract.ChannelEmail,
			Attempts: 1, FirstSeen: now.Add(-time.Duration(10*(i+1)) * time.Second), UpdatedAt: now, Version: 5}
		s.SentAt = &now
		changes = append(changes, sink.Change{State: s})
	}
	failed := &contract.State{ID: "e", Campaign: "nov", Status: contract.StatusFailed, Channel: contract.ChannelSMS, Attempts: 3,
		FirstSeen: now, UpdatedAt: now, Version: 9, LastError: "550 <jane.doe@example.com>: no such user"}
	changes = append(changes, sink.Change{State: failed})
	if _, err := sink.NewWriter(pool).Write(ctx, changes); err != nil {
		t.Fatal(err)
	}

	reportOn := func(args ...string) error {
		out.Reset()
		return runReport(ctx, &out, append([]string{"--database-url", dsn, "--campaign"}, args...))
	}
	if err := reportOn("nov"); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{
		"Campaign nov: 5 notifications, 5 final",
		"email    sent              4  80.0%",
		"sms  failed              1  20.0%",
		"Delivery time of the 4 sent",
		"10.0s  25.0s",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("report lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "jane.doe@example.com") {
		t.Errorf("report shows an address unmasked:\n%s", table)
	}

	if err := reportOn("nov", "--json", "--reveal"); err != nil {
		t.Fatal(err)
	}
	var sum report.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if sum.Total != 5 || sum.ByStatus["sent"] != 4 || sum.Delivery == nil || sum.Delivery.P50Seconds != 25 ||
		len(sum.Failures) != 1 || sum.Failures[0].Error != failed.LastError {
		t.Fatalf("json: %+v", sum)
	}

	if err := reportOn("nope"); err == nil ||
		!strings.Contains(err.Error(), "campaign not found") {
		t.Fatalf("unknown campaign: %v", err)
	}
}
