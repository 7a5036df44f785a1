package views

import "github.com/herald-dispatch/herald/contract"

// Table is what the API reads of the dispatcher's state.
// tableview.StateView, a Goka view over the dispatcher's group table, is
// the real one.
type Table interface {
	// Get returns the state of one notification, or nil when the id is
	// unknown.
	Get(id string) (*contract.State, error)
	// Recovered reports whether the table has caught up with its changelog
	// once, so that a missing id really is unknown.
	Recovered() bool
}
