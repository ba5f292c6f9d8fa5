package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.consumerProps;
import static io.ringbroker.e2e.ClientSupport.createTopic;
import static io.ringbroker.e2e.ClientSupport.failure;
import static io.ringbroker.e2e.ClientSupport.get;
import static io.ringbroker.e2e.ClientSupport.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigOp.OpType;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreatePartitionsOptions;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ListConsumerGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicaAssignmentException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The Java AdminClient against the real broker, one test per area, for every
 * admin API the broker advertises: topics (create with configs and with an
 * explicit replica assignment, list, describe, delete by name and id,
 * partitions), configs (describe, incremental alter of topic and broker-level
 * settings), consumer groups (list, describe, delete, offsets list/alter/
 * delete, members), DeleteRecords, DescribeCluster, ListOffsets (earliest,
 * latest, max timestamp, for timestamp), and DescribeLogDirs,
 * DescribeProducers, ListPartitionReassignments — which must work when
 * advertised and be refused with UnsupportedVersionException when not. Every
 * call has a deadline: a broker that does not answer fails the test.
 */
class AdminClientTest extends SharedBrokerTest {
    private static final long T0 = 1_700_000_000_000L;
    @RegisterExtension
    final GroupMembers startedMembers = GroupMembers.failingOnCloseTimeout();

    @BeforeAll
    static void beforeAll() throws Exception {
        startBroker(SHORT_REBALANCE_DELAY);
    }

    private static <E extends Throwable> E expect(Class<E> type, KafkaFuture<?> f) {
        Throwable t = failure(f);
        return assertInstanceOf(type, t, "expected " + type.getSimpleName() + ", got " + t);
    }

    /** One change of an incrementalAlterConfigs call. */
    private static AlterConfigOp op(String key, String value, OpType type) {
        return new AlterConfigOp(new ConfigEntry(key, value), type);
    }

    /** Sends incrementalAlterConfigs of {@code ops} on one resource. */
    private static KafkaFuture<Void> incrementalAlter(ConfigResource res, AlterConfigOp... ops) {
        return admin.incrementalAlterConfigs(Map.of(res, List.of(ops))).all();
    }

    /** Applies {@code ops} to one resource with incrementalAlterConfigs and waits for the answer. */
    private static void alter(ConfigResource res, AlterConfigOp... ops) {
        get(incrementalAlter(res, ops));
    }

    /** The configs of one resource (DescribeConfigs without synonyms or documentation). */
    private static Config describe(ConfigResource res) {
        return get(admin.describeConfigs(List.of(res)).all()).get(res);
    }

    private static List<RecordMetadata> produce(String topic, int partition, int n, long tsStep) throws Exception {
        List<RecordMetadata> out = new ArrayList<>();
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            for (int i = 0; i < n; i++) {
                out.add(p.send(new ProducerRecord<>(topic, partition, T0 + i * tsStep, "k" + i, "v" + i))
                        .get(30, TimeUnit.SECONDS));
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- topics

    @Test
    void createDescribeListDeleteTopics() throws Exception {
        String topic = "ad-topic";
        Map<String, String> configs = Map.of("retention.ms", "3600000", "cleanup.policy", "compact",
                "max.message.bytes", "123456");
        CreateTopicsResult created = admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1).configs(configs)));
        get(created.all());
        assertEquals(3, get(created.numPartitions(topic)));
        assertEquals(1, get(created.replicationFactor(topic)));
        Uuid id = get(created.topicId(topic));
        assertNotEquals(Uuid.ZERO_UUID, id);
        Config returned = get(created.config(topic));
        assertEquals("3600000", returned.get("retention.ms").value(), "CreateTopics v5+ returns the configs");
        assertEquals("compact", returned.get("cleanup.policy").value());

        Set<String> names = get(admin.listTopics().names());
        assertTrue(names.contains(topic));
        assertFalse(names.contains("__consumer_offsets"), "internal topics hidden by default");
        assertTrue(get(admin.listTopics(new ListTopicsOptions().listInternal(true)).names())
                .contains("__consumer_offsets"));
        assertFalse(get(admin.listTopics(new ListTopicsOptions().listInternal(true)).namesToListings())
                .get(topic).isInternal());

        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(id, d.topicId());
        assertFalse(d.isInternal());
        assertEquals(3, d.partitions().size());
        for (int p = 0; p < 3; p++) {
            TopicPartitionInfo info = d.partitions().get(p);
            assertEquals(p, info.partition());
            assertEquals(0, info.leader().id());
            assertEquals(List.of(0), info.replicas().stream().map(Node::id).toList());
            assertEquals(List.of(0), info.isr().stream().map(Node::id).toList());
        }

