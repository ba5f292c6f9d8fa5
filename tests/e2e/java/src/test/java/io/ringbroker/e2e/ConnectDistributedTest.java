package io.ringbroker.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka Connect in distributed mode against the real broker: a worker
 * (ConnectDistributed) in its own JVM with its config/offset/status topics on
 * the broker, a FileStreamSource (file -> topic) and a FileStreamSink
 * (topic -> file) created over the REST API. Lines written to the source file
 * must reach the sink file in order, across a clean worker restart (SIGTERM,
 * start again; lines appended while it is down), with no loss and — a clean
 * stop commits source offsets and sink consumer offsets — no duplicate.
 */
class ConnectDistributedTest {
    private static final String GROUP = "connect-e2e";
    private static final String CONFIG_TOPIC = "connect-e2e-configs";
    private static final String OFFSET_TOPIC = "connect-e2e-offsets";
    private static final String STATUS_TOPIC = "connect-e2e-status";
    private static final String DATA_TOPIC = "connect-e2e-lines";
    private static final Duration WORKER_START_TIMEOUT = Duration.ofSeconds(90);
    private static final Duration WORKER_STOP_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration FLOW_TIMEOUT = Duration.ofSeconds(90);

    private Broker broker;
    private Admin admin;
    private Path dir;
    private Path sourceFile;
    private Path sinkFile;
    private Path workerLog;
    private Path workerProps;
    private int restPort;
    private Process worker;
    private int workerStarts;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<String> written = new ArrayList<>();

