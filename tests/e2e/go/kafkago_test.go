package e2e

// segmentio/kafka-go against the real broker.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

func kgoClient(b *Broker) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b.Addr()), Timeout: 15 * time.Second}
}

func kafkagoCreateTopic(t testing.TB, c *kafka.Client, topic string, partitions int, configs ...kafka.ConfigEntry) {
	t.Helper()
	ctx := testCtx(t, 20*time.Second)
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
	}}})
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
}

// kafkagoReadPartition reads exactly n messages of one partition from offset.
func kafkagoReadPartition(t testing.TB, b *Broker, topic string, p int, offset int64, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{b.Addr()}, Topic: topic, Partition: p,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.Fatalf("SetOffset: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("%s/%d: read %d of %d: %v", topic, p, len(out), n, err)
		}
		out = append(out, m)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel2()
	if m, err := r.ReadMessage(ctx2); err == nil {
		t.Fatalf("%s/%d: unexpected extra message at offset %d", topic, p, m.Offset)
	}
	return out
}

// kafkagoReadBatch reads one batch (up to 1 MiB, 10 s deadline) from the
// connection's current offset and returns each message as show formats it.
func kafkagoReadBatch(conn *kafka.Conn, show func(kafka.Message) string) []string {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	batch := conn.ReadBatch(1, 1<<20)
	var out []string
	for {
		m, err := batch.ReadMessage()
		if err != nil {
			break
		}
		out = append(out, show(m))
	}
	_ = batch.Close()
	return out
}

// kafka-go's kafka.Hash balancer is FNV-1a, not Kafka's murmur2: only
// Murmur2Balancer puts keys where the Java client / librdkafka would.
func TestKafkaGoWriterMurmur2(t *testing.T) {
	b := StartBroker(t)
	c := kgoClient(b)
	topic := uniqueName("kafkago-murmur")
	const parts = 5
	kafkagoCreateTopic(t, c, topic, parts)

	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        topic,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		MaxAttempts:  5,
	}
	defer w.Close()
	ctx := testCtx(t, 60*time.Second)
	const n = 200
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, kafka.Message{
			Key:     []byte(fmt.Sprintf("user-%d", i%37)),
			Value:   []byte(fmt.Sprintf("event-%d", i)),
			Headers: []kafka.Header{{Key: "i", Value: []byte(fmt.Sprint(i))}},
		})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
	want := map[int][]string{}
	for i := 0; i < n; i++ {
		p := murmur2Partition(msgs[i].Key, parts)
		want[p] = append(want[p], string(msgs[i].Value))
	}
	// Well-known values of Kafka's murmur2 (from the Java client's tests).
	if murmur2([]byte("21")) != -973932308 || murmur2([]byte("foobar")) != -790332482 {
		t.Fatalf("murmur2 helper is wrong")
	}
	total := 0
	for p := 0; p < parts; p++ {
		got := kafkagoReadPartition(t, b, topic, p, kafka.FirstOffset, len(want[p]))
		for i, m := range got {
			if exp := murmur2Partition(m.Key, parts); exp != p {
				t.Fatalf("key %q on partition %d, murmur2 says %d", m.Key, p, exp)
			}
			if string(m.Value) != want[p][i] || m.Offset != int64(i) {
				t.Fatalf("p%d@%d = %q, want %q", p, m.Offset, m.Value, want[p][i])
			}
			if len(m.Headers) != 1 || m.Headers[0].Key != "i" {
				t.Fatalf("headers %v", m.Headers)
			}
		}
		total += len(got)
	}
	if total != n {
		t.Fatalf("read %d of %d", total, n)
	}
}

