package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
)

func init() {
	register(command{name: "report", summary: "print a campaign's status counts, delivery-time spread and failures from PostgreSQL",
		run: func(ctx context.Context, args []string) error { return runReport(ctx, os.Stdout, args) }})
}

func runReport(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("herald report", flag.ContinueOnError)
	var f dbFlags
	f.register(fs)
	var campaign string
	var asJSON, reveal bool
	cli.String(fs, &campaign, "campaign", "", "the campaign to report on (required)")
	cli.Bool(fs, &asJSON, "json", false, "print JSON instead of tables")
	cli.Bool(fs, &reveal, "reveal", false, "print provider errors as they are (they may quote recipients' addresses, masked by default)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if campaign == "" {
		return errors.New("--campaign is required")
	}
	url, stop, log, err := f.open(ctx, true)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer conn.Close(context.Background())
	sum, err := report.CampaignSummary(ctx, conn, campaign)
	if err != nil {
		return err
	}
	if reveal {
		log.Warn("report: provider errors revealed", "campaign", campaign)
	}
	if !reveal {
		for i := range sum.Failures {
			sum.Failures[i].Error = contract.MaskText(sum.Failures[i].Error)
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	return printSummary(out, sum)
}

// printSummary writes a campaign summary as tables.
func printSummary(w io.Writer, s *report.Summary) error {
	fmt.Fprintf(w, "Campaign %s: %d notifications, %d final, last update %s\n\n",
		s.Campaign, s.Total, s.Final, s.LastUpdate.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CHANNEL\tSTATUS\tNOTIFICATIONS\tSHARE\tATTEMPTS\tDUPLICATES\t")
	for _, c := range s.Counts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f%%\t%d\t%d\t\n", dash(c.Channel), c.Status, c.Notifications,
			100*float64(c.Notifications)/float64(s.Total), c.Attempts, c.Duplicates)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if d := s.Delivery; d != nil {
		fmt.Fprintf(w, "Delivery time of the %d sent (from first seen to accepted by the provider):\n", d.Sent)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "MIN\tP50\tP90\tP99\tMAX\tFIRST SENT\tLAST SENT\t")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", seconds(d.MinSeconds), seconds(d.P50Seconds), seconds(d.P90Seconds),
			seconds(d.P99Seconds), seconds(d.MaxSeconds), d.FirstSent.Format(time.RFC3339), d.LastSent.Format(time.RFC3339))
		if err := tw.Flush(); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(w, "Delivery time: nothing sent yet.")
	}

	if len(s.Failures) > 0 {
		fmt.Fprintln(w, "\nWhy notifications ended unsent (commonest first):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STATUS\tCHANNEL\tNOTIFICATIONS\tLAST ERROR")
		for _, f := range s.Failures {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", f.Status, dash(f.Channel), f.Notifications, dash(f.Error))
		}
		return tw.Flush()
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// seconds prints a duration in seconds readably: 850ms, 12.3s, 4m10s, 3h5m.
func seconds(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