        Config cfg = describe(new ConfigResource(ConfigResource.Type.TOPIC, topic));
        for (Map.Entry<String, String> e : configs.entrySet()) {
            ConfigEntry ce = cfg.get(e.getKey());
            assertEquals(e.getValue(), ce.value(), e.getKey());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, ce.source(), e.getKey());
        }

        // errors
        expect(TopicExistsException.class, admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all());
        expect(InvalidReplicationFactorException.class,
                admin.createTopics(List.of(new NewTopic("ad-rf3", 1, (short) 3))).all());
        expect(InvalidPartitionsException.class,
                admin.createTopics(List.of(new NewTopic("ad-p0", 0, (short) 1))).all());
        expect(InvalidConfigurationException.class, admin.createTopics(List.of(
                new NewTopic("ad-badcfg", 1, (short) 1).configs(Map.of("retention.ms", "not-a-number")))).all());
        expect(InvalidConfigurationException.class, admin.createTopics(List.of(
                new NewTopic("ad-unknowncfg", 1, (short) 1).configs(Map.of("no.such.config", "1")))).all());
        expect(InvalidTopicException.class, admin.createTopics(List.of(new NewTopic("bad/name", 1, (short) 1))).all());
        expect(InvalidTopicException.class, admin.createTopics(List.of(new NewTopic("x".repeat(250), 1, (short) 1))).all());
        // validateOnly creates nothing
        get(admin.createTopics(List.of(new NewTopic("ad-validate", 2, (short) 1)),
                new CreateTopicsOptions().validateOnly(true)).all());
        assertFalse(get(admin.listTopics().names()).contains("ad-validate"));
        for (String never : List.of("ad-rf3", "ad-p0", "ad-badcfg", "ad-unknowncfg")) {
            assertFalse(get(admin.listTopics().names()).contains(never), never + " must not exist");
        }

        // delete by name
        get(admin.deleteTopics(List.of(topic)).all());
        waitUntil(() -> !get(admin.listTopics().names()).contains(topic), Duration.ofSeconds(10),
                () -> topic + " gone from listTopics");
        expect(UnknownTopicOrPartitionException.class, admin.describeTopics(List.of(topic)).allTopicNames());
        expect(UnknownTopicOrPartitionException.class, admin.deleteTopics(List.of(topic)).all());

        // delete by id
        String t2 = "ad-topic-by-id";
        createTopic(admin, t2, 1);
        Uuid id2 = get(admin.describeTopics(List.of(t2)).allTopicNames()).get(t2).topicId();
        get(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id2))).all());
        waitUntil(() -> !get(admin.listTopics().names()).contains(t2), Duration.ofSeconds(10),
                () -> t2 + " deleted by id");

        // a deleted topic can be created again, empty, with a new id
        createTopic(admin, topic, 1);
        TopicDescription again = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertNotEquals(id, again.topicId());
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, null)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            assertEquals(0L, c.endOffsets(List.of(tp)).get(tp));
        }
    }

    @Test
    void describeTopicsById() throws Exception {
        String topic = "ad-by-id";
        createTopic(admin, topic, 2);
        Uuid id = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).topicId();
        // Metadata v12 with topic ids (the client sends name "" beside the id)
        TopicDescription byId = get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(id))).allTopicIds()).get(id);
        assertEquals(topic, byId.name());
        assertEquals(id, byId.topicId());
        assertEquals(2, byId.partitions().size());
        Uuid unknown = Uuid.randomUuid();
        Throwable t = failure(admin.describeTopics(TopicCollection.ofTopicIds(List.of(unknown))).allTopicIds());
        assertInstanceOf(org.apache.kafka.common.errors.UnknownTopicIdException.class, t);
    }

    @Test
    void createTopicWithExplicitReplicaAssignment() throws Exception {
        String topic = "ad-assigned";
        Map<Integer, List<Integer>> assignment = new LinkedHashMap<>();
        assignment.put(0, List.of(0));
        assignment.put(1, List.of(0));
        get(admin.createTopics(List.of(new NewTopic(topic, assignment).configs(Map.of("retention.ms", "60000"))))
                .all());
        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(2, d.partitions().size());
        for (TopicPartitionInfo p : d.partitions()) {
            assertEquals(List.of(0), p.replicas().stream().map(Node::id).toList());
            assertEquals(0, p.leader().id());
        }
        assertEquals("60000", describe(new ConfigResource(ConfigResource.Type.TOPIC, topic)).get("retention.ms").value());
        // usable
        assertEquals(0, produce(topic, 1, 1, 1).get(0).offset());
        // a broker that does not exist, or an uneven assignment, is refused
        expect(InvalidReplicaAssignmentException.class,
                admin.createTopics(List.of(new NewTopic("ad-assigned-bad", Map.of(0, List.of(1))))).all());
        Map<Integer, List<Integer>> gap = Map.of(0, List.of(0), 2, List.of(0)); // partition 1 missing
        expect(InvalidReplicaAssignmentException.class,
                admin.createTopics(List.of(new NewTopic("ad-assigned-gap", gap))).all());
        assertFalse(get(admin.listTopics().names()).contains("ad-assigned-bad"));
        assertFalse(get(admin.listTopics().names()).contains("ad-assigned-gap"));
    }

    @Test
    void createPartitions() throws Exception {
        String topic = "ad-partitions";
        createTopic(admin, topic, 2);
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all());
        assertEquals(4, get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size());
        // with an explicit assignment for the new partition
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5, List.of(List.of(0))))).all());
        assertEquals(5, get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size());
        // the new partitions take records
        assertEquals(4, produce(topic, 4, 1, 1).get(0).partition());
        // validateOnly changes nothing
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(8)),
                new CreatePartitionsOptions().validateOnly(true)).all());
        assertEquals(5, get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size());
        // decreasing or keeping the count is INVALID_PARTITIONS
        expect(InvalidPartitionsException.class, admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
        expect(InvalidPartitionsException.class, admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
        expect(InvalidReplicaAssignmentException.class,
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(6, List.of(List.of(7))))).all());
        expect(UnknownTopicOrPartitionException.class,
                admin.createPartitions(Map.of("ad-no-such-topic", NewPartitions.increaseTo(3))).all());
        // a consumer sees the new partitions via metadata
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, null)) {
            assertEquals(5, c.partitionsFor(topic).size());
        }
    }

    // ---------------------------------------------------------------- configs

    @Test
    void describeAndIncrementalAlterTopicConfigs() throws Exception {
        String topic = "ad-configs";
        createTopic(admin, topic, 1);
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config before = get(admin.describeConfigs(List.of(res), new DescribeConfigsOptions().includeSynonyms(true)
                .includeDocumentation(true)).all()).get(res);
        for (String k : List.of("retention.ms", "retention.bytes", "segment.bytes", "cleanup.policy",
                "max.message.bytes", "min.insync.replicas", "message.timestamp.type", "compression.type")) {
            assertNotNull(before.get(k), "topic config " + k + " described");
            assertNotEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, before.get(k).source(), k);
        }
        assertEquals("604800000", before.get("retention.ms").value(), "Kafka's default retention (7 days)");
        assertEquals("delete", before.get("cleanup.policy").value());
        assertFalse(before.get("retention.ms").synonyms().isEmpty(), "synonyms when asked for");
        assertEquals("log.retention.ms", before.get("retention.ms").synonyms().get(0).name().equals("retention.ms")
                ? before.get("retention.ms").synonyms().get(1).name()
                : before.get("retention.ms").synonyms().get(0).name(), "broker synonym of retention.ms");
        assertNotNull(before.get("retention.ms").documentation());
        // a subset of keys
        Config some = describe(res);
        assertTrue(some.entries().size() >= 20, "a topic describes all its configs: " + some.entries().size());

        // SET
        alter(res, op("retention.ms", "86400000", OpType.SET),
                op("max.message.bytes", "200000", OpType.SET));
        Config set = describe(res);
        assertEquals("86400000", set.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, set.get("retention.ms").source());
        assertEquals("200000", set.get("max.message.bytes").value());

        // APPEND / SUBTRACT on a list config
        alter(res, op("cleanup.policy", "compact", OpType.APPEND));
        assertEquals(Set.of("delete", "compact"), Set.of(describe(res).get("cleanup.policy").value().split(",")));
        alter(res, op("cleanup.policy", "delete", OpType.SUBTRACT));
        assertEquals("compact", describe(res).get("cleanup.policy").value());

        // DELETE: back to the default
        alter(res, op("retention.ms", null, OpType.DELETE));
        Config deleted = describe(res);
        assertEquals("604800000", deleted.get("retention.ms").value());
        assertNotEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, deleted.get("retention.ms").source());
        assertEquals("200000", deleted.get("max.message.bytes").value(), "other overrides kept");

        // validateOnly changes nothing
        get(admin.incrementalAlterConfigs(Map.of(res, List.of(op("retention.ms", "1000", OpType.SET))),
                new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(true)).all());
        assertEquals("604800000", describe(res).get("retention.ms").value());

        // invalid value, APPEND on a non-list config, unknown topic
        expect(InvalidConfigurationException.class, incrementalAlter(res, op("retention.ms", "abc", OpType.SET)));
        expect(InvalidConfigurationException.class, incrementalAlter(res, op("retention.ms", "5", OpType.APPEND)));
        ConfigResource missing = new ConfigResource(ConfigResource.Type.TOPIC, "ad-no-such");
        expect(UnknownTopicOrPartitionException.class, incrementalAlter(missing, op("retention.ms", "5", OpType.SET)));
        expect(UnknownTopicOrPartitionException.class, admin.describeConfigs(List.of(missing)).all());
        // the new max.message.bytes is enforced by produce
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            Throwable t = assertInstanceOf(java.util.concurrent.ExecutionException.class,
                    org.junit.jupiter.api.Assertions.assertThrows(Exception.class,
                            () -> p.send(new ProducerRecord<>(topic, "k", "x".repeat(300_000))).get(30, TimeUnit.SECONDS)));
            assertInstanceOf(org.apache.kafka.common.errors.RecordTooLargeException.class, t.getCause());
        }
    }

    @Test
    void brokerLevelConfigs() throws Exception {
        String topic = "ad-broker-cfg";
        createTopic(admin, topic, 1);
        ConfigResource node = new ConfigResource(ConfigResource.Type.BROKER, "0");
        ConfigResource clusterDefault = new ConfigResource(ConfigResource.Type.BROKER, "");
        ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);

        Config b = describe(node);
        assertEquals("604800000", b.get("log.retention.ms") == null ? null : b.get("log.retention.ms").value(),
                "log.retention.ms described on the broker");
        assertEquals("0", b.get("node.id").value());
        assertTrue(b.get("node.id").isReadOnly());

        // cluster-wide dynamic default: topics without an override follow it
        alter(clusterDefault, op("log.retention.ms", "7200000", OpType.SET));
        ConfigEntry te = describe(topicRes).get("retention.ms");
        assertEquals("7200000", te.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, te.source());
        Config cd = describe(clusterDefault);
        assertEquals("7200000", cd.get("log.retention.ms").value());

        // per-broker dynamic config wins over the cluster default
        alter(node, op("log.retention.ms", "3600000", OpType.SET));
        ConfigEntry be = describe(node).get("log.retention.ms");
        assertEquals("3600000", be.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG, be.source());
        te = describe(topicRes).get("retention.ms");
        assertEquals("3600000", te.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG, te.source());

        // a topic override still wins
        alter(topicRes, op("retention.ms", "1234567", OpType.SET));
        assertEquals("1234567", describe(topicRes).get("retention.ms").value());

        // undo: DELETE the broker-level settings
        get(admin.incrementalAlterConfigs(Map.of(
                node, List.of(op("log.retention.ms", null, OpType.DELETE)),
                clusterDefault, List.of(op("log.retention.ms", null, OpType.DELETE)))).all());
        ConfigEntry back = describe(node).get("log.retention.ms");
        assertEquals("604800000", back.value());

        // refusals: a read-only (static) setting, a bad value, another broker id
        Throwable ro = failure(incrementalAlter(node, op("node.id", "5", OpType.SET)));
        assertTrue(ro instanceof InvalidRequestException || ro instanceof InvalidConfigurationException,
                "static broker config cannot be altered: " + ro);
        expect(InvalidConfigurationException.class, incrementalAlter(node, op("log.retention.ms", "soon", OpType.SET)));
        // Broker "7" does not exist: the admin client sends the request to node 7, which it does
        // not know — so it must fail, not hang.
        Throwable other = failure(admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.BROKER, "7")))
                .all());
        assertNotNull(other);
    }

    // ---------------------------------------------------------------- groups

    private GroupMember activeMember(String group, String topic) {
        Properties p = consumerProps(broker, group);
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "admin-test-member");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        return startedMembers.start("active", p, List.of(topic));
    }

    @Test
    void consumerGroupAdministration() throws Exception {
        String topic = "ad-groups";
        String active = "ad-active-group";
        String simple = "ad-simple-group";
        createTopic(admin, topic, 2);
        produce(topic, 0, 10, 1);
        produce(topic, 1, 6, 1);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);

        // a "simple" group: only commits (assign + commitSync), no members
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, simple)) {
            c.assign(List.of(tp0, tp1));
            c.commitSync(Map.of(tp0, new OffsetAndMetadata(3, "m0"), tp1, new OffsetAndMetadata(2)));
        }
        // an active group: one subscribed member that consumed everything and committed
        GroupMember m = activeMember(active, topic);
        waitUntil(() -> m.consumed.size() >= 16, Duration.ofSeconds(60), () -> "active member consumed 16 records");
        waitUntil(() -> {
            Map<TopicPartition, OffsetAndMetadata> o = get(admin.listConsumerGroupOffsets(active)
                    .partitionsToOffsetAndMetadata());
            return o.get(tp0) != null && o.get(tp0).offset() == 10 && o.get(tp1) != null && o.get(tp1).offset() == 6;
        }, Duration.ofSeconds(30), () -> "active group's commits visible to listConsumerGroupOffsets");

        // list
        Map<String, ConsumerGroupListing> listed = get(admin.listConsumerGroups().all()).stream()
                .collect(Collectors.toMap(ConsumerGroupListing::groupId, l -> l));
        assertTrue(listed.containsKey(active) && listed.containsKey(simple), "both groups listed: " + listed.keySet());
        assertEquals(Optional.of(GroupState.STABLE), listed.get(active).groupState());
        assertEquals(Optional.of(GroupState.EMPTY), listed.get(simple).groupState());
        assertFalse(listed.get(active).isSimpleConsumerGroup());
        Set<String> stable = get(admin.listConsumerGroups(new ListConsumerGroupsOptions()
                .inGroupStates(Set.of(GroupState.STABLE))).all()).stream().map(ConsumerGroupListing::groupId)
                .collect(Collectors.toSet());
        assertTrue(stable.contains(active));
        assertFalse(stable.contains(simple), "state filter applied: " + stable);
        Map<String, GroupListing> groups = get(admin.listGroups().all()).stream()
                .collect(Collectors.toMap(GroupListing::groupId, l -> l));
        assertEquals(Optional.of(GroupType.CLASSIC), groups.get(active).type());
        assertEquals("consumer", groups.get(active).protocol());

        // describe
        Map<String, ConsumerGroupDescription> desc = get(admin.describeConsumerGroups(List.of(active, simple)).all());
        ConsumerGroupDescription da = desc.get(active);
        assertEquals(GroupState.STABLE, da.groupState());
        assertEquals(GroupType.CLASSIC, da.type());
        assertEquals("range", da.partitionAssignor());
        assertEquals(0, da.coordinator().id());
        assertEquals(1, da.members().size());
        MemberDescription md = da.members().iterator().next();
        assertEquals(m.memberId, md.consumerId());
        assertEquals("admin-test-member", md.clientId());
        assertTrue(md.host().contains("127.0.0.1"), "member host: " + md.host());
        assertEquals(Set.of(tp0, tp1), md.assignment().topicPartitions());
        ConsumerGroupDescription ds = desc.get(simple);
        assertEquals(GroupState.EMPTY, ds.groupState());
        assertTrue(ds.members().isEmpty());
        assertTrue(ds.isSimpleConsumerGroup());

        // offsets of several groups at once, and of selected partitions
        Map<String, ListConsumerGroupOffsetsSpec> specs = Map.of(active, new ListConsumerGroupOffsetsSpec(),
                simple, new ListConsumerGroupOffsetsSpec().topicPartitions(List.of(tp0)));
        Map<String, Map<TopicPartition, OffsetAndMetadata>> many = get(admin.listConsumerGroupOffsets(specs).all());
        assertEquals(10L, many.get(active).get(tp0).offset());
        assertEquals(6L, many.get(active).get(tp1).offset());
        assertEquals(Map.of(tp0, new OffsetAndMetadata(3, Optional.empty(), "m0")).get(tp0).offset(),
                many.get(simple).get(tp0).offset());
        assertEquals("m0", many.get(simple).get(tp0).metadata());
        assertFalse(many.get(simple).containsKey(tp1) && many.get(simple).get(tp1) != null
                && many.get(simple).size() > 1, "only the partition asked for");

        // alter offsets: refused while the group has members, allowed on an empty group
        expect(UnknownMemberIdException.class,
                admin.alterConsumerGroupOffsets(active, Map.of(tp0, new OffsetAndMetadata(1))).all());
        get(admin.alterConsumerGroupOffsets(simple, Map.of(tp0, new OffsetAndMetadata(7, "altered"),
                tp1, new OffsetAndMetadata(5))).all());
        Map<TopicPartition, OffsetAndMetadata> altered = get(admin.listConsumerGroupOffsets(simple)
                .partitionsToOffsetAndMetadata());
        assertEquals(7L, altered.get(tp0).offset());
        assertEquals("altered", altered.get(tp0).metadata());
        assertEquals(5L, altered.get(tp1).offset());
        // a new consumer of the simple group starts from the altered offsets
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, simple)) {
            c.assign(List.of(tp0));
            List<ConsumerRecord<String, String>> got = ClientSupport.pollN(c, 3, Duration.ofSeconds(30));
            assertEquals(List.of(7L, 8L, 9L), got.stream().map(ConsumerRecord::offset).toList());
        }

        // delete offsets: refused for a topic the active group subscribes to; fine on the empty group
        expect(GroupSubscribedToTopicException.class,
                admin.deleteConsumerGroupOffsets(active, Set.of(tp0)).all());
        get(admin.deleteConsumerGroupOffsets(simple, Set.of(tp1)).all());
        Map<TopicPartition, OffsetAndMetadata> afterDelete = get(admin.listConsumerGroupOffsets(simple)
                .partitionsToOffsetAndMetadata());
        assertEquals(7L, afterDelete.get(tp0).offset());
        assertNull(afterDelete.get(tp1), "offset of " + tp1 + " deleted: " + afterDelete);
        expect(GroupIdNotFoundException.class, admin.deleteConsumerGroupOffsets("ad-no-such-group", Set.of(tp0)).all());

        // delete groups: refused while members exist, then fine
        expect(GroupNotEmptyException.class, admin.deleteConsumerGroups(List.of(active)).all());
        m.close();
        assertTrue(m.errors.isEmpty(), "member: " + m.errors);
        waitUntil(() -> get(admin.describeConsumerGroups(List.of(active)).all()).get(active).groupState()
                == GroupState.EMPTY, Duration.ofSeconds(30), () -> active + " empty after its member left");
        get(admin.deleteConsumerGroups(List.of(active, simple)).all());
        Set<String> left = get(admin.listConsumerGroups().all()).stream().map(ConsumerGroupListing::groupId)
                .collect(Collectors.toSet());
        assertFalse(left.contains(active) || left.contains(simple), "deleted groups not listed: " + left);
        assertTrue(get(admin.listConsumerGroupOffsets(simple).partitionsToOffsetAndMetadata()).values().stream()
                .allMatch(o -> o == null), "deleted group has no offsets");
        expect(GroupIdNotFoundException.class, admin.deleteConsumerGroups(List.of("ad-no-such-group")).all());
    }

    @Test
    void describeUnknownGroup() throws Exception {
        // Kafka 4 answers a describe of a group that does not exist with GROUP_ID_NOT_FOUND (or,
        // before DescribeGroups v6, a Dead group with no members): either way, promptly.
        KafkaFuture<ConsumerGroupDescription> f = admin.describeConsumerGroups(List.of("ad-never-existed"))
                .describedGroups().get("ad-never-existed");
        try {
            ConsumerGroupDescription d = f.get(30, TimeUnit.SECONDS);
            assertEquals(GroupState.DEAD, d.groupState());
            assertTrue(d.members().isEmpty());
        } catch (java.util.concurrent.ExecutionException e) {
            assertInstanceOf(GroupIdNotFoundException.class, e.getCause());
        }
    }

    // ---------------------------------------------------------------- records and offsets

    @Test
    void deleteRecords() throws Exception {
        String topic = "ad-delete-records";
        createTopic(admin, topic, 2);
        produce(topic, 0, 10, 1);
        produce(topic, 1, 4, 1);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        Map<TopicPartition, Long> lows = new HashMap<>();
        var res = admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(4), tp1, RecordsToDelete.beforeOffset(-1)));
        lows.put(tp0, get(res.lowWatermarks().get(tp0)).lowWatermark());
        lows.put(tp1, get(res.lowWatermarks().get(tp1)).lowWatermark());
        assertEquals(Map.of(tp0, 4L, tp1, 4L), lows, "beforeOffset(-1) means up to the high watermark");
        assertEquals(4L, get(admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).partitionResult(tp0)).offset());
        assertEquals(10L, get(admin.listOffsets(Map.of(tp0, OffsetSpec.latest())).partitionResult(tp0)).offset());
        // deleting below the current low watermark does not move it back
        assertEquals(4L, get(admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(2))).lowWatermarks()
                .get(tp0)).lowWatermark());
        expect(OffsetOutOfRangeException.class,
                admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(11))).lowWatermarks().get(tp0));
        // (no unknown-topic case: the client's PartitionLeaderStrategy tolerates unknown topics and
        // retries until its timeout, against Kafka too)
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, null)) {
            c.assign(List.of(tp0, tp1));
            c.seekToBeginning(List.of(tp0, tp1));
            List<ConsumerRecord<String, String>> got = ClientSupport.pollN(c, 6, Duration.ofSeconds(30));
            assertEquals(List.of(4L, 5L, 6L, 7L, 8L, 9L), got.stream().map(ConsumerRecord::offset).toList());
            assertEquals("v4", got.get(0).value());
            assertEquals(4L, c.position(tp1), "partition 1 is empty from 4");
        }
    }

    @Test
    void listOffsetsAllSpecs() throws Exception {
        String topic = "ad-list-offsets";
        createTopic(admin, topic, 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        // empty partition
        ListOffsetsResultInfo e0 = get(admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp));
        ListOffsetsResultInfo l0 = get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp));
        assertEquals(0L, e0.offset());
        assertEquals(0L, l0.offset());
        // timestamps out of order: T0, T0+5000 (max), T0+1000, T0+2000 — each record its own batch
        long[] ts = {T0, T0 + 5000, T0 + 1000, T0 + 2000};
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            for (int i = 0; i < ts.length; i++) {
                p.send(new ProducerRecord<>(topic, 0, ts[i], "k", "v" + i)).get(30, TimeUnit.SECONDS);
            }
        }
        Map<String, ListOffsetsResultInfo> r = new LinkedHashMap<>();
        r.put("earliest", get(admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp)));
        r.put("latest", get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)));
        r.put("max", get(admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp)));
        r.put("older", get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 - 86_400_000L))).partitionResult(tp)));
        r.put("t+1500", get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 + 1500))).partitionResult(tp)));
        r.put("t+5000", get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 + 5000))).partitionResult(tp)));
        r.put("newer", get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 + 9000))).partitionResult(tp)));
        assertEquals(0L, r.get("earliest").offset(), "" + r);
        assertEquals(4L, r.get("latest").offset(), "" + r);
        assertEquals(1L, r.get("max").offset(), "max timestamp is record 1: " + r);
        assertEquals(T0 + 5000, r.get("max").timestamp());
        assertEquals(0L, r.get("older").offset(), "older than every record: the first offset: " + r);
        assertEquals(T0, r.get("older").timestamp());
        assertEquals(1L, r.get("t+1500").offset(), "first offset whose timestamp >= target: " + r);
        assertEquals(T0 + 5000, r.get("t+1500").timestamp());
        assertEquals(1L, r.get("t+5000").offset());
        assertEquals(-1L, r.get("newer").offset(), "no record that new: -1: " + r);
        // read_committed: same as latest without transactions
        assertEquals(4L, get(admin.listOffsets(Map.of(tp, OffsetSpec.latest()),
                new org.apache.kafka.clients.admin.ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                .partitionResult(tp)).offset());
        // several partitions and specs in one call
        String t2 = "ad-list-offsets-2";
        createTopic(admin, t2, 3);
        produce(t2, 2, 5, 10);
        Map<TopicPartition, OffsetSpec> many = new HashMap<>();
        for (int p = 0; p < 3; p++) {
            many.put(new TopicPartition(t2, p), OffsetSpec.latest());
        }
        Map<TopicPartition, ListOffsetsResultInfo> all = get(admin.listOffsets(many).all());
        assertEquals(0L, all.get(new TopicPartition(t2, 0)).offset());
        assertEquals(5L, all.get(new TopicPartition(t2, 2)).offset());
        expect(UnknownTopicOrPartitionException.class,
                admin.listOffsets(Map.of(new TopicPartition("ad-no-such", 0), OffsetSpec.latest())).all());
        // ListOffsets v8+ specs (KIP-1005): must work or be refused cleanly
        try {
            ListOffsetsResultInfo el = get(admin.listOffsets(Map.of(tp, OffsetSpec.earliestLocal())).partitionResult(tp));
            assertEquals(0L, el.offset(), "earliest local = earliest without tiered storage");
        } catch (UnsupportedVersionException expected) {
            assertTrue(broker.advertisedApis().get(2)[1] < 8, "refused although ListOffsets v8 is advertised");
        }
    }

    // ---------------------------------------------------------------- cluster

    @Test
    void describeCluster() throws Exception {
        DescribeClusterResult r = admin.describeCluster();
        Collection<Node> nodes = get(r.nodes());
        assertEquals(1, nodes.size());
        Node n = nodes.iterator().next();
        assertEquals(0, n.id());
        assertEquals("127.0.0.1", n.host());
        assertEquals(broker.port(), n.port());
        Node controller = get(r.controller());
        assertNotNull(controller);
        assertEquals(0, controller.id());
        String clusterId = get(r.clusterId());
        assertNotNull(clusterId);
        assertFalse(clusterId.isEmpty());
        assertEquals(clusterId, get(admin.describeCluster().clusterId()), "stable cluster id");
        // The same cluster id in Metadata (what producers and consumers see).
        try (KafkaConsumer<String, String> c = ClientSupport.consumer(broker, null)) {
            assertNotNull(c.listTopics(Duration.ofSeconds(30)));
        }
        // describeFeatures works on ApiVersions
        assertNotNull(get(admin.describeFeatures().featureMetadata()));
    }

    // ---------------------------------------------------------------- describe-type APIs

    @Test
    void describeLogDirs() throws Exception {
        String topic = "ad-logdirs";
        createTopic(admin, topic, 2);
        produce(topic, 0, 50, 1);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        boolean advertised = broker.advertises(35);
        KafkaFuture<Map<Integer, Map<String, LogDirDescription>>> f = admin.describeLogDirs(List.of(0)).allDescriptions();
        if (!advertised) {
            expect(UnsupportedVersionException.class, f);
            return;
        }
        Map<String, LogDirDescription> dirs = get(f).get(0);
        assertNotNull(dirs, "node 0 described");
        assertEquals(1, dirs.size(), "one log dir: " + dirs.keySet());
        Map.Entry<String, LogDirDescription> dir = dirs.entrySet().iterator().next();
        assertEquals(broker.dataDir().toRealPath(), Path.of(dir.getKey()).toRealPath(), "the data dir");
        LogDirDescription ld = dir.getValue();
        assertNull(ld.error());
        ReplicaInfo r0 = ld.replicaInfos().get(tp0);
        ReplicaInfo r1 = ld.replicaInfos().get(tp1);
        assertNotNull(r0, "partition listed: " + ld.replicaInfos().keySet());
        assertNotNull(r1);
        assertTrue(r0.size() > 50 * 10, "size of 50 records: " + r0.size());
        assertEquals(0L, r1.size(), "empty partition");
        assertFalse(r0.isFuture());
        assertEquals(0L, r0.offsetLag());
        assertTrue(ld.totalBytes().isPresent() && ld.usableBytes().isPresent(), "v4 disk sizes: " + ld);
        assertTrue(ld.totalBytes().getAsLong() >= ld.usableBytes().getAsLong());
        // only the asked broker
        assertTrue(get(admin.describeLogDirs(List.of(0)).allDescriptions()).containsKey(0));
    }

    @Test
    void describeProducers() throws Exception {
        String topic = "ad-producers";
        createTopic(admin, topic, 1);
        List<RecordMetadata> mds = produce(topic, 0, 10, 1); // idempotent by default: sequences 0..9
        TopicPartition tp = new TopicPartition(topic, 0);
        boolean advertised = broker.advertises(61);
        DescribeProducersResult r = admin.describeProducers(List.of(tp));
        if (!advertised) {
            expect(UnsupportedVersionException.class, r.all());
            return;
        }
        List<ProducerState> active = get(r.partitionResult(tp)).activeProducers();
        assertEquals(1, active.size(), "one idempotent producer: " + active);
        ProducerState s = active.get(0);
        assertTrue(s.producerId() >= 0);
        assertEquals(0, s.producerEpoch());
        assertEquals(9, s.lastSequence());
        assertFalse(s.currentTransactionStartOffset().isPresent());
        // Kafka: the max timestamp of the producer's last batch (ProducerAppendInfo), not the append time
        assertEquals(mds.get(9).timestamp(), s.lastTimestamp(), "lastTimestamp");
    }

    @Test
    void listPartitionReassignments() throws Exception {
        String topic = "ad-reassign";
        createTopic(admin, topic, 2);
        boolean advertised = broker.advertises(46);
        KafkaFuture<Map<TopicPartition, PartitionReassignment>> f = admin.listPartitionReassignments().reassignments();
        if (!advertised) {
            expect(UnsupportedVersionException.class, f);
            return;
        }
        assertEquals(Map.of(), get(f), "single node: nothing is being reassigned");
        assertEquals(Map.of(), get(admin.listPartitionReassignments(Set.of(new TopicPartition(topic, 0)))
                .reassignments()));
    }

    /**
     * APIs the broker does not advertise must fail at once with UnsupportedVersionException (the
     * client checks ApiVersions), or with another Kafka error — never a timeout.
     */
    @Test
    void unsupportedApisAreRefusedCleanly() throws Exception {
        TopicPartition tp = new TopicPartition("ad-unsupported", 0);
        createTopic(admin, tp.topic(), 1);
        Map<String, Supplier<KafkaFuture<?>>> calls = new LinkedHashMap<>();
        calls.put("describeAcls", () -> admin.describeAcls(AclBindingFilter.ANY).values());
        calls.put("electLeaders", () -> admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).all());
        calls.put("alterPartitionReassignments", () -> admin.alterPartitionReassignments(
                Map.of(tp, Optional.empty())).all());
        calls.put("describeClientQuotas", () -> admin.describeClientQuotas(ClientQuotaFilter.all()).entities());
        calls.put("describeUserScramCredentials", () -> admin.describeUserScramCredentials().all());
        calls.put("describeDelegationToken", () -> admin.describeDelegationToken().delegationTokens());
        calls.put("describeMetadataQuorum", () -> admin.describeMetadataQuorum().quorumInfo());
        calls.put("listTransactions", () -> admin.listTransactions().all());
        calls.put("describeTransactions", () -> admin.describeTransactions(List.of("ad-tx")).all());
        calls.put("fenceProducers", () -> admin.fenceProducers(List.of("ad-tx")).all());
        calls.put("alterReplicaLogDirs", () -> admin.alterReplicaLogDirs(
                Map.of(new org.apache.kafka.common.TopicPartitionReplica(tp.topic(), 0, 0), "/tmp")).all());
        calls.put("describeShareGroups", () -> admin.describeShareGroups(List.of("ad-share")).all());
        calls.put("describeStreamsGroups", () -> admin.describeStreamsGroups(List.of("ad-streams")).all());
        calls.put("listClientMetricsResources", () -> admin.listConfigResources(
                Set.of(ConfigResource.Type.CLIENT_METRICS), new org.apache.kafka.clients.admin.ListConfigResourcesOptions()).all());
        Map<Integer, int[]> advertised = broker.advertisedApis();
        List<String> problems = new ArrayList<>();
        for (Map.Entry<String, Supplier<KafkaFuture<?>>> c : calls.entrySet()) {
            long start = System.nanoTime();
            try {
                Object v = c.getValue().get().get(30, TimeUnit.SECONDS);
                System.out.println(c.getKey() + ": answered " + v);
            } catch (java.util.concurrent.TimeoutException | java.util.concurrent.ExecutionException e) {
                Throwable cause = e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e;
                long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
                System.out.println(c.getKey() + ": " + cause + " after " + ms + " ms");
                if (cause instanceof TimeoutException || cause instanceof java.util.concurrent.TimeoutException) {
                    problems.add(c.getKey() + " hung (" + cause + ")");
                } else if (!(cause instanceof org.apache.kafka.common.errors.ApiException)) {
                    problems.add(c.getKey() + " failed with a non-Kafka error " + cause);
                } else if (ms > 10_000) {
                    problems.add(c.getKey() + " took " + ms + " ms to be refused");
                }
            } catch (RuntimeException e) {
                System.out.println(c.getKey() + ": threw " + e);
                if (!(e instanceof org.apache.kafka.common.errors.ApiException)) {
                    problems.add(c.getKey() + " threw " + e);
                }
            }
        }
        assertTrue(problems.isEmpty(), "refused cleanly, advertised " + advertised.keySet() + ": " + problems);
        // the broker still works after all that
        assertEquals(0, produce(tp.topic(), 0, 1, 1).get(0).offset());
    }
}