func TestKafkaGoWriterCompressionAndAutoCreate(t *testing.T) {
	b := StartBroker(t)
	for _, codec := range []kafka.Compression{kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			topic := uniqueName("kafkago-" + codec.String())
			// The topic does not exist: auto.create.topics.enable=true creates it
			// with num.partitions=1.
			w := &kafka.Writer{
				Addr: kafka.TCP(b.Addr()), Topic: topic, Compression: codec,
				AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond,
				RequiredAcks: kafka.RequireOne, MaxAttempts: 10, WriteBackoffMin: 100 * time.Millisecond,
			}
			defer w.Close()
			ctx := testCtx(t, 60*time.Second)
			var msgs []kafka.Message
			for i := 0; i < 50; i++ {
				msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprintf("%s-%03d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", codec, i))})
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Fatalf("WriteMessages: %v", err)
			}
			got := kafkagoReadPartition(t, b, topic, 0, kafka.FirstOffset, 50)
			for i, m := range got {
				if string(m.Value) != string(msgs[i].Value) {
					t.Fatalf("@%d %q want %q", m.Offset, m.Value, msgs[i].Value)
				}
			}
		})
	}
}

func TestKafkaGoReaderPartitionOffsets(t *testing.T) {
	b := StartBroker(t)
	c := kgoClient(b)
	topic := uniqueName("kafkago-offsets")
	kafkagoCreateTopic(t, c, topic, 1)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx := testCtx(t, 60*time.Second)
	var msgs []kafka.Message
	for i := 0; i < 30; i++ {
		msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprintf("v%d", i)), Time: base.Add(time.Duration(i) * time.Second)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	got := kafkagoReadPartition(t, b, topic, 0, 10, 20)
	if got[0].Offset != 10 || string(got[0].Value) != "v10" || !got[0].Time.Equal(base.Add(10*time.Second)) {
		t.Fatalf("from 10: %d %q %v", got[0].Offset, got[0].Value, got[0].Time)
	}
	if got[0].HighWaterMark != 30 {
		t.Fatalf("high watermark %d", got[0].HighWaterMark)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffsetAt(ctx, base.Add(20*time.Second+time.Millisecond)); err != nil {
		t.Fatalf("SetOffsetAt: %v", err)
	}
	m, err := r.ReadMessage(ctx)
	if err != nil || m.Offset != 21 {
		t.Fatalf("after SetOffsetAt: %d %v", m.Offset, err)
	}
	lag, err := r.ReadLag(ctx)
	if err != nil || lag != 8 {
		t.Fatalf("ReadLag %d %v", lag, err)
	}

	// LastOffset: only new messages, via long polling.
	r2 := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 2 * time.Second})
	defer r2.Close()
	if err := r2.SetOffset(kafka.LastOffset); err != nil {
		t.Fatal(err)
	}
	recv := make(chan kafka.Message, 1)
	go func() {
		if m, err := r2.ReadMessage(ctx); err == nil {
			recv <- m
		}
	}()
	select {
	case m := <-recv:
		t.Fatalf("LastOffset reader got old message %d", m.Offset)
	case <-time.After(1 * time.Second):
	}
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-recv:
		if m.Offset != 30 || string(m.Value) != "late" {
			t.Fatalf("late %d %q", m.Offset, m.Value)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("LastOffset reader never got the new message")
	}

	// The low-level Conn: leader dial, offsets, batch read.
	conn, err := kafka.DialLeader(ctx, "tcp", b.Addr(), topic, 0)
	if err != nil {
		t.Fatalf("DialLeader: %v", err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil || first != 0 || last != 31 {
		t.Fatalf("ReadOffsets %d %d %v", first, last, err)
	}
	if _, err := conn.Seek(25, kafka.SeekAbsolute); err != nil {
		t.Fatal(err)
	}
	vals := kafkagoReadBatch(conn, func(m kafka.Message) string { return string(m.Value) })
	if len(vals) == 0 || vals[0] != "v25" {
		t.Fatalf("ReadBatch from 25: %v", vals)
	}
}

type kafkagoMember struct {
	name   string
	r      *kafka.Reader
	mu     sync.Mutex
	got    []kafka.Message
	errs   []error
	cancel context.CancelFunc
	done   chan struct{}
}

func startKafkagoMember(t *testing.T, b *Broker, name, group, topic string) *kafkagoMember {
	m := &kafkagoMember{name: name, done: make(chan struct{})}
	m.r = kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{b.Addr()}, GroupID: group, Topic: topic,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: 200 * time.Millisecond,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0, // synchronous commits
		GroupBalancers: []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for {
			msg, err := m.r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, io.EOF) {
					m.mu.Lock()
					m.errs = append(m.errs, err)
					m.mu.Unlock()
				}
				return
			}
			m.mu.Lock()
			m.got = append(m.got, msg)
			m.mu.Unlock()
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			if err := m.r.CommitMessages(cctx, msg); err != nil && ctx.Err() == nil {
				m.mu.Lock()
				m.errs = append(m.errs, fmt.Errorf("commit %d@%d: %w", msg.Partition, msg.Offset, err))
				m.mu.Unlock()
			}
			ccancel()
		}
	}()
	return m
}

