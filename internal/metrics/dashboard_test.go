package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/herald-dispatch/herald/internal/metrics"
)

// describing is a Registerer that keeps the names of what is registered.
type describing struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *describing) Unregister(prometheus.Collector) bool { return true }

// TestDashboardMetrics checks that every metric the Grafana dashboard
// queries is one that a Herald stage registers.
func TestDashboardMetrics(t *testing.T) {
	t.Parallel()
	reg := &describing{names: map[string]bool{}}
	metrics.NewDispatch(reg)
	metrics.NewAPI(reg)
	metrics.NewSender(reg)
	metrics.NewCircuits(reg)
	metrics.NewHeld(reg, nil)
	metrics.NewLag(reg, (*kadm.Client)(nil), nil)
	metrics.NewSink(reg)
	metrics.NewDelay(reg)
	metrics.NewDelayBacklog(reg, nil)

	b, err := os.ReadFile("../../deploy/grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	word := regexp.MustCompile(`\bherald_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range word.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(m, suffix); ok && reg.names[base] {
						m = base
					}
				}
				used[m] = true
				if !reg.names[m] {
					t.Errorf("panel %q queries %s, which no stage registers", p.Title, m)
				}
			}
		}
	}
	var unused []string
	for n := range reg.names {
		if strings.HasPrefix(n, "herald_") && !used[n] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	t.Logf("%d metrics on the dashboard; not on it: %v", len(used), unused)
}

// TestDashboardInstanceAndLag: every query is scoped by the instance
// variable, and the headline lag is the backlog of the stages that work
// through records, without the delay group's held wake-ups.
func TestDashboardInstanceAndLag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../deploy/grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name string }) bool { return v.Name == "instance" }) {
		t.Error("no instance variable")
	}
	metric := regexp.MustCompile(`herald_[a-z_]+(\{[^}]*\})?`)
	titles := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				if !strings.Contains(m, `instance=~"$instance"`) {
					t.Errorf("%s: %s is not scoped by $instance", p.Title, m)
				}
			}
			titles[p.Title] = tg.Expr
		}
	}
	if e := titles["Backlog (dispatcher, sender, sink)"]; e == "" || strings.Contains(e, "delay") {
		t.Errorf("backlog: %q", e)
	}
	if e := titles["Held wake-ups (delay)"]; !strings.Contains(e, `group="herald-delay"`) {
		t.Errorf("held wake-ups: %q", e)
	}
}

// TestCountersPresentAtZero: the labelled counters the dashboard reads
// exist before their first event.
func TestCountersPresentAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics.NewAPI(reg)
	metrics.NewDispatch(reg)
	metrics.NewSender(reg)
	metrics.NewCircuits(reg)
	metrics.NewSink(reg)
	metrics.NewDelay(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			have[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = true
		}
	}
	for _, want := range []string{
		"herald_transitions_total{from=sending,to=sent}",
		"herald_transitions_total{from=retrying,to=failed}",
		"herald_transitions_total{from=new,to=rejected}",
		"herald_dispatcher_events_total{topic=herald.control,verdict=stale}",
		"herald_dlq_records_total{reason=malformed,topic=herald.requests}",
		"herald_api_ingested_items_total{result=rejected}",
		"herald_api_cancels_total{outcome=conflict}",
		"herald_sends_total{channel=sms,outcome=throttled}",
		"herald_sink_rows_written_total{table=dispatch_attempts}",
		"herald_sender_dlq_records_total{reason=malformed}",
		"herald_sink_dead_letters_total{reason=undecodable_state}",
		"herald_sink_dead_letters_total{reason=rejected_by_postgres}",
		"herald_delay_dead_letters_total{tier=1s}",
	} {
		if !have[want] {
			t.Errorf("%s missing before its first event", want)
		}
	}
}

// Grafana keys panels by id: two panels with one id break links and edits.
func TestDashboardPanelIDsUnique(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../deploy/grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			ID    int    `json:"id"`
			Title string `json:"title"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, p := range d.Panels {
		if other, dup := seen[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		seen[p.ID] = p.Title
	}
}
