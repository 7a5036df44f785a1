package topology

import (
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/herald-dispatch/herald/delay"
)

// DispatcherInputs are the topics the dispatcher consumes. All are read as
// raw bytes and decoded inside the callback, so that a record that does not
// decode goes to the DLQ instead of stopping the processor.
var DispatcherInputs = []string{TopicRequests, TopicResults, TopicWakeups, TopicControl}

// DelayTargets are the topics the delay stage releases records to: the
// dispatcher's wake-ups, and the results and cancels it parks while their
// id has no state yet.
var DelayTargets = []string{TopicWakeups, TopicResults, TopicControl}

// DispatcherGraph is the dispatcher's Goka group graph: one callback for
// all inputs and for the loop stream (TopicRepartition, where misplaced
// records are moved), the group table, and an output edge for every topic
// it emits to (send commands, the delay tiers, the DLQ).
func DispatcherGraph(cb goka.ProcessCallback) *goka.GroupGraph {
	edges := []goka.Edge{}
	for _, t := range DispatcherInputs {
		edges = append(edges, goka.Input(goka.Stream(t), new(codec.Bytes), cb))
	}
	edges = append(edges,
		goka.Loop(new(codec.Bytes), cb),
		goka.Persist(new(StateCodec)),
		goka.Output(goka.Stream(TopicSend), new(codec.Bytes)),
		goka.Output(goka.Stream(TopicWakeups), new(codec.Bytes)),
		goka.Output(goka.Stream(TopicDLQ), new(codec.Bytes)),
	)
	for _, t := range delay.TierTopics() {
		edges = append(edges, goka.Output(goka.Stream(t), new(codec.Bytes)))
	}
	return goka.DefineGroup(GroupDispatcher, edges...)
}
