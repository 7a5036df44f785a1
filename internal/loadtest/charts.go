package loadtest

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart files a report links to.
const (
	chartThroughput = "throughput.svg"
	chartProgress   = "progress.svg"
	chartLag        = "lag.svg"
	chartLatency    = "latency.svg"
	chartCPU        = "cpu.svg"
)

const chartW, chartH = 9 * vg.Inch, 4 * vg.Inch

// save writes the chart as SVG (what the report links) and as PNG beside
// it (for viewers without SVG).
func save(p *plot.Plot, dir, name string) error {
	for _, ext := range []string{"", ".png"} {
		path := filepath.Join(dir, name)
		if ext != "" {
			path = strings.TrimSuffix(path, ".svg") + ext
		}
		if err := p.Save(chartW, chartH, path); err != nil {
			return fmt.Errorf("chart %s: %w", name, err)
		}
	}
	return nil
}

type series struct {
	name string
	xys  plotter.XYs
}

// rateWindow is the width, in samples, of the rates the throughput chart
// draws: wide enough to smooth the sink's batches and the adaptive
// PostgreSQL polling, narrow enough to show the run's phases.
const rateWindow = 5

// rateSeries turns a cumulative counter into a per-second rate over time,
// each point the rate over the last rateWindow samples.
func rateSeries(samples []Sample, get func(Sample) int64) plotter.XYs {
	var xys plotter.XYs
	for i := 1; i < len(samples); i++ {
		j := max(0, i-rateWindow)
		dt := (samples[i].At - samples[j].At).Seconds()
		if dt <= 0 {
			continue
		}
		xys = append(xys, plotter.XY{X: samples[i].At.Seconds(), Y: float64(get(samples[i])-get(samples[j])) / dt})
	}
	return xys
}

// countSeries is a cumulative counter over time.
func countSeries(samples []Sample, get func(Sample) int64) plotter.XYs {
	xys := make(plotter.XYs, len(samples))
	for i, s := range samples {
		xys[i] = plotter.XY{X: s.At.Seconds(), Y: float64(get(s))}
	}
	return xys
}

