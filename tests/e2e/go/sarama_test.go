package e2e

// IBM/sarama against the real broker.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// saramaVersion is the Kafka version the tests declare. Sarama picks each
// request's version from config.Version (capped by the broker's ApiVersions
// answer), so this must be a release whose protocol the broker serves.
var saramaVersion = sarama.V3_6_0_0

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = saramaVersion
	c.ClientID = "go-e2e-sarama"
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 15 * time.Second
	c.Net.WriteTimeout = 5 * time.Second
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.Timeout = 10 * time.Second
	c.Consumer.MaxWaitTime = 500 * time.Millisecond
	c.Consumer.Return.Errors = true
	c.Admin.Timeout = 10 * time.Second
	return c
}

func newSaramaAdmin(t testing.TB, b *Broker, cfg *sarama.Config) sarama.ClusterAdmin {
	t.Helper()
	if cfg == nil {
		cfg = saramaConfig()
	}
	adm, err := sarama.NewClusterAdmin([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("NewClusterAdmin: %v", err)
	}
	t.Cleanup(func() { _ = adm.Close() })
	return adm
}

func saramaCreateTopic(t testing.TB, adm sarama.ClusterAdmin, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}, false); err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
}

// newSaramaSyncProducer returns a sync producer on cfg, closed when the test ends.
func newSaramaSyncProducer(t testing.TB, b *Broker, cfg *sarama.Config) sarama.SyncProducer {
	t.Helper()
	prod, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return prod
}

// newSaramaClient returns a client on cfg, closed when the test ends.
func newSaramaClient(t testing.TB, b *Broker, cfg *sarama.Config) sarama.Client {
	t.Helper()
	client, err := sarama.NewClient([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// newSaramaClientProducer returns a client on cfg and a sync producer that
// shares it, both closed when the test ends (the producer first).
func newSaramaClientProducer(t testing.TB, b *Broker, cfg *sarama.Config) (sarama.Client, sarama.SyncProducer) {
	t.Helper()
	client := newSaramaClient(t, b, cfg)
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("NewSyncProducerFromClient: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return client, prod
}

// saramaSendNumbered sends the values "0".."n-1" one at a time to an empty
// one-partition topic; each must land at the offset of its number.
func saramaSendNumbered(t testing.TB, prod sarama.SyncProducer, topic string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil || off != int64(i) {
			t.Fatalf("SendMessage %d: off %d err %v", i, off, err)
		}
	}
}

// saramaReadPartition reads exactly n messages of one partition from offset.
func saramaReadPartition(t testing.TB, b *Broker, cfg *sarama.Config, topic string, p int32, offset int64, n int, d time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	if cfg == nil {
		cfg = saramaConfig()
	}
	c, err := sarama.NewConsumer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, p, offset)
	if err != nil {
		t.Fatalf("ConsumePartition %s/%d@%d: %v", topic, p, offset, err)
	}
	defer pc.Close()
	timeout := time.After(d)
	var out []*sarama.ConsumerMessage
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Fatalf("partition consumer %s/%d: %v", topic, p, err)
		case <-timeout:
			t.Fatalf("%s/%d: read %d of %d messages before timeout", topic, p, len(out), n)
		}
	}
	select {
	case m := <-pc.Messages():
		t.Fatalf("%s/%d: unexpected extra message at offset %d", topic, p, m.Offset)
	case <-time.After(700 * time.Millisecond):
	}
	return out
}

