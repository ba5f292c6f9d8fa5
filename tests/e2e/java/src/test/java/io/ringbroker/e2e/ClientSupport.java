package io.ringbroker.e2e;

import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Shared helpers of the Java client tests (ProducerTest, ConsumerTest,
 * GroupAssignorTest, StaticMembershipTest, AdminClientTest): clients against a
 * {@link Broker}, and bounded waits. Every admin future is awaited with
 * {@link #get}, which fails the test after {@link #ADMIN_TIMEOUT} instead of
 * hanging.
 */
final class ClientSupport {
    static final Duration ADMIN_TIMEOUT = Duration.ofSeconds(30);

    private ClientSupport() {}

    static Admin admin(Broker broker) {
        Properties p = broker.clientProps();
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "25000");
        return Admin.create(p);
    }

    static Properties producerProps(Broker broker) {
        Properties p = broker.clientProps();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        return p;
    }

    static KafkaProducer<String, String> producer(Broker broker) {
        return new KafkaProducer<>(producerProps(broker));
    }

    static Properties consumerProps(Broker broker, String groupId) {
        Properties p = broker.clientProps();
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        if (groupId != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        }
        return p;
    }

    static KafkaConsumer<String, String> consumer(Broker broker, String groupId) {
        return new KafkaConsumer<>(consumerProps(broker, groupId));
    }

    /** Creates a topic and waits for the answer. */
    static void createTopic(Admin admin, String name, int partitions, Map<String, String> configs) {
        NewTopic t = new NewTopic(name, partitions, (short) 1);
        if (configs != null) {
            t.configs(configs);
        }
        get(admin.createTopics(List.of(t)).all());
    }

    static void createTopic(Admin admin, String name, int partitions) {
        createTopic(admin, name, partitions, null);
    }

    /** Awaits an admin future for at most ADMIN_TIMEOUT; unwraps ExecutionException. */
    static <T> T get(KafkaFuture<T> f) {
        try {
            return f.get(ADMIN_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException(e);
        } catch (TimeoutException e) {
            throw new AssertionError("admin call did not complete within " + ADMIN_TIMEOUT
                    + " (the broker must answer or refuse, never hang)", e);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RuntimeException re) {
                throw re;
            }
            throw new RuntimeException(c);
        }
    }

    /** Awaits a future expected to fail; returns its cause. Fails on success or timeout. */
    static Throwable failure(KafkaFuture<?> f) {
        try {
            Object v = f.get(ADMIN_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            throw new AssertionError("expected the call to fail, but it returned " + v);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException(e);
        } catch (TimeoutException e) {
            throw new AssertionError("admin call did not complete within " + ADMIN_TIMEOUT, e);
        } catch (ExecutionException e) {
            return e.getCause();
        }
    }

    /** Polls until {@code n} records were received or {@code timeout} passed. */
    static <K, V> List<ConsumerRecord<K, V>> pollN(KafkaConsumer<K, V> consumer, int n, Duration timeout) {
        List<ConsumerRecord<K, V>> out = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (out.size() < n && System.nanoTime() < deadline) {
            ConsumerRecords<K, V> recs = consumer.poll(Duration.ofMillis(200));
            recs.forEach(out::add);
        }
        if (out.size() < n) {
            fail("received " + out.size() + " of " + n + " records within " + timeout);
        }
        return out;
    }

    /** Polls until the condition holds (bounded). */
    static void pollUntil(KafkaConsumer<?, ?> consumer, BooleanSupplier cond, Duration timeout, String what) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeout + " waiting for " + what);
            }
            consumer.poll(Duration.ofMillis(100));
        }
    }

    /** Waits (sleeping) until the condition holds. */
    static void waitUntil(BooleanSupplier cond, Duration timeout, Supplier<String> what) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeout + " waiting for " + what.get());
            }
            Broker.sleep(50);
        }
    }

    static <T> Set<T> union(Collection<? extends Collection<T>> sets) {
        Set<T> all = new java.util.HashSet<>();
        sets.forEach(all::addAll);
        return all;
    }
}
