package e2e

// franz-go (kgo + kadm) against the real broker.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newKgo(t testing.TB, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.SeedBrokers(b.Addr()),
		kgo.ClientID("go-e2e-franz"),
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.RetryTimeout(20 * time.Second),
		kgo.MetadataMinAge(200 * time.Millisecond),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newKadm(t testing.TB, b *Broker) (*kadm.Client, *kgo.Client) {
	t.Helper()
	cl := newKgo(t, b)
	return kadm.NewClient(cl), cl
}

func franzCreateTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx := testCtx(t, 20*time.Second)
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("CreateTopic %s: %v %s", topic, resp.Err, resp.ErrMessage)
	}
	if resp.NumPartitions != partitions {
		t.Fatalf("CreateTopic %s: NumPartitions=%d want %d", topic, resp.NumPartitions, partitions)
	}
}

// franzConsume reads exactly n records from the given partitions/offsets
// (fails on timeout or on more than n).
func franzConsume(t testing.TB, b *Broker, parts map[string]map[int32]kgo.Offset, n int, d time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := newKgo(t, b, append([]kgo.Opt{kgo.ConsumePartitions(parts), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch error %s/%d: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	// Nothing extra should arrive.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel2()
	extra := cl.PollFetches(ctx2).Records()
	out = append(out, extra...)
	if len(out) != n {
		t.Fatalf("consumed %d records, want exactly %d", len(out), n)
	}
	return out
}

func rec(topic string, p int32, key, value string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: []byte(value)}
}

func TestFranzProduceSyncAndConsume(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-sync")
	franzCreateTopic(t, adm, topic, 3, nil)

	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t, 30*time.Second)
	const perPart = 50
	var recs []*kgo.Record
	for i := 0; i < perPart; i++ {
		for p := int32(0); p < 3; p++ {
			r := rec(topic, p, fmt.Sprintf("k-%d-%d", p, i), fmt.Sprintf("v-%d-%d", p, i))
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte(strconv.Itoa(i))}}
			recs = append(recs, r)
		}
	}
	res := prod.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	// Offsets are dense per partition and in produce order.
	next := map[int32]int64{}
	for _, r := range res {
		if r.Record.Offset != next[r.Record.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", r.Record.Partition, r.Record.Offset, next[r.Record.Partition])
		}
		next[r.Record.Partition]++
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		lo, ok := ends.Lookup(topic, p)
		if !ok || lo.Err != nil || lo.Offset != perPart {
			t.Fatalf("end offset p%d = %+v, want %d", p, lo, perPart)
		}
	}

	got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {
		0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart(),
	}}, 3*perPart, 30*time.Second)
	seen := map[int32]int64{}
	for _, r := range got {
		i := seen[r.Partition]
		if r.Offset != i {
			t.Fatalf("p%d: got offset %d want %d", r.Partition, r.Offset, i)
		}
		wantK, wantV := fmt.Sprintf("k-%d-%d", r.Partition, i), fmt.Sprintf("v-%d-%d", r.Partition, i)
		if string(r.Key) != wantK || string(r.Value) != wantV {
			t.Fatalf("p%d@%d: got %q=%q want %q=%q", r.Partition, r.Offset, r.Key, r.Value, wantK, wantV)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != strconv.Itoa(int(i)) {
			t.Fatalf("p%d@%d: headers %+v", r.Partition, r.Offset, r.Headers)
		}
		seen[r.Partition]++
	}
}

func TestFranzCompression(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		attr  uint8
	}{
		{"gzip", kgo.GzipCompression(), 1},
		{"snappy", kgo.SnappyCompression(), 2},
		{"lz4", kgo.Lz4Compression(), 3},
		{"zstd", kgo.ZstdCompression(), 4},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueName("franz-" + c.name)
			franzCreateTopic(t, adm, topic, 1, nil)
			prod := newKgo(t, b,
				kgo.ProducerBatchCompression(c.codec),
				kgo.ProducerLinger(50*time.Millisecond),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			ctx := testCtx(t, 30*time.Second)
			const n = 200
			var recs []*kgo.Record
			for i := 0; i < n; i++ {
				// compressible payload
				recs = append(recs, rec(topic, 0, fmt.Sprintf("key-%d", i), fmt.Sprintf("%s-value-%04d-%s", c.name, i, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")))
			}
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", c.name, err)
			}
			got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}, n, 30*time.Second)
			for i, r := range got {
				if r.Offset != int64(i) || string(r.Value) != string(recs[i].Value) || string(r.Key) != string(recs[i].Key) {
					t.Fatalf("record %d: got %d %q=%q", i, r.Offset, r.Key, r.Value)
				}
				if r.Attrs.CompressionType() != c.attr {
					t.Fatalf("record %d: batch compression attr %d, want %d (%s)", i, r.Attrs.CompressionType(), c.attr, c.name)
				}
			}
		})
	}
}

// The default kgo producer is idempotent (InitProducerId + sequences); it
// keeps producing across a broker restart without gaps or duplicates.
func TestFranzIdempotentAcrossRestart(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-idem")
	franzCreateTopic(t, adm, topic, 2, nil)

	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	ctx := testCtx(t, 60*time.Second)
	const n = 100
	produce := func(from int) {
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			recs = append(recs, rec(topic, int32(i%2), "", fmt.Sprintf("m-%d", i)))
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce from %d: %v", from, err)
		}
	}
	produce(0)
	id, epoch, err := prod.ProducerID(ctx)
	if err != nil {
		t.Fatalf("ProducerID: %v", err)
	}
	if id < 0 || epoch < 0 {
		t.Fatalf("producer not idempotent: id=%d epoch=%d", id, epoch)
	}
	b.Restart()
	produce(n)
	id2, _, err := prod.ProducerID(ctx)
	if err != nil {
		t.Fatalf("ProducerID after restart: %v", err)
	}
	t.Logf("producer id %d epoch %d; after restart id %d", id, epoch, id2)

	got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()}}, 2*n, 30*time.Second)
	per := map[int32][]string{}
	for _, r := range got {
		per[r.Partition] = append(per[r.Partition], string(r.Value))
		if r.ProducerID != id2 && r.ProducerID != id {
			t.Fatalf("record producer id %d, want %d or %d", r.ProducerID, id, id2)
		}
	}
	for p := int32(0); p < 2; p++ {
		if len(per[p]) != n {
			t.Fatalf("p%d: %d records, want %d", p, len(per[p]), n)
		}
		for j, v := range per[p] {
			if want := fmt.Sprintf("m-%d", 2*j+int(p)); v != want {
				t.Fatalf("p%d[%d] = %s want %s", p, j, v, want)
			}
		}
	}
}

