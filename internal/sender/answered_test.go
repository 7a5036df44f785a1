package sender

import "testing"

func TestAnsweredRemembersTheNewest(t *testing.T) {
	a := newAnswered(2)
	k := func(i int) answerKey { return answerKey{id: "n", attempt: i} }
	a.add(k(1))
	a.add(k(2))
	a.add(k(2)) // again: no second slot
	if !a.has(k(1)) || !a.has(k(2)) {
		t.Fatal("forgot one of two within capacity")
	}
	a.add(k(3))
	if a.has(k(1)) || !a.has(k(2)) || !a.has(k(3)) {
		t.Fatal("did not forget the oldest first")
	}
	if a.has(answerKey{id: "n", attempt: 3, issue: 1}) {
		t.Fatal("another issue of the same attempt counted as answered")
	}
	none := newAnswered(-1)
	none.add(k(1))
	if none.has(k(1)) {
		t.Fatal("a negative capacity remembered")
	}
}
