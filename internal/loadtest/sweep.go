package loadtest

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/internal/provider"
)

// Sweep is the grid of a capacity sweep.
type Sweep struct {
	Partitions []int
	Instances  []int
}

// ParseSweep reads --sweep values: "partitions=4,12,24", "instances=1,2,3".
// Dimensions not given keep the defaults passed in.
func ParseSweep(specs []string, defPartitions, defInstances int) (Sweep, error) {
	s := Sweep{Partitions: []int{defPartitions}, Instances: []int{defInstances}}
	for _, spec := range specs {
		dim, vals, ok := strings.Cut(spec, "=")
		if !ok {
			return s, fmt.Errorf("--sweep %q: want partitions=4,12,24 or instances=1,2,3", spec)
		}
		var ns []int
		for _, v := range strings.Split(vals, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return s, fmt.Errorf("--sweep %q: %q is not a positive integer", spec, v)
			}
			ns = append(ns, n)
		}
		sort.Ints(ns)
		switch strings.TrimSpace(dim) {
		case "partitions":
			s.Partitions = ns
		case "instances":
			s.Instances = ns
		default:
			return s, fmt.Errorf("--sweep %q: unknown dimension %q (want partitions or instances)", spec, dim)
		}
	}
	return s, nil
}

// Point is one configuration of a sweep.
type Point struct{ Partitions, Instances int }

// Points lists the grid, partitions outer (each partition count gets
// fresh topics), skipping instance counts above the partition count (an
// instance without a partition does nothing).
func (s Sweep) Points() []Point {
	var out []Point
	for _, p := range s.Partitions {
		for _, i := range s.Instances {
			if i <= p {
				out = append(out, Point{p, i})
			}
		}
	}
	return out
}

// Target is a volume to plan for: Count notifications within Window.
type Target struct {
	Count  int
	Window time.Duration
}

// ParseTarget reads "1000000/2h".
func ParseTarget(s string) (Target, error) {
	c, w, ok := strings.Cut(s, "/")
	if !ok {
		return Target{}, fmt.Errorf("--target %q: want COUNT/DURATION such as 1000000/2h", s)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(c), "_", ""))
	if err != nil || n < 1 {
		return Target{}, fmt.Errorf("--target %q: count %q is not a positive integer", s, c)
	}
	d, err := time.ParseDuration(strings.TrimSpace(w))
	if err != nil || d <= 0 {
		return Target{}, fmt.Errorf("--target %q: window %q is not a positive duration", s, w)
	}
	return Target{Count: n, Window: d}, nil
}

// Rate is the completion rate the target needs, per second.
func (t Target) Rate() float64 { return float64(t.Count) / t.Window.Seconds() }

func (t Target) String() string { return fmt.Sprintf("%d per %s", t.Count, t.Window) }

// ProviderModel is what the planner assumes of the providers.
type ProviderModel struct {
	// EmailLatency and SMSLatency are the time of one call.
	EmailLatency, SMSLatency time.Duration
	// Transient is the probability that one email attempt fails
	// transiently; Permanent the share of emails that fail permanently
	// and fall back to SMS.
	Transient, Permanent float64
	// AttemptsPerChannel caps the attempts on one channel.
	AttemptsPerChannel int
}

// CallsPerNotification is the expected provider calls, and the expected
// provider time they take, for one notification: email attempts until
// success (geometric, capped), then SMS for the permanent share.
func (m ProviderModel) CallsPerNotification() (calls float64, busy time.Duration) {
	a := max(m.AttemptsPerChannel, 1)
	f := math.Min(math.Max(m.Transient, 0), 0.999999)
	// E[attempts] of a geometric capped at a: (1 - f^a) / (1 - f).
	emailAttempts := (1 - math.Pow(f, float64(a))) / (1 - f)
	// Ids failing permanently make one email call, then SMS.
	p := math.Min(math.Max(m.Permanent, 0), 1)
	// Ids whose email attempts all fail transiently fall back too.
	fallback := p + (1-p)*math.Pow(f, float64(a))
	calls = (1-p)*emailAttempts + p*1 + fallback*1
	busySec := ((1-p)*emailAttempts+p)*m.EmailLatency.Seconds() + fallback*m.SMSLatency.Seconds()
	return calls, time.Duration(busySec * float64(time.Second))
}