func TestFranzConsumeFromOffsets(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-offsets")
	franzCreateTopic(t, adm, topic, 1, nil)
	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t, 60*time.Second)

	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := 0; i < 20; i++ {
		r := rec(topic, 0, "", fmt.Sprintf("v%d", i))
		r.Timestamp = base.Add(time.Duration(i) * time.Second)
		recs = append(recs, r)
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Exact offset.
	got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(5)}}, 15, 20*time.Second)
	if got[0].Offset != 5 || string(got[0].Value) != "v5" || got[14].Offset != 19 {
		t.Fatalf("At(5): first %d %q last %d", got[0].Offset, got[0].Value, got[14].Offset)
	}
	if !got[0].Timestamp.Equal(base.Add(5 * time.Second)) {
		t.Fatalf("timestamp %v want %v", got[0].Timestamp, base.Add(5*time.Second))
	}
	// By timestamp: first record with ts >= base+10s is offset 10.
	got = franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AfterMilli(base.Add(10 * time.Second).UnixMilli())}}, 10, 20*time.Second)
	if got[0].Offset != 10 {
		t.Fatalf("AfterMilli: first offset %d want 10", got[0].Offset)
	}
	// Relative to end.
	got = franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtEnd().Relative(-3)}}, 3, 20*time.Second)
	if got[0].Offset != 17 {
		t.Fatalf("AtEnd().Relative(-3): first offset %d want 17", got[0].Offset)
	}

	// At end: nothing, then a new record arrives through long polling.
	cons := newKgo(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtEnd()}}), kgo.FetchMaxWait(2*time.Second))
	pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if n := cons.PollFetches(pctx).NumRecords(); n != 0 {
		t.Fatalf("AtEnd consumer got %d records before any new produce", n)
	}
	pcancel()
	if err := prod.ProduceSync(ctx, rec(topic, 0, "", "late")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel = context.WithTimeout(ctx, 15*time.Second)
	defer pcancel()
	fs := cons.PollFetches(pctx)
	if rs := fs.Records(); len(rs) != 1 || rs[0].Offset != 20 || string(rs[0].Value) != "late" {
		t.Fatalf("AtEnd consumer: got %d records (%v)", len(rs), fs.Err())
	}

	// Out of range offset with reset to start.
	got = franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(1000)}}, 21, 20*time.Second,
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got[0].Offset != 0 {
		t.Fatalf("reset: first offset %d", got[0].Offset)
	}
}

// groupMember is one consumer of a group that commits after every poll and
// blocks rebalances while it processes, so that no record is read twice.
type groupMember struct {
	name     string
	cl       *kgo.Client
	mu       sync.Mutex
	assigned map[int32]bool
	got      []*kgo.Record
	cancel   context.CancelFunc
	done     chan struct{}
	errs     []error
}

func startFranzMember(t *testing.T, b *Broker, name, group, topic string) *groupMember {
	m := &groupMember{name: name, assigned: map[int32]bool{}, done: make(chan struct{})}
	m.cl = newKgo(t, b,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.RebalanceTimeout(20*time.Second),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				m.mu.Lock()
				m.errs = append(m.errs, fmt.Errorf("commit on revoke: %w", err))
				m.mu.Unlock()
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.errs = append(m.errs, fmt.Errorf("partitions lost: %v", l))
			for _, p := range l[topic] {
				delete(m.assigned, p)
			}
		}),
	)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := m.cl.PollRecords(ctx, 25)
			if fs.IsClientClosed() || ctx.Err() != nil {
				m.cl.AllowRebalance()
				return
			}
			fs.EachError(func(tp string, p int32, err error) {
				if errors.Is(err, context.Canceled) {
					return
				}
				m.mu.Lock()
				m.errs = append(m.errs, fmt.Errorf("fetch %s/%d: %w", tp, p, err))
				m.mu.Unlock()
			})
			rs := fs.Records()
			if len(rs) > 0 {
				m.mu.Lock()
				m.got = append(m.got, rs...)
				m.mu.Unlock()
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := m.cl.CommitRecords(cctx, rs...); err != nil {
					m.mu.Lock()
					m.errs = append(m.errs, fmt.Errorf("commit: %w", err))
					m.mu.Unlock()
				}
				ccancel()
			}
			m.cl.AllowRebalance()
		}
	}()
	return m
}

func (m *groupMember) snapshot() (map[int32]bool, int, []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := map[int32]bool{}
	for p := range m.assigned {
		a[p] = true
	}
	return a, len(m.got), append([]error(nil), m.errs...)
}

func (m *groupMember) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.cl.LeaveGroupContext(ctx)
	m.cl.Close()
}