func (m *kafkagoMember) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

func (m *kafkagoMember) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	_ = m.r.Close()
}

// groupAssignment asks the broker which member holds which partition.
func kafkagoAssignment(ctx context.Context, c *kafka.Client, group, topic string) (string, map[string][]int, error) {
	resp, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return "", nil, err
	}
	if len(resp.Groups) != 1 {
		return "", nil, fmt.Errorf("%d groups described", len(resp.Groups))
	}
	g := resp.Groups[0]
	if g.Error != nil {
		return "", nil, g.Error
	}
	out := map[string][]int{}
	for _, mem := range g.Members {
		for _, tp := range mem.MemberAssignments.Topics {
			if tp.Topic == topic {
				out[mem.ClientID+"/"+mem.MemberID] = append(out[mem.ClientID+"/"+mem.MemberID], tp.Partitions...)
			}
		}
	}
	return g.GroupState, out, nil
}

func TestKafkaGoReaderGroup(t *testing.T) {
	b := StartBroker(t)
	c := kgoClient(b)
	topic := uniqueName("kafkago-group")
	group := uniqueName("kafkago-g")
	const parts = 4
	kafkagoCreateTopic(t, c, topic, parts)
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx := testCtx(t, 150*time.Second)
	produce := func(phase string, n int) {
		var msgs []kafka.Message
		for i := 0; i < n; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("%s-%d", phase, i)), Value: []byte(fmt.Sprintf("%s-%d", phase, i))})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce %s: %v", phase, err)
		}
	}
	produce("a", 100)

	m1 := startKafkagoMember(t, b, "m1", group, topic)
	defer m1.stop()
	eventually(t, 45*time.Second, "m1 consumes phase a", func() error {
		if n := m1.count(); n < 100 {
			return fmt.Errorf("m1 consumed %d", n)
		}
		return nil
	})

	m2 := startKafkagoMember(t, b, "m2", group, topic)
	defer m2.stop()
	eventually(t, 60*time.Second, "two members share the partitions", func() error {
		state, as, err := kafkagoAssignment(ctx, c, group, topic)
		if err != nil {
			return err
		}
		if state != "Stable" || len(as) != 2 {
			return fmt.Errorf("state %s assignment %v", state, as)
		}
		seen := map[int]int{}
		for _, ps := range as {
			if len(ps) == 0 {
				return fmt.Errorf("member without partitions: %v", as)
			}
			for _, p := range ps {
				seen[p]++
			}
		}
		if len(seen) != parts {
			return fmt.Errorf("assignment %v", as)
		}
		for p, n := range seen {
			if n != 1 {
				return fmt.Errorf("partition %d assigned %d times", p, n)
			}
		}
		return nil
	})
	// Let the old generation's fetches drain, then produce phase b.
	time.Sleep(time.Second)
	before1, before2 := m1.count(), m2.count()
	produce("b", 100)
	eventually(t, 45*time.Second, "phase b consumed", func() error {
		if n := m1.count() + m2.count() - before1 - before2; n < 100 {
			return fmt.Errorf("phase b consumed %d", n)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)

	m1.mu.Lock()
	m2.mu.Lock()
	byKey := map[string][]string{}
	owners := map[int]map[string]bool{}
	commitErrs := len(m1.errs) + len(m2.errs)
	for _, m := range []*kafkagoMember{m1, m2} {
		for i, msg := range m.got {
			byKey[string(msg.Value)] = append(byKey[string(msg.Value)], m.name)
			if (m == m1 && i >= before1) || (m == m2 && i >= before2) {
				if owners[msg.Partition] == nil {
					owners[msg.Partition] = map[string]bool{}
				}
				owners[msg.Partition][m.name] = true
			}
		}
	}
	errs := append(append([]error(nil), m1.errs...), m2.errs...)
	m1.mu.Unlock()
	m2.mu.Unlock()
	if len(errs) > 0 {
		t.Logf("member errors (commits during rebalance may fail): %v", errs)
	}
	for _, phase := range []string{"a", "b"} {
		for i := 0; i < 100; i++ {
			k := fmt.Sprintf("%s-%d", phase, i)
			if len(byKey[k]) == 0 {
				t.Fatalf("message %s lost", k)
			}
			if len(byKey[k]) > 1 && commitErrs == 0 {
				t.Errorf("message %s consumed %d times (%v) with no failed commit", k, len(byKey[k]), byKey[k])
			}
		}
	}
	for p, o := range owners {
		if len(o) != 1 {
			t.Fatalf("phase-b partition %d read by %v", p, o)
		}
	}

	// Committed offsets == end offsets.
	eventually(t, 10*time.Second, "committed == end", func() error {
		ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {
			kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2), kafka.LastOffsetOf(3)}}})
		if err != nil {
			return err
		}
		end := map[int]int64{}
		for _, po := range ends.Topics[topic] {
			if po.Error != nil {
				return po.Error
			}
			end[po.Partition] = po.LastOffset
		}
		of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2, 3}}})
		if err != nil {
			return err
		}
		if len(of.Topics[topic]) != parts {
			return fmt.Errorf("OffsetFetch %v", of.Topics)
		}
		for _, p := range of.Topics[topic] {
			if p.Error != nil || p.CommittedOffset != end[p.Partition] {
				return fmt.Errorf("p%d committed %d end %d (%v)", p.Partition, p.CommittedOffset, end[p.Partition], p.Error)
			}
		}
		return nil
	})
}