func TestSaramaSyncProducer(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	topic := uniqueName("sarama-sync")
	saramaCreateTopic(t, adm, topic, 3, nil)

	cfg := saramaConfig()
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod := newSaramaSyncProducer(t, b, cfg)

	// One at a time.
	for i := 0; i < 5; i++ {
		p, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 1, Key: sarama.StringEncoder("single"), Value: sarama.StringEncoder(fmt.Sprintf("s%d", i))})
		if err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
		if p != 1 || off != int64(i) {
			t.Fatalf("SendMessage %d: partition %d offset %d", i, p, off)
		}
	}
	// A batch.
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 60; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic: topic, Partition: int32(i % 3),
			Key:     sarama.StringEncoder(fmt.Sprintf("k%d", i)),
			Value:   sarama.StringEncoder(fmt.Sprintf("v%d", i)),
			Headers: []sarama.RecordHeader{{Key: []byte("idx"), Value: []byte(fmt.Sprint(i))}},
		})
	}
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatalf("SendMessages: %v", err)
	}
	for p := int32(0); p < 3; p++ {
		var offs []int64
		for _, m := range msgs {
			if m.Partition == p {
				offs = append(offs, m.Offset)
			}
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		base := int64(0)
		if p == 1 {
			base = 5
		}
		for i, o := range offs {
			if o != base+int64(i) {
				t.Fatalf("p%d: offsets %v", p, offs)
			}
		}
	}

	got := saramaReadPartition(t, b, nil, topic, 1, sarama.OffsetOldest, 25, 20*time.Second)
	for i := 0; i < 5; i++ {
		if string(got[i].Value) != fmt.Sprintf("s%d", i) || string(got[i].Key) != "single" || got[i].Offset != int64(i) {
			t.Fatalf("p1[%d] = %d %q=%q", i, got[i].Offset, got[i].Key, got[i].Value)
		}
	}
	for j, m := range got[5:] {
		i := 3*j + 1
		if string(m.Value) != fmt.Sprintf("v%d", i) || string(m.Key) != fmt.Sprintf("k%d", i) {
			t.Fatalf("p1@%d = %q=%q want v%d", m.Offset, m.Key, m.Value, i)
		}
		if len(m.Headers) != 1 || string(m.Headers[0].Key) != "idx" || string(m.Headers[0].Value) != fmt.Sprint(i) {
			t.Fatalf("p1@%d headers %v", m.Offset, m.Headers)
		}
	}
}

func TestSaramaAsyncProducerIdempotent(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	topic := uniqueName("sarama-idem")
	saramaCreateTopic(t, adm, topic, 2, nil)

	cfg := saramaConfig()
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	cfg.Producer.Compression = sarama.CompressionSnappy
	prod, err := sarama.NewAsyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("NewAsyncProducer: %v", err)
	}
	const n = 400
	go func() {
		for i := 0; i < n; i++ {
			prod.Input() <- &sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprintf("m%d", i)), Metadata: i}
		}
	}()
	offsets := map[int32]map[int64]int{0: {}, 1: {}}
	timeout := time.After(60 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case m := <-prod.Successes():
			if prev, dup := offsets[m.Partition][m.Offset]; dup {
				t.Fatalf("offset %d/%d acknowledged twice (msgs %d and %v)", m.Partition, m.Offset, prev, m.Metadata)
			}
			offsets[m.Partition][m.Offset] = m.Metadata.(int)
		case e := <-prod.Errors():
			t.Fatalf("async produce error: %v", e.Err)
		case <-timeout:
			t.Fatalf("only %d of %d acknowledged", got, n)
		}
	}
	if err := prod.Close(); err != nil {
		t.Fatalf("AsyncProducer.Close: %v", err)
	}
	for p := int32(0); p < 2; p++ {
		if len(offsets[p]) != n/2 {
			t.Fatalf("p%d: %d acks", p, len(offsets[p]))
		}
		msgs := saramaReadPartition(t, b, nil, topic, p, sarama.OffsetOldest, n/2, 30*time.Second)
		last := -1
		for _, m := range msgs {
			want := offsets[p][m.Offset]
			if string(m.Value) != fmt.Sprintf("m%d", want) {
				t.Fatalf("p%d@%d = %q, acked as m%d", p, m.Offset, m.Value, want)
			}
			if want <= last {
				t.Fatalf("p%d: order broken at offset %d (m%d after m%d)", p, m.Offset, want, last)
			}
			last = want
		}
	}
}

// With config.Version left at sarama's default (V2_8_0_0) the client still
// works: every request version it picks is within the broker's ranges.
func TestSaramaDefaultVersion(t *testing.T) {
	b := StartBroker(t)
	cfg := sarama.NewConfig()
	if cfg.Version != sarama.DefaultVersion {
		t.Fatalf("default version %v", cfg.Version)
	}
	t.Logf("sarama default config.Version = %v", cfg.Version)
	cfg.Producer.Return.Successes = true
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	adm := newSaramaAdmin(t, b, cfg)
	topic := uniqueName("sarama-default")
	saramaCreateTopic(t, adm, topic, 1, nil)
	prod := newSaramaSyncProducer(t, b, cfg)
	saramaSendNumbered(t, prod, topic, 10)
	msgs := saramaReadPartition(t, b, cfg, topic, 0, 3, 7, 20*time.Second)
	if msgs[0].Offset != 3 || string(msgs[0].Value) != "3" {
		t.Fatalf("first %d %q", msgs[0].Offset, msgs[0].Value)
	}
	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := topics[topic]; !ok || d.NumPartitions != 1 {
		t.Fatalf("ListTopics %+v", d)
	}
}

