package sender

import (
	"testing"

	"github.com/herald-dispatch/herald/contract"
)

func TestAnsweredRemembersTheNewest(t *testing.T) {
	t.Parallel()
	a := newAnswered(2)
	k := func(i int) attemptKey { return attemptKey{id: "n", attempt: i} }
	res := func(i int) contract.SendResult {
		return contract.SendResult{ID: "n", Attempt: i, Outcome: contract.OutcomeSuccess, Code: 200 + i}
	}
	has := func(k attemptKey) bool { _, ok := a.lookup(k); return ok }
	a.add(res(1))
	a.add(res(2))
	a.add(res(2)) // again: no second slot
	if !has(k(1)) || !has(k(2)) {
		t.Fatal("forgot one of two within capacity")
	}
	if got, _ := a.lookup(k(2)); got.Code != 202 {
		t.Fatalf("remembered %+v for attempt 2, want its result", got)
	}
	a.add(res(3))
	if has(k(1)) || !has(k(2)) || !has(k(3)) {
		t.Fatal("did not forget the oldest first")
	}
	none := newAnswered(-1)
	none.add(res(1))
	if _, ok := none.lookup(k(1)); ok {
		t.Fatal("a negative capacity remembered")
	}
}

// One provider call per attempt, whatever the issue number: an attempt
// answered success or unknown answers every later command of it, under
// that command's issue; one answered with a definite non-delivery answers
// only copies of its command (same or older issue), and a later issue may
// call again.
func TestAnsweredAnswersAnAttemptWhateverTheIssue(t *testing.T) {
	t.Parallel()
	outcomes := []contract.Outcome{contract.OutcomeSuccess, contract.OutcomeUnknown, contract.OutcomeNotAttempted,
		contract.OutcomeTransient, contract.OutcomeThrottled, contract.OutcomePermanent}
	for _, o := range outcomes {
		a := newAnswered(10)
		a.add(contract.SendResult{ID: "n", Attempt: 2, Issue: 3, Outcome: o, Code: 7})
		for _, issue := range []int{2, 3, 4, 9} {
			got, ok := a.answerFor(&contract.SendCommand{ID: "n", Attempt: 2, Issue: issue})
			want := settles(o) || issue <= 3
			if ok != want {
				t.Errorf("%s at issue 3, command at issue %d: answered from memory %v, want %v", o, issue, ok, want)
				continue
			}
			if ok && (got.Issue != issue || got.Outcome != o || got.Code != 7) {
				t.Errorf("%s at issue 3, command at issue %d: answered %+v, want the first answer under issue %d", o, issue, got, issue)
			}
		}
		if _, ok := a.answerFor(&contract.SendCommand{ID: "n", Attempt: 3, Issue: 3}); ok {
			t.Errorf("%s: another attempt answered from memory", o)
		}
	}
}

// A success is never replaced (a rebuild reads every answer of an
// attempt, in order), and any newer answer replaces an older one that is
// not a success.
func TestAnsweredKeepsTheSettlingAnswer(t *testing.T) {
	t.Parallel()
	a := newAnswered(10)
	r := func(issue int, o contract.Outcome) contract.SendResult {
		return contract.SendResult{ID: "n", Attempt: 1, Issue: issue, Outcome: o}
	}
	a.add(r(0, contract.OutcomeNotAttempted))
	a.add(r(1, contract.OutcomeTransient))
	if got, _ := a.lookup(attemptKey{"n", 1}); got.Issue != 1 {
		t.Fatalf("remembered %+v, want the newer non-delivery", got)
	}
	a.add(r(2, contract.OutcomeUnknown))
	if got, _ := a.lookup(attemptKey{"n", 1}); got.Issue != 2 {
		t.Fatalf("remembered %+v, want the newer unknown", got)
	}
	a.add(r(3, contract.OutcomeSuccess))
	a.add(r(4, contract.OutcomeUnknown))
	a.add(r(5, contract.OutcomeNotAttempted))
	if got, _ := a.lookup(attemptKey{"n", 1}); got.Outcome != contract.OutcomeSuccess || got.Issue != 3 {
		t.Fatalf("remembered %+v, want the success", got)
	}
}