func TestKafkaGoClientAdmin(t *testing.T) {
	b := StartBroker(t)
	c := kgoClient(b)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName("kafkago-adm")
	kafkagoCreateTopic(t, c, topic, 2, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "600000"})

	// ApiVersions.
	av, err := c.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil || av.Error != nil || len(av.ApiKeys) == 0 {
		t.Fatalf("ApiVersions %v %v", av, err)
	}
	for _, k := range av.ApiKeys {
		if k.ApiKey == 0 && (k.MinVersion != 3 || k.MaxVersion < 7) {
			t.Fatalf("Produce versions %+v", k)
		}
	}

	// Duplicate create.
	cr, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(cr.Errors[topic], kafka.TopicAlreadyExists) {
		t.Fatalf("duplicate create: %v", cr.Errors[topic])
	}

	// Metadata.
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(b.Addr())
	if len(md.Brokers) != 1 || md.Brokers[0].Host != host || fmt.Sprint(md.Brokers[0].Port) != port || md.Controller.ID != 0 || md.ClusterID == "" {
		t.Fatalf("metadata brokers %+v controller %+v cluster %q", md.Brokers, md.Controller, md.ClusterID)
	}
	if len(md.Topics) != 1 || md.Topics[0].Name != topic || len(md.Topics[0].Partitions) != 2 || md.Topics[0].Error != nil {
		t.Fatalf("metadata topics %+v", md.Topics)
	}
	for _, p := range md.Topics[0].Partitions {
		if p.Leader.ID != 0 || len(p.Replicas) != 1 || len(p.Isr) != 1 {
			t.Fatalf("partition %+v", p)
		}
	}

	// CreatePartitions to 3.
	cp, err := c.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 3}}})
	if err != nil || cp.Errors[topic] != nil {
		t.Fatalf("CreatePartitions %v %v", err, cp.Errors)
	}
	eventually(t, 10*time.Second, "3 partitions", func() error {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return err
		}
		if n := len(md.Topics[0].Partitions); n != 3 {
			return fmt.Errorf("%d partitions", n)
		}
		return nil
	})

	// Configs.
	describe := func(name string) kafka.DescribeConfigResponseConfigEntry {
		t.Helper()
		resp, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{name}}}})
		if err != nil {
			t.Fatalf("DescribeConfigs: %v", err)
		}
		if len(resp.Resources) != 1 || resp.Resources[0].Error != nil {
			t.Fatalf("DescribeConfigs %+v", resp.Resources)
		}
		for _, e := range resp.Resources[0].ConfigEntries {
			if e.ConfigName == name {
				return e
			}
		}
		t.Fatalf("DescribeConfigs: %s not returned (%d entries)", name, len(resp.Resources[0].ConfigEntries))
		return kafka.DescribeConfigResponseConfigEntry{}
	}
	if e := describe("retention.ms"); e.ConfigValue != "600000" || e.IsDefault || e.ConfigSource != 1 {
		t.Fatalf("retention.ms %+v", e)
	}
	ia, err := c.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "max.message.bytes", Value: "65536", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err != nil || len(ia.Resources) != 1 || ia.Resources[0].Error != nil {
		t.Fatalf("IncrementalAlterConfigs %+v %v", ia, err)
	}
	if e := describe("max.message.bytes"); e.ConfigValue != "65536" {
		t.Fatalf("max.message.bytes %+v", e)
	}
	if e := describe("retention.ms"); e.ConfigValue != "600000" {
		t.Fatalf("retention.ms after incremental %+v", e)
	}
	ac, err := c.AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "retention.ms", Value: "1200000"}},
	}}})
	if err != nil {
		t.Fatalf("AlterConfigs: %v", err)
	}
	for r, e := range ac.Errors {
		if e != nil {
			t.Fatalf("AlterConfigs %v: %v", r, e)
		}
	}
	if e := describe("retention.ms"); e.ConfigValue != "1200000" {
		t.Fatalf("retention.ms after AlterConfigs %+v", e)
	}
	if e := describe("max.message.bytes"); e.ConfigSource == 1 {
		t.Fatalf("AlterConfigs (replace) kept max.message.bytes: %+v", e)
	}

	// A message over max.message.bytes is refused (MESSAGE_TOO_LARGE).
	ia, err = c.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "max.message.bytes", Value: "1024", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err != nil || ia.Resources[0].Error != nil {
		t.Fatalf("IncrementalAlterConfigs %+v %v", ia, err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll, MaxAttempts: 1}
	defer w.Close()
	big := make([]byte, 4096)
	err = w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: big})
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != 1 || !errors.Is(werrs[0], kafka.MessageSizeTooLarge) {
		t.Fatalf("oversized message: %v", err)
	}

	// Produce keyed messages and list the offsets.
	var msgs []kafka.Message
	for i := 0; i < 12; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	perPart := map[int]int64{}
	for _, m := range msgs {
		// (WriteMessages does not fill in the caller's Partition/Offset.)
		perPart[murmur2Partition(m.Key, 3)]++
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {
		kafka.FirstOffsetOf(0), kafka.FirstOffsetOf(1), kafka.FirstOffsetOf(2),
		kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range lo.Topics[topic] {
		if po.Error != nil || po.FirstOffset != 0 || po.LastOffset != perPart[po.Partition] {
			t.Fatalf("ListOffsets %+v (want last %d)", po, perPart[po.Partition])
		}
	}

	// Group offsets: commit (simple, generation -1), fetch, delete, list/describe/delete group.
	group := uniqueName("kafkago-adm-g")
	oc, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 2, Metadata: "x"}, {Partition: 1, Offset: 1}}}})
	if err != nil {
		t.Fatalf("OffsetCommit: %v", err)
	}
	for _, p := range oc.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("OffsetCommit p%d: %v", p.Partition, p.Error)
		}
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	if err != nil || of.Error != nil {
		t.Fatalf("OffsetFetch %v %v", err, of.Error)
	}
	committed := map[int]kafka.OffsetFetchPartition{}
	for _, p := range of.Topics[topic] {
		committed[p.Partition] = p
	}
	if committed[0].CommittedOffset != 2 || committed[0].Metadata != "x" || committed[1].CommittedOffset != 1 || committed[2].CommittedOffset != -1 {
		t.Fatalf("OffsetFetch %+v", committed)
	}
	co, err := c.ConsumerOffsets(ctx, kafka.TopicAndGroup{Topic: topic, GroupId: group})
	if err != nil || co[0] != 2 || co[1] != 1 {
		t.Fatalf("ConsumerOffsets %v %v", co, err)
	}
	od, err := c.OffsetDelete(ctx, &kafka.OffsetDeleteRequest{GroupID: group, Topics: map[string][]int{topic: {1}}})
	if err != nil || od.Error != nil {
		t.Fatalf("OffsetDelete %v %v", err, od)
	}
	for _, p := range od.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("OffsetDelete p%d: %v", p.Partition, p.Error)
		}
	}
	of, err = c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range of.Topics[topic] {
		if (p.Partition == 1 && p.CommittedOffset != -1) || (p.Partition == 0 && p.CommittedOffset != 2) {
			t.Fatalf("after OffsetDelete: %+v", of.Topics[topic])
		}
	}

	lg, err := c.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil || lg.Error != nil {
		t.Fatalf("ListGroups %v %v", err, lg)
	}
	found := false
	for _, g := range lg.Groups {
		if g.GroupID == group {
			found = true
		}
	}
	if !found {
		t.Fatalf("ListGroups %+v lacks %s", lg.Groups, group)
	}
	dg, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil || len(dg.Groups) != 1 || dg.Groups[0].Error != nil || dg.Groups[0].GroupState != "Empty" {
		t.Fatalf("DescribeGroups %+v %v", dg, err)
	}
	dgr, err := c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	if err != nil || dgr.Errors[group] != nil {
		t.Fatalf("DeleteGroups %v %v", err, dgr.Errors)
	}
	dgr, err = c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	if err != nil || !errors.Is(dgr.Errors[group], kafka.GroupIdNotFound) {
		t.Fatalf("DeleteGroups missing: %v %v", err, dgr.Errors)
	}

	// Coordinator / producer id plumbing.
	fc, err := c.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err != nil || fc.Error != nil || fc.Coordinator == nil || fc.Coordinator.NodeID != 0 {
		t.Fatalf("FindCoordinator %+v %v", fc, err)
	}
	ip, err := c.InitProducerID(ctx, &kafka.InitProducerIDRequest{})
	if err != nil || ip.Error != nil || ip.Producer == nil || ip.Producer.ProducerID < 0 {
		t.Fatalf("InitProducerID %+v %v", ip, err)
	}

	// DeleteTopics.
	dt, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || dt.Errors[topic] != nil {
		t.Fatalf("DeleteTopics %v %v", err, dt.Errors)
	}
	eventually(t, 10*time.Second, "topic gone", func() error {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			return err
		}
		var names []string
		for _, tp := range md.Topics {
			names = append(names, tp.Name)
			if tp.Name == topic {
				return fmt.Errorf("still listed")
			}
		}
		sort.Strings(names)
		return nil
	})
	dt, err = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || !errors.Is(dt.Errors[topic], kafka.UnknownTopicOrPartition) {
		t.Fatalf("DeleteTopics missing: %v %v", err, dt.Errors)
	}
}

