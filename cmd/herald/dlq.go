package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
)

func init() {
	register(command{name: "dlq", summary: "list, show and replay dead letters (herald dlq list|show|replay -h)",
		run: func(ctx context.Context, args []string) error {
			return runDLQ(ctx, stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}, args)
		}})
}

// stdio is a command's standard input, output and error.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// dlqFlags are the flags every dlq subcommand shares.
type dlqFlags struct {
	target                                     kafkaTargetFlags
	reason, topic, key, since, until, logLevel string
	at                                         cli.List
	asJSON                                     bool
	security                                   kafkaSecurityFlags
}

func (f *dlqFlags) register(fs *flag.FlagSet) {
	f.target.register(fs)
	cli.String(fs, &f.reason, "reason", "", "only dead letters with this reason (malformed, invalid, key_mismatch, ...)")
	cli.String(fs, &f.topic, "topic", "", "only dead letters from this topic (herald.requests, herald.results, ...)")
	cli.String(fs, &f.key, "key", "", "only dead letters with this key (a request's id)")
	cli.String(fs, &f.since, "since", "", "only dead letters from this time on: RFC 3339, or a duration ago such as 24h")
	cli.String(fs, &f.until, "until", "", "only dead letters before this time: RFC 3339, or a duration ago")
	cli.ListVar(fs, &f.at, "at", "only the dead letter at PARTITION@OFFSET of herald.dlq")
	cli.Bool(fs, &f.asJSON, "json", false, "print JSON Lines instead of a table")
	cli.String(fs, &f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	f.security.register(fs)
}

func (f *dlqFlags) filter(now time.Time) (dlq.Filter, error) {
	flt := dlq.Filter{Reason: f.reason, Topic: f.topic, Key: f.key, At: f.at.Vals}
	var err error
	if flt.Since, err = dlq.ParseWhen(f.since, now); err != nil {
		return flt, fmt.Errorf("--since: %w", err)
	}
	if flt.Until, err = dlq.ParseWhen(f.until, now); err != nil {
		return flt, fmt.Errorf("--until: %w", err)
	}
	if err := flt.Check(); err != nil {
		return flt, fmt.Errorf("--at, --since, --until: %w", err)
	}
	return flt, nil
}

// config returns the cluster's client configuration and where its brokers
// came from.
func (f *dlqFlags) config() (topology.Config, string, error) {
	sec, err := f.security.load()
	if err != nil {
		return topology.Config{}, "", err
	}
	brokers, from, err := f.target.resolve()
	if err != nil {
		return topology.Config{}, "", err
	}
	return topology.Config{Brokers: brokers, Security: sec, ClientID: "herald-dlq"}.WithDefaults(), from, nil
}

func runDLQ(ctx context.Context, std stdio, args []string) error {
	out := std.out
	if len(args) == 0 {
		return errors.New("want a subcommand: list, show or replay")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("herald dlq "+sub, flag.ContinueOnError)
	var f dlqFlags
	f.register(fs)
	var reveal, dryRun, again, yes bool
	var fixFile string
	switch sub {
	case "list":
	case "show":
		cli.Bool(fs, &reveal, "reveal", false, "print values as they are (they hold recipients' addresses, masked by default); the reveal is logged")
	case "replay":
		cli.Bool(fs, &dryRun, "dry-run", false, "say what would be replayed, publish nothing")
		cli.String(fs, &fixFile, "fix", "", "JSON Lines of corrected requests: each replaces the value of the dead letters whose key is its id; only those are replayed")
		cli.Bool(fs, &again, "again", false, "replay dead letters that were replayed before")
		cli.Bool(fs, &yes, "yes", false, "replay without asking for confirmation")
	default:
		return fmt.Errorf("unknown subcommand %q: want list, show or replay", sub)
	}
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(f.logLevel, "text")
	if err != nil {
		return err
	}
	now := time.Now()
	flt, err := f.filter(now)
	if err != nil {
		return err
	}
	tc, from, err := f.config()
	if err != nil {
		return err
	}
	cluster := fmt.Sprintf("the Kafka cluster at %s (%s)", strings.Join(tc.Brokers, ","), from)
	fmt.Fprintf(std.err, "herald dlq %s: %s\n", sub, cluster)
	var fixes map[string][]byte
	if fixFile != "" {
		b, err := os.ReadFile(fixFile)
		if err != nil {
			return fmt.Errorf("--fix: %w", err)
		}
		if fixes, err = dlq.ReadFixes(b); err != nil {
			return fmt.Errorf("--fix %s: %w", fixFile, err)
		}
	}
	if err := checkKafkaSecurity(ctx, tc.Brokers, tc.Security, f.security.checkTimeout); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	entries, err := dlq.Read(rctx, tc.KgoOpts(), topology.TopicDLQ, topology.TopicDLQReplays, flt)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return printDLQList(out, entries, f.asJSON)
	case "show":
		return printDLQShow(out, entries, f.asJSON, reveal, log)
	}
	rp := &dlq.Replayer{IntakeTopic: topology.TopicRequests, ReplaysTopic: topology.TopicDLQReplays,
		Fixes: fixes, Again: again, DryRun: dryRun, Now: time.Now}
	if !dryRun && !yes {
		if err := confirmReplay(rctx, std, rp, entries, cluster); err != nil {
			return err
		}
	}
	return replayDLQ(rctx, out, tc, entries, rp, f.asJSON)
}

// errNotConfirmed is a replay the operator did not confirm.
var errNotConfirmed = errors.New("replay not confirmed: nothing published (--yes replays without asking)")

// confirmReplay says how many dead letters a replay would publish, and to
// which cluster, and asks on std.in; anything but y or yes (or no answer)
// stops it.
func confirmReplay(ctx context.Context, std stdio, rp *dlq.Replayer, entries []dlq.Entry, cluster string) error {
	dry := *rp
	dry.DryRun = true
	res, err := dry.Replay(ctx, entries)
	if err != nil {
		return err
	}
	n := 0
	for _, o := range res {
		if o.Action == dlq.ActionWouldReplay {
			n++
		}
	}
	if n == 0 {
		return nil // nothing would be published: the replay only reports
	}
	fmt.Fprintf(std.err, "Replay %d dead letter(s) into %s of %s? [y/N] ", n, rp.IntakeTopic, cluster)
	if std.in == nil {
		return errNotConfirmed
	}
	line, _ := bufio.NewReader(std.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}

func replayDLQ(ctx context.Context, out io.Writer, tc topology.Config, entries []dlq.Entry, rp *dlq.Replayer, asJSON bool) error {
	if !rp.DryRun {
		if err := topology.EnsureSpecs(ctx, tc, topology.ReplaysTopic()); err != nil {
			return err
		}
		cl, err := kgo.NewClient(append(append(tc.KgoOpts(), kgo.ClientID(tc.ClientID)), topology.KgoProducerOpts()...)...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		defer cl.Close()
		rp.Client = cl
	}
	res, err := rp.Replay(ctx, entries)
	counts := map[string]int{}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	enc := json.NewEncoder(out)
	if !asJSON {
		fmt.Fprintln(tw, "DLQ\tACTION\tID\tDETAIL")
	}
	for _, o := range res {
		counts[o.Action]++
		id, detail := string(o.Entry.Letter.Key), o.Why
		if o.Replay != nil {
			id = o.Replay.ID
			if o.Action == dlq.ActionReplayed {
				detail = fmt.Sprintf("%s partition %d offset %d", o.Replay.Topic, o.Replay.Partition, o.Replay.Offset)
			}
			if o.Replay.Fixed {
				detail = strings.TrimSpace(detail + " (fixed)")
			}
		}
		if asJSON {
			enc.Encode(map[string]any{"dlq": o.Entry.Pos(), "action": o.Action, "id": id, "detail": detail})
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%q\t%s\n", o.Entry.Pos(), o.Action, id, detail)
	}
	if !asJSON {
		tw.Flush()
		fmt.Fprintf(out, "%d replayed, %d would be replayed, %d skipped\n", counts[dlq.ActionReplayed], counts[dlq.ActionWouldReplay], counts[dlq.ActionSkipped])
	}
	return err
}

// dlqJSON is a dead letter as `herald dlq list/show --json` print it.
type dlqJSON struct {
	DLQ       string    `json:"dlq"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
	Problems  any       `json:"problems,omitempty"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp,omitzero"`
	At        time.Time `json:"at"`
	Key       string    `json:"key"`
	Value     string    `json:"value,omitempty"`
	Replayed  any       `json:"replayed,omitempty"`
}

func toJSON(e dlq.Entry, value string) dlqJSON {
	d := e.Letter
	j := dlqJSON{DLQ: e.Pos(), Reason: d.Reason, Error: d.Error, Topic: d.Topic, Partition: d.Partition, Offset: d.Offset,
		Timestamp: d.Timestamp, At: d.At, Key: string(d.Key), Value: value}
	if e.Err != nil {
		j.Error = e.Err.Error()
	}
	if len(d.Problems) > 0 {
		j.Problems = d.Problems
	}
	if e.Replayed != nil {
		j.Replayed = e.Replayed
	}
	return j
}

func printDLQList(out io.Writer, entries []dlq.Entry, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		for _, e := range entries {
			if err := enc.Encode(toJSON(e, "")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tAT\tREASON\tSOURCE\tKEY\tREPLAYED\tERROR")
	for _, e := range entries {
		d := e.Letter
		replayed := ""
		if e.Replayed != nil {
			replayed = e.Replayed.At.UTC().Format(time.RFC3339)
		}
		errText := d.Error
		if e.Err != nil {
			errText = e.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%d@%d\t%q\t%s\t%s\n", e.Pos(), d.At.UTC().Format(time.RFC3339), d.Reason,
			d.Topic, d.Partition, d.Offset, truncateText(string(d.Key), 40), replayed, truncateText(contract.MaskText(errText), 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d dead letter(s)\n", len(entries))
	return nil
}

// readableValue returns a dead letter's value as text: a record of
// Herald's in the binary encoding as its JSON (by the topic it was bound
// for: the herald-target of a delay tier's record, the origin of a moved
// one), anything else as it is.
func readableValue(d contract.DeadLetter) string {
	topic := d.Topic
	for _, h := range d.Headers {
		if h.Key == topology.HeaderTarget || h.Key == dispatcher.HeaderOriginTopic {
			topic = string(h.Value)
		}
	}
	kind := contract.KindOther
	switch topic {
	case string(topology.TableDispatcher):
		kind = contract.KindState
	case topology.TopicSend:
		kind = contract.KindCommand
	case topology.TopicResults:
		kind = contract.KindResult
	case topology.TopicWakeups:
		kind = contract.KindWakeup
	case topology.TopicControl:
		kind = contract.KindControl
	}
	return string(contract.Readable(kind, d.Value))
}

func printDLQShow(out io.Writer, entries []dlq.Entry, asJSON, reveal bool, log *slog.Logger) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	var revealed []string
	for _, e := range entries {
		value := readableValue(e.Letter)
		if reveal {
			revealed = append(revealed, string(e.Letter.Key))
		} else {
			value = contract.MaskText(value)
		}
		if err := enc.Encode(toJSON(e, value)); err != nil {
			return err
		}
	}
	if reveal && len(revealed) > 0 {
		log.Warn("dlq show: addresses revealed", "ids", revealed)
	}
	fmt.Fprintf(out, "%d dead letter(s)\n", len(entries))
	return nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