func linePlot(title, xLabel, yLabel string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, s := range ss {
		if len(s.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", title, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / 7)
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	return p, nil
}

// writeCharts draws the run's charts into dir.
func writeCharts(dir string, r *Result) error {
	ss := []series{
		{"published (records/s)", rateSeries(r.Samples, func(s Sample) int64 { return s.Published })},
		{"provider calls (/s)", rateSeries(r.Samples, func(s Sample) int64 { return s.Calls })},
		{"final in PostgreSQL (/s)", rateSeries(r.Samples, func(s Sample) int64 { return s.Completed })},
	}
	p, err := linePlot("Throughput — "+r.Name+" (5 s windows)", "seconds since the first record", "per second", ss)
	if err != nil {
		return err
	}
	if err := save(p, dir, chartThroughput); err != nil {
		return err
	}
	ss = []series{
		{"published", countSeries(r.Samples, func(s Sample) int64 { return s.Published })},
		{"provider calls", countSeries(r.Samples, func(s Sample) int64 { return s.Calls })},
		{"delivered", countSeries(r.Samples, func(s Sample) int64 { return s.Delivered })},
		{"final in PostgreSQL", countSeries(r.Samples, func(s Sample) int64 { return s.Completed })},
	}
	if p, err = linePlot("Progress — "+r.Name, "seconds since the first record", "notifications", ss); err != nil {
		return err
	}
	p.Legend.Top = false // the counters rise: the bottom right is empty
	if err := save(p, dir, chartProgress); err != nil {
		return err
	}

	groups := map[string]bool{}
	for _, s := range r.Samples {
		for g := range s.Lag {
			groups[g] = true
		}
	}
	ss = []series{{name: "total behind (delay groups excepted)"}}
	for _, s := range r.Samples {
		ss[0].xys = append(ss[0].xys, plotter.XY{X: s.At.Seconds(), Y: float64(s.TotalLag())})
	}
	for _, g := range sortedKeys(groups) {
		se := series{name: g}
		for _, s := range r.Samples {
			se.xys = append(se.xys, plotter.XY{X: s.At.Seconds(), Y: float64(s.Lag[g])})
		}
		ss = append(ss, se)
	}
	if p, err = linePlot("Consumer lag — "+r.Name, "seconds since the first record", "records behind", ss); err != nil {
		return err
	}
	if err := save(p, dir, chartLag); err != nil {
		return err
	}

	procs := map[string]bool{}
	for _, s := range r.Samples {
		for n := range s.CPU {
			procs[n] = true
		}
	}
	ss = nil
	for _, n := range sortedKeys(procs) {
		ss = append(ss, series{name: n, xys: cpuSeries(r.Samples, n)})
	}
	if p, err = linePlot("CPU — "+r.Name+" (100% = one core)", "seconds since the first record", "% of a core", ss); err != nil {
		return err
	}
	if err := save(p, dir, chartCPU); err != nil {
		return err
	}

	if p, err = percentilePlot("Latency distribution — "+r.Name, []namedHist{
		{"publish → first provider call (not held)", r.endToEndHist},
		{"release → first provider call (held)", r.latenessHist},
	}); err != nil {
		return err
	}
	if err := save(p, dir, chartLatency); err != nil {
		return err
	}
	return nil
}

func cpuSeries(samples []Sample, name string) plotter.XYs {
	var xys plotter.XYs
	for i := 1; i < len(samples); i++ {
		dt := (samples[i].At - samples[i-1].At).Seconds()
		a, okA := samples[i-1].CPU[name]
		b, okB := samples[i].CPU[name]
		if dt <= 0 || !okA || !okB {
			continue
		}
		xys = append(xys, plotter.XY{X: samples[i].At.Seconds(), Y: 100 * (b - a) / dt})
	}
	return xys
}

type namedHist struct {
	name string
	h    *hdrhistogram.Histogram
}

// percentileX maps a percentile to the chart's x axis, which spreads the
// tail: x = -log10(1 - q/100), so 90% is 1, 99% is 2, 99.9% is 3.
func percentileX(q float64) float64 { return -math.Log10(1 - q/100) }

// percentilePlot draws latency against percentile, HdrHistogram's classic
// view: the tail gets as much room as the median.
func percentilePlot(title string, hs []namedHist) (*plot.Plot, error) {
	var ss []series
	maxX := 0.0
	for _, nh := range hs {
		if nh.h == nil || nh.h.TotalCount() == 0 {
			continue
		}
		var xys plotter.XYs
		// Up to the percentile where one sample remains.
		top := 100 * (1 - 1/float64(nh.h.TotalCount()))
		for x := 0.0; ; x += 0.02 {
			q := 100 * (1 - math.Pow(10, -x))
			if q > top {
				q = top
			}
			xys = append(xys, plotter.XY{X: percentileX(q), Y: float64(nh.h.ValueAtQuantile(q)) / 1000})
			if q >= top {
				break
			}
		}
		xys = append(xys, plotter.XY{X: xys[len(xys)-1].X, Y: float64(nh.h.Max()) / 1000})
		maxX = math.Max(maxX, xys[len(xys)-1].X)
		ss = append(ss, series{name: nh.name, xys: xys})
	}
	p, err := linePlot(title, "percentile", "milliseconds", ss)
	if err != nil {
		return nil, err
	}
	var ticks []plot.Tick
	for _, q := range []float64{0, 50, 90, 99, 99.9, 99.99, 99.999} {
		x := percentileX(q)
		if x > maxX+0.5 {
			break
		}
		ticks = append(ticks, plot.Tick{Value: x, Label: strings.TrimSuffix(fmt.Sprintf("%g", q), ".0") + "%"})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	// The curves rise to the right: the legend goes top left.
	p.Legend.Left = true
	return p, nil
}
