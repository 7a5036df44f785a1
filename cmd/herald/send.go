package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/schollz/progressbar/v3"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// `herald send --file requests.jsonl` publishes dispatch requests from a
// JSONL file (one request a line), validating each line with the
// dispatcher's own decoder first, and prints what happened to each line
// that was not accepted.
//
// Two ways in:
//   - --via api (the default): POSTs batches of lines to a running Herald's
//     API (--api-url, with HERALD_API_TOKEN). It needs only HTTP access, and
//     answers duplicates of ids the dispatcher already knows.
//   - --via kafka: publishes straight to herald.requests (--brokers), with
//     Herald's partitioner, for the large batch runs where an extra HTTP hop
//     costs. Duplicates are not checked (except within one batch): the
//     dispatcher drops them, which is what makes a re-run safe either way.
//
// A batch that fails as a whole (the API is restarting, the brokers are
// away) is retried with a backoff; sending it again is safe, since what
// already went through is then a duplicate.

// sendFlags are the flags of one `herald send`.
type sendFlags struct {
	file, via, token           string
	api                        apiTargetFlags
	kafka                      kafkaTargetFlags
	security                   kafkaSecurityFlags
	dataDir                    string
	batch, batchBytes, retries int
	progress, strict           bool
	generate                   int
	campaign, out              string
}

func (f *sendFlags) register(fs *flag.FlagSet) {
	cli.String(fs, &f.file, "file", "", "JSONL file of dispatch requests, one a line; - reads standard input")
	cli.String(fs, &f.via, "via", "api", "api (POST to --api-url) or kafka (publish to --brokers)")
	f.api.register(fs)
	cli.String(fs, &f.token, "api-token", "", "bearer token of the API, for --via api; empty: the token herald run generated in <data-dir>/api-token, if any")
	cli.String(fs, &f.dataDir, "data-dir", "./data", "data dir of a local herald run, whose generated API token is used when --api-token is empty")
	f.kafka.register(fs)
	cli.Int(fs, &f.batch, "send-batch", 500, "requests per batch (one POST, or one produce)")
	cli.Int(fs, &f.batchBytes, "send-batch-bytes", 4<<20, "bytes per batch at most (keep it under the API's --api-max-body)")
	cli.Int(fs, &f.retries, "send-retries", 5, "times a batch that failed as a whole is tried again")
	cli.Bool(fs, &f.progress, "progress", true, "show a progress bar when standard error is a terminal")
	cli.Bool(fs, &f.strict, "strict", false, "refuse requests with fields v1 does not define (otherwise they are warnings)")
	cli.Int(fs, &f.generate, "generate", 0, "instead of --file, make this many sample requests (for the tour)")
	cli.String(fs, &f.campaign, "campaign", "tour", "campaign of the --generate requests")
	cli.String(fs, &f.out, "out", "", "with --generate, write the requests to this JSONL file instead of sending them")
	f.security.register(fs)
}

func init() {
	register(command{name: "send", summary: "publish dispatch requests from a JSONL file, through the API or straight to Kafka",
		run: runSend})
}

