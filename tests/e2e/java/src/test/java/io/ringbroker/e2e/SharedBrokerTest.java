package io.ringbroker.e2e;

import java.io.IOException;
import java.time.Duration;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.junit.jupiter.api.AfterAll;

/**
 * Base of the client test classes that share one broker and one admin client
 * per class (ProducerTest, ConsumerTest, GroupAssignorTest,
 * StaticMembershipTest, AdminClientTest). Each class starts them in its own
 * {@code @BeforeAll} with {@link #startBroker(Map)}; after its last test the
 * admin client is closed and the broker stopped cleanly (exit code 0 asserted).
 * Test classes run one after another (see pom.xml), so the static fields are
 * never shared by two running classes.
 */
abstract class SharedBrokerTest {
    /**
     * Kafka's group.initial.rebalance.delay.ms is 3 s; shorter keeps the group
     * tests quick.
     */
    static final Map<String, String> SHORT_REBALANCE_DELAY = Map.of("broker.group_initial_rebalance_delay_ms", "300");

    static Broker broker;
    static Admin admin;

    /**
     * Starts the class's broker on the default profile, with {@code overrides}
     * (see {@link Broker#startWith}) if there are any, and its admin client.
     */
    static void startBroker(Map<String, String> overrides) throws IOException {
        broker = overrides.isEmpty() ? Broker.start() : Broker.startWith(overrides);
        admin = ClientSupport.admin(broker);
    }

    @AfterAll
    static void stopBroker() throws Exception {
        if (admin != null) {
            admin.close(Duration.ofSeconds(10));
        }
        if (broker != null) {
            broker.stop();
            broker.close();
        }
        admin = null;
        broker = null;
    }
}
