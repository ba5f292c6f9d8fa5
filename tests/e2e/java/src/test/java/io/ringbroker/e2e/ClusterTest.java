package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.get;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Future;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Three ringbroker processes in one cluster (one metadata quorum), driven by the unmodified Java
 * client: the admin client finds the active controller and every broker, replicas are placed on
 * distinct brokers, an idempotent producer bootstrapped from one broker and a consumer group
 * bootstrapped from another reach every partition's leader and the group's coordinator; after a
 * kill -9 of the active controller the admin client creates topics through the survivors within
 * 10 s.
 */
class ClusterTest {
    private List<Broker> nodes = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        nodes = Broker.startCluster(3);
    }

    /** Closes every broker even when one of them reports a crash, then reports it. */
    @AfterEach
    void stop() {
        RuntimeException first = null;
        for (Broker b : nodes) {
            try {
                b.close();
            } catch (RuntimeException e) {
                first = first == null ? e : first;
            }
        }
        if (first != null) {
            throw first;
        }
    }

    private static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    @Test
    void clientsWorkAcrossTheCluster() throws Exception {
        String topic = unique("jcluster");
        try (Admin admin = ClientSupport.admin(nodes.get(0))) {
            DescribeClusterResult dc = admin.describeCluster();
            Set<Integer> ids = get(dc.nodes()).stream().map(Node::id).collect(Collectors.toSet());
            assertEquals(Set.of(0, 1, 2), ids);
            Node controller = get(dc.controller());
            assertNotNull(controller);
            assertTrue(ids.contains(controller.id()), "controller " + controller);

            get(admin.createTopics(List.of(new NewTopic(topic, 6, (short) 3))).all());
            ClientSupport.waitUntil(() -> {
                try {
                    return get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic)
                            .partitions().stream().allMatch(p -> p.leader() != null);
                } catch (RuntimeException e) {
                    return false;
                }
            }, Duration.ofSeconds(20), () -> "leaders of " + topic);
            TopicDescription td = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
            Set<Integer> leaders = new HashSet<>();
            for (TopicPartitionInfo p : td.partitions()) {
                leaders.add(p.leader().id());
                assertEquals(Set.of(0, 1, 2), p.replicas().stream().map(Node::id).collect(Collectors.toSet()),
                        "replicas of partition " + p.partition());
            }
            assertEquals(Set.of(0, 1, 2), leaders, "leaders spread over the brokers");
        }

        // An idempotent producer (the Java client's default) bootstrapped from node 1.
        Properties pp = ClientSupport.producerProps(nodes.get(1));
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        Map<TopicPartition, Long> ends = new HashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < 600; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) {
                RecordMetadata md = f.get();
                ends.merge(new TopicPartition(topic, md.partition()), md.offset() + 1, Math::max);
            }
        }
        assertEquals(600L, ends.values().stream().mapToLong(Long::longValue).sum());

        // A consumer group bootstrapped from node 2: every record once, offsets committed.
        String group = unique("jgroup");
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = ClientSupport.consumer(nodes.get(2), group)) {
            consumer.subscribe(List.of(topic));
            for (ConsumerRecord<String, String> r : ClientSupport.pollN(consumer, 600, Duration.ofSeconds(60))) {
                seen.add(r.value());
            }
            consumer.commitSync();
        }
        assertEquals(600, seen.size(), "every record once");
        try (Admin admin = ClientSupport.admin(nodes.get(0))) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            Map<TopicPartition, Long> offsets = new HashMap<>();
            committed.forEach((tp, om) -> offsets.put(tp, om.offset()));
            assertEquals(ends, offsets, "committed offsets are the log ends");
        }
    }

    @Test
    void killingTheControllerLeavesTheSurvivorsInCharge() throws Exception {
        int controllerId;
        try (Admin admin = ClientSupport.admin(nodes.get(0))) {
            controllerId = get(admin.describeCluster().controller()).id();
        }
        Broker controller = nodes.stream().filter(b -> b.nodeId() == controllerId).findFirst().orElseThrow();
        controller.kill();
        Broker survivor = nodes.stream().filter(b -> b != controller).findFirst().orElseThrow();

        String topic = unique("after-kill");
        long t0 = System.nanoTime();
        Exception last = null;
        boolean created = false;
        try (Admin admin = ClientSupport.admin(survivor)) {
            while (!created && System.nanoTime() - t0 < Duration.ofSeconds(10).toNanos()) {
                try {
                    admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all()
                            .get(5, java.util.concurrent.TimeUnit.SECONDS);
                    created = true;
                } catch (java.util.concurrent.ExecutionException e) {
                    last = e;
                    created = e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException;
                } catch (java.util.concurrent.TimeoutException e) {
                    last = e;
                }
            }
            assertTrue(created, "CreateTopics through a survivor for 10 s: " + last);
            int newController = get(admin.describeCluster().controller()).id();
            assertNotEquals(controllerId, newController);
            assertTrue(get(admin.listTopics().names()).contains(topic));
        }
    }
}