func TestFranzConsumerGroup(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-group")
	group := uniqueName("franz-g")
	const parts = 4
	franzCreateTopic(t, adm, topic, parts, nil)
	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t, 120*time.Second)
	produce := func(phase string, perPart int) {
		var recs []*kgo.Record
		for i := 0; i < perPart; i++ {
			for p := int32(0); p < parts; p++ {
				recs = append(recs, rec(topic, p, "", fmt.Sprintf("%s-%d-%d", phase, p, i)))
			}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", phase, err)
		}
	}
	produce("a", 50)

	m1 := startFranzMember(t, b, "m1", group, topic)
	defer m1.stop()
	eventually(t, 45*time.Second, "m1 consumes phase a", func() error {
		a, n, errs := m1.snapshot()
		if len(errs) > 0 {
			t.Fatalf("m1 errors: %v", errs)
		}
		if len(a) != parts || n != 50*parts {
			return fmt.Errorf("m1 assigned %v consumed %d", a, n)
		}
		return nil
	})

	m2 := startFranzMember(t, b, "m2", group, topic)
	defer m2.stop()
	eventually(t, 60*time.Second, "rebalance to two members", func() error {
		a1, _, e1 := m1.snapshot()
		a2, _, e2 := m2.snapshot()
		if len(e1)+len(e2) > 0 {
			t.Fatalf("member errors: %v %v", e1, e2)
		}
		if len(a1) == 0 || len(a2) == 0 || len(a1)+len(a2) != parts {
			return fmt.Errorf("m1 %v m2 %v", a1, a2)
		}
		for p := range a1 {
			if a2[p] {
				return fmt.Errorf("partition %d assigned to both", p)
			}
		}
		return nil
	})
	// The broker's view agrees.
	eventually(t, 20*time.Second, "DescribeGroups shows two stable members", func() error {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		g := dg[group]
		if g.Err != nil {
			return g.Err
		}
		if g.State != "Stable" || len(g.Members) != 2 {
			return fmt.Errorf("state %s members %d", g.State, len(g.Members))
		}
		if g.ProtocolType != "consumer" || g.Protocol != "cooperative-sticky" {
			t.Fatalf("group protocol %s/%s, want consumer/cooperative-sticky", g.ProtocolType, g.Protocol)
		}
		as := g.AssignedPartitions()
		if len(as[topic]) != parts {
			return fmt.Errorf("assigned %v", as)
		}
		return nil
	})

	produce("b", 50)
	eventually(t, 45*time.Second, "phase b consumed", func() error {
		_, n1, _ := m1.snapshot()
		_, n2, _ := m2.snapshot()
		if n1+n2 < 100*parts {
			return fmt.Errorf("consumed %d+%d", n1, n2)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)

	a1, _, e1 := m1.snapshot()
	a2, _, e2 := m2.snapshot()
	if len(e1)+len(e2) > 0 {
		t.Fatalf("member errors: %v %v", e1, e2)
	}
	m1.mu.Lock()
	m2.mu.Lock()
	seen := map[string]string{}
	dups := 0
	for _, m := range []*groupMember{m1, m2} {
		for _, r := range m.got {
			k := fmt.Sprintf("%d@%d", r.Partition, r.Offset)
			if prev, ok := seen[k]; ok {
				dups++
				t.Errorf("record %s consumed by %s and %s", k, prev, m.name)
			}
			seen[k] = m.name
			if string(r.Value)[0] == 'b' {
				owner := a1
				if m == m2 {
					owner = a2
				}
				if !owner[r.Partition] {
					t.Errorf("phase-b record %s read by %s which does not own p%d", k, m.name, r.Partition)
				}
			}
		}
	}
	m1.mu.Unlock()
	m2.mu.Unlock()
	if len(seen) != 100*parts || dups != 0 {
		t.Fatalf("distinct records consumed %d (want %d), duplicates %d", len(seen), 100*parts, dups)
	}

	// Committed offsets are at the end of every partition.
	eventually(t, 10*time.Second, "committed == end", func() error {
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return err
		}
		for p := int32(0); p < parts; p++ {
			o, ok := offs.Lookup(topic, p)
			if !ok || o.Err != nil || o.At != 100 {
				return fmt.Errorf("p%d committed %+v", p, o)
			}
		}
		return nil
	})

	// After both leave, a new member resumes from the commits: it reads only
	// what is produced afterwards.
	m1.stop()
	m2.stop()
	produce("c", 5)
	m3 := startFranzMember(t, b, "m3", group, topic)
	defer m3.stop()
	eventually(t, 45*time.Second, "m3 consumes phase c only", func() error {
		_, n, errs := m3.snapshot()
		if len(errs) > 0 {
			t.Fatalf("m3 errors: %v", errs)
		}
		if n < 5*parts {
			return fmt.Errorf("m3 consumed %d", n)
		}
		return nil
	})
	time.Sleep(1 * time.Second)
	m3.mu.Lock()
	defer m3.mu.Unlock()
	if len(m3.got) != 5*parts {
		t.Fatalf("m3 consumed %d records, want %d", len(m3.got), 5*parts)
	}
	for _, r := range m3.got {
		if r.Value[0] != 'c' || r.Offset < 100 {
			t.Fatalf("m3 re-read %d@%d %q", r.Partition, r.Offset, r.Value)
		}
	}
}

