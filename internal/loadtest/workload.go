package loadtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Kind is what a generated notification is meant to exercise.
type Kind uint8

const (
	// KindNormal is sent at once.
	KindNormal Kind = iota
	// KindBlackout has a blackout window, in the recipient's zone, that is
	// open when it is published and closes a little later: it must be held
	// until the window ends.
	KindBlackout
	// KindNotBefore has not_before in the near future.
	KindNotBefore
	// KindMalformed is a record the dispatcher must dead-letter.
	KindMalformed
	// KindWindowQueued has a blackout window that opens a little after
	// publication, while its send command may still wait in herald.send
	// behind the backlog: no provider call may start inside it.
	KindWindowQueued
	// KindExpiring has expires_at a little after publication, inside the
	// backlog: no provider call may start at or after it.
	KindExpiring
	// KindSlowProvider meets an email provider slower than the provider
	// timeout, with one attempt per channel (email, then SMS) and no
	// fallback_on_unknown: the email outcome is unknown, and it must never
	// be delivered by SMS as well.
	KindSlowProvider
	numKinds
)

// Kinds lists every kind, in report order (a fresh slice each call).
func Kinds() []Kind {
	return []Kind{KindNormal, KindBlackout, KindNotBefore, KindMalformed, KindWindowQueued, KindExpiring, KindSlowProvider}
}