// runSend reads its flags, takes the requests (a file, or generated ones),
// opens the way in (the API or Kafka), sends them in batches and sums up.
func runSend(ctx context.Context, args []string) error {
	var f sendFlags
	fs := flag.NewFlagSet("herald send", flag.ContinueOnError)
	f.register(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	security, err := f.security.load()
	if err != nil {
		return err
	}
	cleanup, done, err := f.generateInput()
	if err != nil || done {
		return err
	}
	defer cleanup()
	if err := f.check(); err != nil {
		return err
	}
	in, total, err := openInput(f.file)
	if err != nil {
		return err
	}
	defer in.Close()
	send, closeSend, err := f.batchFunc(ctx, security)
	if err != nil {
		return err
	}
	defer closeSend()
	start := time.Now()
	st, err := f.sendAll(ctx, in, total, send, start)
	return f.summary(st, time.Since(start), err)
}

// generateInput makes the --generate requests: into --out (then the
// command is done), or into a temporary file that becomes --file, removed
// by cleanup.
func (f *sendFlags) generateInput() (cleanup func(), done bool, err error) {
	cleanup = func() {}
	if f.generate < 0 {
		return cleanup, false, errors.New("--generate must not be negative")
	}
	if f.generate == 0 {
		return cleanup, false, nil
	}
	if f.file != "" {
		return cleanup, false, errors.New("--generate and --file exclude each other")
	}
	path, err := generateRequests(f.generate, f.campaign, f.out)
	if err != nil {
		return cleanup, false, err
	}
	if f.out != "" {
		fmt.Printf("%s: %d sample requests (campaign %s); send them with: herald send --file %s\n", f.out, f.generate, f.campaign, f.out)
		return cleanup, true, nil
	}
	f.file = path
	return func() { os.Remove(path) }, false, nil
}

// check refuses settings out of their range.
func (f *sendFlags) check() error {
	if f.file == "" {
		return errors.New("--file is required (- for standard input), or --generate N")
	}
	if f.batch <= 0 || f.batchBytes <= 0 || f.retries < 0 {
		return errors.New("--send-batch and --send-batch-bytes must be positive, --send-retries not negative")
	}
	if f.via != "api" && f.via != "kafka" {
		return fmt.Errorf("--via %q: want api or kafka", f.via)
	}
	return nil
}

// batchFunc opens the way in of --via and says which it is: the API, or
// Kafka with a producer that closeSend closes.
func (f *sendFlags) batchFunc(ctx context.Context, security *topology.Security) (send batchFunc, closeSend func(), err error) {
	switch f.via {
	case "api":
		token := f.token
		if token == "" {
			if b, err := os.ReadFile(filepath.Join(f.dataDir, apiTokenFile)); err == nil {
				token = strings.TrimSpace(string(b))
			}
		}
		base, from, err := f.api.resolve()
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "herald send: the API at %s (%s)\n", base, from)
		return apiBatch(base, token, f.strict), func() {}, nil
	case "kafka":
		brokers, from, err := f.kafka.resolve()
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "herald send: the Kafka cluster at %s (%s)\n", strings.Join(brokers, ","), from)
		if err := checkKafkaSecurity(ctx, brokers, security, f.security.checkTimeout); err != nil {
			return nil, nil, err
		}
		tc := topology.Config{Brokers: brokers, Security: security}
		opts := append(append(tc.KgoOpts(), kgo.ClientID("herald-send")), topology.KgoProducerOpts()...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka client: %w", err)
		}
		in := &ingest.Ingester{Producer: cl, Strict: f.strict}
		return in.Ingest, cl.Close, nil
	}
	return nil, nil, fmt.Errorf("--via %q: want api or kafka", f.via)
}

// sendAll sends the requests of in (total lines, -1 when unknown) in
// batches, with a progress bar when --progress and standard error is a
// terminal.
func (f *sendFlags) sendAll(ctx context.Context, in io.Reader, total int64, send batchFunc, start time.Time) (sendStats, error) {
	s := fileSender{batch: f.batch, batchBytes: f.batchBytes, retries: f.retries, send: send, out: os.Stderr}
	if !f.progress || !term.IsTerminal(int(os.Stderr.Fd())) {
		return s.run(ctx, in)
	}
	// No rate of its own: its first frames divide by microseconds
	// (97276265 req/s). The description carries ours (rateText).
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetDescription("sending"),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
	)
	done := 0
	s.progress = func(n int) {
		done += n
		bar.Describe("sending " + rateText(done, time.Since(start)))
		bar.Add(n)
	}
	s.clear = func() { bar.Clear() }
	st, err := s.run(ctx, in)
	bar.Finish()
	return st, err
}

// summary prints what happened to the requests, and returns an error when
// the run stopped or any request was not taken.
func (f *sendFlags) summary(st sendStats, elapsed time.Duration, err error) error {
	if err != nil && st.items == 0 {
		return fmt.Errorf("%s: nothing sent: %w", f.file, err)
	}
	verb := "accepted"
	if f.via == "kafka" {
		verb = "published" // nothing checked against the dispatcher's state
	}
	fmt.Printf("%s: %d requests in %v (%s): %d %s, %d duplicates (%d with a different payload), %d rejected, %d failed; %d with warnings\n",
		f.file, st.items, elapsed.Round(time.Millisecond), rateText(st.items, elapsed),
		st.accepted, verb, st.duplicates, st.differs, st.rejected, st.failed, st.warned)
	if err != nil {
		return fmt.Errorf("stopped after %d requests: %w", st.items, err)
	}
	if st.rejected+st.failed > 0 {
		return fmt.Errorf("%d requests rejected, %d failed (listed above by line)", st.rejected, st.failed)
	}
	return nil
}