func TestFranzAdmin(t *testing.T) {
	b := StartBroker(t)
	adm, cl := newKadm(t, b)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName("franz-adm")
	other := uniqueName("franz-adm-other")

	t.Run("create topics", func(t *testing.T) {
		resps, err := adm.CreateTopics(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic, other)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{topic, other} {
			r, err := resps.On(name, nil)
			if err != nil || r.Err != nil {
				t.Fatalf("create %s: %v %v %s", name, err, r.Err, r.ErrMessage)
			}
			if r.NumPartitions != 2 || r.ReplicationFactor != 1 {
				t.Fatalf("create %s: partitions %d rf %d", name, r.NumPartitions, r.ReplicationFactor)
			}
		}
		// Duplicate create fails with TOPIC_ALREADY_EXISTS.
		// (kadm's single-topic helpers return the topic's error as err.)
		r, err := adm.CreateTopic(ctx, 1, 1, nil, topic)
		if !errors.Is(err, kerr.TopicAlreadyExists) || !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("duplicate create: %v / %v", err, r.Err)
		}
		// Invalid partition count fails.
		r, err = adm.CreateTopic(ctx, 0, 1, nil, uniqueName("bad"))
		if err == nil && r.Err == nil {
			t.Fatalf("create with 0 partitions succeeded")
		}
	})

	t.Run("metadata and list topics", func(t *testing.T) {
		td, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{topic, other} {
			d, ok := td[name]
			if !ok || d.Err != nil || len(d.Partitions) != 2 {
				t.Fatalf("ListTopics %s: %+v", name, d)
			}
			for _, p := range d.Partitions {
				if p.Leader != 0 || len(p.Replicas) != 1 || len(p.ISR) != 1 {
					t.Fatalf("%s p%d leader %d replicas %v isr %v", name, p.Partition, p.Leader, p.Replicas, p.ISR)
				}
			}
			if d.IsInternal {
				t.Fatalf("%s internal", name)
			}
		}
		m, err := adm.Metadata(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Brokers) != 1 || m.Brokers[0].NodeID != 0 || m.Brokers[0].Port != int32(b.Port) || m.Brokers[0].Host != b.Host {
			t.Fatalf("brokers %+v", m.Brokers)
		}
		if m.Controller != 0 {
			t.Fatalf("controller %d", m.Controller)
		}
		if m.Cluster == "" {
			t.Fatalf("empty cluster id")
		}
		if _, ok := m.Topics[topic]; !ok || len(m.Topics) != 1 {
			t.Fatalf("metadata topics %v", m.Topics.Names())
		}
		brokers, err := adm.ListBrokers(ctx)
		if err != nil || len(brokers) != 1 || brokers[0].NodeID != 0 {
			t.Fatalf("ListBrokers %+v %v", brokers, err)
		}
		// Unknown topic.
		m, err = adm.Metadata(ctx, "no-such-topic-"+topic)
		if err != nil {
			t.Fatal(err)
		}
		if d := m.Topics["no-such-topic-"+topic]; !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			// auto.create.topics.enable=true may create it instead; kadm asks
			// with AllowAutoTopicCreation=false, so it must not exist.
			t.Fatalf("unknown topic: %+v", d)
		}
	})

	t.Run("describe cluster", func(t *testing.T) {
		req := kmsg.NewPtrDescribeClusterRequest()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != 0 || resp.ClusterID == "" || resp.ControllerID != 0 || len(resp.Brokers) != 1 {
			t.Fatalf("DescribeCluster: %+v", resp)
		}
		br := resp.Brokers[0]
		if br.NodeID != 0 || br.Host != b.Host || br.Port != int32(b.Port) {
			t.Fatalf("DescribeCluster broker %+v", br)
		}
	})

	t.Run("create partitions", func(t *testing.T) {
		r, err := adm.CreatePartitions(ctx, 2, topic)
		if err != nil {
			t.Fatal(err)
		}
		if e := r[topic]; e.Err != nil {
			t.Fatalf("CreatePartitions: %v %s", e.Err, e.ErrMessage)
		}
		eventually(t, 10*time.Second, "4 partitions", func() error {
			td, err := adm.ListTopics(ctx, topic)
			if err != nil {
				return err
			}
			if n := len(td[topic].Partitions); n != 4 {
				return fmt.Errorf("%d partitions", n)
			}
			return nil
		})
		// Shrinking is refused.
		r, err = adm.UpdatePartitions(ctx, 2, topic)
		if err != nil {
			t.Fatal(err)
		}
		if r[topic].Err == nil {
			t.Fatalf("shrinking partitions succeeded")
		}
	})

	t.Run("configs", func(t *testing.T) {
		// describe returns the topic's configs.
		describe := func() kadm.ResourceConfigs {
			t.Helper()
			rc, err := adm.DescribeTopicConfigs(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			return rc
		}
		// altered fails the test unless the alter call and each of its results succeeded.
		altered := func(what string, ar kadm.AlterConfigsResponses, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range ar {
				if r.Err != nil {
					t.Fatalf("%s: %v %s", what, r.Err, r.ErrMessage)
				}
			}
		}
		rc := describe()
		get := func(rc kadm.ResourceConfigs, key string) (kadm.Config, bool) {
			r, err := rc.On(topic, nil)
			if err != nil || r.Err != nil {
				t.Fatalf("describe %s: %v %v", topic, err, r.Err)
			}
			for _, c := range r.Configs {
				if c.Key == key {
					return c, true
				}
			}
			return kadm.Config{}, false
		}
		c, ok := get(rc, "retention.ms")
		if !ok || c.MaybeValue() != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("retention.ms %+v (ok=%v)", c, ok)
		}
		c, ok = get(rc, "cleanup.policy")
		if !ok || c.MaybeValue() != "delete" || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("cleanup.policy %+v (ok=%v)", c, ok)
		}

		// Incremental: set one, delete another.
		ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("1048576")},
			{Op: kadm.DeleteConfig, Name: "retention.ms"},
		}, topic)
		altered("incremental alter", ar, err)
		rc = describe()
		if c, _ := get(rc, "retention.bytes"); c.MaybeValue() != "1048576" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("after incremental set: retention.bytes %+v", c)
		}
		if c, _ := get(rc, "retention.ms"); c.MaybeValue() == "3600000" || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("after incremental delete: retention.ms %+v", c)
		}
		// Incremental append to a list config.
		ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")}}, topic)
		altered("incremental append", ar, err)
		rc = describe()
		if c, _ := get(rc, "cleanup.policy"); c.MaybeValue() != "delete,compact" {
			t.Fatalf("after append: cleanup.policy %q", c.MaybeValue())
		}
		// Invalid value is refused.
		ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("not-a-number")}}, topic)
		if err == nil && ar[0].Err == nil {
			t.Fatalf("invalid retention.ms accepted")
		}

		// Non-incremental AlterConfigs replaces the whole set.
		ar, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "segment.bytes", Value: kadm.StringPtr("2097152")}}, topic)
		altered("AlterConfigs", ar, err)
		rc = describe()
		if c, _ := get(rc, "segment.bytes"); c.MaybeValue() != "2097152" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("after AlterConfigs: segment.bytes %+v", c)
		}
		if c, _ := get(rc, "retention.bytes"); c.Source == kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("after AlterConfigs: retention.bytes still a topic override: %+v", c)
		}
		if c, _ := get(rc, "cleanup.policy"); c.MaybeValue() != "delete" {
			t.Fatalf("after AlterConfigs: cleanup.policy %q", c.MaybeValue())
		}

		// Broker configs.
		brc, err := adm.DescribeBrokerConfigs(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(brc) != 1 || brc[0].Err != nil || len(brc[0].Configs) == 0 {
			t.Fatalf("DescribeBrokerConfigs: %+v", brc)
		}
	})

	// Produce some data with timestamps for the offset tests.
	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		for p := int32(0); p < 2; p++ {
			r := rec(other, p, "", fmt.Sprintf("v%d", i))
			r.Timestamp = base.Add(time.Duration(i) * time.Minute)
			recs = append(recs, r)
		}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	t.Run("list offsets", func(t *testing.T) {
		starts, err := adm.ListStartOffsets(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		ends, err := adm.ListEndOffsets(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		at, err := adm.ListOffsetsAfterMilli(ctx, base.Add(4*time.Minute+time.Second).UnixMilli(), other)
		if err != nil {
			t.Fatal(err)
		}
		future, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(time.Hour).UnixMilli(), other)
		if err != nil {
			t.Fatal(err)
		}
		maxTs, err := adm.ListMaxTimestampOffsets(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 2; p++ {
			if s, _ := starts.Lookup(other, p); s.Err != nil || s.Offset != 0 {
				t.Fatalf("start p%d %+v", p, s)
			}
			if e, _ := ends.Lookup(other, p); e.Err != nil || e.Offset != 10 {
				t.Fatalf("end p%d %+v", p, e)
			}
			if a, _ := at.Lookup(other, p); a.Err != nil || a.Offset != 5 || a.Timestamp != base.Add(5*time.Minute).UnixMilli() {
				t.Fatalf("after-milli p%d %+v", p, a)
			}
			// Past the newest timestamp: Kafka answers offset -1 (kadm
			// normalises it to the end offset).
			if f, _ := future.Lookup(other, p); f.Err != nil || (f.Offset != -1 && f.Offset != 10) {
				t.Fatalf("future p%d %+v", p, f)
			}
			if m, _ := maxTs.Lookup(other, p); m.Err != nil || m.Offset != 9 || m.Timestamp != base.Add(9*time.Minute).UnixMilli() {
				t.Fatalf("max-timestamp p%d %+v", p, m)
			}
		}
	})

	t.Run("delete records", func(t *testing.T) {
		os := kadm.Offsets{}
		os.AddOffset(other, 0, 4, -1)
		dr, err := adm.DeleteRecords(ctx, os)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := dr.Lookup(other, 0)
		if !ok || r.Err != nil || r.LowWatermark != 4 {
			t.Fatalf("DeleteRecords %+v", r)
		}
		starts, err := adm.ListStartOffsets(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := starts.Lookup(other, 0); s.Offset != 4 {
			t.Fatalf("start after delete %+v", s)
		}
		if s, _ := starts.Lookup(other, 1); s.Offset != 0 {
			t.Fatalf("p1 start after delete on p0 %+v", s)
		}
		got := franzConsume(t, b, map[string]map[int32]kgo.Offset{other: {0: kgo.NewOffset().AtStart()}}, 6, 20*time.Second)
		if got[0].Offset != 4 || string(got[0].Value) != "v4" {
			t.Fatalf("first after delete %d %q", got[0].Offset, got[0].Value)
		}
		// Past the high watermark: OFFSET_OUT_OF_RANGE.
		os = kadm.Offsets{}
		os.AddOffset(other, 1, 99, -1)
		dr, err = adm.DeleteRecords(ctx, os)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := dr.Lookup(other, 1); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
			t.Fatalf("delete past HW: %+v", r)
		}
	})

	group := uniqueName("franz-adm-g")
	t.Run("offsets commit and fetch", func(t *testing.T) {
		os := kadm.Offsets{}
		os.Add(kadm.Offset{Topic: other, Partition: 0, At: 7, LeaderEpoch: -1, Metadata: "m0"})
		os.Add(kadm.Offset{Topic: other, Partition: 1, At: 3, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, group, os); err != nil {
			t.Fatalf("CommitAllOffsets: %v", err)
		}
		fo, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		o0, ok0 := fo.Lookup(other, 0)
		o1, ok1 := fo.Lookup(other, 1)
		if !ok0 || !ok1 || o0.At != 7 || o0.Metadata != "m0" || o1.At != 3 || o0.Err != nil || o1.Err != nil {
			t.Fatalf("FetchOffsets %+v %+v", o0, o1)
		}
		fo, err = adm.FetchOffsetsForTopics(ctx, group, other, topic)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := fo.Lookup(topic, 0); !ok || o.At != -1 {
			t.Fatalf("uncommitted partition: %+v ok=%v", o, ok)
		}
		lag, err := adm.Lag(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if l, ok := lag[group].Lag.Lookup(other, 1); !ok || l.Lag != 7 {
			t.Fatalf("lag p1 %+v", l)
		}
	})

	t.Run("list describe delete groups", func(t *testing.T) {
		lg, err := adm.ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g, ok := lg[group]
		if !ok {
			t.Fatalf("ListGroups %v does not have %s", lg.Groups(), group)
		}
		if g.Coordinator != 0 {
			t.Fatalf("listed group %+v", g)
		}
		lg, err = adm.ListGroups(ctx, "Empty")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lg[group]; !ok {
			t.Fatalf("ListGroups(Empty) %v", lg.Groups())
		}
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if d := dg[group]; d.Err != nil || d.State != "Empty" || len(d.Members) != 0 {
			t.Fatalf("DescribeGroups %+v", d)
		}
		dr, err := adm.DeleteGroup(ctx, group)
		if err != nil || dr.Err != nil {
			t.Fatalf("DeleteGroup %v %v", err, dr.Err)
		}
		lg, err = adm.ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lg[group]; ok {
			t.Fatalf("group still listed after delete")
		}
		fo, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := fo.Lookup(other, 0); ok && o.At >= 0 {
			t.Fatalf("offsets survive group delete: %+v", o)
		}
		dr, err = adm.DeleteGroup(ctx, group)
		if !errors.Is(err, kerr.GroupIDNotFound) || !errors.Is(dr.Err, kerr.GroupIDNotFound) {
			t.Fatalf("delete missing group: %v / %v", err, dr.Err)
		}
	})

	t.Run("delete topics", func(t *testing.T) {
		dr, err := adm.DeleteTopics(ctx, topic, other)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range dr {
			if r.Err != nil {
				t.Fatalf("delete %s: %v", r.Topic, r.Err)
			}
		}
		eventually(t, 10*time.Second, "topics gone", func() error {
			td, err := adm.ListTopics(ctx)
			if err != nil {
				return err
			}
			if td.Has(topic) || td.Has(other) {
				return fmt.Errorf("still listed: %v", td.Names())
			}
			return nil
		})
		dr, err = adm.DeleteTopics(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(dr[topic].Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("delete missing topic: %v", dr[topic].Err)
		}
	})
}

// sortedKeys is for stable failure messages.
func sortedKeys(m map[int32]bool) []int32 {
	var ks []int32
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// Static membership (KIP-345): a member that comes back with the same
// group.instance.id within the session timeout gets its old partitions back
// and the other member is not rebalanced.
func TestFranzStaticMembership(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-static")
	group := uniqueName("franz-static-g")
	franzCreateTopic(t, adm, topic, 4, nil)
	ctx := testCtx(t, 120*time.Second)

	type member struct {
		cl       *kgo.Client
		mu       sync.Mutex
		assigned []int32
		revokes  int
	}
	start := func(instance string) *member {
		m := &member{}
		m.cl = newKgo(t, b,
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.InstanceID(instance),
			kgo.Balancers(kgo.RangeBalancer()),
			kgo.SessionTimeout(20*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.FetchMaxWait(300*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				m.mu.Lock()
				m.assigned = append([]int32(nil), a[topic]...)
				sort.Slice(m.assigned, func(i, j int) bool { return m.assigned[i] < m.assigned[j] })
				m.mu.Unlock()
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
				m.mu.Lock()
				m.revokes++
				m.mu.Unlock()
			}),
		)
		go func() {
			for {
				fs := m.cl.PollFetches(ctx)
				if fs.IsClientClosed() || ctx.Err() != nil {
					return
				}
			}
		}()
		return m
	}
	snap := func(m *member) ([]int32, int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return append([]int32(nil), m.assigned...), m.revokes
	}

	a := start("inst-a")
	eventually(t, 30*time.Second, "a assigned", func() error {
		if p, _ := snap(a); len(p) != 4 {
			return fmt.Errorf("a %v", p)
		}
		return nil
	})
	bm := start("inst-b")
	eventually(t, 45*time.Second, "a and b share", func() error {
		pa, _ := snap(a)
		pb, _ := snap(bm)
		if len(pa) != 2 || len(pb) != 2 {
			return fmt.Errorf("a %v b %v", pa, pb)
		}
		return nil
	})
	eventually(t, 20*time.Second, "group stable with static members", func() error {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		g := dg[group]
		if g.State != "Stable" || len(g.Members) != 2 {
			return fmt.Errorf("state %s members %d", g.State, len(g.Members))
		}
		for _, m := range g.Members {
			if m.InstanceID == nil || (*m.InstanceID != "inst-a" && *m.InstanceID != "inst-b") {
				return fmt.Errorf("member %s instance %v", m.MemberID, m.InstanceID)
			}
		}
		return nil
	})
	pbBefore, _ := snap(bm)
	_, revokesA := snap(a)

	// b goes away without LeaveGroup (kgo does not leave for static members
	// on Close), and comes back with the same instance id.
	bm.cl.Close()
	b2 := start("inst-b")
	eventually(t, 30*time.Second, "b back with its partitions", func() error {
		p, _ := snap(b2)
		if fmt.Sprint(p) != fmt.Sprint(pbBefore) {
			return fmt.Errorf("b2 %v, b had %v", p, pbBefore)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	pa, ra := snap(a)
	if ra != revokesA || len(pa) != 2 {
		t.Fatalf("static rejoin of b rebalanced a: revokes %d -> %d, a now %v", revokesA, ra, pa)
	}
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if g := dg[group]; g.State != "Stable" || len(g.Members) != 2 {
		t.Fatalf("after static rejoin: state %s members %d", g.State, len(g.Members))
	}
}

// Committed offsets are durable: they survive a clean restart and a SIGKILL.
func TestFranzGroupCommitsSurviveRestartAndKill(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-durable")
	group := uniqueName("franz-durable-g")
	franzCreateTopic(t, adm, topic, 2, nil)
	prod := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t, 150*time.Second)
	produce := func(phase string, perPart int) {
		var recs []*kgo.Record
		for i := 0; i < perPart; i++ {
			for p := int32(0); p < 2; p++ {
				recs = append(recs, rec(topic, p, "", fmt.Sprintf("%s-%d-%d", phase, p, i)))
			}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", phase, err)
		}
	}
	consumeAll := func(name string, want int) *groupMember {
		m := startFranzMember(t, b, name, group, topic)
		eventually(t, 45*time.Second, name+" consumes", func() error {
			_, n, errs := m.snapshot()
			if len(errs) > 0 {
				t.Fatalf("%s errors: %v", name, errs)
			}
			if n < want {
				return fmt.Errorf("%s consumed %d of %d", name, n, want)
			}
			return nil
		})
		time.Sleep(time.Second)
		m.stop()
		if _, n, _ := m.snapshot(); n != want {
			t.Fatalf("%s consumed %d, want %d", name, n, want)
		}
		return m
	}
	committedAt := func(want int64) {
		t.Helper()
		eventually(t, 15*time.Second, fmt.Sprintf("committed == %d", want), func() error {
			offs, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				return err
			}
			for p := int32(0); p < 2; p++ {
				if o, ok := offs.Lookup(topic, p); !ok || o.Err != nil || o.At != want {
					return fmt.Errorf("p%d %+v", p, o)
				}
			}
			return nil
		})
	}

	produce("a", 20)
	consumeAll("m1", 40)
	committedAt(20)

	b.Restart()
	committedAt(20)
	produce("b", 10)
	m2 := consumeAll("m2", 20)
	for _, r := range m2.got {
		if r.Value[0] != 'b' {
			t.Fatalf("after restart m2 re-read %q", r.Value)
		}
	}
	committedAt(30)

	b.Kill()
	b.Start()
	committedAt(30)
	produce("c", 5)
	m3 := consumeAll("m3", 10)
	for _, r := range m3.got {
		if r.Value[0] != 'c' {
			t.Fatalf("after SIGKILL m3 re-read %q", r.Value)
		}
	}
}

func TestFranzMisc(t *testing.T) {
	b := StartBroker(t)
	adm, cl := newKadm(t, b)
	ctx := testCtx(t, 90*time.Second)

	t.Run("auto create on produce", func(t *testing.T) {
		topic := uniqueName("franz-auto")
		p := newKgo(t, b, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic(topic))
		if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); err != nil {
			t.Fatalf("produce to new topic: %v", err)
		}
		td, err := adm.ListTopics(ctx, topic)
		if err != nil || len(td[topic].Partitions) != 1 {
			t.Fatalf("auto-created topic %+v %v", td[topic], err)
		}
		got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}, 1, 20*time.Second)
		if string(got[0].Value) != "hello" {
			t.Fatalf("got %q", got[0].Value)
		}
	})

	t.Run("regex consume", func(t *testing.T) {
		prefix := uniqueName("franz-rx")
		for _, s := range []string{"one", "two"} {
			franzCreateTopic(t, adm, prefix+"-"+s, 1, nil)
		}
		franzCreateTopic(t, adm, "other-"+prefix, 1, nil)
		p := newKgo(t, b)
		for _, s := range []string{"one", "two"} {
			if err := p.ProduceSync(ctx, &kgo.Record{Topic: prefix + "-" + s, Value: []byte(s)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: "other-" + prefix, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		c := newKgo(t, b, kgo.ConsumeTopics("^"+prefix+"-.*"), kgo.ConsumeRegex(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(300*time.Millisecond))
		got := map[string]string{}
		eventually(t, 20*time.Second, "regex consumer reads both topics", func() error {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			c.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got[r.Topic] = string(r.Value) })
			if len(got) < 2 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
		if len(got) != 2 || got[prefix+"-one"] != "one" || got[prefix+"-two"] != "two" {
			t.Fatalf("regex consumed %v", got)
		}
	})

	t.Run("fetch max bytes smaller than a batch", func(t *testing.T) {
		topic := uniqueName("franz-big")
		franzCreateTopic(t, adm, topic, 1, nil)
		p := newKgo(t, b, kgo.ProducerBatchMaxBytes(4<<20))
		big := make([]byte, 300_000)
		for i := range big {
			big[i] = byte('a' + i%26)
		}
		for i := 0; i < 3; i++ {
			if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: big}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		// KIP-74: the first batch is returned even when larger than the limits.
		got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}, 3, 30*time.Second,
			kgo.FetchMaxBytes(50_000), kgo.FetchMaxPartitionBytes(50_000))
		for i, r := range got {
			if r.Offset != int64(i) || len(r.Value) != len(big) || string(r.Value[:26]) != "abcdefghijklmnopqrstuvwxyz" {
				t.Fatalf("record %d: offset %d len %d", i, r.Offset, len(r.Value))
			}
		}
	})

	t.Run("offset for leader epoch and delete offsets", func(t *testing.T) {
		topic := uniqueName("franz-ofle")
		franzCreateTopic(t, adm, topic, 1, nil)
		p := newKgo(t, b)
		var recs []*kgo.Record
		for i := 0; i < 7; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))})
		}
		if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		epoch := md.Topics[topic].Partitions[0].LeaderEpoch
		if epoch < 0 {
			t.Fatalf("metadata leader epoch %d", epoch)
		}
		// Consumed batches carry the same partition leader epoch.
		if got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}, 7, 20*time.Second); got[0].LeaderEpoch != epoch {
			t.Fatalf("record leader epoch %d, metadata %d", got[0].LeaderEpoch, epoch)
		}
		var req kadm.OffsetForLeaderEpochRequest
		req.Add(topic, 0, epoch)
		resp, err := adm.OffsetForLeaderEpoch(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		o := resp[topic][0]
		if o.Err != nil || o.LeaderEpoch != epoch || o.EndOffset != 7 {
			t.Fatalf("OffsetForLeaderEpoch(epoch %d) = %+v", epoch, o)
		}

		group := uniqueName("franz-deloff-g")
		os := kadm.Offsets{}
		os.AddOffset(topic, 0, 5, -1)
		if err := adm.CommitAllOffsets(ctx, group, os); err != nil {
			t.Fatal(err)
		}
		set := kadm.TopicsSet{}
		set.Add(topic, 0)
		dr, err := adm.DeleteOffsets(ctx, group, set)
		if err != nil || dr.Error() != nil {
			t.Fatalf("DeleteOffsets %v %v", err, dr.Error())
		}
		fo, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := fo.Lookup(topic, 0); ok && o.At >= 0 {
			t.Fatalf("offset still committed after DeleteOffsets: %+v", o)
		}
	})

	t.Run("api versions", func(t *testing.T) {
		vs, err := adm.ApiVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Err != nil {
				t.Fatalf("ApiVersions %v", v.Err)
			}
			lo, hi, ok := v.KeyVersions(0) // Produce
			if !ok || lo != 3 || hi < 9 {
				t.Fatalf("produce versions %d..%d %v", lo, hi, ok)
			}
		}
		_ = cl
	})
}

