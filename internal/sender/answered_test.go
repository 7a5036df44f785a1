package sender

import (
	"testing"

	"github.com/herald-dispatch/herald/contract"
)

func TestAnsweredRemembersTheNewest(t *testing.T) {
	a := newAnswered(2)
	k := func(i int) answerKey { return answerKey{id: "n", attempt: i} }
	res := func(i int) contract.SendResult {
		return contract.SendResult{ID: "n", Attempt: i, Outcome: contract.OutcomeSuccess, Code: 200 + i}
	}
	has := func(k answerKey) bool { _, ok := a.lookup(k); return ok }
	a.add(k(1), res(1))
	a.add(k(2), res(2))
	a.add(k(2), res(2)) // again: no second slot
	if !has(k(1)) || !has(k(2)) {
		t.Fatal("forgot one of two within capacity")
	}
	if got, _ := a.lookup(k(2)); got.Code != 202 {
		t.Fatalf("remembered %+v for attempt 2, want its result", got)
	}
	a.add(k(3), res(3))
	if has(k(1)) || !has(k(2)) || !has(k(3)) {
		t.Fatal("did not forget the oldest first")
	}
	if has(answerKey{id: "n", attempt: 3, issue: 1}) {
		t.Fatal("another issue of the same attempt counted as answered")
	}
	none := newAnswered(-1)
	none.add(k(1), res(1))
	if _, ok := none.lookup(k(1)); ok {
		t.Fatal("a negative capacity remembered")
	}
}