// And with the newest version sarama knows, which asks for request versions
// above the broker's maxima: sarama must cap them from ApiVersions.
func TestSaramaMaxVersion(t *testing.T) {
	b := StartBroker(t)
	cfg := saramaConfig()
	cfg.Version = sarama.MaxVersion
	adm := newSaramaAdmin(t, b, cfg)
	topic := uniqueName("sarama-max")
	saramaCreateTopic(t, adm, topic, 1, nil)
	prod := newSaramaSyncProducer(t, b, cfg)
	saramaSendNumbered(t, prod, topic, 5)
	msgs := saramaReadPartition(t, b, cfg, topic, 0, sarama.OffsetOldest, 5, 20*time.Second)
	if string(msgs[4].Value) != "4" {
		t.Fatalf("last %q", msgs[4].Value)
	}
}

func TestSaramaConsumerOffsets(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	topic := uniqueName("sarama-offsets")
	saramaCreateTopic(t, adm, topic, 1, nil)
	cfg := saramaConfig()
	client, prod := newSaramaClientProducer(t, b, cfg)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := 0; i < 20; i++ {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("v%d", i)), Timestamp: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	oldest, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	if err != nil || oldest != 0 {
		t.Fatalf("GetOffset oldest %d %v", oldest, err)
	}
	newest, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil || newest != 20 {
		t.Fatalf("GetOffset newest %d %v", newest, err)
	}
	byTime, err := client.GetOffset(topic, 0, base.Add(12*time.Second).UnixMilli())
	if err != nil || byTime != 12 {
		t.Fatalf("GetOffset by time %d %v", byTime, err)
	}

	msgs := saramaReadPartition(t, b, nil, topic, 0, 12, 8, 20*time.Second)
	if msgs[0].Offset != 12 || string(msgs[0].Value) != "v12" || !msgs[0].Timestamp.Equal(base.Add(12*time.Second)) {
		t.Fatalf("from 12: %d %q %v", msgs[0].Offset, msgs[0].Value, msgs[0].Timestamp)
	}

	// OffsetNewest: waits for new data (long poll), then delivers it.
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		t.Fatalf("OffsetNewest delivered old message %d", m.Offset)
	case <-time.After(1 * time.Second):
	}
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("late")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-pc.Messages():
		if m.Offset != 20 || string(m.Value) != "late" {
			t.Fatalf("late message %d %q", m.Offset, m.Value)
		}
	case err := <-pc.Errors():
		t.Fatal(err)
	case <-time.After(15 * time.Second):
		t.Fatalf("OffsetNewest consumer never got the new message")
	}
	if hw := pc.HighWaterMarkOffset(); hw != 21 {
		t.Fatalf("HighWaterMarkOffset %d", hw)
	}

	// Out of range offset is an error for the partition consumer.
	if _, err := cons.ConsumePartition(topic, 0, 500); !errors.Is(err, sarama.ErrOffsetOutOfRange) {
		t.Fatalf("ConsumePartition past end: %v", err)
	}
}

// saramaHandler tracks claims and what each member consumed, committing
// synchronously after every message.
type saramaHandler struct {
	name   string
	topic  string
	mu     sync.Mutex
	claims map[int32]bool
	got    []*sarama.ConsumerMessage
	errs   []error
}

func (h *saramaHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claims = map[int32]bool{}
	for _, p := range s.Claims()[h.topic] {
		h.claims[p] = true
	}
	return nil
}

func (h *saramaHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claims = map[int32]bool{}
	return nil
}

func (h *saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.got = append(h.got, m)
			h.mu.Unlock()
			s.MarkMessage(m, "")
			s.Commit()
		case <-s.Context().Done():
			return nil
		}
	}
}

func (h *saramaHandler) snapshot() (map[int32]bool, int, []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := map[int32]bool{}
	for p := range h.claims {
		c[p] = true
	}
	return c, len(h.got), append([]error(nil), h.errs...)
}

