package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.consumerProps;
import static io.ringbroker.e2e.ClientSupport.createTopic;
import static io.ringbroker.e2e.ClientSupport.get;
import static io.ringbroker.e2e.ClientSupport.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InconsistentGroupProtocolException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Consumer groups on the classic protocol (group.protocol=classic) with each
 * assignor the Java client ships: Range, RoundRobin, Sticky and
 * CooperativeSticky. Members join and leave while a producer writes; after
 * every rebalance each partition is owned by exactly one member, the shape of
 * the assignment is the assignor's, the eager assignors revoke everything
 * while CooperativeSticky revokes only the partitions that move, and with
 * commits on revocation no record is lost. Also: protocol selection among
 * members with different assignor lists, and INCONSISTENT_GROUP_PROTOCOL.
 */
class GroupAssignorTest extends SharedBrokerTest {
    private static final int PARTITIONS = 6;
    private static final Duration STABLE_TIMEOUT = Duration.ofSeconds(60);

    @RegisterExtension
    final GroupMembers startedMembers = GroupMembers.reportingCloseTimeout();

    @BeforeAll
    static void beforeAll() throws Exception {
        startBroker(SHORT_REBALANCE_DELAY);
    }

    private static Class<? extends ConsumerPartitionAssignor> assignorClass(String name) {
        return switch (name) {
            case "range" -> RangeAssignor.class;
            case "roundrobin" -> RoundRobinAssignor.class;
            case "sticky" -> StickyAssignor.class;
            case "cooperative-sticky" -> CooperativeStickyAssignor.class;
            default -> throw new IllegalArgumentException(name);
        };
    }

