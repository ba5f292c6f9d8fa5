package io.ringbroker.e2e;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

/**
 * The real ringbroker binary, run for a test: its own data directory and free
 * loopback ports, stderr to a log file whose tail is attached to failures.
 *
 * <p>RINGBROKER_BIN names the binary (default: target/release/ringbroker of the
 * repository), RINGBROKER_CONFIG the profile (default tuning/default.toml).
 * Extra {@code [broker]}/{@code [topic_defaults]} settings can be passed as
 * TOML lines, written to a config file that includes the profile's settings.
 */
public final class Broker implements AutoCloseable {
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(30);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);

    private final Path binary;
    private final Path config;
    private final Path baseDir;
    private final Path dataDir;
    private final Path logFile;
    private final int port;
    private final int adminPort;
    private Process process;
    private int starts;
    /** Cluster membership: node id, cluster listener port, the voters (empty for a single node). */
    private int nodeId;
    private int clusterPort;
    private String voters = "";
    /** Set by {@link #kill()}: the process's end was the test's doing, not a crash. */
    private boolean killedByTest;

    private Broker(Path config) throws IOException {
        Path repo = repoRoot();
        String bin = System.getenv("RINGBROKER_BIN");
        this.binary = bin != null ? Paths.get(bin) : repo.resolve("target/release/ringbroker");
        this.config = config;
        this.baseDir = Files.createTempDirectory("ringbroker-java-e2e-");
        this.dataDir = baseDir.resolve("data");
        Files.createDirectories(dataDir);
        this.logFile = baseDir.resolve("broker.stderr.log");
        int[] ports = freePorts(2);
        this.port = ports[0];
        this.adminPort = ports[1];
    }

    /** Starts a broker on the default profile. */
    public static Broker start() throws IOException {
        return start(defaultConfig());
    }

    /** Starts a broker on the given config file. */
    public static Broker start(Path config) throws IOException {
        Broker b = new Broker(config);
        b.launch();
        return b;
    }

    /**
     * Starts a broker on the default profile with some settings replaced:
     * {@code overrides} maps "section.key" (e.g. "broker.num_partitions",
     * "topic_defaults.\"retention.ms\"") to a TOML value literal.
     */
    public static Broker startWith(Map<String, String> overrides) throws IOException {
        Path base = Files.createTempDirectory("ringbroker-java-config-");
        Path cfg = base.resolve("broker.toml");
        Files.writeString(cfg, TomlOverlay.apply(Files.readString(defaultConfig()), overrides));
        return start(cfg);
    }

    /**
     * Starts {@code n} brokers on the default profile as one cluster: nodes 0..n-1, every one a
     * voter of the metadata quorum, all on 127.0.0.1. Returns once each answers (a voter is ready
     * once a majority runs, so all are launched before any is awaited).
     */
    public static List<Broker> startCluster(int n) throws IOException {
        List<Broker> nodes = new ArrayList<>();
        int[] clusterPorts = freePorts(n);
        StringBuilder voters = new StringBuilder();
        for (int i = 0; i < n; i++) {
            voters.append(i == 0 ? "" : ",").append(i).append("@127.0.0.1:").append(clusterPorts[i]);
        }
        for (int i = 0; i < n; i++) {
            Broker b = new Broker(defaultConfig());
            b.nodeId = i;
            b.clusterPort = clusterPorts[i];
            b.voters = voters.toString();
            nodes.add(b);
        }
        try {
            for (Broker b : nodes) {
                b.spawn();
            }
            for (Broker b : nodes) {
                b.waitReady();
            }
        } catch (IOException | RuntimeException e) {
            for (Broker b : nodes) {
                try {
                    b.close();
                } catch (RuntimeException closing) {
                    e.addSuppressed(closing);
                }
            }
            throw e;
        }
        return nodes;
    }

    /** This broker's node id (0 for a single node). */
    public int nodeId() {
        return nodeId;
    }

    public static Path repoRoot() {
        String env = System.getenv("RINGBROKER_REPO");
        if (env != null) {
            return Paths.get(env);
        }
        // tests/e2e/java -> repository root
        return Paths.get(System.getProperty("user.dir")).resolve("../../..").normalize();
    }

    public static Path defaultConfig() {
        String env = System.getenv("RINGBROKER_CONFIG");
        return env != null ? Paths.get(env) : repoRoot().resolve("tuning/default.toml");
    }

    public String bootstrap() {
        return "127.0.0.1:" + port;
    }

    public int port() {
        return port;
    }

    public Path dataDir() {
        return dataDir;
    }

    public Path logFile() {
        return logFile;
    }

    /** Client properties with bootstrap.servers set. */
    public Properties clientProps() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap());
        return p;
    }

    private List<String> command() {
        List<String> cmd = new ArrayList<>();
        cmd.add(binary.toString());
        cmd.add("serve");
        cmd.add("--config");
        cmd.add(config.toString());
        cmd.add("--listen");
        cmd.add(bootstrap());
        cmd.add("--data-dir");
        cmd.add(dataDir.toString());
        cmd.add("--admin-listen");
        cmd.add("127.0.0.1:" + adminPort);
        if (!voters.isEmpty()) {
            cmd.add("--node-id");
            cmd.add(Integer.toString(nodeId));
            cmd.add("--cluster-listen");
            cmd.add("127.0.0.1:" + clusterPort);
            cmd.add("--controller-quorum-voters");
            cmd.add(voters);
        }
        return cmd;
    }

    private void launch() throws IOException {
        spawn();
        waitReady();
    }

    private void spawn() throws IOException {
        killedByTest = false;
        if (!Files.isExecutable(binary)) {
            throw new IllegalStateException("ringbroker binary not found at " + binary
                    + " (cargo build --release --bins, or set RINGBROKER_BIN)");
        }
        starts++;
        Files.writeString(logFile, "\n===== java e2e: start #" + starts + ": " + String.join(" ", command())
                + " =====\n", StandardCharsets.UTF_8,
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        ProcessBuilder pb = new ProcessBuilder(command())
                .directory(baseDir.toFile())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().putIfAbsent("RUST_LOG", "info");
        pb.environment().putIfAbsent("RUST_BACKTRACE", "1");
        process = pb.start();
    }

    private void waitReady() throws IOException {
        long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
        Exception last = null;
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IllegalStateException("broker exited with code " + process.exitValue()
                        + " before becoming ready\n" + logTail());
            }
            try {
                if (apiVersionsAnswers()) {
                    return;
                }
            } catch (IOException e) {
                last = e;
            }
            sleep(100);
        }
        process.destroyForcibly();
        throw new IllegalStateException("broker not ready within " + READY_TIMEOUT + " (last: " + last + ")\n"
                + logTail());
    }

    /**
     * Connects {@code s} to the broker (connect and read timeout {@code timeoutMs}) and sends an
     * ApiVersions v0 request with {@code correlationId}; returns the stream to read the answer from.
     */
    private DataInputStream sendApiVersionsV0(Socket s, int timeoutMs, int correlationId) throws IOException {
        s.connect(new InetSocketAddress("127.0.0.1", port), timeoutMs);
        s.setSoTimeout(timeoutMs);
        DataOutputStream out = new DataOutputStream(s.getOutputStream());
        byte[] client = "java-e2e".getBytes(StandardCharsets.UTF_8);
        out.writeInt(2 + 2 + 4 + 2 + client.length);
        out.writeShort(18); // ApiVersions
        out.writeShort(0);
        out.writeInt(correlationId);
        out.writeShort(client.length);
        out.write(client);
        out.flush();
        return new DataInputStream(s.getInputStream());
    }

    /** Sends ApiVersions v0 and checks for a well-formed answer with error 0. */
    private boolean apiVersionsAnswers() throws IOException {
        try (Socket s = new Socket()) {
            DataInputStream in = sendApiVersionsV0(s, 2000, 1);
            int len = in.readInt();
            if (len < 6 || len > 1 << 20) {
                return false;
            }
            byte[] body = new byte[len];
            in.readFully(body);
            int correlation = ((body[0] & 0xff) << 24) | ((body[1] & 0xff) << 16) | ((body[2] & 0xff) << 8)
                    | (body[3] & 0xff);
            int error = ((body[4] & 0xff) << 8) | (body[5] & 0xff);
            return correlation == 1 && error == 0;
        }
    }

    /**
     * The API versions the running broker advertises (ApiVersions v0): api key -> {min, max}.
     * Lets a test tell "not supported yet, must be refused cleanly" from "supported, must work".
     */
    public Map<Integer, int[]> advertisedApis() throws IOException {
        try (Socket s = new Socket()) {
            DataInputStream in = sendApiVersionsV0(s, 5000, 7);
            int len = in.readInt();
            if (len < 10 || len > 1 << 20) {
                throw new IOException("bad ApiVersions response length " + len);
            }
            if (in.readInt() != 7) {
                throw new IOException("ApiVersions: wrong correlation id");
            }
            short error = in.readShort();
            if (error != 0) {
                throw new IOException("ApiVersions v0 error " + error);
            }
            int n = in.readInt();
            Map<Integer, int[]> apis = new java.util.TreeMap<>();
            for (int i = 0; i < n; i++) {
                int key = in.readShort();
                int min = in.readShort();
                int max = in.readShort();
                apis.put(key, new int[] {min, max});
            }
            return apis;
        }
    }

    /** Whether the broker advertises {@code apiKey} (at any version). */
    public boolean advertises(int apiKey) throws IOException {
        return advertisedApis().containsKey(apiKey);
    }

    /** Clean shutdown (SIGTERM); asserts exit code 0. */
    public void stop() throws IOException {
        if (process == null || !process.isAlive()) {
            return;
        }
        process.destroy();
        try {
            if (!process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new IllegalStateException("broker did not exit within " + STOP_TIMEOUT
                        + " of SIGTERM\n" + logTail());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        if (process.exitValue() != 0) {
            throw new IllegalStateException("broker exited with " + process.exitValue() + " after SIGTERM\n"
                    + logTail());
        }
    }

    /** Crash: SIGKILL and reap. */
    public void kill() {
        if (process != null && process.isAlive()) {
            killedByTest = true;
            process.destroyForcibly();
            try {
                process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Starts the broker again on the same data directory and ports. */
    public void restart() throws IOException {
        if (process != null && process.isAlive()) {
            throw new IllegalStateException("broker still running");
        }
        launch();
    }

    public boolean isRunning() {
        return process != null && process.isAlive();
    }

    public String logTail() {
        try {
            String s = Files.readString(logFile, StandardCharsets.UTF_8);
            return s.length() > 20_000 ? s.substring(s.length() - 20_000) : s;
        } catch (IOException e) {
            return "(no broker log: " + e + ")";
        }
    }

    /**
     * SIGKILLs the broker if it still runs; asserts it had not died on its own. Removes the data
     * directory (the log file stays, beside it) unless RINGBROKER_KEEP_DATA is set.
     */
    @Override
    public void close() {
        boolean died = process != null && !process.isAlive() && process.exitValue() != 0 && !killedByTest;
        kill();
        if (System.getenv("RINGBROKER_KEEP_DATA") == null && (process == null || !process.isAlive())) {
            deleteRecursively(dataDir);
        }
        if (died) {
            throw new IllegalStateException("broker had died during the test\n" + logTail());
        }
    }

    private static void deleteRecursively(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (java.util.stream.Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    // best effort: a leftover temp dir is not a test failure
                }
            });
        } catch (IOException e) {
            // best effort
        }
    }

    private static int[] freePorts(int n) throws IOException {
        int[] ports = new int[n];
        List<ServerSocket> held = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
                held.add(s);
                ports[i] = s.getLocalPort();
            }
        } finally {
            for (ServerSocket s : held) {
                s.close();
            }
        }
        return ports;
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException(e);
        }
    }
}