type saramaMember struct {
	h      *saramaHandler
	g      sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func startSaramaMember(t *testing.T, b *Broker, name, group, topic string) *saramaMember {
	cfg := saramaConfig()
	cfg.ClientID = "go-e2e-sarama-" + name
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	// Fetch and OffsetCommit share one connection and the broker answers in
	// order (as Kafka does), so each synchronous commit waits behind a long
	// poll: keep the poll short.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	return startSaramaMemberWith(t, b, name, group, topic, cfg)
}

// startSaramaMemberWith joins group with cfg and consumes topic until
// stopped, recording claims, messages and errors in its handler.
func startSaramaMemberWith(t *testing.T, b *Broker, name, group, topic string, cfg *sarama.Config) *saramaMember {
	t.Helper()
	g, err := sarama.NewConsumerGroup([]string{b.Addr()}, group, cfg)
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	m := &saramaMember{h: &saramaHandler{name: name, topic: topic, claims: map[int32]bool{}}, g: g, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		for e := range g.Errors() {
			m.h.mu.Lock()
			m.h.errs = append(m.h.errs, e)
			m.h.mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m.h); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
					return
				}
				m.h.mu.Lock()
				m.h.errs = append(m.h.errs, fmt.Errorf("Consume: %w", err))
				m.h.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	return m
}

func (m *saramaMember) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
	}
	_ = m.g.Close()
}

