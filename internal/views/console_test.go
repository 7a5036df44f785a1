package views_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/sink"

	"github.com/herald-dispatch/herald/internal/views"
	"github.com/herald-dispatch/herald/internal/views/ui"
)

// strayText is text no page should show.
var strayText = regexp.MustCompile(`\bnull\b|\bundefined\b|\bNaN\b|\[object `)

// chromium finds Debian's Chromium (scripts/deps.sh installs it).
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestConsoleInBrowser loads each page of the console in headless
// Chromium, checks what it shows against the API's answers, that no
// address shows unmasked, and that nothing is fetched from anywhere but
// Herald (every other host is made unresolvable, and every request is
// checked), and takes a screenshot of each page: into
// $HERALD_UI_SCREENSHOTS when set, else $TMPDIR/herald-ui-screenshots
// (the paths are logged). docs/img holds three of them.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		t.Skip("no chromium on PATH (scripts/deps.sh installs it)")
	}
	f := startFixture(t)
	// The DLQ page reads a real herald.dlq, which its replay acts on.
	kc := f.withDLQ(t)
	reader := &views.DLQReader{Brokers: kc.Brokers, KgoOpts: kc.Topology.KgoOpts()}
	rctx, stopReader := context.WithCancel(context.Background())
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Run(rctx) }()
	t.Cleanup(func() { stopReader(); <-readerDone })
	heraldtest.WaitFor(t, 30*time.Second, "the DLQ reader to read the fixture's dead letters", func() bool {
		return reader.DeadLetters(10).Total >= int64(len(fixtureDeadLetters(f.now)))
	})
	f.api.DLQ = reader
	mux := http.NewServeMux()
	mux.Handle("/v1/", f.api.Handler())
	mux.Handle(ui.Path, ui.Handler())
	mux.Handle("/", views.NotFound())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	shots := os.Getenv("HERALD_UI_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "herald-ui-screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in CI containers
		chromedp.WindowSize(1280, 800),
		// No network: every host but the loopback fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()

	var mu sync.Mutex
	var foreign, problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if !strings.HasPrefix(e.Request.URL, srv.URL+"/") && !strings.HasPrefix(e.Request.URL, "data:") {
				foreign = append(foreign, e.Request.URL)
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				problems = append(problems, fmt.Sprintf("console.error %v", e.Args))
			}
		}
	})
	if err := chromedp.Run(ctx, network.Enable(), runtime.Enable()); err != nil {
		t.Fatal(err)
	}

	shoot := func(name string) {
		t.Helper()
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(shots, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	// text reads an element's text in one evaluation: the console
	// re-renders on its live refresh, so a node found in one step may be
	// gone by the next (chromedp's "No node with given id").
	text := func(sel string) string {
		t.Helper()
		q, _ := json.Marshal(sel)
		deadline := time.Now().Add(10 * time.Second)
		for {
			var s *string
			err := chromedp.Run(ctx, chromedp.Evaluate(`(e => e ? e.innerText : null)(document.querySelector(`+string(q)+`))`, &s))
			if err == nil && s != nil {
				return strings.TrimSpace(*s)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not found (%v)", sel, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// noStrayText fails on text no page should show: a value the script
	// left as null or undefined, a number that is not one.
	noStrayText := func(where string) {
		t.Helper()
		var body string
		if err := chromedp.Run(ctx, chromedp.Evaluate(`document.body.innerText`, &body)); err != nil {
			t.Fatal(err)
		}
		if m := strayText.FindString(body); m != "" {
			t.Errorf("%s shows a stray %q:\n%s", where, m, body)
		}
	}
	page := func(hash, ready string) string {
		t.Helper()
		var html string
		if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/ui/"+hash), chromedp.WaitVisible(ready, chromedp.ByQuery),
			chromedp.OuterHTML("html", &html, chromedp.ByQuery)); err != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s: %v (errors in the page: %v; requests elsewhere: %v)", hash, err, problems, foreign)
		}
		for _, secret := range []string{"jane.doe@example.com", "+821012345678", "Your statement"} {
			if strings.Contains(html, secret) {
				t.Errorf("%s shows %q unmasked", hash, secret)
			}
		}
		noStrayText(hash)
		return html
	}

	// eval evaluates a script in the page.
	eval := func(js string, out any) {
		t.Helper()
		if err := chromedp.Run(ctx, chromedp.Evaluate(js, out)); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	// ids reads the ids of a table's rows in one evaluation.
	ids := func(sel string) []string {
		t.Helper()
		var out []string
		eval(`[...document.querySelectorAll('`+sel+` tbody tr')].map(r => r.dataset.id)`, &out)
		return out
	}
	// waitIDs waits until the table shows want.
	waitIDs := func(sel string, want []string) {
		t.Helper()
		heraldtest.Settle(t, 10*time.Second, sel+" rows", func() error {
			if got := ids(sel); !slices.Equal(got, want) {
				return fmt.Errorf("%v, want %v", got, want)
			}
			return nil
		})
	}
	// confirmAll answers yes to the page's confirm() dialogs.
	confirmAll := func() { eval(`window.confirm = () => true`, nil) }

	// countsShown checks the count the page shows per reason.
	countsShown := func(want map[string]int64) {
		t.Helper()
		for reason, n := range want {
			if got := text(fmt.Sprintf(`tr[data-reason=%q] [data-field="count"]`, reason)); got != fmt.Sprint(n) {
				t.Errorf("%s: %s, API %d", reason, got, n)
			}
		}
	}
	rows := func(sel string) int {
		t.Helper()
		var n int
		if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('`+sel+` tbody tr').length`, &n)); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Without the token, the console asks for it; a wrong one it says is
	// refused.
	page("", `[data-testid="need-token"]`)
	if err := chromedp.Run(ctx, chromedp.SendKeys("#token", "not-the-token", chromedp.ByID), chromedp.Click(`#token-form button`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="bad-token"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.SendKeys("#token", fixtureToken, chromedp.ByID), chromedp.Click(`#token-form button`, chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-campaign="billing-2026-01"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}

	t.Run("campaigns", func(t *testing.T) {
		page("#/", `tr[data-campaign="billing-2026-01"] svg[data-testid="sparkline"]`)
		var l views.CampaignList
		getJSON(t, f.api.Handler(), "GET", "/v1/campaigns?limit=50", &l)
		for _, c := range l.Campaigns {
			row := fmt.Sprintf(`tr[data-campaign=%q] `, c.Campaign)
			if got := text(row + `[data-field="total"]`); got != fmt.Sprint(c.Total) {
				t.Errorf("%s total %s, API %d", c.Campaign, got, c.Total)
			}
			if got := text(row + `[data-field="failed"]`); got != fmt.Sprint(c.ByStatus["failed"]) {
				t.Errorf("%s failed %s, API %d", c.Campaign, got, c.ByStatus["failed"])
			}
			if got, want := text(row+`[data-field="rate"]`), fmt.Sprintf("%.2f/s", c.Rate); got != want {
				t.Errorf("%s rate %s, API %s", c.Campaign, got, want)
			}
		}
		shoot("console-campaigns.png")

		// Live: a notification that becomes final shows within a refresh.
		st := *f.table.states["billing-i"]
		st.Status, st.Version, st.UpdatedAt, st.NextAttemptAt, st.HoldReason = contract.StatusSent, 4, time.Now().UTC(), nil, ""
		b, _ := json.Marshal(&st)
		if _, err := sink.NewWriter(f.pool).Write(context.Background(), []sink.Change{{State: &st, Key: []byte(st.ID), Value: b}}); err != nil {
			t.Fatal(err)
		}
		final := `tr[data-campaign="billing-2026-01"] [data-field="final"]`
		heraldtest.Settle(t, 10*time.Second, "final after the change", func() error {
			if got := text(final); got != "8" {
				return fmt.Errorf("final still %s", got)
			}
			return nil
		})
	})

	t.Run("campaign", func(t *testing.T) {
		page("#/campaign/billing-2026-01", `[data-testid="failures"] tbody tr`)
		var d views.CampaignDetail
		getJSON(t, f.api.Handler(), "GET", "/v1/campaigns/billing-2026-01", &d)
		for st, n := range d.ByStatus {
			if got := text(fmt.Sprintf(`[data-count=%q]`, st)); got != fmt.Sprint(n) {
				t.Errorf("%s: %s, API %d", st, got, n)
			}
		}
		if n := rows(`[data-testid="failures"]`); n != len(d.Failures) {
			t.Errorf("failure groups: %d, API %d", n, len(d.Failures))
		}
		if got := text(`[data-testid="failures"] tbody tr td:nth-child(3)`); got != d.Failures[0].Error {
			t.Errorf("failure %q, API %q", got, d.Failures[0].Error)
		}
	})

	t.Run("message", func(t *testing.T) {
		page("#/message/billing-e", `[data-testid="history"] tbody tr`)
		var m views.Message
		getJSON(t, f.api.Handler(), "GET", "/v1/messages/billing-e", &m)
		if got := text(`[data-field="status"]`); got != string(m.Status) {
			t.Errorf("status %s, API %s", got, m.Status)
		}
		if got := text(`[data-field="recipient"]`); got != m.Recipient.Email+", "+m.Recipient.Phone {
			t.Errorf("recipient %q, API %+v", got, m.Recipient)
		}
		if n := rows(`[data-testid="history"]`); n != len(m.History) {
			t.Errorf("history rows %d, API %d", n, len(m.History))
		}
		shoot("console-message.png")
		page("#/message/billing-g", `[data-field="hold_reason"]`)
		// The hash changed without a reload: billing-e's page may show
		// until billing-g's is rendered.
		heraldtest.Settle(t, 10*time.Second, "billing-g's hold reason", func() error {
			if got := text(`[data-field="hold_reason"]`); got != "blackout" {
				return fmt.Errorf("hold reason %q", got)
			}
			return nil
		})
	})

	t.Run("held", func(t *testing.T) {
		page("#/held", `[data-testid="held"] tbody tr`)
		var h views.HeldResponse
		getJSON(t, f.api.Handler(), "GET", "/v1/held", &h)
		want := map[string]int64{}
		for _, x := range h.Held {
			want[string(x.Reason)] = x.Notifications
		}
		countsShown(want)
		shoot("console-held.png")
	})

	t.Run("dlq", func(t *testing.T) {
		page("#/dlq", `[data-testid="dlq"] tbody tr`)
		var d views.DLQResponse
		getJSON(t, f.api.Handler(), "GET", "/v1/dlq", &d)
		want := map[string]int64{}
		for _, r := range d.Reasons {
			want[r.Reason] = r.DeadLetters
		}
		countsShown(want)
		shoot("console-dlq.png")
	})

	// The replay: a dry run shows what would be replayed, as the API's dry
	// run says; the confirm replays exactly that, and the API then has it
	// recorded.
	t.Run("dlq replay", func(t *testing.T) {
		page("#/dlq", `[data-testid="replay-open"]`)
		fix := string(request("oops", func(m map[string]any) {
			m["recipient"], m["channels"] = map[string]any{"email": "fixed@example.com"}, []string{"email"}
		}))
		if err := chromedp.Run(ctx,
			chromedp.Click(`[data-testid="replay-open"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="replay-form"]`, chromedp.ByQuery),
			chromedp.SetValue(`select[name="reason"]`, "malformed", chromedp.ByQuery),
			chromedp.SetValue(`textarea[name="fix"]`, fix, chromedp.ByQuery),
			chromedp.Click(`[data-testid="replay-dry-run"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="replay-plan"] tbody tr`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		var plan views.ReplayResponse
		if code := post(t, f.api.Handler(), "/v1/dlq/replay?dry_run=1&reason=malformed&topic=herald.requests", fix, &plan); code != http.StatusOK {
			t.Fatalf("the API's dry run: %d %+v", code, plan)
		}
		if n := rows(`[data-testid="replay-plan"]`); n != len(plan.Items) || n == 0 {
			t.Fatalf("plan rows %d, API %d", n, len(plan.Items))
		}
		for _, it := range plan.Items {
			row := fmt.Sprintf(`[data-testid="replay-plan"] tr[data-dlq=%q] `, it.DLQ)
			if got := text(row + `[data-field="action"]`); got != it.Action {
				t.Errorf("%s: %s, API %s", it.DLQ, got, it.Action)
			}
			if got := text(row + `[data-field="why"]`); got != it.Why {
				t.Errorf("%s: why %q, API %q", it.DLQ, got, it.Why)
			}
		}
		if plan.WouldReplay != 1 || plan.Items[0].Action != dlq.ActionWouldReplay {
			t.Fatalf("the API's plan: %+v", plan)
		}
		if n := len(kc.requests(t)); n != 0 {
			t.Fatalf("the dry run published %d requests", n)
		}
		shoot("console-dlq-replay.png")

		if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="replay-confirm"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="replay-result"] tbody tr`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		// Only what the plan would replay: not the skipped result.
		if n := rows(`[data-testid="replay-result"]`); n != 1 {
			t.Errorf("result rows %d, want the 1 the plan would replay", n)
		}
		if got := text(`[data-testid="replay-result"] tr[data-dlq="0@0"] [data-field="action"]`); got != dlq.ActionReplayed {
			t.Errorf("result: %s", got)
		}
		var after views.ReplayResponse
		post(t, f.api.Handler(), "/v1/dlq/replay?dry_run=1&at=0@0", fix, &after)
		if len(after.Items) != 1 || after.Items[0].Action != dlq.ActionSkipped || !strings.Contains(after.Items[0].Why, "replayed already") {
			t.Errorf("the API after the console's replay: %+v", after)
		}
		if reqs := kc.requests(t); len(reqs) != 1 || string(reqs[0].Key) != "oops" || string(reqs[0].Value) != fix {
			t.Errorf("herald.requests after the replay: %d records", len(reqs))
		}
		// Closed, the page refreshes again and shows the replay, as GET
		// /v1/dlq does.
		if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="replay-form"] button[type="button"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="replay-open"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		var d views.DLQResponse
		deadline := time.Now().Add(10 * time.Second)
		for {
			getJSON(t, f.api.Handler(), "GET", "/v1/dlq", &d)
			if d.DeadLetters[len(d.DeadLetters)-1].Replayed != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		rp := d.DeadLetters[len(d.DeadLetters)-1].Replayed
		if rp == nil || rp.DLQ != "0@0" {
			t.Fatalf("GET /v1/dlq after the replay: %+v", d.DeadLetters)
		}
		for want := rp.At.UTC().Format("2006-01-02 15:04:05Z") + " as oops (fixed)"; text(`tr[data-dlq="0@0"] [data-field="replayed"]`) != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("replayed %q, API %q", text(`tr[data-dlq="0@0"] [data-field="replayed"]`), want)
			}
		}

		// A row's own replay button: a dry run of that dead letter.
		page("#/held", `[data-testid="held"]`)
		page("#/dlq", `tr[data-key="km-x"] button[data-action="replay"]`)
		if err := chromedp.Run(ctx, chromedp.Click(`tr[data-key="km-x"] button[data-action="replay"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="replay-plan"] tbody tr`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		if got, id := text(`[data-testid="replay-plan"] tr[data-dlq="0@2"] [data-field="action"]`), text(`[data-testid="replay-plan"] [data-field="id"]`); got != dlq.ActionWouldReplay || id != "km-1" {
			t.Errorf("the row's dry run: %s %s", got, id)
		}
	})

	// Find a notification by its id from any page.
	t.Run("search", func(t *testing.T) {
		page("#/held", `[data-testid="held"]`)
		if err := chromedp.Run(ctx, chromedp.SendKeys("#search", "billing-f", chromedp.ByID), chromedp.Click(`#search-form button`, chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid="history"] tbody tr`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		if got := text(`h1`); got != "Notification billing-f" {
			t.Errorf("search opened %q", got)
		}
		noStrayText("the search's notification")
		// An unknown id says so, and leaves nothing of the page before.
		eval(`location.hash = "#/message/no-such-id"`, nil)
		if err := chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid="not-found"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		var left int
		eval(`document.querySelectorAll('main table, main dl').length`, &left)
		if got := text(`[data-testid="not-found"]`); !strings.Contains(got, "no-such-id") || left != 0 {
			t.Errorf("unknown id: %q, %d tables of the page before", got, left)
		}
	})

	// A campaign's notifications a page at a time, filtered by status, as
	// the API lists them.
	t.Run("paging and status filter", func(t *testing.T) {
		eval(`sessionStorage.setItem("herald-page-size", "4")`, nil)
		defer eval(`sessionStorage.removeItem("herald-page-size")`, nil)
		page("#/campaign/billing-2026-01", `[data-testid="messages"] tbody tr`)
		var want []string
		cursor := ""
		for {
			var p views.MessagePage
			getJSON(t, f.api.Handler(), "GET", "/v1/messages?campaign=billing-2026-01&limit=4&cursor="+cursor, &p)
			var pg []string
			for _, m := range p.Messages {
				pg = append(pg, m.ID)
			}
			waitIDs(`[data-testid="messages"]`, pg)
			want = append(want, pg...)
			if cursor = p.NextCursor; cursor == "" {
				break
			}
			if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="page-older"]`, chromedp.ByQuery)); err != nil {
				t.Fatal(err)
			}
		}
		if len(want) != 10 || text(`[data-testid="page-number"]`) != "page 3" {
			t.Errorf("%d notifications over the pages, %s", len(want), text(`[data-testid="page-number"]`))
		}
		if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="page-newer"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		waitIDs(`[data-testid="messages"]`, want[4:8])
		eval(`(s => { s.value = "failed"; s.dispatchEvent(new Event("change")); })(document.querySelector('[data-testid="status-filter"]'))`, nil)
		waitIDs(`[data-testid="messages"]`, []string{"billing-e", "billing-f"})
		noStrayText("the filtered campaign")

		page("#/held", `[data-testid="messages"] tbody tr`)
		waitIDs(`[data-testid="messages"]`, []string{"billing-g", "billing-h"}) // billing-i was sent above
		eval(`(s => { s.value = "deferred"; s.dispatchEvent(new Event("change")); })(document.querySelector('[data-testid="status-filter"]'))`, nil)
		waitIDs(`[data-testid="messages"]`, []string{"billing-g"})
	})

	// Stuck is what the sweep would rescue: the API's GET /v1/stuck.
	t.Run("stuck", func(t *testing.T) {
		page("#/stuck", `[data-testid="stuck"] tbody tr`)
		var s views.StuckResponse
		getJSON(t, f.api.Handler(), "GET", "/v1/stuck", &s)
		var want []string
		for _, r := range s.Stuck {
			want = append(want, r.ID)
		}
		if len(want) != 2 {
			t.Fatalf("the API's stuck: %+v", s)
		}
		waitIDs(`[data-testid="stuck"]`, want)
		if got := text(`tr[data-id="stuck-send"] [data-field="kind"]`); got != "no result past its send time-out" {
			t.Errorf("stuck-send: %q", got)
		}
		if got := text(`tr[data-id="stuck-held"] [data-field="overdue"]`); got != "10 min" {
			t.Errorf("stuck-held overdue %q", got)
		}
		shoot("console-stuck.png")
	})

	// One notification's retry and cancel, and a campaign's action: each
	// publishes its control record and says so in the notice, not the
	// error box.
	t.Run("actions", func(t *testing.T) {
		control := func(id string) (cancels, retries int) {
			for _, r := range f.producer.records() {
				if r.Topic != "herald.control" || string(r.Key) != id {
					continue
				}
				c, rt, err := contract.DecodeControl(r.Key, r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if c != nil {
					cancels++
				}
				if rt != nil {
					retries++
				}
			}
			return
		}
		notice := func(want string) {
			t.Helper()
			heraldtest.Settle(t, 10*time.Second, "the notice", func() error {
				var shown, errorShown bool
				var got string
				eval(`!document.getElementById("notice").hidden`, &shown)
				eval(`!document.getElementById("error").hidden`, &errorShown)
				eval(`document.getElementById("notice").innerText`, &got)
				if !shown || !strings.Contains(got, want) || errorShown {
					return fmt.Errorf("notice %q (shown %v, error box shown %v), want %q", got, shown, errorShown, want)
				}
				return nil
			})
		}
		page("#/message/billing-e", `[data-testid="retry"]`)
		confirmAll()
		if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="retry"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		notice("Retry: requested")
		if _, n := control("billing-e"); n != 1 {
			t.Errorf("%d retries published for billing-e", n)
		}
		page("#/message/billing-h", `[data-testid="cancel"]`)
		confirmAll()
		if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="cancel"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		notice("Cancel: requested")
		if n, _ := control("billing-h"); n != 1 {
			t.Errorf("%d cancels published for billing-h", n)
		}
		page("#/message/billing-a", `[data-testid="history"] tbody tr`)
		var buttons int
		eval(`document.querySelectorAll('[data-testid="cancel"], [data-testid="retry"]').length`, &buttons)
		if buttons != 0 {
			t.Errorf("a sent notification offers %d actions", buttons)
		}
		page("#/campaign/welcome", `[data-testid="messages"] tbody tr`)
		confirmAll()
		if err := chromedp.Run(ctx, chromedp.Click(`//button[text()="Cancel campaign"]`, chromedp.BySearch)); err != nil {
			t.Fatal(err)
		}
		notice("cancel: ")
	})

	mu.Lock()
	defer mu.Unlock()
	if len(foreign) > 0 {
		t.Errorf("the console fetched from elsewhere: %v", foreign)
	}
	if len(problems) > 0 {
		t.Errorf("the console had errors: %v", problems)
	}
}
