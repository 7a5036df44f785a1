package loadtest

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/provider"
)

// Observed is what a run saw once the pipeline went quiet: the provider's
// side, PostgreSQL's side and the dead-letter topic. The checks compare it
// with the Plan.
type Observed struct {
	// FirstCall is, per record index, the arrival of its first provider
	// call (Unix ns; 0: never called).
	FirstCall []int64
	// Delivered is, per record index, how many deliveries the provider
	// accepted (all channels).
	Delivered []int32
	// UnknownCalls counts provider calls and deliveries for ids outside the
	// plan.
	UnknownCalls int64
	Provider     provider.Stats
	DB           DBCounts
	DLQ          []contract.DeadLetter
}

// DBCounts is what dispatch_status holds for the run's campaign.
type DBCounts struct {
	Rows int64
	// ByStatus counts rows per status; SentByChannel counts sent rows per
	// channel.
	ByStatus      map[string]int64
	SentByChannel map[string]int64
	// Duplicates is the sum of the duplicates column.
	Duplicates int64
	// NotSent maps the id of every row not sent to its status.
	NotSent map[string]string
}

// NonFinal counts rows whose status is not final.
func (d DBCounts) NonFinal() int64 {
	var n int64
	for s, c := range d.ByStatus {
		if !contract.Status(s).Final() {
			n += c
		}
	}
	return n
}

// CheckResult is one check's verdict.
type CheckResult struct {
	Name string `json:"name"`
	Pass bool   `json:"pass"`
	// Detail says what was compared, in figures.
	Detail string `json:"detail"`
	// Examples names a few offending ids.
	Examples []string `json:"examples,omitempty"`
}

// ObservedFromDeliveries fills Delivered and UnknownCalls from the mock
// server's accepted deliveries.
func ObservedFromDeliveries(p *Plan, ds []provider.Delivery, o *Observed) {
	o.Delivered = make([]int32, p.W.N)
	for _, d := range ds {
		if i, ok := p.Index(d.ID); ok {
			o.Delivered[i]++
		} else {
			o.UnknownCalls++
		}
	}
}

const maxExamples = 5

type examples []string

func (e *examples) add(s string) {
	if len(*e) < maxExamples {
		*e = append(*e, s)
	}
}

// Check runs every check of a run.
func Check(p *Plan, o *Observed) []CheckResult {
	return []CheckResult{
		checkAllFinal(p, o),
		checkExactlyOnce(p, o),
		checkBlackout(p, o),
		checkNotBefore(p, o),
		checkDatabase(p, o),
		checkDLQ(p, o),
	}
}

// Failed returns the checks that failed.
func Failed(rs []CheckResult) []CheckResult {
	var out []CheckResult
	for _, r := range rs {
		if !r.Pass {
			out = append(out, r)
		}
	}
	return out
}

func checkAllFinal(p *Plan, o *Observed) CheckResult {
	nf := o.DB.NonFinal()
	r := CheckResult{Name: "every notification final",
		Pass:   o.DB.Rows == int64(p.Valid()) && nf == 0,
		Detail: fmt.Sprintf("%d rows in dispatch_status for %d valid notifications, %d not final", o.DB.Rows, p.Valid(), nf)}
	var ex examples
	for id, st := range o.DB.NotSent {
		if !contract.Status(st).Final() {
			ex.add(id + " " + st)
		}
	}
	r.Examples = sortedExamples(ex)
	return r
}

func checkExactlyOnce(p *Plan, o *Observed) CheckResult {
	var lost, dup, dupDeliveries, failed, malformed int
	var exLost, exDup, exMal examples
	for i, k := range p.Kinds {
		n := o.Delivered[i]
		if k == KindMalformed {
			if n > 0 {
				malformed++
				exMal.add(p.ID(i))
			}
			continue
		}
		switch {
		case n == 0:
			id := p.ID(i)
			if st, ok := o.DB.NotSent[id]; ok && contract.Status(st).Final() && st != string(contract.StatusSent) {
				failed++ // reported final without a delivery: not a loss
				continue
			}
			lost++
			exLost.add(id)
		case n > 1:
			dup++
			dupDeliveries += int(n) - 1
			exDup.add(fmt.Sprintf("%s x%d", p.ID(i), n))
		}
	}
	ex := append(append(exLost, exDup...), exMal...)
	return CheckResult{
		Name: "exactly once at the provider",
		Pass: lost == 0 && dup == 0 && malformed == 0 && o.UnknownCalls == 0,
		Detail: fmt.Sprintf("%d valid ids: %d delivered once, %d lost, %d delivered more than once (%d extra deliveries), %d reported failed, %d malformed delivered, %d calls for unknown ids, %d calls answered from an earlier delivery by idempotency key",
			p.Valid(), p.Valid()-lost-dup-failed, lost, dup, dupDeliveries, failed, malformed, o.UnknownCalls, o.Provider.Replays),
		Examples: ex,
	}
}

