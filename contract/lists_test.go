package contract

import (
	"slices"
	"testing"
)

// The lists of statuses and channels are fresh slices: a caller that
// changes one changes nobody else's.
func TestListsAreCopies(t *testing.T) {
	t.Parallel()
	st := Statuses()
	want := slices.Clone(st)
	st[0], st[len(st)-1] = "mangled", "mangled"
	if got := Statuses(); !slices.Equal(got, want) {
		t.Fatalf("Statuses() = %v after a caller changed its copy, want %v", got, want)
	}
	if got := Statuses(); got[0] != StatusScheduled || got[len(got)-1] != StatusCanceled {
		t.Fatalf("Statuses() = %v, want scheduled first and canceled last", got)
	}
	ch := Channels()
	wantCh := slices.Clone(ch)
	ch[0] = "mangled"
	if got := Channels(); !slices.Equal(got, wantCh) || got[0] != ChannelEmail {
		t.Fatalf("Channels() = %v after a caller changed its copy, want %v", got, wantCh)
	}
}