func (k Kind) String() string {
	switch k {
	case KindNormal:
		return "normal"
	case KindBlackout:
		return "blackout"
	case KindNotBefore:
		return "not_before"
	case KindMalformed:
		return "malformed"
	case KindWindowQueued:
		return "window_queued"
	case KindExpiring:
		return "expiring"
	case KindSlowProvider:
		return "slow_provider"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Held reports whether notifications of this kind wait before their first
// provider call.
func (k Kind) Held() bool { return k == KindBlackout || k == KindNotBefore }

// Workload describes a generated billing run.
type Workload struct {
	// N is the number of distinct records of the run, malformed ones
	// included. Duplicates come on top.
	N int
	// Shares of N. Duplicates are valid notifications published a second
	// time by a re-run of the batch; Blackout, NotBefore, Malformed,
	// WindowQueued, Expiring and SlowProvider are disjoint shares of the
	// first publication.
	Duplicates, Blackout, NotBefore, Malformed float64
	WindowQueued, Expiring, SlowProvider       float64
	// BlackoutFor is the least time a blackout notification is held: its
	// window ends at the first whole minute at least BlackoutFor after it
	// is published (windows are HH:MM, so a minute is their grain).
	BlackoutFor time.Duration
	// BlackoutLength is how long before its end a window opened (default
	// 8 h: a night window, which crosses midnight in some zones).
	BlackoutLength time.Duration
	// NotBeforeMin and NotBeforeMax bound not_before after publication.
	NotBeforeMin, NotBeforeMax time.Duration
	// WindowAfter is the least time between a window_queued
	// notification's publication and its window's opening (the first
	// whole minute at least this late); WindowLength is how long the
	// window stays open (whole minutes).
	WindowAfter, WindowLength time.Duration
	// ExpireAfter is expires_at of an expiring notification, after its
	// publication.
	ExpireAfter time.Duration
	// SlowLatency is how long the email provider takes for a slow_provider
	// notification: it must be longer than the sender's provider timeout.
	// The provider delivers even though the caller has given up, and
	// answers a call with the same Idempotency-Key from that delivery.
	SlowLatency time.Duration
	// CutoffTransit is, for the checks, how long after a cut-off (a
	// window's opening, an expiry) a call may arrive at the provider and
	// still count as started before it: the sender checks the cut-off as
	// it starts the call, and the request then takes a moment to arrive.
	// A call arriving later started after the cut-off.
	CutoffTransit time.Duration
	// Campaign names the run; ids are Campaign-NNNNNNN.
	Campaign string
	// Seed makes the run repeatable.
	Seed uint64
	// AttemptsPerChannel is the requests' policy.attempts_per_channel
	// (default 3).
	AttemptsPerChannel int
}

// Workload defaults.
const (
	DefaultN              = 100_000
	DefaultDuplicates     = 0.05
	DefaultBlackout       = 0.02
	DefaultNotBefore      = 0.02
	DefaultMalformed      = 0.001
	DefaultBlackoutFor    = 60 * time.Second
	DefaultBlackoutLength = 8 * time.Hour
	DefaultNotBeforeMin   = 10 * time.Second
	DefaultNotBeforeMax   = 60 * time.Second
	DefaultWindowQueued   = 0.005
	DefaultExpiring       = 0.005
	DefaultSlowProvider   = 0.002
	DefaultWindowAfter    = 5 * time.Second
	DefaultWindowLength   = time.Minute
	DefaultExpireAfter    = 20 * time.Second
	DefaultSlowLatency    = 15 * time.Second
	DefaultCutoffTransit  = time.Second
)

// WithDefaults fills zero durations and names.
func (w Workload) WithDefaults() Workload {
	if w.N <= 0 {
		w.N = DefaultN
	}
	if w.BlackoutFor <= 0 {
		w.BlackoutFor = DefaultBlackoutFor
	}
	if w.BlackoutLength <= 0 {
		w.BlackoutLength = DefaultBlackoutLength
	}
	if w.NotBeforeMin <= 0 {
		w.NotBeforeMin = DefaultNotBeforeMin
	}
	if w.NotBeforeMax < w.NotBeforeMin {
		w.NotBeforeMax = max(w.NotBeforeMin, DefaultNotBeforeMax)
	}
	if w.WindowAfter <= 0 {
		w.WindowAfter = DefaultWindowAfter
	}
	if w.WindowLength <= 0 {
		w.WindowLength = DefaultWindowLength
	}
	if w.ExpireAfter <= 0 {
		w.ExpireAfter = DefaultExpireAfter
	}
	if w.SlowLatency <= 0 {
		w.SlowLatency = DefaultSlowLatency
	}
	if w.CutoffTransit <= 0 {
		w.CutoffTransit = DefaultCutoffTransit
	}
	if w.Campaign == "" {
		w.Campaign = "bill"
	}
	if w.AttemptsPerChannel <= 0 {
		w.AttemptsPerChannel = workloadAttemptsPerChannel
	}
	return w
}

// Validate checks the shares.
func (w Workload) Validate() error {
	for name, s := range map[string]float64{"duplicates": w.Duplicates, "blackout": w.Blackout,
		"not-before": w.NotBefore, "malformed": w.Malformed, "window-queued": w.WindowQueued,
		"expiring": w.Expiring, "slow-provider": w.SlowProvider} {
		if s < 0 || s > 1 || math.IsNaN(s) {
			return fmt.Errorf("share %s=%g: want a fraction from 0 to 1", name, s)
		}
	}
	if w.Blackout+w.NotBefore+w.Malformed+w.WindowQueued+w.Expiring+w.SlowProvider > 1 {
		return fmt.Errorf("blackout + not-before + malformed + window-queued + expiring + slow-provider shares exceed 1")
	}
	if w.WindowLength%time.Minute != 0 || w.WindowLength >= 24*time.Hour {
		return fmt.Errorf("window length %s: want whole minutes, less than a day", w.WindowLength)
	}
	if strings.ContainsAny(w.Campaign, " \t\n") {
		return fmt.Errorf("campaign %q: no spaces", w.Campaign)
	}
	return nil
}

// workloadAttemptsPerChannel is the generated requests' policy.
const workloadAttemptsPerChannel = 3

// zones are the recipients' time zones, whole-minute offsets all, so a
// minute boundary is one in every zone.
var zones = []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Seoul", "Asia/Kolkata",
	"America/Los_Angeles", "Australia/Sydney", "Asia/Kathmandu"}

// Plan is a generated run: which record is which kind, and, once
// published, when each was published and from when it may be sent. It is
// safe for one publisher and concurrent readers of the atomic fields.
type Plan struct {
	W Workload
	// Kinds has one entry per record index.
	Kinds []Kind
	// Rerun is the indices published a second time (valid ones only), in
	// publication order: a contiguous block from the middle of the batch,
	// as a batch restarted from a checkpoint publishes again.
	Rerun []int32
	// Published is when each record was first handed to the producer (Unix
	// nanoseconds; 0 until then).
	Published []atomic.Int64
	// Release is, for held kinds, the instant before which the
	// notification must not be sent (the window's end, or not_before).
	// Window is the blackout window's opening instant (blackout and
	// window_queued). Expires is an expiring notification's expires_at.
	Release []int64
	Window  []int64
	Expires []int64
	locs    []*time.Location
	counts  [numKinds]int
}

// NewPlan assigns kinds: exact shares, in an order shuffled by the seed.
func NewPlan(w Workload) (*Plan, error) {
	w = w.WithDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{W: w, Kinds: make([]Kind, w.N), Published: make([]atomic.Int64, w.N),
		Release: make([]int64, w.N), Window: make([]int64, w.N), Expires: make([]int64, w.N)}
	rng := rand.New(rand.NewPCG(w.Seed, 0x6865726c64))
	perm := rng.Perm(w.N)
	nMal := int(math.Round(float64(w.N) * w.Malformed))
	nBlack := int(math.Round(float64(w.N) * w.Blackout))
	nNB := int(math.Round(float64(w.N) * w.NotBefore))
	// The newer shares come after, so that adding them leaves the older
	// kinds' ids where a given seed put them.
	shares := []struct {
		k Kind
		n int
	}{{KindMalformed, nMal}, {KindBlackout, nBlack}, {KindNotBefore, nNB},
		{KindWindowQueued, int(math.Round(float64(w.N) * w.WindowQueued))},
		{KindExpiring, int(math.Round(float64(w.N) * w.Expiring))},
		{KindSlowProvider, int(math.Round(float64(w.N) * w.SlowProvider))}}
	for j, i := range perm {
		upto := 0
		for _, sh := range shares {
			if upto += sh.n; j < upto {
				p.Kinds[i] = sh.k
				break
			}
		}
	}
	for _, k := range p.Kinds {
		p.counts[k]++
	}
	for _, z := range zones {
		loc, err := contract.LoadLocation(z)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", z, err)
		}
		p.locs = append(p.locs, loc)
	}
	nDup := int(math.Round(float64(w.N) * w.Duplicates))
	nDup = min(nDup, p.Valid())
	start := max(0, w.N/2-nDup/2)
	for i := start; len(p.Rerun) < nDup; i = (i + 1) % w.N {
		if p.Kinds[i] != KindMalformed {
			p.Rerun = append(p.Rerun, int32(i))
		}
	}
	return p, nil
}