func checkBlackout(p *Plan, o *Observed) CheckResult {
	var held, violations int
	var ex examples
	for i, k := range p.Kinds {
		if k != KindBlackout || p.Published[i].Load() == 0 {
			continue
		}
		held++
		t := o.FirstCall[i]
		// The first call is the earliest contact; a window is [open, end).
		if t != 0 && t >= p.Window[i] && t < p.Release[i] {
			violations++
			ex.add(fmt.Sprintf("%s called %s before its window ended", p.ID(i), time.Duration(p.Release[i]-t).Round(time.Millisecond)))
		}
	}
	return CheckResult{Name: "nobody contacted inside a blackout window", Pass: violations == 0,
		Detail:   fmt.Sprintf("%d notifications published inside their blackout window, %d contacted before it ended", held, violations),
		Examples: ex}
}

func checkNotBefore(p *Plan, o *Observed) CheckResult {
	var held, early int
	var ex examples
	for i, k := range p.Kinds {
		if k != KindNotBefore || p.Published[i].Load() == 0 {
			continue
		}
		held++
		if t := o.FirstCall[i]; t != 0 && t < p.Release[i] {
			early++
			ex.add(fmt.Sprintf("%s called %s before not_before", p.ID(i), time.Duration(p.Release[i]-t).Round(time.Millisecond)))
		}
	}
	return CheckResult{Name: "nothing sent before not_before", Pass: early == 0,
		Detail: fmt.Sprintf("%d scheduled notifications, %d called early", held, early), Examples: ex}
}

func checkDatabase(p *Plan, o *Observed) CheckResult {
	var problems []string
	sent := o.DB.ByStatus[string(contract.StatusSent)]
	if sent != o.Provider.UniqueIDs {
		problems = append(problems, fmt.Sprintf("sent rows %d != provider's delivered ids %d", sent, o.Provider.UniqueIDs))
	}
	chans := map[string]bool{}
	for ch := range o.DB.SentByChannel {
		chans[ch] = true
	}
	for ch := range o.Provider.Channels {
		chans[string(ch)] = true
	}
	var parts []string
	for _, ch := range sortedKeys(chans) {
		var prov int64
		if cs := o.Provider.Channels[contract.Channel(ch)]; cs != nil {
			prov = cs.UniqueIDs
		}
		db := o.DB.SentByChannel[ch]
		parts = append(parts, fmt.Sprintf("%s %d/%d", ch, db, prov))
		if db != prov {
			problems = append(problems, fmt.Sprintf("sent by %s: %d rows != provider's %d", ch, db, prov))
		}
	}
	wantDup := int64(len(p.Rerun))
	if o.DB.Duplicates != wantDup {
		problems = append(problems, fmt.Sprintf("duplicates column sums to %d, %d re-published", o.DB.Duplicates, wantDup))
	}
	return CheckResult{Name: "Postgres counts equal the provider's", Pass: len(problems) == 0,
		Detail: fmt.Sprintf("sent rows %d, provider delivered ids %d; per channel (rows/provider) %s; duplicates %d of %d re-published",
			sent, o.Provider.UniqueIDs, strings.Join(parts, ", "), o.DB.Duplicates, wantDup),
		Examples: problems}
}

func checkDLQ(p *Plan, o *Observed) CheckResult {
	byKey := make(map[string][]contract.DeadLetter, len(o.DLQ))
	for _, d := range o.DLQ {
		byKey[string(d.Key)] = append(byKey[string(d.Key)], d)
	}
	var want, found, wrongBytes int
	var ex examples
	seen := map[string]bool{}
	for i, k := range p.Kinds {
		if k != KindMalformed || p.Published[i].Load() == 0 {
			continue
		}
		want++
		key, value := p.malformed(i)
		seen[string(key)] = true
		ds := byKey[string(key)]
		switch {
		case len(ds) == 0:
			ex.add(string(key) + " missing from herald.dlq")
		case !bytes.Equal(ds[0].Value, value):
			wrongBytes++
			ex.add(string(key) + " dead-lettered with other bytes")
		default:
			found++
		}
	}
	var unexpected int
	for key, ds := range byKey {
		if !seen[key] {
			unexpected += len(ds)
			ex.add(fmt.Sprintf("unexpected dead letter %q (%s: %s)", key, ds[0].Reason, ds[0].Error))
		}
	}
	return CheckResult{Name: "every malformed record in herald.dlq",
		Pass: found == want && unexpected == 0,
		Detail: fmt.Sprintf("%d malformed published, %d dead-lettered byte for byte, %d with other bytes, %d unexpected dead letters",
			want, found, wrongBytes, unexpected),
		Examples: sortedExamples(ex)}
}

func sortedExamples(e examples) []string {
	out := []string(e)
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