func TestFranzAdminEdgeCases(t *testing.T) {
	b := StartBroker(t)
	adm, cl := newKadm(t, b)
	ctx := testCtx(t, 60*time.Second)

	t.Run("create with default partitions and replication", func(t *testing.T) {
		topic := uniqueName("franz-defaults")
		r, err := adm.CreateTopic(ctx, -1, -1, nil, topic)
		if err != nil || r.Err != nil {
			t.Fatalf("CreateTopic(-1,-1): %v %v", err, r.Err)
		}
		if r.NumPartitions != 1 || r.ReplicationFactor != 1 {
			t.Fatalf("defaults: partitions %d rf %d", r.NumPartitions, r.ReplicationFactor)
		}
	})

	t.Run("invalid topic names", func(t *testing.T) {
		long := make([]byte, 250)
		for i := range long {
			long[i] = 'x'
		}
		for _, name := range []string{"bad/name", "bad name", ".", "..", string(long)} {
			r, err := adm.CreateTopic(ctx, 1, 1, nil, name)
			if !errors.Is(err, kerr.InvalidTopicException) && !errors.Is(r.Err, kerr.InvalidTopicException) {
				t.Errorf("CreateTopic(%q): %v / %v, want INVALID_TOPIC_EXCEPTION", name, err, r.Err)
			}
		}
	})

	t.Run("invalid configs", func(t *testing.T) {
		r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"no.such.config": kadm.StringPtr("1")}, uniqueName("franz-badcfg"))
		if !errors.Is(err, kerr.InvalidConfig) && !errors.Is(r.Err, kerr.InvalidConfig) {
			t.Errorf("unknown config: %v / %v, want INVALID_CONFIG", err, r.Err)
		}
		r, err = adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("shred")}, uniqueName("franz-badcfg"))
		if !errors.Is(err, kerr.InvalidConfig) && !errors.Is(r.Err, kerr.InvalidConfig) {
			t.Errorf("bad cleanup.policy: %v / %v, want INVALID_CONFIG", err, r.Err)
		}
		// Replication factor above the broker count.
		r, err = adm.CreateTopic(ctx, 1, 3, nil, uniqueName("franz-rf3"))
		if !errors.Is(err, kerr.InvalidReplicationFactor) && !errors.Is(r.Err, kerr.InvalidReplicationFactor) {
			t.Errorf("rf 3 on one broker: %v / %v, want INVALID_REPLICATION_FACTOR", err, r.Err)
		}
	})

	t.Run("internal topic is flagged", func(t *testing.T) {
		td, err := adm.ListTopicsWithInternal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		co, ok := td["__consumer_offsets"]
		if !ok || !co.IsInternal || len(co.Partitions) == 0 {
			t.Fatalf("__consumer_offsets: ok=%v internal=%v partitions=%d", ok, co.IsInternal, len(co.Partitions))
		}
		td, err = adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if td.Has("__consumer_offsets") {
			t.Fatalf("ListTopics (non-internal) lists __consumer_offsets")
		}
	})

	topic := uniqueName("franz-edge")
	franzCreateTopic(t, adm, topic, 1, nil)
	p := newKgo(t, b)
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i)), Timestamp: time.Now().Add(-time.Hour)})
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	t.Run("list offsets by timestamp past the newest record (raw)", func(t *testing.T) {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = 0
		rp.Timestamp = time.Now().UnixMilli()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		pr := resp.Topics[0].Partitions[0]
		// Kafka: no record with timestamp >= target -> offset -1, timestamp -1.
		if pr.ErrorCode != 0 || pr.Offset != -1 || pr.Timestamp != -1 {
			t.Fatalf("ListOffsets v%d future timestamp: err %d offset %d ts %d, want 0/-1/-1", resp.Version, pr.ErrorCode, pr.Offset, pr.Timestamp)
		}
	})

	t.Run("delete records to the high watermark with offset -1", func(t *testing.T) {
		os := kadm.Offsets{}
		os.AddOffset(topic, 0, -1, -1)
		dr, err := adm.DeleteRecords(ctx, os)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := dr.Lookup(topic, 0); r.Err != nil || r.LowWatermark != 10 {
			t.Fatalf("DeleteRecords(-1) %+v, want low watermark 10", r)
		}
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := starts.Lookup(topic, 0); s.Offset != 10 {
			t.Fatalf("start %+v", s)
		}
		// Fetching below the log start offset is OFFSET_OUT_OF_RANGE; with a
		// reset to the start the consumer continues at 10.
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("after")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(3)}}, 1, 20*time.Second,
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if got[0].Offset != 10 || string(got[0].Value) != "after" {
			t.Fatalf("after reset: %d %q", got[0].Offset, got[0].Value)
		}
	})

	t.Run("unknown topic produce without auto create", func(t *testing.T) {
		pr := newKgo(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(3*time.Second))
		topic := uniqueName("franz-missing")
		err := pr.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("x")}).FirstErr()
		if err == nil {
			t.Fatalf("produce to a missing topic without AllowAutoTopicCreation succeeded")
		}
		td, lerr := adm.ListTopics(ctx)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if td.Has(topic) {
			t.Fatalf("topic was auto-created though the client did not allow it (err %v)", err)
		}
	})
}