// The low-level Conn API (CreateTopics v2, DeleteTopics v1, Metadata v1/v6,
// Produce v7 with message sets, Fetch v10).
func TestKafkaGoConn(t *testing.T) {
	b := StartBroker(t)
	ctx := testCtx(t, 60*time.Second)
	conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil || ctrl.ID != 0 {
		t.Fatalf("Controller %+v %v", ctrl, err)
	}
	brokers, err := conn.Brokers()
	if err != nil || len(brokers) != 1 {
		t.Fatalf("Brokers %+v %v", brokers, err)
	}
	topic := uniqueName("kafkago-conn")
	if err := conn.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatalf("Conn.CreateTopics: %v", err)
	}
	var parts []kafka.Partition
	eventually(t, 10*time.Second, "partitions visible", func() error {
		parts, err = conn.ReadPartitions(topic)
		if err != nil {
			return err
		}
		if len(parts) != 2 {
			return fmt.Errorf("%d partitions", len(parts))
		}
		return nil
	})
	leader, err := kafka.DialLeader(ctx, "tcp", b.Addr(), topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	_ = leader.SetWriteDeadline(time.Now().Add(10 * time.Second))
	n, err := leader.WriteMessages(kafka.Message{Key: []byte("a"), Value: []byte("one")}, kafka.Message{Key: []byte("b"), Value: []byte("two")})
	if err != nil || n == 0 {
		t.Fatalf("Conn.WriteMessages %d %v", n, err)
	}
	got := kafkagoReadBatch(leader, func(m kafka.Message) string { return fmt.Sprintf("%d:%s=%s", m.Offset, m.Key, m.Value) })
	if fmt.Sprint(got) != "[0:a=one 1:b=two]" {
		t.Fatalf("ReadBatch %v", got)
	}
	if err := conn.DeleteTopics(topic); err != nil {
		t.Fatalf("Conn.DeleteTopics: %v", err)
	}
	// (Conn.ReadPartitions(topic) asks with AllowAutoTopicCreation=true, which
	// would re-create it; list all topics instead.)
	eventually(t, 10*time.Second, "topic gone", func() error {
		ps, err := conn.ReadPartitions()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Topic == topic {
				return fmt.Errorf("still listed")
			}
		}
		return nil
	})
}

