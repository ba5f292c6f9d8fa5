package io.ringbroker.e2e;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;

/**
 * A consumer-group member polling in its own thread (KafkaConsumer is
 * single-threaded; the test thread only observes). It records every
 * rebalance callback, the partitions it owns (maintained from the callbacks,
 * so it is right for eager and cooperative protocols alike), every record it
 * consumed, and commits synchronously after each non-empty poll and on
 * revocation, so a clean rebalance loses and repeats nothing.
 */
final class GroupMember implements AutoCloseable {
    enum Kind { ASSIGNED, REVOKED, LOST }

    record Event(Kind kind, Set<TopicPartition> partitions, long atNanos) {}

    final String name;
    private final KafkaConsumer<String, String> consumer;
    private final List<String> topics;
    private final Thread thread;
    private volatile boolean stop;
    private volatile boolean closeWithoutCommit;
    final List<Event> events = new CopyOnWriteArrayList<>();
    private final Set<TopicPartition> owned = new HashSet<>();
    final ConcurrentLinkedQueue<ConsumerRecord<String, String>> consumed = new ConcurrentLinkedQueue<>();
    final List<Throwable> errors = new CopyOnWriteArrayList<>();
    volatile String memberId = "";
    volatile int generation = -1;
    volatile boolean closed;
    volatile int retriableCommitFailures;
    private boolean pendingCommit;

    GroupMember(String name, Properties props, List<String> topics) {
        this.name = name;
        this.consumer = new KafkaConsumer<>(props);
        this.topics = topics;
        this.thread = new Thread(this::run, "member-" + name);
        this.thread.setDaemon(true);
    }

    static GroupMember start(String name, Properties props, List<String> topics) {
        GroupMember m = new GroupMember(name, props, topics);
        m.thread.start();
        return m;
    }

    synchronized Set<TopicPartition> owned() {
        return new HashSet<>(owned);
    }

    private synchronized void add(Collection<TopicPartition> ps) {
        owned.addAll(ps);
    }

    private synchronized void remove(Collection<TopicPartition> ps) {
        owned.removeAll(ps);
    }

    List<Event> events(Kind kind) {
        List<Event> out = new ArrayList<>();
        for (Event e : events) {
            if (e.kind() == kind) {
                out.add(e);
            }
        }
        return out;
    }

    private void run() {
        try {
            consumer.subscribe(topics, new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    events.add(new Event(Kind.REVOKED, Set.copyOf(ps), System.nanoTime()));
                    if (!ps.isEmpty() && !closeWithoutCommit) {
                        commit();
                    }
                    remove(ps);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    events.add(new Event(Kind.ASSIGNED, Set.copyOf(ps), System.nanoTime()));
                    add(ps);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    events.add(new Event(Kind.LOST, Set.copyOf(ps), System.nanoTime()));
                    remove(ps);
                }
            });
            while (!stop) {
                ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(100));
                recs.forEach(consumed::add);
                memberId = consumer.groupMetadata().memberId();
                generation = consumer.groupMetadata().generationId();
                if (!recs.isEmpty() || pendingCommit) {
                    commit();
                }
            }
        } catch (RuntimeException e) {
            errors.add(e);
        } finally {
            try {
                consumer.close(Duration.ofSeconds(20));
            } catch (RuntimeException e) {
                errors.add(e);
            }
            closed = true;
        }
    }

    /**
     * Commits the consumed positions. RebalanceInProgressException is the client's own
     * "not now" while it rejoins (a cooperative member keeps consuming during a rebalance):
     * not an error, the commit is retried after the next poll.
     */
    private void commit() {
        try {
            consumer.commitSync(Duration.ofSeconds(20));
            pendingCommit = false;
        } catch (RebalanceInProgressException e) {
            retriableCommitFailures++;
            pendingCommit = true;
        } catch (RuntimeException e) {
            errors.add(e);
        }
    }

    /** Stops polling and closes the consumer (dynamic members send LeaveGroup); waits for it. */
    @Override
    public void close() {
        stop = true;
        try {
            thread.join(60_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            throw new AssertionError("member " + name + " did not close within 60 s");
        }
    }

    boolean isAlive() {
        return thread.isAlive();
    }
}
