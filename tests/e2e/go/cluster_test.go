package e2e

// Three ringbroker processes in one cluster (one metadata quorum), driven by
// franz-go and sarama unmodified: the clients bootstrap from one broker,
// find every broker and the controller, and produce, consume and commit as a
// group across all three.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const clusterRecords = 600

func TestFranzCluster(t *testing.T) {
	nodes := StartCluster(t, 3)
	adm, _ := newKadm(t, nodes[0])
	ctx := testCtx(t, 90*time.Second)

	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("BrokerMetadata: %v", err)
	}
	ids := meta.Brokers.NodeIDs()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if fmt.Sprint(ids) != "[0 1 2]" || meta.Controller < 0 || meta.Controller > 2 {
		t.Fatalf("brokers %v controller %d", ids, meta.Controller)
	}

	topic := uniqueName("franz-cluster")
	resp, err := adm.CreateTopic(ctx, 6, 3, nil, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("CreateTopic: %v %v", err, resp.Err)
	}
	leaders := map[int32]bool{}
	eventually(t, 20*time.Second, "leaders for every partition", func() error {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		d := td[topic]
		if d.Err != nil || len(d.Partitions) != 6 {
			return fmt.Errorf("topic %v partitions %d", d.Err, len(d.Partitions))
		}
		leaders = map[int32]bool{}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return fmt.Errorf("partition %d: leader %d err %v", p.Partition, p.Leader, p.Err)
			}
			if len(p.Replicas) != 3 {
				return fmt.Errorf("partition %d replicas %v", p.Partition, p.Replicas)
			}
			leaders[p.Leader] = true
		}
		return nil
	})
	if len(leaders) != 3 {
		t.Fatalf("leaders not spread over the three brokers: %v", leaders)
	}

	// An idempotent producer (franz-go's default) bootstrapped from node 1.
	prod := newKgo(t, nodes[1], kgo.DefaultProduceTopic(topic))
	recs := make([]*kgo.Record, clusterRecords)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}

	// A group member bootstrapped from node 2 reads everything and commits.
	group := uniqueName("franz-cluster-g")
	cons := newKgo(t, nodes[2], kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(500*time.Millisecond))
	seen := map[string]bool{}
	for len(seen) < clusterRecords && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if ctx.Err() == nil {
				t.Fatalf("fetch %s/%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != clusterRecords {
		t.Fatalf("consumed %d distinct records of %d", len(seen), clusterRecords)
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("FetchOffsets: %v", err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != clusterRecords {
		t.Fatalf("committed offsets sum to %d, want %d", sum, clusterRecords)
	}
}

func TestSaramaCluster(t *testing.T) {
	nodes := StartCluster(t, 3)
	cfg := saramaConfig()
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest

	admin := newSaramaAdmin(t, nodes[0], cfg)
	topic := uniqueName("sarama-cluster")
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 6, ReplicationFactor: 3}, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	brokers, controller, err := admin.DescribeCluster()
	if err != nil || len(brokers) != 3 || controller < 0 {
		t.Fatalf("DescribeCluster: %d brokers, controller %d, %v", len(brokers), controller, err)
	}

	producer := newSaramaSyncProducer(t, nodes[1], cfg)
	for i := 0; i < clusterRecords; i++ {
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)),
			Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))}
		if _, _, err := producer.SendMessage(msg); err != nil {
			t.Fatalf("SendMessage %d: %v", i, err)
		}
	}

	group := uniqueName("sarama-cluster-g")
	g, err := sarama.NewConsumerGroup([]string{nodes[2].Addr()}, group, cfg)
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	h := &clusterHandler{want: clusterRecords, seen: map[string]bool{}, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				t.Logf("Consume: %v", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		t.Fatalf("consumed %d of %d records", h.count(), clusterRecords)
	}
	cancel()
	// Marked offsets are committed (on close at the latest): every record's.
	if err := g.Close(); err != nil {
		t.Fatalf("consumer group close: %v", err)
	}
	eventually(t, 20*time.Second, "committed offsets", func() error {
		offs, err := admin.ListConsumerGroupOffsets(group, nil)
		if err != nil {
			return err
		}
		var sum int64
		for _, parts := range offs.Blocks {
			for _, b := range parts {
				if b.Offset > 0 {
					sum += b.Offset
				}
			}
		}
		if sum != clusterRecords {
			return fmt.Errorf("committed offsets sum to %d, want %d", sum, clusterRecords)
		}
		return nil
	})
}

// clusterHandler marks every record consumed and its offset, and closes done
// once want distinct records were seen.
type clusterHandler struct {
	want int
	seen map[string]bool
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
}

func (h *clusterHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

func (h *clusterHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *clusterHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *clusterHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.seen[string(m.Value)] = true
		if len(h.seen) == h.want {
			// A redelivered record after a rebalance finds it closed.
			h.once.Do(func() { close(h.done) })
		}
		h.mu.Unlock()
	}
	return nil
}
