package gokax

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// VersionedUpdate is the update callback of every reader of the dispatcher
// table's changelog: the processor's own recovery and every view. It keeps,
// per key, the state with the highest version, and drops a record whose
// version is lower than the one stored. Versions carry the owner epoch
// (Dispatch, NextVersion), so a zombie's write that lands after a newer
// owner's is ignored by everyone who reads the changelog, whatever the
// order in which the two arrive; the sink's upsert applies the same rule.
// An equal version is a repair (the same state written again) and is
// stored. A value that does not decode is stored as it is (the reader that
// decodes it reports it), and a tombstone deletes.
func VersionedUpdate(ctx goka.UpdateContext, s storage.Storage, key string, value []byte) error {
	_, _, err := versionedUpdate(ctx, s, key, value, false)
	return err
}

// StoreObserver keeps something derived from what a view's storage holds
// (tableview's index of the states in flight), through
// VersionedUpdateObserved.
type StoreObserver interface {
	// Version returns the version of the value stored for key in
	// partition, when the observer holds it (ok); the update then
	// compares versions with it instead of reading the store. It must be
	// exactly the stored value's version (contract.StateVersion).
	Version(partition int32, key string) (version uint64, ok bool)
	// Stored is told every value stored for key in partition (nil: a
	// tombstone deleted the key) and the value it replaced: nil when there
	// was none, and nil too when Version answered for key (the observer
	// holds what it replaced). It is called after the store, in the
	// partition's order. A record dropped for its lower version is not
	// reported.
	Stored(partition int32, key string, old, value []byte)
}

// VersionedUpdateObserved is VersionedUpdate for a view that keeps
// something derived from its states (o): every change of its storage that
// comes from the changelog is reported to o. For a key whose stored
// version o holds, the rule is judged against that version and the store
// is not read: most changelog records of a busy table update a state in
// flight, which tableview's index holds, and the read was half of the
// view's cost a record (docs/performance.md).
func VersionedUpdateObserved(o StoreObserver) goka.UpdateCallback {
	return func(ctx goka.UpdateContext, s storage.Storage, key string, value []byte) error {
		p := ctx.Partition()
		if ov, known := o.Version(p, key); known {
			if value != nil {
				if nv, err := contract.StateVersion(value); err == nil && nv < ov {
					return nil
				}
			}
			if err := goka.DefaultUpdate(ctx, s, key, value); err != nil {
				return err
			}
			o.Stored(p, key, nil, value)
			return nil
		}
		ok, old, err := versionedUpdate(ctx, s, key, value, true)
		if ok {
			o.Stored(p, key, old, value)
		}
		return err
	}
}

// versionedUpdate applies VersionedUpdate's rule and reports whether it
// stored (or deleted) the value. It reads the stored value first to
// compare versions, and, with wantOld, always, to return it.
func versionedUpdate(ctx goka.UpdateContext, s storage.Storage, key string, value []byte, wantOld bool) (bool, []byte, error) {
	var (
		old []byte
		nv  uint64
		err error = errNoVersion
	)
	if value != nil {
		nv, err = contract.StateVersion(value)
	}
	if err == nil || wantOld {
		var gerr error
		if old, gerr = s.Get(key); gerr != nil {
			return false, nil, fmt.Errorf("dispatcher table: read %q: %w", key, gerr)
		}
	}
	if err == nil && old != nil {
		if ov, oerr := contract.StateVersion(old); oerr == nil && nv < ov {
			return false, nil, nil
		}
	}
	if err := goka.DefaultUpdate(ctx, s, key, value); err != nil {
		return false, nil, err
	}
	return true, old, nil
}

// errNoVersion stands for a tombstone's version: it has none to compare.
var errNoVersion = errors.New("no version")

// TopicChecker is the topic manager of Herald's Goka processors and views.
// Herald creates its topics itself (topology.EnsureTopics), so this one only
// checks that they exist with the right partition count. It talks to the
// cluster through a Sarama client seeded with every listed broker, so it
// works while any of them is up (Goka's own topic manager checks only the
// first broker the client lists).
func TopicChecker(tc topology.Config, clientID string) goka.TopicManagerBuilder {
	return func(brokers []string) (goka.TopicManager, error) {
		cl, err := sarama.NewClient(brokers, tc.Sarama(clientID))
		if err != nil {
			return nil, fmt.Errorf("topic checker: connect to %d brokers: %w", len(brokers), err)
		}
		return &topicChecker{cl: cl}, nil
	}
}

type topicChecker struct{ cl sarama.Client }

func (t *topicChecker) check(topic string, npar int) error {
	ps, err := t.cl.Partitions(topic)
	if err != nil {
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("topic %s does not exist (Herald creates its topics at start: run `herald run`, or create them as docs/operations.md says): %w", topic, err)
		}
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	if npar > 0 && len(ps) != npar {
		return fmt.Errorf("topic %s has %d partitions, want %d (co-partitioned topics must match --partitions)", topic, len(ps), npar)
	}
	return nil
}

func (t *topicChecker) EnsureTableExists(topic string, npar int) error  { return t.check(topic, npar) }
func (t *topicChecker) EnsureStreamExists(topic string, npar int) error { return t.check(topic, npar) }
func (t *topicChecker) EnsureTopicExists(topic string, npar, _ int, _ map[string]string) error {
	return t.check(topic, npar)
}
func (t *topicChecker) Partitions(topic string) ([]int32, error) { return t.cl.Partitions(topic) }
func (t *topicChecker) GetOffset(topic string, partition int32, at int64) (int64, error) {
	return t.cl.GetOffset(topic, partition, at)
}
func (t *topicChecker) Close() error { return t.cl.Close() }

// ViewOptions are the options of every Goka view of the dispatcher table:
// raw values (readers decode what they need), VersionedUpdate, Herald's
// Sarama settings and TopicChecker.
func ViewOptions(tc topology.Config, clientID string, log *slog.Logger) []goka.ViewOption {
	tc = tc.WithDefaults()
	return []goka.ViewOption{
		goka.WithViewCallback(VersionedUpdate),
		goka.WithViewTopicManagerBuilder(TopicChecker(tc, clientID+"-topics")),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(tc.Sarama(clientID))),
		goka.WithViewHasher(topology.Hasher),
		goka.WithViewLogger(GokaLogger(log)),
	}
}
