package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.consumerProps;
import static io.ringbroker.e2e.ClientSupport.createTopic;
import static io.ringbroker.e2e.ClientSupport.get;
import static io.ringbroker.e2e.ClientSupport.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Static membership (KIP-345, group.instance.id) on the classic protocol: a
 * static member that restarts within its session timeout gets its partitions
 * back without a rebalance (the other member sees no callback, the generation
 * does not move); one that stays away is expired after session.timeout.ms; a
 * second consumer with the same instance id fences the first; and the admin
 * removeMembersFromConsumerGroup (LeaveGroup v3+ by instance id) removes a
 * departed static member at once.
 */
class StaticMembershipTest extends SharedBrokerTest {
    private static final int PARTITIONS = 4;

    @RegisterExtension
    final GroupMembers startedMembers = GroupMembers.reportingCloseTimeout();

    @BeforeAll
    static void beforeAll() throws Exception {
        startBroker(SHORT_REBALANCE_DELAY);
    }

    private GroupMember member(String name, String group, String instance, int sessionTimeoutMs, String topic) {
        Properties p = consumerProps(broker, group);
        p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(sessionTimeoutMs));
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        return startedMembers.start(name, p, List.of(topic));
    }

    private static Set<TopicPartition> all(String topic) {
        Set<TopicPartition> s = new HashSet<>();
        for (int p = 0; p < PARTITIONS; p++) {
            s.add(new TopicPartition(topic, p));
        }
        return s;
    }

    private static void awaitOwned(Map<GroupMember, Integer> sizes, Set<TopicPartition> all, Duration timeout) {
        waitUntil(() -> {
            for (GroupMember m : sizes.keySet()) {
                if (!m.errors.isEmpty()) {
                    fail(m.name + " failed: " + m.errors);
                }
            }
            List<Set<TopicPartition>> sets = new ArrayList<>();
            for (Map.Entry<GroupMember, Integer> e : sizes.entrySet()) {
                Set<TopicPartition> o = e.getKey().owned();
                if (o.size() != e.getValue()) {
                    return false;
                }
                sets.add(o);
            }
            return ClientSupport.union(sets).equals(all);
        }, timeout, () -> "assignment sizes " + sizes.values() + ", owned "
                + sizes.keySet().stream().map(m -> m.name + "=" + m.owned()).toList());
    }

    private static void produce(String topic, int perPartition, String tag) throws Exception {
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            for (int i = 0; i < perPartition; i++) {
                for (int part = 0; part < PARTITIONS; part++) {
                    p.send(new ProducerRecord<>(topic, part, null, tag + "-" + part + "-" + i));
                }
            }
            p.flush();
        }
    }

    private static ConsumerGroupDescription describeStable(String group, int members) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            if (d.groupState() == GroupState.STABLE && d.members().size() == members) {
                return d;
            }
            if (System.nanoTime() > deadline) {
                fail("group " + group + " not Stable with " + members + " members: " + d);
            }
            Broker.sleep(200);
        }
    }

    @Test
    void restartWithinSessionTimeoutDoesNotRebalance() throws Exception {
        String topic = "sm-restart";
        String group = "sm-restart-g";
        createTopic(admin, topic, PARTITIONS);
        produce(topic, 25, "before");
        GroupMember s1 = member("s1", group, "instance-1", 30_000, topic);
        GroupMember s2 = member("s2", group, "instance-2", 30_000, topic);
        awaitOwned(Map.of(s1, 2, s2, 2), all(topic), Duration.ofSeconds(60));
        waitUntil(() -> s1.consumed.size() + s2.consumed.size() >= 100, Duration.ofSeconds(30),
                () -> "the 100 first records consumed");
        Broker.sleep(1000); // let the last commits land
        ConsumerGroupDescription d1 = describeStable(group, 2);
        Map<String, String> memberIdByInstance = new HashMap<>();
        for (MemberDescription m : d1.members()) {
            assertTrue(m.groupInstanceId().isPresent(), "static member described with its instance id: " + m);
            memberIdByInstance.put(m.groupInstanceId().get(), m.consumerId());
        }
        assertEquals(Set.of("instance-1", "instance-2"), memberIdByInstance.keySet());
        Set<TopicPartition> s1Had = s1.owned();
        int generation = s2.generation;
        int s2Events = s2.events.size();

        // s1 goes away (a static member does not send LeaveGroup on close) and comes back.
        s1.close();
        assertTrue(s1.errors.isEmpty(), "s1 closed cleanly: " + s1.errors);
        produce(topic, 25, "during");
        GroupMember s1b = member("s1b", group, "instance-1", 30_000, topic);
        waitUntil(() -> s1b.owned().equals(s1Had) && s1b.generation >= 0, Duration.ofSeconds(30),
                () -> "restarted s1 gets its partitions " + s1Had + " back, has " + s1b.owned());
        assertEquals(generation, s1b.generation, "no new generation: the static member took its old place");
        Broker.sleep(3000); // several heartbeats: a rebalance would show up now
        assertEquals(s2Events, s2.events.size(), "s2 saw no rebalance: " + s2.events);
        assertEquals(generation, s2.generation, "s2's generation unchanged");
        ConsumerGroupDescription d2 = describeStable(group, 2);
        for (MemberDescription m : d2.members()) {
            if (m.groupInstanceId().equals(Optional.of("instance-1"))) {
                assertNotEquals(memberIdByInstance.get("instance-1"), m.consumerId(),
                        "the rejoined static member has a new member id");
                assertEquals(s1Had, m.assignment().topicPartitions());
            } else {
                assertEquals(memberIdByInstance.get("instance-2"), m.consumerId());
            }
        }
        // No loss across the restart: every record of s1's partitions read by s1 or s1b.
        waitUntil(() -> s1.consumed.size() + s1b.consumed.size() + s2.consumed.size() >= 200,
                Duration.ofSeconds(30), () -> "all 200 records consumed");
        Set<String> values = new HashSet<>();
        for (GroupMember m : List.of(s1, s1b, s2)) {
            for (ConsumerRecord<String, String> r : m.consumed) {
                values.add(r.value());
            }
        }
        for (String tag : List.of("before", "during")) {
            for (int part = 0; part < PARTITIONS; part++) {
                for (int i = 0; i < 25; i++) {
                    assertTrue(values.contains(tag + "-" + part + "-" + i), "record " + tag + "-" + part + "-" + i);
                }
            }
        }
        for (ConsumerRecord<String, String> r : s1b.consumed) {
            assertTrue(r.value().startsWith("during"), "s1b resumed from s1's committed offsets, got " + r.value());
        }
    }

    @Test
    void absentStaticMemberExpiresAfterSessionTimeout() throws Exception {
        String topic = "sm-expire";
        String group = "sm-expire-g";
        createTopic(admin, topic, PARTITIONS);
        GroupMember s1 = member("s1", group, "expire-1", 6_000, topic);
        GroupMember s2 = member("s2", group, "expire-2", 6_000, topic);
        awaitOwned(Map.of(s1, 2, s2, 2), all(topic), Duration.ofSeconds(60));
        long closedAt = System.nanoTime();
        s1.close();
        Broker.sleep(2500);
        assertEquals(2, s2.owned().size(), "no rebalance before the session timeout (static member, no LeaveGroup)");
        awaitOwned(Map.of(s2, 4), all(topic), Duration.ofSeconds(40));
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - closedAt);
        assertTrue(ms >= 5000, "taken over only after session.timeout.ms (6 s), took " + ms + " ms");
        describeStable(group, 1);
    }

    @Test
    void sameInstanceIdFencesTheOldMember() throws Exception {
        String topic = "sm-fence";
        String group = "sm-fence-g";
        createTopic(admin, topic, PARTITIONS);
        GroupMember old = member("old", group, "fence-1", 30_000, topic);
        awaitOwned(Map.of(old, 4), all(topic), Duration.ofSeconds(60));
        GroupMember newer = member("new", group, "fence-1", 30_000, topic);
        waitUntil(() -> newer.owned().equals(all(topic)), Duration.ofSeconds(30),
                () -> "the new instance takes the old one's place, owns " + newer.owned());
        waitUntil(() -> old.errors.stream().anyMatch(e -> e instanceof FencedInstanceIdException),
                Duration.ofSeconds(30), () -> "the old instance fenced (FENCED_INSTANCE_ID), errors " + old.errors);
        assertTrue(newer.errors.isEmpty(), "new: " + newer.errors);
        ConsumerGroupDescription d = describeStable(group, 1);
        assertEquals(Optional.of("fence-1"), d.members().iterator().next().groupInstanceId());
        assertEquals(newer.memberId, d.members().iterator().next().consumerId());
    }

    @Test
    void adminRemovesDepartedStaticMember() throws Exception {
        String topic = "sm-remove";
        String group = "sm-remove-g";
        createTopic(admin, topic, PARTITIONS);
        GroupMember s1 = member("s1", group, "remove-1", 60_000, topic);
        GroupMember s2 = member("s2", group, "remove-2", 60_000, topic);
        awaitOwned(Map.of(s1, 2, s2, 2), all(topic), Duration.ofSeconds(60));
        s2.close(); // stays in the group for up to 60 s
        Broker.sleep(1500);
        assertEquals(2, s1.owned().size());
        long t = System.nanoTime();
        get(admin.removeMembersFromConsumerGroup(group,
                new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("remove-2")))).all());
        awaitOwned(Map.of(s1, 4), all(topic), Duration.ofSeconds(30));
        assertTrue(TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t) < 30, "removed well before the session timeout");
        ConsumerGroupDescription d = describeStable(group, 1);
        assertEquals(Optional.of("remove-1"), d.members().iterator().next().groupInstanceId());
        // Removing an unknown instance is refused per member (UNKNOWN_MEMBER_ID), not a hang.
        Throwable err = ClientSupport.failure(admin.removeMembersFromConsumerGroup(group,
                new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("nobody")))).all());
        assertTrue(err instanceof org.apache.kafka.common.errors.UnknownMemberIdException
                || err.getCause() instanceof org.apache.kafka.common.errors.UnknownMemberIdException
                || String.valueOf(err.getMessage()).contains("UNKNOWN_MEMBER_ID")
                || String.valueOf(err.getMessage()).toLowerCase().contains("unknown member"),
                "unknown instance: UNKNOWN_MEMBER_ID, got " + err);
    }
}