func TestSaramaConsumerGroup(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	topic := uniqueName("sarama-group")
	group := uniqueName("sarama-g")
	const parts = 4
	saramaCreateTopic(t, adm, topic, parts, nil)
	cfg := saramaConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod := newSaramaSyncProducer(t, b, cfg)
	produce := func(phase string, perPart int) {
		var msgs []*sarama.ProducerMessage
		for i := 0; i < perPart; i++ {
			for p := int32(0); p < parts; p++ {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder(fmt.Sprintf("%s-%d-%d", phase, p, i))})
			}
		}
		if err := prod.SendMessages(msgs); err != nil {
			t.Fatalf("produce %s: %v", phase, err)
		}
	}
	produce("a", 25)

	m1 := startSaramaMember(t, b, "m1", group, topic)
	defer m1.stop()
	eventually(t, 45*time.Second, "m1 consumes phase a", func() error {
		c, n, errs := m1.h.snapshot()
		if len(errs) > 0 {
			t.Fatalf("m1 errors: %v", errs)
		}
		if len(c) != parts || n != 25*parts {
			return fmt.Errorf("m1 claims %v consumed %d", c, n)
		}
		return nil
	})

	m2 := startSaramaMember(t, b, "m2", group, topic)
	defer m2.stop()
	eventually(t, 60*time.Second, "rebalance to two members", func() error {
		c1, _, e1 := m1.h.snapshot()
		c2, _, e2 := m2.h.snapshot()
		if len(e1)+len(e2) > 0 {
			t.Fatalf("member errors: %v %v", e1, e2)
		}
		if len(c1) != 2 || len(c2) != 2 {
			return fmt.Errorf("m1 %v m2 %v", c1, c2)
		}
		for p := range c1 {
			if c2[p] {
				return fmt.Errorf("partition %d claimed by both", p)
			}
		}
		return nil
	})
	gd, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(gd) != 1 {
		t.Fatalf("DescribeConsumerGroups %v %v", gd, err)
	}
	if gd[0].State != "Stable" || len(gd[0].Members) != 2 || gd[0].Protocol != "range" || gd[0].ProtocolType != "consumer" {
		t.Fatalf("group %+v", gd[0])
	}
	assigned := map[int32]int{}
	for _, mem := range gd[0].Members {
		a, err := mem.GetMemberAssignment()
		if err != nil {
			t.Fatalf("member assignment: %v", err)
		}
		for _, p := range a.Topics[topic] {
			assigned[p]++
		}
	}
	if len(assigned) != parts {
		t.Fatalf("described assignment %v", assigned)
	}
	for p, n := range assigned {
		if n != 1 {
			t.Fatalf("partition %d assigned %d times", p, n)
		}
	}

	produce("b", 25)
	eventually(t, 45*time.Second, "phase b consumed", func() error {
		_, n1, _ := m1.h.snapshot()
		_, n2, _ := m2.h.snapshot()
		if n1+n2 < 50*parts {
			return fmt.Errorf("consumed %d+%d", n1, n2)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	c1, _, e1 := m1.h.snapshot()
	c2, _, e2 := m2.h.snapshot()
	if len(e1)+len(e2) > 0 {
		t.Fatalf("member errors: %v %v", e1, e2)
	}
	seen := map[string]string{}
	for _, m := range []*saramaMember{m1, m2} {
		m.h.mu.Lock()
		for _, msg := range m.h.got {
			k := fmt.Sprintf("%d@%d", msg.Partition, msg.Offset)
			if prev, ok := seen[k]; ok {
				t.Errorf("message %s consumed by %s and %s", k, prev, m.h.name)
			}
			seen[k] = m.h.name
			if msg.Value[0] == 'b' {
				own := c1
				if m == m2 {
					own = c2
				}
				if !own[msg.Partition] {
					t.Errorf("phase-b %s read by %s without the claim", k, m.h.name)
				}
			}
		}
		m.h.mu.Unlock()
	}
	if len(seen) != 50*parts {
		t.Fatalf("distinct messages %d, want %d", len(seen), 50*parts)
	}
	eventually(t, 10*time.Second, "committed == end", func() error {
		resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
		if err != nil {
			return err
		}
		for p := int32(0); p < parts; p++ {
			blk := resp.GetBlock(topic, p)
			if blk == nil || blk.Err != sarama.ErrNoError || blk.Offset != 50 {
				return fmt.Errorf("p%d committed %+v", p, blk)
			}
		}
		return nil
	})

	m1.stop()
	m2.stop()
	eventually(t, 20*time.Second, "group empty after both left", func() error {
		gd, err := adm.DescribeConsumerGroups([]string{group})
		if err != nil {
			return err
		}
		if gd[0].State != "Empty" || len(gd[0].Members) != 0 {
			return fmt.Errorf("state %s members %d", gd[0].State, len(gd[0].Members))
		}
		return nil
	})
	produce("c", 3)
	m3 := startSaramaMember(t, b, "m3", group, topic)
	defer m3.stop()
	eventually(t, 45*time.Second, "m3 consumes phase c", func() error {
		_, n, errs := m3.h.snapshot()
		if len(errs) > 0 {
			t.Fatalf("m3 errors: %v", errs)
		}
		if n < 3*parts {
			return fmt.Errorf("m3 consumed %d", n)
		}
		return nil
	})
	time.Sleep(time.Second)
	m3.h.mu.Lock()
	defer m3.h.mu.Unlock()
	if len(m3.h.got) != 3*parts {
		t.Fatalf("m3 consumed %d, want %d", len(m3.h.got), 3*parts)
	}
	for _, msg := range m3.h.got {
		if msg.Value[0] != 'c' {
			t.Fatalf("m3 re-read %d@%d %q", msg.Partition, msg.Offset, msg.Value)
		}
	}
}

func TestSaramaClusterAdmin(t *testing.T) {
	b := StartBroker(t)
	cfg := saramaConfig()
	adm := newSaramaAdmin(t, b, cfg)
	topic := uniqueName("sarama-adm")
	retention := "7200000"
	saramaCreateTopic(t, adm, topic, 2, map[string]*string{"retention.ms": &retention})

	// Errors map to sarama's KError values.
	err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Fatalf("duplicate CreateTopic: %v", err)
	}
	// validateOnly creates nothing.
	dry := uniqueName("sarama-dry")
	if err := adm.CreateTopic(dry, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true); err != nil {
		t.Fatalf("validate-only CreateTopic: %v", err)
	}

	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := topics[topic]
	if !ok || d.NumPartitions != 2 || d.ReplicationFactor != 1 {
		t.Fatalf("ListTopics %s: %+v", topic, d)
	}
	if v := d.ConfigEntries["retention.ms"]; v == nil || *v != retention {
		t.Fatalf("ListTopics config entries %v", d.ConfigEntries)
	}
	if _, ok := topics[dry]; ok {
		t.Fatalf("validate-only topic was created")
	}

	md, err := adm.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != 2 {
		t.Fatalf("DescribeTopics %+v %v", md, err)
	}
	for _, p := range md[0].Partitions {
		if p.Leader != 0 || len(p.Replicas) != 1 || len(p.Isr) != 1 {
			t.Fatalf("partition %+v", p)
		}
	}

	brokers, controller, err := adm.DescribeCluster()
	if err != nil || len(brokers) != 1 || controller != 0 || brokers[0].ID() != 0 || brokers[0].Addr() != b.Addr() {
		t.Fatalf("DescribeCluster %v %d %v", brokers, controller, err)
	}

	if err := adm.CreatePartitions(topic, 3, nil, false); err != nil {
		t.Fatalf("CreatePartitions: %v", err)
	}
	eventually(t, 10*time.Second, "3 partitions", func() error {
		md, err := adm.DescribeTopics([]string{topic})
		if err != nil {
			return err
		}
		if len(md[0].Partitions) != 3 {
			return fmt.Errorf("%d partitions", len(md[0].Partitions))
		}
		return nil
	})

	// Configs.
	entry := func(name string) sarama.ConfigEntry {
		t.Helper()
		es, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		if err != nil {
			t.Fatalf("DescribeConfig: %v", err)
		}
		for _, e := range es {
			if e.Name == name {
				return e
			}
		}
		t.Fatalf("DescribeConfig: no %s among %d entries", name, len(es))
		return sarama.ConfigEntry{}
	}
	if e := entry("retention.ms"); e.Value != retention || e.Source != sarama.SourceTopic || e.Default {
		t.Fatalf("retention.ms %+v", e)
	}
	seg := "4194304"
	if err := adm.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"segment.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &seg},
	}, false); err != nil {
		t.Fatalf("IncrementalAlterConfig: %v", err)
	}
	if e := entry("segment.bytes"); e.Value != seg || e.Source != sarama.SourceTopic {
		t.Fatalf("segment.bytes %+v", e)
	}
	if e := entry("retention.ms"); e.Value != retention {
		t.Fatalf("incremental alter dropped retention.ms: %+v", e)
	}
	policy := "compact"
	if err := adm.AlterConfig(sarama.TopicResource, topic, map[string]*string{"cleanup.policy": &policy}, false); err != nil {
		t.Fatalf("AlterConfig: %v", err)
	}
	if e := entry("cleanup.policy"); e.Value != "compact" || e.Source != sarama.SourceTopic {
		t.Fatalf("cleanup.policy %+v", e)
	}
	if e := entry("retention.ms"); e.Source == sarama.SourceTopic {
		t.Fatalf("AlterConfig (replace) kept retention.ms override: %+v", e)
	}
	// Keyless records on a compacted topic are refused, as by Kafka.
	kl, err := sarama.NewSyncProducer([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kl.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("no key")}); !errors.Is(err, sarama.ErrInvalidRecord) {
		t.Fatalf("keyless record on compacted topic: %v", err)
	}
	_ = kl.Close()
	bad := "-5x"
	if err := adm.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": &bad}, false); err == nil {
		t.Fatalf("invalid retention.ms accepted")
	}
	bes, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.BrokerResource, Name: "0"})
	if err != nil || len(bes) == 0 {
		t.Fatalf("broker DescribeConfig %d %v", len(bes), err)
	}

	// Data for offsets / delete records.
	pcfg := saramaConfig()
	pcfg.Producer.Partitioner = sarama.NewManualPartitioner
	client, prod := newSaramaClientProducer(t, b, pcfg)
	for i := 0; i < 10; i++ {
		for p := int32(0); p < 3; p++ {
			// cleanup.policy=compact: Kafka rejects keyless records (INVALID_RECORD).
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}

	if err := adm.DeleteRecords(topic, map[int32]int64{0: 6, 2: 3}); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	for p, want := range map[int32]int64{0: 6, 1: 0, 2: 3} {
		if got, err := client.GetOffset(topic, p, sarama.OffsetOldest); err != nil || got != want {
			t.Fatalf("after DeleteRecords p%d oldest %d (%v) want %d", p, got, err, want)
		}
	}
	msgs := saramaReadPartition(t, b, nil, topic, 0, sarama.OffsetOldest, 4, 20*time.Second)
	if msgs[0].Offset != 6 || string(msgs[0].Value) != "6" {
		t.Fatalf("first after delete %d %q", msgs[0].Offset, msgs[0].Value)
	}

	// Group offsets through the offset manager, then the group admin calls.
	group := uniqueName("sarama-adm-g")
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		t.Fatal(err)
	}
	for p, off := range map[int32]int64{0: 8, 1: 5} {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		pom.MarkOffset(off, "meta")
		defer pom.Close()
	}
	om.Commit()
	resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]int64{0: 8, 1: 5, 2: -1} {
		blk := resp.GetBlock(topic, p)
		if blk == nil || blk.Err != sarama.ErrNoError || blk.Offset != want {
			t.Fatalf("committed p%d %+v want %d", p, blk, want)
		}
		if want >= 0 && blk.Metadata != "meta" {
			t.Fatalf("metadata p%d %q", p, blk.Metadata)
		}
	}
	if err := om.Close(); err != nil {
		t.Fatal(err)
	}

	groups, err := adm.ListConsumerGroups()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group]; !ok {
		t.Fatalf("ListConsumerGroups %v lacks %s", groups, group)
	}
	gd, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(gd) != 1 || gd[0].Err != sarama.ErrNoError || gd[0].State != "Empty" {
		t.Fatalf("DescribeConsumerGroups %+v %v", gd, err)
	}
	if err := adm.DeleteConsumerGroupOffset(group, topic, 1); err != nil {
		t.Fatalf("DeleteConsumerGroupOffset: %v", err)
	}
	resp, err = adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if blk := resp.GetBlock(topic, 1); blk == nil || blk.Offset != -1 {
		t.Fatalf("p1 after OffsetDelete %+v", blk)
	}
	if blk := resp.GetBlock(topic, 0); blk == nil || blk.Offset != 8 {
		t.Fatalf("p0 after OffsetDelete of p1 %+v", blk)
	}
	if err := adm.DeleteConsumerGroup(group); err != nil {
		t.Fatalf("DeleteConsumerGroup: %v", err)
	}
	groups, err = adm.ListConsumerGroups()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group]; ok {
		t.Fatalf("group still listed after delete")
	}
	if err := adm.DeleteConsumerGroup(group); !errors.Is(err, sarama.ErrGroupIDNotFound) {
		t.Fatalf("deleting a missing group: %v", err)
	}

	if err := adm.DeleteTopic(topic); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	eventually(t, 10*time.Second, "topic gone", func() error {
		topics, err := adm.ListTopics()
		if err != nil {
			return err
		}
		if _, ok := topics[topic]; ok {
			return fmt.Errorf("still listed")
		}
		return nil
	})
	if err := adm.DeleteTopic(topic); !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("deleting a missing topic: %v", err)
	}
}

