package provider

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Simulation describes a simulated provider: how long it takes to answer
// and how often it fails. Every decision is a hash of the notification id
// (and, for per-attempt decisions, the attempt number), so a run can be
// repeated exactly and a test can predict which ids fail:
//
//   - Permanent is decided per id: an id that fails permanently does so on
//     every attempt (an invalid address), so it falls back to the next
//     channel. PermanentFor tells which ids do.
//   - Throttle (429 with Retry-After) and Fail (503) are decided per
//     attempt, so a retry can succeed.
//   - Each attempt takes Latency plus a jitter drawn uniformly from
//     [-Jitter, +Jitter] (never below zero).
type Simulation struct {
	Latency, Jitter time.Duration
	// Fail is the fraction of attempts failing transiently, Permanent the
	// fraction of ids failing permanently, Throttle the fraction of
	// attempts answered 429.
	Fail, Permanent, Throttle float64
	// RetryAfter is sent with a 429 (default 1 s).
	RetryAfter time.Duration
	// Seed varies the decisions between runs; the same seed repeats them.
	Seed string
}

// ParseSimulation reads a simulation from URL query parameters:
// latency, jitter, retry_after (Go durations), fail, permanent, throttle
// (fractions from 0 to 1) and seed.
func ParseSimulation(q url.Values) (Simulation, error) {
	return Simulation{}.Override(q)
}

// Override returns s with the parameters present in q replaced.
func (s Simulation) Override(q url.Values) (Simulation, error) {
	for key, vals := range q {
		if len(vals) == 0 {
			continue
		}
		v := vals[len(vals)-1]
		var err error
		switch key {
		case "latency":
			s.Latency, err = parseNonNegDuration(v)
		case "jitter":
			s.Jitter, err = parseNonNegDuration(v)
		case "retry_after":
			s.RetryAfter, err = parseNonNegDuration(v)
		case "fail":
			s.Fail, err = parseFraction(v)
		case "permanent":
			s.Permanent, err = parseFraction(v)
		case "throttle":
			s.Throttle, err = parseFraction(v)
		case "seed":
			s.Seed = v
		default:
			err = fmt.Errorf("unknown parameter (have latency, jitter, fail, permanent, throttle, retry_after, seed)")
		}
		if err != nil {
			return s, fmt.Errorf("mock %s=%q: %w", key, v, err)
		}
	}
	return s, nil
}

func parseNonNegDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative")
	}
	return d, nil
}

func parseFraction(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 1 || math.IsNaN(f) {
		return 0, fmt.Errorf("want a fraction from 0 to 1")
	}
	return f, nil
}

// Decision is what the simulation does with one attempt.
type Decision struct {
	Outcome contract.Outcome
	// Delay is how long the attempt takes.
	Delay time.Duration
	// Code is the HTTP status the mock answers.
	Code       int
	RetryAfter time.Duration
}

// Result turns the decision into a provider result.
func (d Decision) Result() Result {
	r := Result{Outcome: d.Outcome, Code: d.Code, RetryAfter: d.RetryAfter}
	switch d.Outcome {
	case contract.OutcomeSuccess:
	case contract.OutcomePermanent:
		r.Err = fmt.Errorf("mock: recipient rejected (simulated permanent failure)")
	case contract.OutcomeThrottled:
		r.Err = fmt.Errorf("mock: too many requests (simulated)")
	default:
		r.Err = fmt.Errorf("mock: unavailable (simulated transient failure)")
	}
	return r
}

// PermanentFor reports whether id fails permanently under s.
func (s Simulation) PermanentFor(id string) bool {
	return s.Permanent > 0 && s.unit("permanent", id, 0) < s.Permanent
}

// Decide decides one attempt.
func (s Simulation) Decide(id string, attempt int) Decision {
	d := Decision{Delay: s.Latency}
	if s.Jitter > 0 {
		j := (2*s.unit("jitter", id, attempt) - 1) * float64(s.Jitter)
		d.Delay = max(0, s.Latency+time.Duration(j))
	}
	switch {
	case s.PermanentFor(id):
		d.Outcome, d.Code = contract.OutcomePermanent, http.StatusUnprocessableEntity
	case s.Throttle > 0 && s.unit("throttle", id, attempt) < s.Throttle:
		d.Outcome, d.Code = contract.OutcomeThrottled, http.StatusTooManyRequests
		d.RetryAfter = s.RetryAfter
		if d.RetryAfter <= 0 {
			d.RetryAfter = time.Second
		}
	case s.Fail > 0 && s.unit("fail", id, attempt) < s.Fail:
		d.Outcome, d.Code = contract.OutcomeTransient, http.StatusServiceUnavailable
	default:
		d.Outcome, d.Code = contract.OutcomeSuccess, http.StatusAccepted
	}
	return d
}

// unit hashes (seed, kind, id, attempt) to a number in [0, 1).
func (s Simulation) unit(kind, id string, attempt int) float64 {
	h := fnv.New64a()
	h.Write([]byte(s.Seed))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(attempt))
	h.Write(b[:])
	// FNV alone mixes the last bytes poorly; finish with splitmix64.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// Mock is the in-process simulated provider (mock://). Each attempt waits
// on a timer for its simulated latency, inside the caller's goroutine.
type Mock struct {
	sim Simulation

	accepted, transient, permanent, throttled atomic.Int64
}

// NewMock returns a simulated provider.
func NewMock(sim Simulation) *Mock { return &Mock{sim: sim} }

// Simulation returns the mock's parameters.
func (m *Mock) Simulation() Simulation { return m.sim }

// Send simulates one attempt. If ctx ends first, the attempt is transient
// with no code, like a timeout against a real provider.
func (m *Mock) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	d := m.sim.Decide(cmd.ID, cmd.Attempt)
	if d.Delay > 0 {
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Transient(0, fmt.Errorf("mock: %w", ctx.Err()))
		}
	}
	switch d.Outcome {
	case contract.OutcomeSuccess:
		m.accepted.Add(1)
	case contract.OutcomePermanent:
		m.permanent.Add(1)
	case contract.OutcomeThrottled:
		m.throttled.Add(1)
	default:
		m.transient.Add(1)
	}
	return d.Result()
}

// MockCounts counts a Mock's answers.
type MockCounts struct {
	Accepted, Transient, Permanent, Throttled int64
}

// Counts returns what the mock answered so far.
func (m *Mock) Counts() MockCounts {
	return MockCounts{m.accepted.Load(), m.transient.Load(), m.permanent.Load(), m.throttled.Load()}
}

// Close does nothing.
func (m *Mock) Close() error { return nil }