// PointResult is what a sweep point measured, as the planner uses it.
type PointResult struct {
	Point
	// Rate is the completion rate (notifications/s) to 90% final
	// (Throughput.To90).
	Rate float64
	// CPUPerNotification is the herald processes' CPU seconds per valid
	// notification; PeakRSS the largest process's peak.
	CPUPerNotification float64
	PeakRSS            int64
	P99                time.Duration
	PeakLag            int64
	Passed             bool
}

// Recommendation is the planner's answer and how it got there.
type Recommendation struct {
	Target                Target  `json:"target"`
	Headroom              float64 `json:"headroom"`
	RequiredRate          float64 `json:"required_rate"`
	PlannedRate           float64 `json:"planned_rate"`
	CallsPerNotification  float64 `json:"calls_per_notification"`
	InFlight              float64 `json:"in_flight"`
	CoresNeeded           float64 `json:"cores_needed"`
	Partitions            int     `json:"partitions"`
	Instances             int     `json:"instances"`
	ConcurrencyPerProcess int     `json:"concurrency_per_process"`
	// BestMeasured is the highest steady rate any point reached.
	BestMeasured float64  `json:"best_measured"`
	Met          bool     `json:"met"`
	Steps        []string `json:"steps"`
}

// PlanInputs are the planner's parameters.
type PlanInputs struct {
	Target   Target
	Provider ProviderModel
	// Headroom multiplies the required rate (2: plan for twice the
	// target, so a re-run, a rebalance or a slow provider day fits).
	Headroom float64
	// CoresPerInstance is the CPU each production instance gets.
	CoresPerInstance float64
	// MinInstances is the floor for availability (2: one can fail).
	MinInstances int
}