// Count returns how many records are of kind k.
func (p *Plan) Count(k Kind) int { return p.counts[k] }

// Valid is the number of distinct valid notifications.
func (p *Plan) Valid() int { return p.W.N - p.counts[KindMalformed] }

// Records is the number of records the run publishes, duplicates included.
func (p *Plan) Records() int { return p.W.N + len(p.Rerun) }

// ID returns the notification id of index i.
func (p *Plan) ID(i int) string { return fmt.Sprintf("%s-%07d", p.W.Campaign, i) }

// badKey is the Kafka key of malformed record i.
func (p *Plan) badKey(i int) string { return fmt.Sprintf("%s-bad-%07d", p.W.Campaign, i) }

// Index parses an id made by ID; ok is false for anything else.
func (p *Plan) Index(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, p.W.Campaign+"-")
	if !ok || len(rest) < 7 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n >= p.W.N {
		return 0, false
	}
	return n, true
}

// mix hashes (seed, i, salt) to 64 bits.
func (p *Plan) mix(i int, salt uint64) uint64 {
	x := p.W.Seed ^ uint64(i)*0x9e3779b97f4a7c15 ^ salt*0xd1b54a32d192ed03
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (p *Plan) loc(i int) *time.Location { return p.locs[p.mix(i, 1)%uint64(len(p.locs))] }

// Key returns the Kafka key of record i.
func (p *Plan) Key(i int) string {
	if p.Kinds[i] == KindMalformed {
		return p.badKey(i)
	}
	return p.ID(i)
}

// First builds record i for its first publication at now, and records now
// as its publish time (and its release instant if it is held).
func (p *Plan) First(i int, now time.Time) (key, value []byte) {
	switch p.Kinds[i] {
	case KindBlackout:
		end := now.Add(p.W.BlackoutFor)
		if t := end.Truncate(time.Minute); !t.Equal(end) {
			end = t.Add(time.Minute)
		}
		p.Release[i] = end.UnixNano()
		p.Window[i] = end.Add(-p.W.BlackoutLength).UnixNano()
	case KindNotBefore:
		span := p.W.NotBeforeMax - p.W.NotBeforeMin
		d := p.W.NotBeforeMin
		if span > 0 {
			d += time.Duration(p.mix(i, 2) % uint64(span))
		}
		// JSON carries RFC 3339 with nanoseconds; keep what round-trips.
		p.Release[i] = now.Add(d).UnixNano()
	case KindWindowQueued:
		open := now.Add(p.W.WindowAfter)
		if t := open.Truncate(time.Minute); !t.Equal(open) {
			open = t.Add(time.Minute)
		}
		p.Window[i] = open.UnixNano()
		p.Release[i] = open.Add(p.W.WindowLength).UnixNano()
	case KindExpiring:
		p.Expires[i] = now.Add(p.W.ExpireAfter).UnixNano()
	}
	p.Published[i].Store(now.UnixNano())
	return p.build(i, now)
}

// PublishAlignment is how long a batch that would start at start should
// wait so that the first whole minute at least WindowAfter after the
// records published in its first WindowAfter is 2 × WindowAfter after its
// start: the window_queued notifications published in the batch's first
// WindowAfter then have their windows open at that minute, while the
// ones before them in herald.send may still be called (a backlog whose
// wait exceeds WindowAfter there holds some of them). Without it the
// minute would fall anywhere in the first minute of the run, possibly
// after the backlog. At most a minute; 0 without a window_queued share.
func (p *Plan) PublishAlignment(start time.Time) time.Duration {
	if p.Count(KindWindowQueued) == 0 {
		return 0
	}
	lead := 2 * p.W.WindowAfter
	m := start.Add(lead).Truncate(time.Minute)
	if m.Before(start.Add(lead)) {
		m = m.Add(time.Minute)
	}
	return m.Sub(start.Add(lead))
}

// forbiddenFrom reports whether a provider call for index i arriving at
// (Unix ns) is inside its blackout window or at or after its expiry, and
// from when calls were forbidden (the window's opening, the expiry).
func (p *Plan) forbiddenFrom(i int, at int64) (from int64, forbidden bool) {
	if p.Published[i].Load() == 0 { // orders the reads below after First
		return 0, false
	}
	switch p.Kinds[i] {
	case KindBlackout, KindWindowQueued:
		return p.Window[i], at >= p.Window[i] && at < p.Release[i]
	case KindExpiring:
		return p.Expires[i], at >= p.Expires[i]
	}
	return 0, false
}

// Again builds record i for a re-publication at now (a batch re-run): the
// same notification, stamped with the re-run's time.
func (p *Plan) Again(i int, now time.Time) (key, value []byte) { return p.build(i, now) }

func (p *Plan) build(i int, now time.Time) (key, value []byte) {
	if p.Kinds[i] == KindMalformed {
		return p.malformed(i)
	}
	id := p.ID(i)
	loc := p.loc(i)
	content, _ := json.Marshal(map[string]any{
		"template":     "statement-ready",
		"statement_id": fmt.Sprintf("ST-%d-%07d", p.W.Seed%10000, i),
		"amount":       fmt.Sprintf("%d.%02d", 10+p.mix(i, 3)%990, p.mix(i, 4)%100),
		"currency":     "EUR",
		"published_at": now.UTC().Format(time.RFC3339Nano),
	})
	r := contract.Request{
		Schema:   contract.SchemaV1,
		ID:       id,
		Campaign: p.W.Campaign,
		Recipient: contract.Recipient{
			Email: fmt.Sprintf("customer%07d@example.com", i),
			Phone: fmt.Sprintf("+4915%09d", p.mix(i, 5)%1_000_000_000),
			TZ:    loc.String(),
		},
		Channels: []contract.Channel{contract.ChannelEmail, contract.ChannelSMS},
		Content:  content,
		Policy: contract.Policy{ID: "billing-statement", Version: 3, AttemptsPerChannel: p.W.AttemptsPerChannel,
			Backoff: contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 2,
				Max: contract.Duration(time.Minute)}},
	}
	switch p.Kinds[i] {
	case KindBlackout, KindWindowQueued:
		end := time.Unix(0, p.Release[i]).In(loc)
		open := time.Unix(0, p.Window[i]).In(loc)
		r.Blackout = []contract.Window{{
			From: contract.Clock(open.Hour()*60 + open.Minute()),
			To:   contract.Clock(end.Hour()*60 + end.Minute()),
		}}
	case KindNotBefore:
		nb := time.Unix(0, p.Release[i]).UTC()
		r.NotBefore = &nb
	case KindExpiring:
		e := time.Unix(0, p.Expires[i]).UTC()
		r.ExpiresAt = &e
	case KindSlowProvider:
		r.Policy.AttemptsPerChannel = 1
	}
	v, _ := json.Marshal(r)
	return []byte(id), v
}

// malformed returns one of four kinds of bad record, in turn: bytes that
// are not JSON, truncated JSON, a request missing required fields, and a
// request whose Kafka key differs from its id.
func (p *Plan) malformed(i int) (key, value []byte) {
	k := p.badKey(i)
	switch p.mix(i, 6) % 4 {
	case 0:
		return []byte(k), []byte(fmt.Sprintf("statement %d;EUR;not json at all", i))
	case 1:
		return []byte(k), []byte(fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":"%s","campaign":"%s","recipient":{"email":"x@exa`, k, p.W.Campaign))
	case 2:
		return []byte(k), []byte(fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":"%s","campaign":"%s","channels":[],"content":{}}`, k, p.W.Campaign))
	default:
		return []byte(k), []byte(fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":"%s-other","campaign":"%s","recipient":{"email":"c@example.com"},"channels":["email"],"content":{}}`, k, p.W.Campaign))
	}
}
