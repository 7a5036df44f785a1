package dispatcher

import (
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Inputs returns the topics the dispatcher consumes (a fresh slice each
// call). All are read as raw bytes and decoded inside the callback, so that
// a record that does not decode goes to the DLQ instead of stopping the
// processor.
func Inputs() []string {
	return []string{topology.TopicRequests, topology.TopicResults, topology.TopicWakeups, topology.TopicControl}
}

// graph is the dispatcher's Goka group graph: one callback for
// all inputs and for the loop stream (TopicRepartition, where misplaced
// records are moved), the group table, and an output edge for every topic
// it emits to (send commands, the delay tiers, the DLQ).
func graph(cb goka.ProcessCallback) *goka.GroupGraph {
	edges := []goka.Edge{}
	for _, t := range Inputs() {
		edges = append(edges, goka.Input(goka.Stream(t), new(codec.Bytes), cb))
	}
	edges = append(edges,
		goka.Loop(new(codec.Bytes), cb),
		goka.Persist(new(contract.StateCodec)),
		goka.Output(goka.Stream(topology.TopicSend), new(codec.Bytes)),
		goka.Output(goka.Stream(topology.TopicWakeups), new(codec.Bytes)),
		goka.Output(goka.Stream(topology.TopicDLQ), new(codec.Bytes)),
	)
	for _, t := range topology.TierTopics() {
		edges = append(edges, goka.Output(goka.Stream(t), new(codec.Bytes)))
	}
	return goka.DefineGroup(topology.GroupDispatcher, edges...)
}