// Recommend plans partitions, instances and sender concurrency for a
// target from the sweep's measurements.
func Recommend(in PlanInputs, pts []PointResult) Recommendation {
	h := in.Headroom
	if h < 1 {
		h = 1
	}
	cores := in.CoresPerInstance
	if cores <= 0 {
		cores = 1
	}
	minInst := max(in.MinInstances, 1)
	r := Recommendation{Target: in.Target, Headroom: h, RequiredRate: in.Target.Rate()}
	r.PlannedRate = r.RequiredRate * h
	step := func(format string, args ...any) { r.Steps = append(r.Steps, fmt.Sprintf(format, args...)) }
	step("Target: %d notifications in %s = %.1f notifications/s; with headroom ×%.1f, plan for %.1f/s.",
		in.Target.Count, in.Target.Window, r.RequiredRate, h, r.PlannedRate)

	calls, busy := in.Provider.CallsPerNotification()
	r.CallsPerNotification = calls
	r.InFlight = r.PlannedRate * busy.Seconds()
	step("Provider: email %s per call, %.2f%% transient, %.2f%% permanent (→ SMS at %s): %.3f calls and %s of provider time per notification.",
		in.Provider.EmailLatency, 100*in.Provider.Transient, 100*in.Provider.Permanent, in.Provider.SMSLatency,
		calls, busy.Round(time.Millisecond))
	step("Little's law: requests in flight = rate × time in the provider = %.1f/s × %s = %.0f.",
		r.PlannedRate, busy.Round(time.Millisecond), r.InFlight)

	// CPU per notification: the median of the points that passed, so one
	// noisy point does not decide.
	var cpus []float64
	for _, p := range pts {
		if p.Passed && p.CPUPerNotification > 0 {
			cpus = append(cpus, p.CPUPerNotification)
		}
	}
	cpu := median(cpus)
	if cpu > 0 {
		r.CoresNeeded = r.PlannedRate * cpu
		step("CPU: the herald processes used %.2f ms of CPU per notification (median of %d passing points), so %.1f/s needs %.2f cores.",
			cpu*1000, len(cpus), r.PlannedRate, r.CoresNeeded)
	} else {
		step("CPU: no passing point measured CPU per notification; cores not estimated.")
	}
	r.Instances = max(minInst, int(math.Ceil(r.CoresNeeded/cores)))
	step("Instances: ceil(%.2f cores / %.1f cores per instance) = %d, at least %d for availability → %d.",
		r.CoresNeeded, cores, int(math.Ceil(r.CoresNeeded/cores)), minInst, r.Instances)

	// Concurrency per process: the in-flight need spread over the
	// instances, with the same headroom already in the rate, rounded up
	// to a hundred, and enough that one instance down still carries it.
	perInst := r.InFlight / float64(max(r.Instances-1, 1))
	r.ConcurrencyPerProcess = max(100, int(math.Ceil(perInst/100))*100)
	step("Sender concurrency: %.0f in flight over %d instances, sized so %d can carry it when one is down: %.0f → %d per process.",
		r.InFlight, r.Instances, max(r.Instances-1, 1), perInst, r.ConcurrencyPerProcess)

	// Partitions: the smallest measured count whose best point met the
	// planned rate, and at least twice the instances so the work spreads
	// evenly and instances can be added later without repartitioning.
	best := map[int]float64{}
	for _, p := range pts {
		if p.Passed {
			best[p.Partitions] = math.Max(best[p.Partitions], p.Rate)
			r.BestMeasured = math.Max(r.BestMeasured, p.Rate)
		}
	}
	var parts []int
	for p := range best {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	chosen := 0
	for _, p := range parts {
		if best[p] >= r.PlannedRate {
			chosen = p
			step("Partitions: %d partitions reached %.1f/s ≥ %.1f/s in the sweep (the smallest count that did).", p, best[p], r.PlannedRate)
			break
		}
	}
	if chosen == 0 && len(parts) > 0 {
		chosen = parts[len(parts)-1]
		for _, p := range parts {
			if best[p] > best[chosen] {
				chosen = p
			}
		}
		step("Partitions: no measured point reached %.1f/s (best %.1f/s at %d partitions); the target needs more CPU than this machine has.",
			r.PlannedRate, best[chosen], chosen)
	}
	floor := 2 * r.Instances
	if chosen < floor {
		step("Partitions: raised from %d to %d (twice the instances), so partitions spread evenly and instances can be added without repartitioning.", chosen, floor)
		chosen = floor
	}
	r.Partitions = chosen
	r.Met = r.BestMeasured >= r.PlannedRate
	if r.BestMeasured > 0 {
		step("Check: the best measured point completed %.1f/s, %.1f× the planned rate; %d notifications would take %s at that rate.",
			r.BestMeasured, r.BestMeasured/r.PlannedRate, in.Target.Count,
			time.Duration(float64(in.Target.Count)/r.BestMeasured*float64(time.Second)).Round(time.Second))
	}
	return r
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RecommendFromRuns plans a target from a sweep's runs, with the provider
// model taken from the runs' provider spec and the workload's policy.
func RecommendFromRuns(t Target, spec ProviderSpec, headroom, coresPerInstance float64, runs []*Result) Recommendation {
	email, _ := provider.ParseSimulation(spec.Email)
	sms, _ := provider.ParseSimulation(spec.SMS)
	model := ProviderModel{EmailLatency: email.Latency, SMSLatency: sms.Latency, Transient: email.Fail,
		Permanent: email.Permanent, AttemptsPerChannel: workloadAttemptsPerChannel}
	var pts []PointResult
	for _, r := range runs {
		cpu, rss := r.HeraldCPU()
		pts = append(pts, PointResult{Point: Point{r.Partitions, r.Instances}, Rate: r.Throughput.To90,
			CPUPerNotification: cpu / float64(max(r.Valid, 1)), PeakRSS: rss, P99: r.EndToEnd.P99,
			PeakLag: r.PeakLag, Passed: r.Passed()})
	}
	return Recommend(PlanInputs{Target: t, Provider: model, Headroom: headroom, CoresPerInstance: coresPerInstance,
		MinInstances: 2}, pts)
}