func TestFranzAcksZeroAndOne(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	for _, c := range []struct {
		name string
		acks kgo.Acks
	}{{"acks0", kgo.NoAck()}, {"acks1", kgo.LeaderAck()}} {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueName("franz-" + c.name)
			franzCreateTopic(t, adm, topic, 1, nil)
			p := newKgo(t, b, kgo.RequiredAcks(c.acks), kgo.DisableIdempotentWrite())
			ctx := testCtx(t, 30*time.Second)
			var recs []*kgo.Record
			for i := 0; i < 100; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))})
			}
			if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			// The connection stays usable after acks=0 requests (no response
			// may be sent for them).
			if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("last")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			got := franzConsume(t, b, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}, 101, 20*time.Second)
			for i, r := range got[:100] {
				if string(r.Value) != fmt.Sprint(i) {
					t.Fatalf("@%d %q", r.Offset, r.Value)
				}
			}
		})
	}
}

// A member that disappears without leaving is expired after its session
// timeout and its partitions move to the survivor.
func TestFranzSessionExpiry(t *testing.T) {
	b := StartBroker(t)
	adm, _ := newKadm(t, b)
	topic := uniqueName("franz-expiry")
	group := uniqueName("franz-expiry-g")
	franzCreateTopic(t, adm, topic, 2, nil)
	ctx := testCtx(t, 90*time.Second)

	survivor := startFranzMember(t, b, "survivor", group, topic)
	defer survivor.stop()
	eventually(t, 30*time.Second, "survivor assigned", func() error {
		if a, _, _ := survivor.snapshot(); len(a) != 2 {
			return fmt.Errorf("%v", a)
		}
		return nil
	})
	// The vanishing member is static so that Close sends no LeaveGroup.
	gone := newKgo(t, b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.InstanceID("vanishing"),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
	go func() {
		for {
			if fs := gone.PollFetches(ctx); fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
		}
	}()
	eventually(t, 45*time.Second, "two members", func() error {
		a, _, _ := survivor.snapshot()
		if len(a) != 1 {
			return fmt.Errorf("survivor %v", a)
		}
		return nil
	})
	gone.Close()
	closed := time.Now()
	eventually(t, 30*time.Second, "survivor takes over after the session timeout", func() error {
		if a, _, _ := survivor.snapshot(); len(a) != 2 {
			return fmt.Errorf("survivor %v", a)
		}
		return nil
	})
	took := time.Since(closed)
	t.Logf("expired and rebalanced %v after the member vanished", took)
	if took < 4*time.Second {
		t.Fatalf("partitions moved after %v, before the 6s session timeout", took)
	}
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	g := dg[group]
	if len(g.Members) != 1 {
		t.Fatalf("members after expiry: %d", len(g.Members))
	}
	m := g.Members[0]
	if m.ClientID != "go-e2e-franz" || m.ClientHost == "" {
		t.Fatalf("member client id %q host %q", m.ClientID, m.ClientHost)
	}
}
