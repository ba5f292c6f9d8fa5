package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.consumer;
import static io.ringbroker.e2e.ClientSupport.consumerProps;
import static io.ringbroker.e2e.ClientSupport.createTopic;
import static io.ringbroker.e2e.ClientSupport.pollN;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.NoOffsetForPartitionException;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The Java consumer by manual assignment against the real broker: assign,
 * seek, seekToBeginning/End, position, beginning/endOffsets, offsetsForTimes
 * (including a timestamp older than the first record, which must give the
 * first offset), committed offsets with commitSync/commitAsync and their
 * metadata, auto.offset.reset policies, out-of-range resets, long polling and
 * read_committed.
 */
class ConsumerTest extends SharedBrokerTest {
    private static final long T0 = 1_700_000_000_000L;

    @BeforeAll
    static void beforeAll() throws Exception {
        startBroker(Map.of());
    }

    /** Writes n records "v0".."v{n-1}" to partition p with timestamps T0 + i*1000 (as separate batches). */
    private static void produce(String topic, int p, int n) throws Exception {
        try (KafkaProducer<String, String> pr = ClientSupport.producer(broker)) {
            for (int i = 0; i < n; i++) {
                pr.send(new ProducerRecord<>(topic, p, T0 + i * 1000L, "k" + i, "v" + i)).get(30, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void assignSeekPositionBeginningEnd() throws Exception {
        String topic = "c-seek";
        createTopic(admin, topic, 2);
        produce(topic, 0, 20);
        produce(topic, 1, 5);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> c = consumer(broker, null)) {
            c.assign(List.of(tp0, tp1));
            assertEquals(Set.of(tp0, tp1), c.assignment());
            assertEquals(Map.of(tp0, 0L, tp1, 0L), c.beginningOffsets(List.of(tp0, tp1)));
            assertEquals(Map.of(tp0, 20L, tp1, 5L), c.endOffsets(List.of(tp0, tp1)));

            c.seekToEnd(List.of(tp0, tp1));
            assertEquals(20L, c.position(tp0));
            assertEquals(5L, c.position(tp1));
            assertTrue(c.poll(Duration.ofMillis(500)).isEmpty(), "nothing after the end");

            c.seek(tp0, 7);
            c.pause(List.of(tp1));
            List<ConsumerRecord<String, String>> got = pollN(c, 13, Duration.ofSeconds(30));
            assertEquals(13, got.size());
            for (int i = 0; i < 13; i++) {
                assertEquals(7 + i, got.get(i).offset());
                assertEquals("v" + (7 + i), got.get(i).value());
                assertEquals(T0 + (7 + i) * 1000L, got.get(i).timestamp());
            }
            assertEquals(20L, c.position(tp0));
            c.resume(List.of(tp1));

            c.seekToBeginning(List.of(tp1));
            assertEquals(0L, c.position(tp1));
            List<ConsumerRecord<String, String>> p1 = pollN(c, 5, Duration.ofSeconds(30));
            for (int i = 0; i < 5; i++) {
                assertEquals(tp1.partition(), p1.get(i).partition());
                assertEquals(i, p1.get(i).offset());
            }
            assertEquals(5L, c.position(tp1));
        }
    }

    @Test
    void offsetsForTimes() throws Exception {
        String topic = "c-times";
        createTopic(admin, topic, 1);
        produce(topic, 0, 10); // timestamps T0, T0+1000, ..., T0+9000
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> c = consumer(broker, null)) {
            Map<TopicPartition, OffsetAndTimestamp> older = c.offsetsForTimes(Map.of(tp, T0 - 3_600_000L));
            assertNotNull(older.get(tp), "a timestamp older than every record finds the first record");
            assertEquals(0L, older.get(tp).offset());
            assertEquals(T0, older.get(tp).timestamp());

            OffsetAndTimestamp zero = c.offsetsForTimes(Map.of(tp, 0L)).get(tp);
            assertNotNull(zero, "timestamp 0 finds the first record");
            assertEquals(0L, zero.offset());

            OffsetAndTimestamp exact = c.offsetsForTimes(Map.of(tp, T0 + 4000L)).get(tp);
            assertEquals(4L, exact.offset());
            assertEquals(T0 + 4000L, exact.timestamp());

            OffsetAndTimestamp between = c.offsetsForTimes(Map.of(tp, T0 + 4500L)).get(tp);
            assertEquals(5L, between.offset(), "first record with timestamp >= the target");
            assertEquals(T0 + 5000L, between.timestamp());

            assertNull(c.offsetsForTimes(Map.of(tp, T0 + 10_000L)).get(tp), "newer than every record: null");
        }
    }

    @Test
    void offsetsForTimesInsideOneBatch() throws Exception {
        // All records in one batch (one send of several records with linger): the broker must
        // find the record inside the batch, not just the batch.
        String topic = "c-times-batch";
        createTopic(admin, topic, 1);
        java.util.Properties pp = ClientSupport.producerProps(broker);
        pp.put("linger.ms", "200");
        try (KafkaProducer<String, String> pr = new KafkaProducer<>(pp)) {
            for (int i = 0; i < 10; i++) {
                pr.send(new ProducerRecord<>(topic, 0, T0 + i * 1000L, "k" + i, "v" + i));
            }
            pr.flush();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> c = consumer(broker, null)) {
            assertEquals(0L, c.offsetsForTimes(Map.of(tp, T0 - 1L)).get(tp).offset());
            OffsetAndTimestamp mid = c.offsetsForTimes(Map.of(tp, T0 + 6500L)).get(tp);
            assertEquals(7L, mid.offset());
            assertEquals(T0 + 7000L, mid.timestamp());
        }
    }

    @Test
    void commitSyncAsyncAndCommitted() throws Exception {
        String topic = "c-commit";
        String group = "c-commit-group";
        createTopic(admin, topic, 2);
        produce(topic, 0, 10);
        produce(topic, 1, 10);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> c = consumer(broker, group)) {
            c.assign(List.of(tp0, tp1));
            assertEquals(new HashMap<TopicPartition, OffsetAndMetadata>() {{
                    put(tp0, null);
                    put(tp1, null);
                }}, c.committed(Set.of(tp0, tp1)), "nothing committed yet");

            c.commitSync(Map.of(tp0, new OffsetAndMetadata(3, "meta-sync")));
            OffsetAndMetadata om = c.committed(Set.of(tp0)).get(tp0);
            assertEquals(3L, om.offset());
            assertEquals("meta-sync", om.metadata());

            CompletableFuture<Exception> done = new CompletableFuture<>();
            c.commitAsync(Map.of(tp1, new OffsetAndMetadata(6, "meta-async")), (offsets, e) -> done.complete(e));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!done.isDone() && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(100)); // async callbacks run inside poll
            }
            assertTrue(done.isDone(), "commitAsync callback ran");
            assertNull(done.get(), "commitAsync succeeded");
            OffsetAndMetadata om1 = c.committed(Set.of(tp1)).get(tp1);
            assertEquals(6L, om1.offset());
            assertEquals("meta-async", om1.metadata());

            // commitSync() without arguments commits the consumed positions
            c.seek(tp0, 0);
            c.seek(tp1, 0);
            pollN(c, 20, Duration.ofSeconds(30));
            c.commitSync();
            assertEquals(10L, c.committed(Set.of(tp0)).get(tp0).offset());
            assertEquals(10L, c.committed(Set.of(tp1)).get(tp1).offset());

            c.commitSync(Map.of(tp0, new OffsetAndMetadata(4), tp1, new OffsetAndMetadata(8)));
        }
        // A new consumer of the group resumes from the committed offsets, even with reset=none.
        Properties p = consumerProps(broker, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp0, tp1));
            assertEquals(4L, c.position(tp0));
            assertEquals(8L, c.position(tp1));
            List<ConsumerRecord<String, String>> got = pollN(c, 6 + 2, Duration.ofSeconds(30));
            assertEquals(8, got.size());
            for (ConsumerRecord<String, String> r : got) {
                assertTrue(r.partition() == 0 ? r.offset() >= 4 : r.offset() >= 8);
                assertEquals("v" + r.offset(), r.value());
            }
        }
    }

    @Test
    void autoOffsetResetPolicies() throws Exception {
        String topic = "c-reset";
        createTopic(admin, topic, 1);
        produce(topic, 0, 5);
        TopicPartition tp = new TopicPartition(topic, 0);

        Properties none = consumerProps(broker, "c-reset-none");
        none.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(none)) {
            c.assign(List.of(tp));
            assertThrows(NoOffsetForPartitionException.class, () -> c.poll(Duration.ofSeconds(5)));
        }

        Properties latest = consumerProps(broker, "c-reset-latest");
        latest.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "latest");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(latest)) {
            c.assign(List.of(tp));
            assertEquals(5L, c.position(tp));
        }

        try (KafkaConsumer<String, String> c = consumer(broker, "c-reset-earliest")) {
            c.assign(List.of(tp));
            assertEquals(0L, c.position(tp));
        }
    }

    @Test
    void outOfRangePositionResetsAfterDeleteRecords() throws Exception {
        String topic = "c-oor";
        createTopic(admin, topic, 1);
        produce(topic, 0, 10);
        TopicPartition tp = new TopicPartition(topic, 0);
        long low = ClientSupport.get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(6)))
                .lowWatermarks().get(tp)).lowWatermark();
        assertEquals(6L, low);
        try (KafkaConsumer<String, String> c = consumer(broker, null)) { // reset=earliest
            c.assign(List.of(tp));
            assertEquals(6L, c.beginningOffsets(List.of(tp)).get(tp));
            c.seek(tp, 2); // below the log start: OFFSET_OUT_OF_RANGE, reset to earliest = 6
            List<ConsumerRecord<String, String>> got = pollN(c, 4, Duration.ofSeconds(30));
            assertEquals(List.of(6L, 7L, 8L, 9L), got.stream().map(ConsumerRecord::offset).toList());
            c.seek(tp, 1000); // beyond the end: reset to earliest again
            List<ConsumerRecord<String, String>> again = pollN(c, 4, Duration.ofSeconds(30));
            assertEquals(6L, again.get(0).offset());
        }
    }

    @Test
    void longPollReturnsRecordsProducedWhileWaiting() throws Exception {
        String topic = "c-longpoll";
        createTopic(admin, topic, 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        Properties p = consumerProps(broker, null);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "5000");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            assertEquals(0L, c.position(tp));
            Thread writer = new Thread(() -> {
                Broker.sleep(1000);
                try {
                    produce(topic, 0, 3);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            writer.start();
            long start = System.nanoTime();
            List<ConsumerRecord<String, String>> got = pollN(c, 3, Duration.ofSeconds(30));
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            writer.join(30_000);
            assertEquals(List.of("v0", "v1", "v2"), got.stream().map(ConsumerRecord::value).toList());
            assertTrue(ms < 20_000, "records delivered while the fetch was parked, took " + ms + " ms");
        }
    }

    @Test
    void autoCommitAndOffsetsSurviveBrokerRestart() throws Exception {
        String topic = "c-autocommit";
        String group = "c-autocommit-group";
        createTopic(admin, topic, 2);
        produce(topic, 0, 12);
        produce(topic, 1, 8);
        Properties p = consumerProps(broker, group);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
        p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "200");
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic));
            assertEquals(20, pollN(c, 20, Duration.ofSeconds(60)).size());
            // close() commits the consumed positions (auto-commit on close)
        }
        try (KafkaConsumer<String, String> c = consumer(broker, group)) {
            assertEquals(12L, c.committed(Set.of(tp0)).get(tp0).offset());
            assertEquals(8L, c.committed(Set.of(tp1)).get(tp1).offset());
        }
        // clean restart: offsets come back from __consumer_offsets
        broker.stop();
        broker.restart();
        try (KafkaConsumer<String, String> c = consumer(broker, group)) {
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(Set.of(tp0, tp1));
            assertEquals(12L, committed.get(tp0).offset());
            assertEquals(8L, committed.get(tp1).offset());
            c.commitSync(Map.of(tp0, new OffsetAndMetadata(5)));
        }
        // crash: an acknowledged commit is durable
        broker.kill();
        broker.restart();
        produce(topic, 1, 1); // one more record (v0 again) at offset 8
        try (KafkaConsumer<String, String> c = consumer(broker, group)) {
            assertEquals(5L, c.committed(Set.of(tp0)).get(tp0).offset());
            c.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got = pollN(c, 7 + 1, Duration.ofSeconds(60));
            Map<Integer, List<Long>> byPartition = new HashMap<>();
            for (ConsumerRecord<String, String> r : got) {
                byPartition.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
            }
            assertEquals(List.of(5L, 6L, 7L, 8L, 9L, 10L, 11L), byPartition.get(0), "resumed at the committed 5");
            assertEquals(List.of(8L), byPartition.get(1), "resumed at the committed 8");
        }
    }

    @Test
    void readCommittedAndMaxPollRecords() throws Exception {
        String topic = "c-rc";
        createTopic(admin, topic, 1);
        produce(topic, 0, 30);
        Properties p = consumerProps(broker, null);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "7");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            assertEquals(30L, c.endOffsets(List.of(tp)).get(tp), "read_committed end = last stable offset");
            List<ConsumerRecord<String, String>> all = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (all.size() < 30 && System.nanoTime() < deadline) {
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
                assertTrue(rs.count() <= 7, "max.poll.records honoured");
                rs.forEach(all::add);
            }
            assertEquals(30, all.size());
            for (int i = 0; i < 30; i++) {
                assertEquals(i, all.get(i).offset());
                assertEquals("v" + i, all.get(i).value());
            }
        }
    }
}