    @AfterEach
    void tearDown() throws Exception {
        if (worker != null && worker.isAlive()) {
            worker.destroy();
            if (!worker.waitFor(WORKER_STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                worker.destroyForcibly();
                worker.waitFor(10, TimeUnit.SECONDS);
            }
        }
        if (admin != null) {
            admin.close(Duration.ofSeconds(5));
        }
        if (broker != null) {
            broker.close();
        }
    }

    @Test
    @Timeout(value = 480, unit = TimeUnit.SECONDS)
    void fileSourceToSinkSurvivesWorkerRestart() throws Exception {
        broker = Broker.startWith(Map.of("broker.group_initial_rebalance_delay_ms", "0"));
        admin = Admin.create(broker.clientProps());
        admin.createTopics(List.of(new NewTopic(DATA_TOPIC, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);

        dir = Files.createTempDirectory("ringbroker-connect-");
        sourceFile = dir.resolve("source.txt");
        sinkFile = dir.resolve("sink.txt");
        workerLog = dir.resolve("worker.log");
        Files.createFile(sourceFile);
        restPort = freePort();
        workerProps = dir.resolve("worker.properties");
        Files.writeString(workerProps, String.join("\n",
                "bootstrap.servers=" + broker.bootstrap(),
                "group.id=" + GROUP,
                "key.converter=org.apache.kafka.connect.storage.StringConverter",
                "value.converter=org.apache.kafka.connect.storage.StringConverter",
                "config.storage.topic=" + CONFIG_TOPIC,
                "offset.storage.topic=" + OFFSET_TOPIC,
                "status.storage.topic=" + STATUS_TOPIC,
                "config.storage.replication.factor=1",
                "offset.storage.replication.factor=1",
                "status.storage.replication.factor=1",
                "offset.storage.partitions=5",
                "status.storage.partitions=3",
                "offset.flush.interval.ms=1000",
                "listeners=http://127.0.0.1:" + restPort,
                "rest.advertised.host.name=127.0.0.1",
                "rest.advertised.port=" + restPort,
                // The FileStream connectors (connect-file) are on the worker's classpath, not
                // under a plugin.path; connect-file ships ServiceLoader manifests, so
                // service_load finds them without scanning the whole classpath.
                "plugin.discovery=service_load",
                // A restarted single worker should get its connectors back at once.
                "scheduled.rebalance.max.delay.ms=5000",
                "session.timeout.ms=10000",
                "heartbeat.interval.ms=2000",
                "") );

        startWorker();
        createConnector("file-source", Map.of(
                "connector.class", "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max", "1",
                "file", sourceFile.toString(),
                "topic", DATA_TOPIC));
        createConnector("file-sink", Map.of(
                "connector.class", "org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max", "1",
                "file", sinkFile.toString(),
                "topics", DATA_TOPIC));
        awaitRunning("file-source");
        awaitRunning("file-sink");

        appendLines(300);
        awaitSinkHasAll("before worker restart");

        verifyInternalTopics();

        // Clean worker restart; lines appended while it is down must not be lost.
        stopWorker();
        appendLines(100);
        startWorker();
        awaitRunning("file-source");
        awaitRunning("file-sink");
        appendLines(200);
        awaitSinkHasAll("after worker restart");

        // Let a few more offset flushes pass, then check nothing more arrives (no late duplicates).
        Thread.sleep(3000);
        awaitSinkHasAll("settled");

        // Broker restart under the running worker, lines appended while the broker is down and
        // after. The worker keeps running; its sink consumer may lose its partitions (a join
        // answered by the old process, ILLEGAL_GENERATION at the new one) and re-deliver from
        // the last committed offset: at-least-once allows duplicates here, not loss or reordering.
        broker.stop();
        appendLines(100);
        broker.restart();
        appendLines(100);
        awaitSinkAtLeastOnce("after broker restart");
        awaitRunning("file-source");
        awaitRunning("file-sink");
        stopWorker();
    }

    /**
     * Every written line is in the sink file, and the file is a sequence of
     * contiguous runs of the written lines (each run a re-delivery from some
     * earlier point): nothing lost, nothing out of order, duplicates only as
     * replays.
     */
    private void awaitSinkAtLeastOnce(String phase) throws Exception {
        long deadline = System.nanoTime() + FLOW_TIMEOUT.toNanos();
        List<String> got = List.of();
        while (System.nanoTime() < deadline) {
            got = sinkLines();
            if (got.size() >= written.size() && got.containsAll(Set.copyOf(written))
                    && got.get(got.size() - 1).equals(written.get(written.size() - 1))) {
                break;
            }
            if (!worker.isAlive()) {
                fail(phase + ": Connect worker died (exit " + worker.exitValue() + ")\n" + diagnostics());
            }
            Thread.sleep(250);
        }
        List<String> missing = new ArrayList<>(written);
        missing.removeAll(Set.copyOf(got));
        if (!missing.isEmpty()) {
            fail(phase + ": sink file misses " + missing.size() + " of " + written.size() + " lines within "
                    + FLOW_TIMEOUT + "; first missing: " + missing.subList(0, Math.min(5, missing.size())) + "\n"
                    + diagnostics());
        }
        Map<String, Integer> index = new java.util.HashMap<>();
        for (int i = 0; i < written.size(); i++) {
            index.put(written.get(i), i);
        }
        int prev = -1;
        int replays = 0;
        int highest = -1;
        for (int i = 0; i < got.size(); i++) {
            Integer at = index.get(got.get(i));
            assertTrue(at != null, phase + ": sink line " + i + " was never written: " + got.get(i));
            if (at != prev + 1) {
                // A replay may restart at any earlier line, but must not skip ahead of what was delivered.
                assertTrue(at <= highest, phase + ": sink line " + i + " (" + got.get(i) + ") skips ahead of "
                        + written.get(prev) + "\n" + diagnostics());
                replays++;
            }
            highest = Math.max(highest, at);
            prev = at;
        }
        System.out.println(phase + ": sink file " + got.size() + " lines for " + written.size() + " written, "
                + replays + " replay(s), " + (got.size() - written.size()) + " duplicate line(s)");
    }

    private void startWorker() throws Exception {
        String cp = System.getProperty("surefire.test.class.path");
        if (cp == null || cp.isEmpty()) {
            cp = System.getProperty("java.class.path");
        }
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = List.of(java.toString(), "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.consumer.internals.ConsumerCoordinator=info",
                "-Dorg.slf4j.simpleLogger.log.org.reflections=error",
                "-cp", cp, "org.apache.kafka.connect.cli.ConnectDistributed", workerProps.toString());
        workerStarts++;
        Files.writeString(workerLog, "\n===== worker start #" + workerStarts + " =====\n", StandardCharsets.UTF_8,
                StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        worker = new ProcessBuilder(cmd)
                .directory(dir.toFile())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(workerLog.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        long deadline = System.nanoTime() + WORKER_START_TIMEOUT.toNanos();
        while (true) {
            if (!worker.isAlive()) {
                fail("Connect worker exited with " + worker.exitValue() + " while starting\n" + diagnostics());
            }
            try {
                HttpResponse<String> r = get("/connectors");
                if (r.statusCode() == 200) {
                    return;
                }
            } catch (IOException e) {
                // not listening yet
            }
            if (System.nanoTime() > deadline) {
                fail("Connect worker REST not ready within " + WORKER_START_TIMEOUT + "\n" + diagnostics());
            }
            Thread.sleep(250);
        }
    }

    private void stopWorker() throws Exception {
        worker.destroy(); // SIGTERM: the worker stops its tasks, commits offsets, leaves the group
        if (!worker.waitFor(WORKER_STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
            worker.destroyForcibly();
            fail("Connect worker did not exit within " + WORKER_STOP_TIMEOUT + " of SIGTERM\n" + diagnostics());
        }
        // 143 = killed by SIGTERM after the shutdown hook ran; 0 if it exited by itself.
        int code = worker.exitValue();
        assertTrue(code == 143 || code == 0, "worker exit code " + code + "\n" + diagnostics());
    }

    private void createConnector(String name, Map<String, String> config) throws Exception {
        StringBuilder json = new StringBuilder("{\"name\":\"").append(name).append("\",\"config\":{");
        boolean first = true;
        for (Map.Entry<String, String> e : config.entrySet()) {
            if (!first) {
                json.append(',');
            }
            first = false;
            json.append('"').append(jsonEscape(e.getKey())).append("\":\"").append(jsonEscape(e.getValue()))
                    .append('"');
        }
        json.append("}}");
        long deadline = System.nanoTime() + FLOW_TIMEOUT.toNanos();
        while (true) {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(rest("/connectors"))
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(json.toString()))
                    .build(), HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() == 201) {
                return;
            }
            // 409: rebalance in progress / not leader yet: retry.
            if (r.statusCode() != 409 || System.nanoTime() > deadline) {
                fail("creating connector " + name + ": HTTP " + r.statusCode() + " " + r.body() + "\n"
                        + diagnostics());
            }
            Thread.sleep(500);
        }
    }

    private void awaitRunning(String name) throws Exception {
        long deadline = System.nanoTime() + FLOW_TIMEOUT.toNanos();
        String last = "";
        while (System.nanoTime() < deadline) {
            if (!worker.isAlive()) {
                fail("Connect worker died (exit " + worker.exitValue() + ")\n" + diagnostics());
            }
            try {
                HttpResponse<String> r = get("/connectors/" + name + "/status");
                last = r.statusCode() + " " + r.body();
                if (r.statusCode() == 200) {
                    String b = r.body().replace(" ", "");
                    if (b.contains("FAILED")) {
                        fail("connector " + name + " failed: " + r.body() + "\n" + diagnostics());
                    }
                    // connector RUNNING and its one task RUNNING
                    int running = b.split("\"state\":\"RUNNING\"", -1).length - 1;
                    if (running >= 2) {
                        return;
                    }
                }
            } catch (IOException e) {
                last = e.toString();
            }
            Thread.sleep(250);
        }
        fail("connector " + name + " not RUNNING within " + FLOW_TIMEOUT + " (last status: " + last + ")\n"
                + diagnostics());
    }

    private void appendLines(int n) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            String line = String.format("line-%05d payload-%d", written.size(), (written.size() * 7919) % 10007);
            written.add(line);
            sb.append(line).append('\n');
        }
        Files.writeString(sourceFile, sb.toString(), StandardCharsets.UTF_8, StandardOpenOption.APPEND);
    }

    /** Waits until the sink file holds every written line; then it must be exactly them, in order. */
    private void awaitSinkHasAll(String phase) throws Exception {
        long deadline = System.nanoTime() + FLOW_TIMEOUT.toNanos();
        List<String> got = List.of();
        while (System.nanoTime() < deadline) {
            got = sinkLines();
            if (got.size() >= written.size() && got.containsAll(Set.copyOf(written))) {
                break;
            }
            if (!worker.isAlive()) {
                fail(phase + ": Connect worker died (exit " + worker.exitValue() + ")\n" + diagnostics());
            }
            Thread.sleep(250);
        }
        if (got.size() < written.size() || !got.containsAll(Set.copyOf(written))) {
            List<String> missing = new ArrayList<>(written);
            missing.removeAll(Set.copyOf(got));
            fail(phase + ": sink file has " + got.size() + " lines of " + written.size() + " within " + FLOW_TIMEOUT
                    + "; first missing: " + missing.subList(0, Math.min(5, missing.size())) + "\n" + diagnostics());
        }
        if (!got.equals(written)) {
            List<String> dups = new ArrayList<>();
            Set<String> seen = new java.util.HashSet<>();
            for (String l : got) {
                if (!seen.add(l)) {
                    dups.add(l);
                }
            }
            fail(phase + ": sink file has every line but not exactly once in order: " + got.size() + " lines for "
                    + written.size() + " written, " + dups.size() + " duplicates (first: "
                    + dups.subList(0, Math.min(5, dups.size())) + ")\n" + diagnostics());
        }
        assertEquals(written, got, phase);
    }

    private List<String> sinkLines() throws IOException {
        if (!Files.exists(sinkFile)) {
            return List.of();
        }
        String s = Files.readString(sinkFile, StandardCharsets.UTF_8);
        List<String> lines = new ArrayList<>(List.of(s.split("\n", -1)));
        // Only complete lines: the last element is "" or a partly written line.
        lines.remove(lines.size() - 1);
        return lines;
    }

    private void verifyInternalTopics() throws Exception {
        Set<String> topics = admin.listTopics().names().get(30, TimeUnit.SECONDS);
        List<ConfigResource> resources = new ArrayList<>();
        for (String t : List.of(CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC)) {
            assertTrue(topics.contains(t), "Connect internal topic " + t + " missing: " + topics);
            resources.add(new ConfigResource(ConfigResource.Type.TOPIC, t));
        }
        Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get(30, TimeUnit.SECONDS);
        for (ConfigResource r : resources) {
            assertEquals("compact", configs.get(r).get("cleanup.policy").value(), r.name() + " cleanup.policy");
        }
        Map<String, org.apache.kafka.clients.admin.TopicDescription> desc = admin
                .describeTopics(List.of(CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC)).allTopicNames()
                .get(30, TimeUnit.SECONDS);
        assertEquals(1, desc.get(CONFIG_TOPIC).partitions().size(), "config topic must have one partition");
        assertEquals(5, desc.get(OFFSET_TOPIC).partitions().size(), "offset topic partitions");
        assertEquals(3, desc.get(STATUS_TOPIC).partitions().size(), "status topic partitions");
    }

    private HttpResponse<String> get(String path) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(rest(path)).timeout(Duration.ofSeconds(10)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private URI rest(String path) {
        return URI.create("http://127.0.0.1:" + restPort + path);
    }

    private String diagnostics() {
        String w;
        try {
            w = Files.readString(workerLog, StandardCharsets.UTF_8);
            w = w.length() > 15_000 ? w.substring(w.length() - 15_000) : w;
        } catch (IOException e) {
            w = "(no worker log: " + e + ")";
        }
        return "--- worker log (" + workerLog + ") tail ---\n" + w + "\n--- broker log (" + broker.logFile()
                + ") tail ---\n" + broker.logTail();
    }

    private static String jsonEscape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"");
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }
}