// rateText is a rate for people: nothing until a second has passed (the
// first batch over a few microseconds is no rate).
func rateText(n int, elapsed time.Duration) string {
	if elapsed < time.Second {
		return "…"
	}
	return fmt.Sprintf("%.0f req/s", float64(n)/elapsed.Seconds())
}

// generateRequests writes n sample requests as JSONL to out, or to a
// temporary file when out is empty, and returns the file's path. Ids are
// <campaign>:<n>, so generating again makes duplicates, not new ones.
func generateRequests(n int, campaign, out string) (string, error) {
	var fh *os.File
	var err error
	if out == "" {
		fh, err = os.CreateTemp("", "herald-generate-*.jsonl")
	} else {
		fh, err = os.Create(out)
	}
	if err != nil {
		return "", fmt.Errorf("--generate: %w", err)
	}
	w := bufio.NewWriter(fh)
	for i := 1; i <= n; i++ {
		b, err := json.Marshal(map[string]any{
			"schema": "herald.dispatch.v1", "id": fmt.Sprintf("%s:%d", campaign, i), "campaign": campaign,
			"recipient": map[string]any{"email": fmt.Sprintf("user%d@example.com", i), "phone": fmt.Sprintf("+8210%08d", i)},
			"channels":  []string{"email", "sms"},
			"content":   map[string]any{"subject": "Your statement", "text": fmt.Sprintf("Amount due: %d.00", 10+i%90)},
		})
		if err != nil {
			fh.Close()
			return "", err
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fh.Close()
		return "", fmt.Errorf("--generate: %w", err)
	}
	if err := fh.Close(); err != nil {
		return "", fmt.Errorf("--generate: %w", err)
	}
	return fh.Name(), nil
}

// openInput opens the file (or standard input) and counts its lines for
// the progress bar (-1 when unknown).
func openInput(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), -1, nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	var n int64
	last := byte('\n')
	buf := make([]byte, 1<<20)
	for {
		k, err := fh.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if k > 0 {
			last = buf[k-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fh.Close()
			return nil, 0, err
		}
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		fh.Close()
		return nil, 0, err
	}
	if last != '\n' {
		n++ // a last line without a newline
	}
	return fh, n, nil
}

// batchFunc publishes one batch and answers each item.
type batchFunc func(ctx context.Context, items []ingest.Item) ([]ingest.ItemResult, error)

// errFatal marks a batch error that retrying cannot fix.
var errFatal = errors.New("fatal")

// apiBatch posts a batch as JSONL to the API.
func apiBatch(base, token string, strict bool) batchFunc {
	path := "/v1/messages"
	if strict {
		path += "?strict=1"
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	return func(ctx context.Context, items []ingest.Item) ([]ingest.ItemResult, error) {
		var body bytes.Buffer
		for _, it := range items {
			body.Write(it.Raw)
			body.WriteByte('\n')
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, &body)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errFatal, err)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		var ir views.IngestResponse
		switch {
		case resp.StatusCode == http.StatusOK:
		case resp.StatusCode == http.StatusServiceUnavailable:
			if json.Unmarshal(b, &ir) == nil && len(ir.Items) == len(items) {
				break // some items failed to publish; the others are answered
			}
			return nil, fmt.Errorf("API: %s: %s", resp.Status, bytes.TrimSpace(b))
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			return nil, fmt.Errorf("API: %s: %s", resp.Status, bytes.TrimSpace(b))
		default: // 401, 413, 400: sending again will not help
			return nil, fmt.Errorf("%w: API: %s: %s", errFatal, resp.Status, bytes.TrimSpace(b))
		}
		if ir.Items == nil {
			if err := json.Unmarshal(b, &ir); err != nil {
				return nil, fmt.Errorf("API: decode answer: %w", err)
			}
		}
		if len(ir.Items) != len(items) {
			return nil, fmt.Errorf("%w: API answered %d items for %d", errFatal, len(ir.Items), len(items))
		}
		for i := range ir.Items {
			ir.Items[i].Index, ir.Items[i].Line = items[i].Index, items[i].Line
		}
		return ir.Items, nil
	}
}

type sendStats struct {
	items, accepted, duplicates, rejected, failed int
	// differs counts duplicates whose payload differs; warned the
	// requests with warnings (unknown fields).
	differs, warned int
}

// fileSender reads lines, batches them and reports the results.
type fileSender struct {
	batch, batchBytes, retries int
	send                       batchFunc
	out                        io.Writer
	progress                   func(n int)
	clear                      func()
	backoff                    time.Duration // first retry wait (default 500 ms)
}

func (s *fileSender) run(ctx context.Context, r io.Reader) (sendStats, error) {
	var st sendStats
	br := bufio.NewReaderSize(r, 1<<20)
	var items []ingest.Item
	size, line, shown := 0, 0, 0
	flush := func() error {
		if len(items) > 0 {
			rs, err := s.sendBatch(ctx, items)
			if err != nil {
				return fmt.Errorf("lines %d-%d: %w", items[0].Line, items[len(items)-1].Line, err)
			}
			s.report(&st, rs)
			items, size = items[:0], 0
		}
		if s.progress != nil && line > shown {
			s.progress(line - shown) // lines, blank ones included
			shown = line
		}
		return nil
	}
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			line++
			if t := bytes.TrimSpace(b); len(t) > 0 {
				items = append(items, ingest.Item{Index: len(items), Line: line, Raw: t})
				size += len(t) + 1
			}
			if len(items) >= s.batch || size >= s.batchBytes {
				if err := flush(); err != nil {
					return st, err
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read line %d: %w", line+1, err)
		}
	}
	return st, flush()
}

// sendBatch sends one batch, again after a failure of the whole batch.
func (s *fileSender) sendBatch(ctx context.Context, items []ingest.Item) ([]ingest.ItemResult, error) {
	wait := s.backoff
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	for attempt := 0; ; attempt++ {
		rs, err := s.send(ctx, items)
		if err == nil {
			return rs, nil
		}
		if errors.Is(err, errFatal) || attempt >= s.retries || ctx.Err() != nil {
			return nil, err
		}
		s.say("batch failed, retrying in %v: %v\n", wait, err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// maxWarningLines bounds the warnings printed line by line (a file whose
// every line has the same unknown field would flood the terminal); the
// summary counts them all.
const maxWarningLines = 20

func (s *fileSender) report(st *sendStats, rs []ingest.ItemResult) {
	for _, r := range rs {
		st.items++
		if len(r.Warnings) > 0 {
			if st.warned++; st.warned <= maxWarningLines {
				s.say("line %d%s: %s\n", r.Line, idSuffix(r.ID), strings.Join(r.Warnings, "; "))
			}
		}
		switch r.Result {
		case ingest.ResultAccepted:
			st.accepted++
		case ingest.ResultDuplicate:
			st.duplicates++
			if r.PayloadDiffers {
				if st.differs++; st.differs <= maxWarningLines {
					s.say("line %d%s: duplicate with a different payload: the first one stands\n", r.Line, idSuffix(r.ID))
				}
			}
		case ingest.ResultRejected:
			st.rejected++
			var ps []string
			for _, p := range r.Errors {
				ps = append(ps, p.String())
			}
			s.say("line %d%s: rejected: %s\n", r.Line, idSuffix(r.ID), strings.Join(ps, "; "))
		default:
			st.failed++
			s.say("line %d%s: failed: %s\n", r.Line, idSuffix(r.ID), r.Error)
		}
	}
}

func (s *fileSender) say(format string, args ...any) {
	if s.clear != nil {
		s.clear()
	}
	fmt.Fprintf(s.out, format, args...)
}

func idSuffix(id string) string {
	if id == "" {
		return ""
	}
	return " (" + id + ")"
}
