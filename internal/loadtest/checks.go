package loadtest

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// Observed is what a run saw once the pipeline went quiet: the provider's
// side, PostgreSQL's side and the dead-letter topic. The checks compare it
// with the Plan.
type Observed struct {
	// FirstCall is, per record index, the arrival of its first provider
	// call (Unix ns; 0: never called).
	FirstCall []int64
	// Delivered is, per record index, how many deliveries the provider
	// accepted (all channels); DeliveredOn the channels that delivered it
	// (a bit per channel, channelBit).
	Delivered   []int32
	DeliveredOn []uint8
	// Forbidden is, per record index, how many of its calls arrived inside
	// a blackout window or at or after its expiry, and ForbiddenBy the
	// furthest of them past the window's opening or the expiry.
	Forbidden   []int32
	ForbiddenBy []time.Duration
	// SlowReplays counts the slow provider's answers by idempotency key.
	SlowReplays int64
	// UnknownCalls counts provider calls and deliveries for ids outside the
	// plan.
	UnknownCalls int64
	Provider     provider.Stats
	DB           DBCounts
	// Answered is, per record index, the provider's last answer to a call
	// for it (Unix ns; 0: never answered). FinalSynced maps the index of
	// every notification final in PostgreSQL as sent or failed to when
	// that status was written (Unix ns; 0: unknown); nil when the run's
	// store does not record it (the baseline).
	Answered    []int64
	FinalSynced map[int]int64
	DLQ         []contract.DeadLetter
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
	// UnknownAtCutoff holds the ids that expired while their last
	// attempt's outcome was unknown (no answer within the provider
	// timeout, and expires_at passed meanwhile): the provider may have
	// delivered them, and Herald says so.
	UnknownAtCutoff map[string]bool
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

// channelBit is a channel's bit in Observed.DeliveredOn.
func channelBit(ch contract.Channel) uint8 {
	switch ch {
	case contract.ChannelEmail:
		return 1
	case contract.ChannelSMS:
		return 2
	case contract.ChannelPush:
		return 4
	}
	return 8
}

// ObservedFromDeliveries fills Delivered, DeliveredOn and UnknownCalls
// from the mock servers' accepted deliveries.
func ObservedFromDeliveries(p *Plan, ds []provider.Delivery, o *Observed) {
	o.Delivered = make([]int32, p.W.N)
	o.DeliveredOn = make([]uint8, p.W.N)
	for _, d := range ds {
		if i, ok := p.Index(d.ID); ok {
			o.Delivered[i]++
			o.DeliveredOn[i] |= channelBit(d.Channel)
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
		checkWindowsWhileQueued(p, o),
		checkExpiry(p, o),
		checkOneChannel(p, o),
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
	// A call with no answer within the provider timeout has an unknown
	// outcome: the provider may have delivered it. When expires_at passes
	// meanwhile, Herald reports
	// such a notification expired with "outcome unknown" in its last
	// error; those the provider did deliver are counted apart, not as a
	// mismatch, and only they.
	unknownByChannel := map[string]int64{}
	var unknown int64
	for i := range p.Kinds {
		id := p.ID(i)
		if o.DB.UnknownAtCutoff[id] && i < len(o.Delivered) && o.Delivered[i] > 0 {
			unknown++
			for _, ch := range []contract.Channel{contract.ChannelEmail, contract.ChannelSMS, contract.ChannelPush} {
				if o.DeliveredOn[i]&channelBit(ch) != 0 {
					unknownByChannel[string(ch)]++
				}
			}
		}
	}
	if sent+unknown != o.Provider.UniqueIDs {
		problems = append(problems, fmt.Sprintf("sent rows %d (+%d expired with an unknown outcome) != provider's delivered ids %d", sent, unknown, o.Provider.UniqueIDs))
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
		db := o.DB.SentByChannel[ch] + unknownByChannel[ch]
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
		Detail: fmt.Sprintf("sent rows %d, provider delivered ids %d; %d delivered and reported expired with an unknown outcome (no answer within the provider timeout, expired meanwhile); per channel (rows/provider) %s; duplicates %d of %d re-published",
			sent, o.Provider.UniqueIDs, unknown, strings.Join(parts, ", "), o.DB.Duplicates, wantDup),
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

// inTransit reports whether a call that arrived by after a cut-off may
// have started before it: the sender checks the cut-off as it starts the
// call, and the request takes up to Workload.CutoffTransit to arrive.
func inTransit(p *Plan, by time.Duration) bool { return by <= p.W.CutoffTransit }

// checkWindowsWhileQueued: no provider call starts inside a blackout
// window, the window_queued share's included, whose windows open while
// their send commands may wait in herald.send.
func checkWindowsWhileQueued(p *Plan, o *Observed) CheckResult {
	var queued, before, after, never, inside, transit int
	var ex examples
	for i, k := range p.Kinds {
		if (k != KindWindowQueued && k != KindBlackout) || p.Published[i].Load() == 0 {
			continue
		}
		if o.Forbidden[i] > 0 {
			if inTransit(p, o.ForbiddenBy[i]) {
				transit++
			} else {
				inside++
				ex.add(fmt.Sprintf("%s (%s): %d calls inside its window, the latest %s after it opened",
					p.ID(i), k, o.Forbidden[i], o.ForbiddenBy[i].Round(time.Millisecond)))
			}
		}
		if k != KindWindowQueued {
			continue
		}
		queued++
		switch t := o.FirstCall[i]; {
		case t == 0:
			never++
		case t < p.Window[i]+int64(p.W.CutoffTransit):
			before++
		case t >= p.Release[i]:
			after++
		}
	}
	return CheckResult{Name: "no provider call starts inside a window that opens while queued", Pass: inside == 0,
		Detail: fmt.Sprintf("%d notifications whose window opened at least %s after publication: %d first called before it opened, %d held and first called after it ended, %d never called; %d notifications (window_queued and blackout) called inside their window, %d whose call arrived within %s of the opening (started before it, in transit)",
			queued, p.W.WindowAfter, before, after, never, inside, transit, p.W.CutoffTransit),
		Examples: sortedExamples(ex)}
}

// checkExpiry: no provider call starts at or after expires_at, which
// falls inside the backlog for the expiring share.
func checkExpiry(p *Plan, o *Observed) CheckResult {
	var n, sent, expired, other, after, transit int
	var ex examples
	for i, k := range p.Kinds {
		if k != KindExpiring || p.Published[i].Load() == 0 {
			continue
		}
		n++
		switch st, notSent := o.DB.NotSent[p.ID(i)]; {
		case !notSent:
			sent++
		case st == string(contract.StatusExpired):
			expired++
		default:
			other++
		}
		if o.Forbidden[i] > 0 {
			if inTransit(p, o.ForbiddenBy[i]) {
				transit++
			} else {
				after++
				ex.add(fmt.Sprintf("%s: %d calls after expires_at, the latest %s after it", p.ID(i), o.Forbidden[i], o.ForbiddenBy[i].Round(time.Millisecond)))
			}
		}
	}
	return CheckResult{Name: "no provider call starts after expires_at", Pass: after == 0,
		Detail: fmt.Sprintf("%d notifications expiring %s after publication: %d sent, %d expired, %d otherwise final; %d called after expires_at, %d whose call arrived within %s of it (started before it, in transit)",
			n, p.W.ExpireAfter, sent, expired, other, after, transit, p.W.CutoffTransit),
		Examples: sortedExamples(ex)}
}

// checkOneChannel: no notification is delivered on two channels; in
// particular the slow_provider share, whose email outcome is unknown when
// the provider timeout cuts the call, is never delivered by SMS as well.
func checkOneChannel(p *Plan, o *Observed) CheckResult {
	var two, slow, slowSent, slowFailed, slowSMS int
	var ex examples
	for i, k := range p.Kinds {
		on := o.DeliveredOn[i]
		if on&(on-1) != 0 { // more than one bit
			two++
			ex.add(fmt.Sprintf("%s (%s) delivered on %s", p.ID(i), k, channelsOf(on)))
		}
		if k != KindSlowProvider || p.Published[i].Load() == 0 {
			continue
		}
		slow++
		if on&channelBit(contract.ChannelSMS) != 0 {
			slowSMS++
		}
		switch st, notSent := o.DB.NotSent[p.ID(i)]; {
		case !notSent:
			slowSent++
		case st == string(contract.StatusFailed):
			slowFailed++
		}
	}
	return CheckResult{Name: "no notification delivered on two channels", Pass: two == 0,
		Detail: fmt.Sprintf("%d notifications delivered on two channels; slow_provider (email slower than the provider timeout, one attempt per channel): %d notifications, %d sent, %d failed, %d delivered by SMS, %d calls answered from the first delivery by Idempotency-Key",
			two, slow, slowSent, slowFailed, slowSMS, o.SlowReplays),
		Examples: sortedExamples(ex)}
}

func channelsOf(bits uint8) string {
	var out []string
	for _, ch := range recorderChannels {
		if bits&channelBit(ch) != 0 {
			out = append(out, string(ch))
		}
	}
	return strings.Join(out, " and ")
}