    private static Properties memberProps(String group, String... assignors) {
        Properties p = consumerProps(broker, group);
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                java.util.Arrays.stream(assignors).map(a -> assignorClass(a).getName())
                        .collect(Collectors.joining(",")));
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "30000");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
        return p;
    }

    private static Set<TopicPartition> partitions(String topic, int n) {
        Set<TopicPartition> s = new HashSet<>();
        for (int p = 0; p < n; p++) {
            s.add(new TopicPartition(topic, p));
        }
        return s;
    }

    /**
     * Waits until the live members own disjoint sets covering {@code all}, each of the expected
     * size, unchanged for 2 s (so a cooperative follow-up rebalance has happened).
     */
    private static void awaitStable(List<GroupMember> members, Set<TopicPartition> all, List<Integer> sizes) {
        long deadline = System.nanoTime() + STABLE_TIMEOUT.toNanos();
        Map<String, Set<TopicPartition>> last = null;
        long since = 0;
        while (true) {
            for (GroupMember m : members) {
                if (!m.errors.isEmpty()) {
                    fail("member " + m.name + " failed: " + m.errors);
                }
            }
            Map<String, Set<TopicPartition>> now = new HashMap<>();
            for (GroupMember m : members) {
                now.put(m.name, m.owned());
            }
            boolean ok = ClientSupport.union(now.values()).equals(all)
                    && now.values().stream().mapToInt(Set::size).sum() == all.size()
                    && now.values().stream().map(Set::size).sorted().toList()
                            .equals(sizes.stream().sorted().toList());
            if (ok && now.equals(last)) {
                if (System.nanoTime() - since > TimeUnit.SECONDS.toNanos(2)) {
                    return;
                }
            } else {
                last = ok ? now : null;
                since = System.nanoTime();
            }
            if (System.nanoTime() > deadline) {
                fail("group did not settle within " + STABLE_TIMEOUT + " on sizes " + sizes + "; owned now: " + now
                        + "\nevents: " + members.stream().map(m -> m.name + "=" + m.events).toList());
            }
            Broker.sleep(100);
        }
    }

    private static Set<Integer> ids(Set<TopicPartition> tps) {
        return tps.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
    }

    /** The assignor's own shape for one topic of 6 partitions over 2 members. */
    private static void assertShape(String assignor, Set<TopicPartition> a, Set<TopicPartition> b) {
        Set<Integer> ia = ids(a);
        Set<Integer> ib = ids(b);
        switch (assignor) {
            case "range" -> {
                assertTrue(Set.of(Set.of(0, 1, 2), Set.of(3, 4, 5)).equals(Set.of(ia, ib)),
                        "range: contiguous halves, got " + ia + " / " + ib);
            }
            case "roundrobin" -> {
                assertTrue(Set.of(Set.of(0, 2, 4), Set.of(1, 3, 5)).equals(Set.of(ia, ib)),
                        "roundrobin: alternating partitions, got " + ia + " / " + ib);
            }
            default -> {
                assertEquals(3, ia.size(), "sticky assignors balance: " + ia + " / " + ib);
                assertEquals(3, ib.size());
            }
        }
    }

    /** Writes records round-robin over the partitions until stopped; remembers (partition, offset) of each. */
    private static final class Writer implements AutoCloseable {
        final Set<String> written = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        final List<Throwable> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        private final Thread thread;

        Writer(String topic) {
            thread = new Thread(() -> {
                try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
                    int i = 0;
                    while (!stop.get()) {
                        int part = i % PARTITIONS;
                        String v = "r" + i;
                        p.send(new ProducerRecord<>(topic, part, null, v), (md, e) -> {
                            if (e != null) {
                                errors.add(e);
                            } else {
                                written.add(md.partition() + ":" + md.offset() + ":" + v);
                            }
                        });
                        i++;
                        if (i % 20 == 0) {
                            Broker.sleep(20);
                        }
                    }
                    p.flush();
                }
            }, "writer-" + topic);
            thread.start();
        }

        @Override
        public void close() throws InterruptedException {
            stop.set(true);
            thread.join(60_000);
            assertFalse(thread.isAlive(), "writer stopped");
            assertTrue(errors.isEmpty(), "produce errors: " + errors);
        }
    }

    private static Set<String> consumedKeys(List<GroupMember> members) {
        Set<String> s = new HashSet<>();
        for (GroupMember m : members) {
            for (ConsumerRecord<String, String> r : m.consumed) {
                s.add(r.partition() + ":" + r.offset() + ":" + r.value());
            }
        }
        return s;
    }

    private static int consumedCount(List<GroupMember> members) {
        return members.stream().mapToInt(m -> m.consumed.size()).sum();
    }

    private static void assertDescribed(String group, String assignor, List<GroupMember> live) {
        // The classic group settles (all members past SyncGroup) shortly after the clients see
        // their assignment; describe until Stable.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        ConsumerGroupDescription d;
        while (true) {
            d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            if (d.groupState() == GroupState.STABLE && d.members().size() == live.size()) {
                break;
            }
            if (System.nanoTime() > deadline) {
                fail("group not Stable with " + live.size() + " members: " + d);
            }
            Broker.sleep(200);
        }
        assertEquals(assignor, d.partitionAssignor());
        assertFalse(d.isSimpleConsumerGroup());
        Map<String, Set<TopicPartition>> byId = new HashMap<>();
        for (MemberDescription md : d.members()) {
            byId.put(md.consumerId(), md.assignment().topicPartitions());
        }
        for (GroupMember m : live) {
            assertEquals(m.owned(), byId.get(m.memberId), "DescribeGroups shows member " + m.name
                    + "'s assignment (" + m.memberId + "), described: " + byId);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"range", "roundrobin", "sticky", "cooperative-sticky"})
    void membersJoinAndLeaveUnderLoad(String assignor) throws Exception {
        String topic = "ga-" + assignor;
        String group = "gg-" + assignor;
        createTopic(admin, topic, PARTITIONS);
        Set<TopicPartition> all = partitions(topic, PARTITIONS);
        boolean cooperative = assignor.equals("cooperative-sticky");
        boolean sticky = assignor.contains("sticky");
        List<GroupMember> everyone = new ArrayList<>();
        Writer writer = new Writer(topic);
        try {
            GroupMember a = startedMembers.start("A", memberProps(group, assignor), List.of(topic));
            everyone.add(a);
            awaitStable(List.of(a), all, List.of(6));
            assertDescribed(group, assignor, List.of(a));
            int aEventsBeforeB = a.events.size();

            // B joins: each gets 3.
            GroupMember b = startedMembers.start("B", memberProps(group, assignor), List.of(topic));
            everyone.add(b);
            awaitStable(List.of(a, b), all, List.of(3, 3));
            assertShape(assignor, a.owned(), b.owned());
            List<GroupMember.Event> aAfterB = a.events.subList(aEventsBeforeB, a.events.size());
            Set<TopicPartition> aRevoked = new HashSet<>();
            aAfterB.stream().filter(e -> e.kind() == GroupMember.Kind.REVOKED)
                    .forEach(e -> aRevoked.addAll(e.partitions()));
            assertTrue(aAfterB.stream().noneMatch(e -> e.kind() == GroupMember.Kind.LOST),
                    "a clean join loses nothing: " + aAfterB);
            if (cooperative) {
                assertEquals(b.owned(), aRevoked,
                        "cooperative: A revokes exactly the partitions that moved to B, events " + aAfterB);
                Set<TopicPartition> aAssigned = new HashSet<>();
                aAfterB.stream().filter(e -> e.kind() == GroupMember.Kind.ASSIGNED)
                        .forEach(e -> aAssigned.addAll(e.partitions()));
                assertTrue(aAssigned.isEmpty(), "cooperative: A is assigned nothing new, got " + aAssigned);
            } else {
                assertEquals(all, aRevoked, "eager: A revokes everything before the rebalance, events " + aAfterB);
            }
            assertDescribed(group, assignor, List.of(a, b));

            // C joins: 2 each.
            Map<String, Set<TopicPartition>> before = Map.of("A", a.owned(), "B", b.owned());
            GroupMember c = startedMembers.start("C", memberProps(group, assignor), List.of(topic));
            everyone.add(c);
            awaitStable(List.of(a, b, c), all, List.of(2, 2, 2));
            if (sticky) {
                assertTrue(before.get("A").containsAll(a.owned()), "sticky: A keeps a subset of what it had");
                assertTrue(before.get("B").containsAll(b.owned()), "sticky: B keeps a subset of what it had");
            }
            assertDescribed(group, assignor, List.of(a, b, c));

            // C leaves (LeaveGroup): its partitions go to A and B.
            Map<String, Set<TopicPartition>> withC = Map.of("A", a.owned(), "B", b.owned());
            int aEvents = a.events.size();
            c.close();
            assertTrue(c.errors.isEmpty(), "C closed cleanly: " + c.errors);
            awaitStable(List.of(a, b), all, List.of(3, 3));
            if (sticky) {
                assertTrue(a.owned().containsAll(withC.get("A")), "sticky: A keeps what it had when C leaves");
                assertTrue(b.owned().containsAll(withC.get("B")), "sticky: B keeps what it had when C leaves");
            }
            if (cooperative) {
                List<GroupMember.Event> aLeave = a.events.subList(aEvents, a.events.size());
                assertTrue(aLeave.stream().filter(e -> e.kind() != GroupMember.Kind.ASSIGNED)
                        .allMatch(e -> e.partitions().isEmpty()),
                        "cooperative: nothing is revoked when a member leaves, events " + aLeave);
            }

            // B leaves: A gets everything back.
            b.close();
            assertTrue(b.errors.isEmpty(), "B closed cleanly: " + b.errors);
            awaitStable(List.of(a), all, List.of(6));
            assertDescribed(group, assignor, List.of(a));
        } finally {
            writer.close();
        }
        // Writer stopped: A must end up having consumed everything written, and committed it.
        GroupMember a = everyone.get(0);
        Map<TopicPartition, Long> ends;
        try (KafkaConsumer<String, String> probe = ClientSupport.consumer(broker, null)) {
            ends = probe.endOffsets(all);
        }
        long total = ends.values().stream().mapToLong(Long::longValue).sum();
        assertTrue(total > 100, "the writer wrote during the rebalances: " + total);
        waitUntil(() -> consumedKeys(everyone).size() >= total, Duration.ofSeconds(60),
                () -> "all " + total + " records consumed, have " + consumedKeys(everyone).size());
        Set<String> consumed = consumedKeys(everyone);
        Set<String> offsets = consumed.stream().map(s -> s.substring(0, s.lastIndexOf(':')))
                .collect(Collectors.toSet());
        for (TopicPartition tp : all) {
            for (long o = 0; o < ends.get(tp); o++) {
                assertTrue(offsets.contains(tp.partition() + ":" + o), "record " + tp + "@" + o + " consumed");
            }
        }
        for (String w : writer.written) {
            assertTrue(consumed.contains(w), "acknowledged record " + w + " consumed with its value");
        }
        int dups = consumedCount(everyone) - consumed.size();
        System.out.println(assignor + ": " + total + " records, " + dups + " consumed twice");
        waitUntil(() -> {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            return all.stream().allMatch(tp -> committed.get(tp) != null
                    && committed.get(tp).offset() == ends.get(tp));
        }, Duration.ofSeconds(30), () -> "committed offsets reach the end offsets " + ends);
        a.close();
        assertTrue(a.errors.isEmpty(), "A: " + a.errors);
        for (GroupMember m : everyone) {
            assertTrue(m.errors.isEmpty(), m.name + ": " + m.errors);
        }
    }

    @Test
    void rangeAndRoundRobinOverTwoTopics() throws Exception {
        // Range assigns per topic (3 partitions over 2 members: 2+1 in each topic, the same member
        // first), RoundRobin over all partitions together (3+3).
        for (String assignor : List.of("range", "roundrobin")) {
            String t1 = "ga2-" + assignor + "-x";
            String t2 = "ga2-" + assignor + "-y";
            createTopic(admin, t1, 3);
            createTopic(admin, t2, 3);
            String group = "gg2-" + assignor;
            Set<TopicPartition> all = new HashSet<>(partitions(t1, 3));
            all.addAll(partitions(t2, 3));
            try (GroupMember a = startedMembers.start("A", memberProps(group, assignor), List.of(t1, t2));
                    GroupMember b = startedMembers.start("B", memberProps(group, assignor), List.of(t1, t2))) {
                if (assignor.equals("range")) {
                    awaitStable(List.of(a, b), all, List.of(4, 2));
                    GroupMember big = a.owned().size() == 4 ? a : b;
                    assertEquals(Set.of(new TopicPartition(t1, 0), new TopicPartition(t1, 1),
                            new TopicPartition(t2, 0), new TopicPartition(t2, 1)), big.owned());
                } else {
                    awaitStable(List.of(a, b), all, List.of(3, 3));
                }
                assertDescribed(group, assignor, List.of(a, b));
            }
        }
    }

    @Test
    void protocolChosenByAllMembers() throws Exception {
        // A prefers range but also speaks roundrobin; B speaks only roundrobin: the broker must
        // select roundrobin, the one protocol every member supports.
        String topic = "ga-vote";
        String group = "gg-vote";
        createTopic(admin, topic, PARTITIONS);
        Set<TopicPartition> all = partitions(topic, PARTITIONS);
        try (GroupMember a = startedMembers.start("A", memberProps(group, "range", "roundrobin"), List.of(topic));
                GroupMember b = startedMembers.start("B", memberProps(group, "roundrobin"), List.of(topic))) {
            awaitStable(List.of(a, b), all, List.of(3, 3));
            assertShape("roundrobin", a.owned(), b.owned());
            assertDescribed(group, "roundrobin", List.of(a, b));
        }
    }

    @Test
    void memberWithNoCommonProtocolIsRefused() throws Exception {
        String topic = "ga-inconsistent";
        String group = "gg-inconsistent";
        createTopic(admin, topic, 2);
        try (GroupMember a = startedMembers.start("A", memberProps(group, "roundrobin"), List.of(topic))) {
            awaitStable(List.of(a), partitions(topic, 2), List.of(2));
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(memberProps(group, "range"))) {
                c.subscribe(List.of(topic));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                RuntimeException thrown = null;
                while (thrown == null && System.nanoTime() < deadline) {
                    try {
                        c.poll(Duration.ofMillis(200));
                    } catch (RuntimeException e) {
                        thrown = e;
                    }
                }
                assertInstanceOf(InconsistentGroupProtocolException.class, thrown,
                        "JoinGroup with no protocol in common: INCONSISTENT_GROUP_PROTOCOL");
            }
            // A is undisturbed
            Broker.sleep(1000);
            assertEquals(partitions(topic, 2), a.owned());
            assertTrue(a.errors.isEmpty(), "A: " + a.errors);
        }
    }
}