// One reader group over two topics (GroupTopics).
func TestKafkaGoReaderGroupTopics(t *testing.T) {
	b := StartBroker(t)
	c := kgoClient(b)
	t1, t2 := uniqueName("kafkago-gt1"), uniqueName("kafkago-gt2")
	kafkagoCreateTopic(t, c, t1, 2)
	kafkagoCreateTopic(t, c, t2, 1)
	ctx := testCtx(t, 90*time.Second)
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs,
			kafka.Message{Topic: t1, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("t1-%d", i))},
			kafka.Message{Topic: t2, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("t2-%d", i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	group := uniqueName("kafkago-gt-g")
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{b.Addr()}, GroupID: group, GroupTopics: []string{t1, t2},
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond, StartOffset: kafka.FirstOffset,
		HeartbeatInterval: 500 * time.Millisecond, CommitInterval: 100 * time.Millisecond, // async commits
	})
	seen := map[string]bool{}
	for len(seen) < 40 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("ReadMessage after %d: %v", len(seen), err)
		}
		if seen[string(m.Value)] {
			t.Fatalf("duplicate %s", m.Value)
		}
		seen[string(m.Value)] = true
	}
	// Close flushes the interval commits.
	if err := r.Close(); err != nil {
		t.Fatalf("Reader.Close: %v", err)
	}
	eventually(t, 10*time.Second, "committed", func() error {
		of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{t1: {0, 1}, t2: {0}}})
		if err != nil {
			return err
		}
		ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			t1: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1)}, t2: {kafka.LastOffsetOf(0)}}})
		if err != nil {
			return err
		}
		end := map[string]int64{}
		total := int64(0)
		for tp, ps := range ends.Topics {
			for _, p := range ps {
				end[fmt.Sprintf("%s/%d", tp, p.Partition)] = p.LastOffset
				total += p.LastOffset
			}
		}
		if total != 40 {
			return fmt.Errorf("end offsets %v", end)
		}
		for tp, ps := range of.Topics {
			for _, p := range ps {
				e := end[fmt.Sprintf("%s/%d", tp, p.Partition)]
				if p.Error != nil {
					return p.Error
				}
				// A partition that never had data has nothing to commit.
				if p.CommittedOffset != e && !(e == 0 && p.CommittedOffset == -1) {
					return fmt.Errorf("%s/%d committed %d end %d", tp, p.Partition, p.CommittedOffset, e)
				}
			}
		}
		return nil
	})
}
