package sender

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		ch   contract.Channel
		want float64
	}{
		{"email=100/s", contract.ChannelEmail, 100},
		{"sms=50", contract.ChannelSMS, 50},
		{"push=600/m", contract.ChannelPush, 10},
		{"email=36000/h", contract.ChannelEmail, 10},
		{"email=0.5/s", contract.ChannelEmail, 0.5},
	}
	for _, c := range cases {
		ch, r, err := ParseRate(c.in)
		if err != nil || ch != c.ch || r != c.want {
			t.Errorf("ParseRate(%q) = %s %v %v", c.in, ch, r, err)
		}
	}
	for _, bad := range []string{"email", "fax=1/s", "email=0/s", "email=-3/s", "email=x/s", "email=10/d"} {
		if _, _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q): no error", bad)
		}
	}
}

// TestGateRate measures the token bucket against the wall clock: 200
// attempts by 50 concurrent waiters at 400/s take (200-burst)/400 s.
func TestGateRate(t *testing.T) {
	const rate, n = 400.0, 200
	g := newGate(rate, time.Now)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/50; i++ {
				if err := g.wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	want := time.Duration(float64(n-burstFor(rate)) / rate * float64(time.Second))
	// Never faster than the bucket allows; slower only by scheduling noise.
	if el < want-10*time.Millisecond || el > want+400*time.Millisecond {
		t.Errorf("%d attempts at %v/s took %s, want about %s", n, rate, el, want)
	}
	if burstFor(rate) != 4 || burstFor(10) != 1 {
		t.Errorf("burst: %d %d", burstFor(rate), burstFor(10))
	}
}

func TestGateUnlimitedAndPause(t *testing.T) {
	g := newGate(0, time.Now)
	start := time.Now()
	for i := 0; i < 10000; i++ {
		g.wait(context.Background())
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("unlimited gate took %s for 10,000 waits", el)
	}
	if !g.pause(80 * time.Millisecond) {
		t.Fatal("pause not applied")
	}
	if g.pause(10 * time.Millisecond) {
		t.Error("a shorter pause replaced a longer one")
	}
	start = time.Now()
	g.wait(context.Background())
	if el := time.Since(start); el < 70*time.Millisecond {
		t.Errorf("wait during a pause returned after %s", el)
	}
	g.pause(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.wait(ctx); err == nil {
		t.Error("wait during a long pause did not end with its context")
	}
}

// A gate's share is the group's rate divided by the members, with the
// bucket sized for the share; an unlimited gate stays unlimited.
func TestGateShare(t *testing.T) {
	t.Parallel()
	g := newGate(600, time.Now)
	for _, c := range []struct {
		members int
		want    float64
		burst   int
	}{{3, 200, 2}, {1, 600, 6}, {0, 600, 6}, {1000, 0.6, 1}} {
		if got := g.share(c.members); got != c.want || float64(g.limiter.Limit()) != c.want || g.limiter.Burst() != c.burst {
			t.Errorf("share(%d) = %v (limiter %v, burst %d), want %v, burst %d", c.members, got, g.limiter.Limit(), g.limiter.Burst(), c.want, c.burst)
		}
	}
	if u := newGate(0, time.Now); u.share(3) != 0 || u.limiter != nil {
		t.Error("an unlimited gate got a limit")
	}
}