func TestSaramaCompression(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	for _, codec := range []sarama.CompressionCodec{sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD} {
		t.Run(codec.String(), func(t *testing.T) {
			topic := uniqueName("sarama-" + codec.String())
			saramaCreateTopic(t, adm, topic, 1, nil)
			cfg := saramaConfig()
			cfg.Producer.Compression = codec
			cfg.Producer.Flush.Messages = 50
			cfg.Producer.Flush.Frequency = 50 * time.Millisecond
			prod := newSaramaSyncProducer(t, b, cfg)
			var msgs []*sarama.ProducerMessage
			for i := 0; i < 100; i++ {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(fmt.Sprintf("%s-%03d-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", codec, i))})
			}
			if err := prod.SendMessages(msgs); err != nil {
				t.Fatalf("SendMessages: %v", err)
			}
			got := saramaReadPartition(t, b, nil, topic, 0, sarama.OffsetOldest, 100, 20*time.Second)
			for i, m := range got {
				if m.Offset != int64(i) || string(m.Key) != fmt.Sprint(i) || string(m.Value) != fmt.Sprintf("%s-%03d-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", codec, i) {
					t.Fatalf("message %d: %d %q=%q", i, m.Offset, m.Key, m.Value)
				}
			}
		})
	}
}

// Older declared versions make sarama use older request versions
// (V1_0_0_0: Produce v5, Fetch v6, Metadata v5, OffsetCommit v3, JoinGroup v2;
// V0_11_0_0: Produce v3, Fetch v5, ListOffsets v2, Metadata v4).
func TestSaramaOlderProtocolVersions(t *testing.T) {
	b := StartBroker(t)
	for _, v := range []sarama.KafkaVersion{sarama.V0_11_0_0, sarama.V1_0_0_0, sarama.V2_0_0_0} {
		t.Run(v.String(), func(t *testing.T) {
			cfg := saramaConfig()
			cfg.Version = v
			adm := newSaramaAdmin(t, b, cfg)
			topic := uniqueName("sarama-v" + v.String())
			saramaCreateTopic(t, adm, topic, 2, nil)
			cfg.Producer.Partitioner = sarama.NewManualPartitioner
			prod := newSaramaSyncProducer(t, b, cfg)
			for i := 0; i < 10; i++ {
				if _, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil || off != int64(i/2) {
					t.Fatalf("SendMessage %d: off %d err %v", i, off, err)
				}
			}
			msgs := saramaReadPartition(t, b, cfg, topic, 1, sarama.OffsetOldest, 5, 20*time.Second)
			for j, m := range msgs {
				if string(m.Value) != fmt.Sprint(2*j+1) {
					t.Fatalf("p1@%d %q", m.Offset, m.Value)
				}
			}
			// Group offsets at this version.
			client := newSaramaClient(t, b, cfg)
			group := uniqueName("sarama-old-g")
			om, err := sarama.NewOffsetManagerFromClient(group, client)
			if err != nil {
				t.Fatal(err)
			}
			pom, err := om.ManagePartition(topic, 1)
			if err != nil {
				t.Fatal(err)
			}
			pom.MarkOffset(4, "")
			om.Commit()
			_ = pom.Close()
			_ = om.Close()
			om2, err := sarama.NewOffsetManagerFromClient(group, client)
			if err != nil {
				t.Fatal(err)
			}
			defer om2.Close()
			pom2, err := om2.ManagePartition(topic, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer pom2.Close()
			if off, _ := pom2.NextOffset(); off != 4 {
				t.Fatalf("committed offset read back %d", off)
			}
		})
	}
}

// Sarama's range is covered above; the other two assignors.
func TestSaramaGroupStrategies(t *testing.T) {
	b := StartBroker(t)
	adm := newSaramaAdmin(t, b, nil)
	for _, strat := range []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin(), sarama.NewBalanceStrategySticky()} {
		t.Run(strat.Name(), func(t *testing.T) {
			topic := uniqueName("sarama-" + strat.Name())
			group := uniqueName("sarama-" + strat.Name() + "-g")
			saramaCreateTopic(t, adm, topic, 3, nil)
			cfg := saramaConfig()
			cfg.Producer.Partitioner = sarama.NewManualPartitioner
			prod := newSaramaSyncProducer(t, b, cfg)
			var msgs []*sarama.ProducerMessage
			for i := 0; i < 30; i++ {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: int32(i % 3), Value: sarama.StringEncoder(fmt.Sprint(i))})
			}
			if err := prod.SendMessages(msgs); err != nil {
				t.Fatal(err)
			}
			mk := func(name string) *saramaMember {
				gcfg := saramaConfig()
				gcfg.ClientID = "go-e2e-" + name
				gcfg.Consumer.Offsets.Initial = sarama.OffsetOldest
				gcfg.Consumer.Offsets.AutoCommit.Enable = false
				gcfg.Consumer.Group.Session.Timeout = 10 * time.Second
				gcfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
				gcfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strat}
				gcfg.Consumer.MaxWaitTime = 100 * time.Millisecond
				return startSaramaMemberWith(t, b, name, group, topic, gcfg)
			}
			m1 := mk("m1")
			defer m1.stop()
			m2 := mk("m2")
			defer m2.stop()
			eventually(t, 60*time.Second, "both members claim and all consumed", func() error {
				c1, n1, _ := m1.h.snapshot()
				c2, n2, _ := m2.h.snapshot()
				if len(c1) == 0 || len(c2) == 0 || len(c1)+len(c2) != 3 {
					return fmt.Errorf("claims %v %v", c1, c2)
				}
				for p := range c1 {
					if c2[p] {
						return fmt.Errorf("p%d claimed twice", p)
					}
				}
				if n1+n2 < 30 {
					return fmt.Errorf("consumed %d", n1+n2)
				}
				return nil
			})
			gd, err := adm.DescribeConsumerGroups([]string{group})
			if err != nil || len(gd) != 1 || gd[0].Protocol != strat.Name() {
				t.Fatalf("group protocol %+v %v", gd, err)
			}
			eventually(t, 10*time.Second, "committed == 10 everywhere", func() error {
				resp, err := adm.ListConsumerGroupOffsets(group, nil) // nil: all committed partitions
				if err != nil {
					return err
				}
				for p := int32(0); p < 3; p++ {
					blk := resp.GetBlock(topic, p)
					if blk == nil || blk.Offset != 10 {
						return fmt.Errorf("p%d %+v", p, blk)
					}
				}
				return nil
			})
		})
	}
}
