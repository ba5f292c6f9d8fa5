package io.ringbroker.e2e;

import static io.ringbroker.e2e.ClientSupport.consumer;
import static io.ringbroker.e2e.ClientSupport.createTopic;
import static io.ringbroker.e2e.ClientSupport.pollN;
import static io.ringbroker.e2e.ClientSupport.producerProps;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The unmodified Java producer against the real broker: its defaults
 * (idempotence, acks=all, batching), every compression codec, keys, headers,
 * timestamps, ordering, the default partitioner's murmur2 placement, acks 0/1,
 * LogAppendTime topics and MESSAGE_TOO_LARGE. Every record written is read
 * back with a consumer and compared field by field.
 */
class ProducerTest extends SharedBrokerTest {
    @BeforeAll
    static void beforeAll() throws Exception {
        startBroker(Map.of());
    }

    private static List<ConsumerRecord<String, String>> readAll(String topic, int partitions, int n) {
        try (KafkaConsumer<String, String> c = consumer(broker, null)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            List<ConsumerRecord<String, String>> got = pollN(c, n, Duration.ofSeconds(60));
            assertEquals(n, got.size(), "exactly the records written, no more");
            return got;
        }
    }

    @Test
    void defaultsAreIdempotentAcksAllAndBatch() throws Exception {
        String topic = "p-defaults";
        createTopic(admin, topic, 1);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "20"); // make batching certain
        int n = 2000;
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                acks.add(p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            }
            p.flush();
            for (int i = 0; i < n; i++) {
                RecordMetadata md = acks.get(i).get(30, TimeUnit.SECONDS);
                assertEquals(i, md.offset(), "offsets follow send order");
                assertEquals(0, md.partition());
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 1, n);
        for (int i = 0; i < n; i++) {
            assertEquals(i, got.get(i).offset());
            assertEquals("k" + i, got.get(i).key());
            assertEquals("v" + i, got.get(i).value());
        }
        // The producer used its idempotent default: every batch on disk carries a producer id,
        // and the records came in fewer batches than records (batching).
        List<int[]> batches = segmentBatches(topic, 0);
        assertTrue(batches.size() < n / 10, "records were batched: " + batches.size() + " batches");
        for (int[] b : batches) {
            assertTrue(b[2] >= 0, "batch has a producer id (idempotent producer by default)");
        }
        // DescribeProducers is not advertised (see AdminClientTest); the batches are the evidence.
    }

    @ParameterizedTest
    @ValueSource(strings = {"gzip", "snappy", "lz4", "zstd"})
    void compressionRoundTrips(String codec) throws Exception {
        String topic = "p-compress-" + codec;
        createTopic(admin, topic, 1);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        int n = 500;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, null, 1_700_000_000_000L + i,
                        "key-" + i, ("value-" + i + "-").repeat(10));
                r.headers().add("h", ("hv" + i).getBytes(StandardCharsets.UTF_8));
                p.send(r);
            }
            p.flush();
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 1, n);
        for (int i = 0; i < n; i++) {
            ConsumerRecord<String, String> r = got.get(i);
            assertEquals(i, r.offset());
            assertEquals("key-" + i, r.key());
            assertEquals(("value-" + i + "-").repeat(10), r.value());
            assertEquals(1_700_000_000_000L + i, r.timestamp());
            assertEquals(TimestampType.CREATE_TIME, r.timestampType());
            assertArrayEquals(("hv" + i).getBytes(StandardCharsets.UTF_8), r.headers().lastHeader("h").value());
        }
        // compression.type=producer (Kafka's default): the broker keeps the producer's codec.
        int expected = switch (codec) {
            case "gzip" -> 1;
            case "snappy" -> 2;
            case "lz4" -> 3;
            default -> 4;
        };
        for (int[] b : segmentBatches(topic, 0)) {
            assertEquals(expected, b[1] & 7, "codec of the stored batch");
        }
    }

    @Test
    void keysHeadersTimestampsNullsRoundTrip() throws Exception {
        String topic = "p-fields";
        createTopic(admin, topic, 1);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        List<ProducerRecord<byte[], byte[]>> sent = new ArrayList<>();
        long ts = 1_600_000_000_123L;
        // null key, null value (tombstone), empty key and value, binary bytes, big value
        byte[] binary = new byte[256];
        for (int i = 0; i < binary.length; i++) {
            binary[i] = (byte) i;
        }
        byte[] big = new byte[200_000];
        new java.util.Random(7).nextBytes(big);
        sent.add(new ProducerRecord<>(topic, 0, ts, null, "no-key".getBytes(StandardCharsets.UTF_8)));
        sent.add(new ProducerRecord<>(topic, 0, ts + 1, "tomb".getBytes(StandardCharsets.UTF_8), (byte[]) null));
        sent.add(new ProducerRecord<>(topic, 0, ts + 2, new byte[0], new byte[0]));
        sent.add(new ProducerRecord<>(topic, 0, ts - 1000, binary, binary)); // timestamps need not increase
        sent.add(new ProducerRecord<>(topic, 0, 0L, "epoch".getBytes(StandardCharsets.UTF_8), big));
        List<Header> headers = List.of(new RecordHeader("a", "1".getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("a", "2".getBytes(StandardCharsets.UTF_8)), // repeated key, order kept
                new RecordHeader("null-value", null),
                new RecordHeader("ünïcødé", "✓".getBytes(StandardCharsets.UTF_8)));
        sent.add(new ProducerRecord<>(topic, 0, ts + 3, "with-headers".getBytes(StandardCharsets.UTF_8),
                "v".getBytes(StandardCharsets.UTF_8), headers));
        List<RecordMetadata> mds = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(props)) {
            for (ProducerRecord<byte[], byte[]> r : sent) {
                mds.add(p.send(r).get(30, TimeUnit.SECONDS));
            }
        }
        for (int i = 0; i < sent.size(); i++) {
            assertEquals(i, mds.get(i).offset());
            assertEquals(sent.get(i).timestamp().longValue(), mds.get(i).timestamp(),
                    "CreateTime topic: the metadata carries the record's own timestamp");
        }
        Properties cp = ClientSupport.consumerProps(broker, null);
        cp.put("key.deserializer", ByteArrayDeserializer.class.getName());
        cp.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<byte[], byte[]>> got = pollN(c, sent.size(), Duration.ofSeconds(60));
            assertEquals(sent.size(), got.size());
            for (int i = 0; i < sent.size(); i++) {
                ProducerRecord<byte[], byte[]> s = sent.get(i);
                ConsumerRecord<byte[], byte[]> r = got.get(i);
                assertArrayEquals(s.key(), r.key(), "key of record " + i);
                assertArrayEquals(s.value(), r.value(), "value of record " + i);
                assertEquals(s.timestamp().longValue(), r.timestamp(), "timestamp of record " + i);
                assertEquals(TimestampType.CREATE_TIME, r.timestampType());
                Header[] want = s.headers().toArray();
                Header[] have = r.headers().toArray();
                assertEquals(want.length, have.length, "header count of record " + i);
                for (int h = 0; h < want.length; h++) {
                    assertEquals(want[h].key(), have[h].key());
                    assertArrayEquals(want[h].value(), have[h].value());
                }
            }
            assertNull(got.get(0).key());
            assertNull(got.get(1).value());
        }
    }

    @Test
    void logAppendTimeTopicStampsBrokerTime() throws Exception {
        String topic = "p-logappend";
        createTopic(admin, topic, 1, Map.of("message.timestamp.type", "LogAppendTime"));
        long before = System.currentTimeMillis();
        RecordMetadata md;
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            md = p.send(new ProducerRecord<>(topic, 0, 1000L, "k", "v")).get(30, TimeUnit.SECONDS);
        }
        long after = System.currentTimeMillis();
        assertTrue(md.timestamp() >= before - 5000 && md.timestamp() <= after + 5000,
                "LogAppendTime: the producer learns the broker's append time, got " + md.timestamp());
        ConsumerRecord<String, String> r = readAll(topic, 1, 1).get(0);
        assertEquals(TimestampType.LOG_APPEND_TIME, r.timestampType());
        assertEquals(md.timestamp(), r.timestamp());
        assertEquals("v", r.value());
    }

    @Test
    void orderingPerPartitionWithFiveInFlight() throws Exception {
        String topic = "p-order";
        createTopic(admin, topic, 3);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "1024"); // many small batches in flight
        props.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        int n = 6000;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                p.send(new ProducerRecord<>(topic, "key-" + (i % 3), Integer.toString(i)));
            }
            p.flush();
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 3, n);
        Map<String, Integer> lastByKey = new HashMap<>();
        Map<Integer, Long> lastOffset = new HashMap<>();
        for (ConsumerRecord<String, String> r : got) {
            int v = Integer.parseInt(r.value());
            Integer prev = lastByKey.put(r.key(), v);
            assertTrue(prev == null || prev + 3 == v, "per-key order kept: " + prev + " then " + v);
            Long po = lastOffset.put(r.partition(), r.offset());
            assertEquals(po == null ? 0L : po + 1, r.offset(), "dense offsets in partition " + r.partition());
        }
        assertEquals(3, lastByKey.size());
    }

    @Test
    void defaultPartitionerPlacesKeysByMurmur2() throws Exception {
        String topic = "p-murmur";
        int partitions = 7;
        createTopic(admin, topic, partitions);
        int n = 300;
        Map<String, Integer> placed = new HashMap<>();
        try (KafkaProducer<String, String> p = ClientSupport.producer(broker)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, "user-" + i, "v" + i)));
            }
            for (int i = 0; i < n; i++) {
                String key = "user-" + i;
                int expected = Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % partitions;
                int actual = fs.get(i).get(30, TimeUnit.SECONDS).partition();
                assertEquals(expected, actual, "partition of key " + key);
                placed.put(key, actual);
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, partitions, n);
        for (ConsumerRecord<String, String> r : got) {
            assertEquals(placed.get(r.key()).intValue(), r.partition(), "read back from the partition written");
            assertEquals("v" + r.key().substring("user-".length()), r.value());
        }
        assertEquals(partitions, got.stream().map(ConsumerRecord::partition).distinct().count(),
                "300 keys spread over all partitions");
    }

    @ParameterizedTest
    @ValueSource(strings = {"0", "1", "all"})
    void explicitAcksLevels(String acks) throws Exception {
        String topic = "p-acks-" + acks;
        createTopic(admin, topic, 1);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.ACKS_CONFIG, acks);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, acks.equals("all") ? "true" : "false");
        int n = 200;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, "k", "v" + i)));
            }
            p.flush();
            for (int i = 0; i < n; i++) {
                RecordMetadata md = fs.get(i).get(30, TimeUnit.SECONDS);
                if (acks.equals("0")) {
                    assertEquals(-1, md.offset(), "acks=0: no offset known");
                } else {
                    assertEquals(i, md.offset());
                }
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 1, n);
        for (int i = 0; i < n; i++) {
            assertEquals("v" + i, got.get(i).value());
        }
    }

    @Test
    void recordLargerThanTopicMaxMessageBytesIsRefused() throws Exception {
        String topic = "p-toolarge";
        createTopic(admin, topic, 1, Map.of("max.message.bytes", "10000"));
        Properties props = producerProps(broker);
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> p.send(new ProducerRecord<>(topic, "k", "x".repeat(50_000))).get(30, TimeUnit.SECONDS));
            assertInstanceOf(RecordTooLargeException.class, e.getCause());
            // the producer keeps working: a record that fits goes through at offset 0
            RecordMetadata md = p.send(new ProducerRecord<>(topic, "k", "small")).get(30, TimeUnit.SECONDS);
            assertEquals(0, md.offset());
        }
        assertEquals("small", readAll(topic, 1, 1).get(0).value());
    }

    @Test
    void idempotentProducerAcrossBrokerCrash() throws Exception {
        // The broker is SIGKILLed while an idempotent producer has requests in flight, and comes
        // back on the same port and data dir. The producer retries; the broker must recognise
        // the retries of batches it had already written (producer state rebuilt from the log):
        // every record exactly once, in order. Runs last in spirit: other tests reconnect anyway.
        String topic = "p-crash";
        createTopic(admin, topic, 1);
        Properties props = producerProps(broker);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.RETRY_BACKOFF_MS_CONFIG, "200");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        int n = 20_000;
        List<Future<RecordMetadata>> fs = new ArrayList<>(n);
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, "k", Integer.toString(i))));
                if (i == n / 2) {
                    broker.kill();
                    broker.restart();
                }
            }
            p.flush();
            long last = -1;
            for (int i = 0; i < n; i++) {
                RecordMetadata md = fs.get(i).get(120, TimeUnit.SECONDS);
                assertTrue(md.offset() > last, "acknowledged offsets increase");
                last = md.offset();
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 1, n);
        for (int i = 0; i < n; i++) {
            assertEquals(Integer.toString(i), got.get(i).value(), "record " + i + ": exactly once, in order");
            assertEquals(i, got.get(i).offset());
        }
    }

    /**
     * The batches of partition 0's first segment as {base offset, attributes, producer id != -1 ? 1 : -1}:
     * read from the segment file, which holds v2 batches exactly as served.
     */
    private static List<int[]> segmentBatches(String topic, int partition) throws Exception {
        Path log = broker.dataDir().resolve(topic + "-" + partition).resolve("00000000000000000000.log");
        assertTrue(Files.exists(log), "segment file " + log);
        ByteBuffer buf = ByteBuffer.wrap(Files.readAllBytes(log));
        List<int[]> out = new ArrayList<>();
        while (buf.remaining() >= 61) {
            int start = buf.position();
            long base = buf.getLong(start);
            int len = buf.getInt(start + 8);
            if (len <= 0 || start + 12 + len > buf.limit()) {
                break;
            }
            short attrs = buf.getShort(start + 21);
            long pid = buf.getLong(start + 43);
            out.add(new int[] {(int) base, attrs, pid >= 0 ? 1 : -1});
            buf.position(start + 12 + len);
        }
        assertTrue(!out.isEmpty(), "at least one batch in " + log);
        return out;
    }
}
