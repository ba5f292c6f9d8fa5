package io.ringbroker.oracle;

import java.io.File;
import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BinaryNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.message.ApiMessageType;
import org.apache.kafka.common.message.ApiVersionsRequestData;
import org.apache.kafka.common.message.ApiVersionsResponseData;
import org.apache.kafka.common.message.FindCoordinatorRequestData;
import org.apache.kafka.common.message.FindCoordinatorResponseData;
import org.apache.kafka.common.message.MetadataRequestData;
import org.apache.kafka.common.message.MetadataResponseData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;

/**
 * The differential runner: every case file is a sequence of steps; each API
 * step is sent, at each of its versions, to Kafka and to ringbroker, the two
 * responses are converted to JSON with the generated converters, normalized
 * and diffed; differences are matched against the known-differences file.
 *
 * Usage: Oracle --kafka HOST:PORT --ringbroker HOST:PORT --cases DIR
 *               --known FILE [--report FILE] [--dump DIR] [--only REGEX] [--strict]
 */
public final class Oracle {
    static final ObjectMapper M = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    static final JsonNodeFactory F = JsonNodeFactory.instance;
    static final String PKG = "org.apache.kafka.common.message.";

    // ------------------------------------------------------------------ state
    private final Wire[] wires;                   // [0] kafka, [1] ringbroker
    private final Map<ApiKeys, short[]> advertised = new TreeMap<>();      // ringbroker's ApiVersions
    private final Map<ApiKeys, short[]> kafkaAdvertised = new TreeMap<>();
    private final List<Map<String, JsonNode>> vars = List.of(new HashMap<>(), new HashMap<>());
    private final TreeSet<String> covered = new TreeSet<>();
    private final TreeSet<String> unadvertisedTried = new TreeSet<>();
    private final List<Result> results = new ArrayList<>();
    private final List<String> errors = new ArrayList<>();
    private final List<Known> known = new ArrayList<>();
    private final Path dump;
    private int requests;

    static final class Known {
        final JsonNode spec;
        final Pattern path;
        final Pattern caseName;
        int hits;
        Known(JsonNode spec) {
            this.spec = spec;
            this.path = glob(spec.path("path").asText("*"));
            this.caseName = glob(spec.path("case").asText("*"));
        }
        boolean matches(String cs, ApiKeys api, short v, Compare.Diff d) {
            if (spec.has("api") && !spec.get("api").asText().equals(api.name)) return false;
            if (spec.has("versions") && !inRange(spec.get("versions"), v)) return false;
            if (!caseName.matcher(cs).matches()) return false;
            if (!path.matcher(d.path).matches()) return false;
            if (spec.has("kafka") && !sameValue(spec.get("kafka"), d.kafka)) return false;
            if (spec.has("ringbroker") && !sameValue(spec.get("ringbroker"), d.ringbroker)) return false;
            return true;
        }
        String kind() { return spec.path("kind").asText("legitimate"); }
    }

    static boolean sameValue(JsonNode want, JsonNode got) {
        if (want.equals(got)) return true;
        if (want.isNumber() && got.isNumber()) return want.asLong() == got.asLong();
        return want.isTextual() && want.asText().equals(Compare.compact(got));
    }

    static Pattern glob(String g) {
        StringBuilder sb = new StringBuilder();
        for (char c : g.toCharArray()) {
            if (c == '*') sb.append(".*");
            else if ("\\.[]{}()+-?^$|".indexOf(c) >= 0) sb.append('\\').append(c);
            else sb.append(c);
        }
        return Pattern.compile(sb.toString());
    }

    /** "3-7", "3-", "-7", "5", "all" or an array of those. */
    static boolean inRange(JsonNode spec, short v) {
        if (spec.isArray()) {
            for (JsonNode s : spec) if (inRange(s, v)) return true;
            return false;
        }
        if (spec.isNumber()) return spec.asInt() == v;
        String s = spec.asText();
        if (s.equals("all") || s.equals("*")) return true;
        int dash = s.indexOf('-');
        if (dash < 0) return Integer.parseInt(s) == v;
        int lo = dash == 0 ? Integer.MIN_VALUE : Integer.parseInt(s.substring(0, dash));
        int hi = dash == s.length() - 1 ? Integer.MAX_VALUE : Integer.parseInt(s.substring(dash + 1));
        return v >= lo && v <= hi;
    }

    static final class Result {
        final String caseName;
        final int step;
        final ApiKeys api;
        final short version;
        final boolean advertised;
        final List<Compare.Diff> diffs = new ArrayList<>();
        final List<Known> matched = new ArrayList<>();
        Result(String caseName, int step, ApiKeys api, short version, boolean advertised) {
            this.caseName = caseName; this.step = step; this.api = api; this.version = version; this.advertised = advertised;
        }
    }

    Oracle(String kafka, String ringbroker, Path dump, int timeoutMs) {
        this.wires = new Wire[] {new Wire("kafka", kafka, timeoutMs), new Wire("ringbroker", ringbroker, timeoutMs)};
        this.dump = dump;
    }

    // ------------------------------------------------------------------ main
    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String k = args[i];
            if (k.equals("--strict")) { a.put("strict", "1"); continue; }
            a.put(k.replaceFirst("^--", ""), args[++i]);
        }
        for (String req : List.of("kafka", "ringbroker", "cases", "known")) {
            if (!a.containsKey(req)) {
                System.err.println("usage: Oracle --kafka H:P --ringbroker H:P --cases DIR --known FILE [--report FILE] [--dump DIR] [--only REGEX] [--strict]");
                System.exit(2);
            }
        }
        Path dump = a.containsKey("dump") ? Path.of(a.get("dump")) : null;
        Oracle o = new Oracle(a.get("kafka"), a.get("ringbroker"), dump, Integer.parseInt(a.getOrDefault("timeout-ms", "20000")));
        for (JsonNode k : M.readTree(new File(a.get("known")))) o.known.add(new Known(k));
        long t0 = System.nanoTime();
        o.discover();
        File[] files = new File(a.get("cases")).listFiles((d, n) -> n.endsWith(".json"));
        Arrays.sort(files);
        Pattern only = a.containsKey("only") ? Pattern.compile(a.get("only")) : null;
        int cases = 0;
        for (File f : files) {
            String name = f.getName().replaceFirst("\\.json$", "");
            if (only != null && !only.matcher(name).find()) continue;
            cases++;
            o.runCase(name, M.readTree(f));
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        int rc = o.report(a.get("report"), cases, secs, only == null, a.containsKey("strict"));
        for (Wire w : o.wires) w.close();
        System.exit(rc);
    }

    /** Both brokers' ApiVersions (v3): ringbroker's is what "all" expands to and what coverage is measured against. */
    private void discover() throws IOException {
        for (int b = 0; b < 2; b++) {
            Wire.Reply r = wires[b].send(ApiKeys.API_VERSIONS, (short) 3, (short) 3,
                new ApiVersionsRequestData().setClientSoftwareName("ringbroker-oracle").setClientSoftwareVersion("1"));
            if (r.body == null) throw new IOException(wires[b].name + ": no ApiVersions answer (" + r.outcome + ")");
            ApiVersionsResponseData d = new ApiVersionsResponseData(new ByteBufferAccessor(r.body), (short) 3);
            for (ApiVersionsResponseData.ApiVersion v : d.apiKeys()) {
                if (!ApiKeys.hasId(v.apiKey())) continue;
                (b == 0 ? kafkaAdvertised : advertised).put(ApiKeys.forId(v.apiKey()), new short[] {v.minVersion(), v.maxVersion()});
            }
        }
    }

    // ------------------------------------------------------------------ cases
    private void runCase(String name, JsonNode c) {
        vars.get(0).clear();
        vars.get(1).clear();
        System.out.println("== " + name);
        int i = 0;
        for (JsonNode step : c.path("steps")) {
            i++;
            try {
                runStep(name, i, step);
            } catch (Exception e) {
                String msg = name + " step " + i + ": " + e;
                errors.add(msg);
                System.out.println("  ERROR " + msg);
                if (!(e instanceof IOException)) e.printStackTrace(System.out);
                break;  // later steps depend on this one
            }
        }
    }

    private void runStep(String cs, int idx, JsonNode step) throws Exception {
        if (step.has("sleep")) {
            Thread.sleep(step.get("sleep").asLong());
            return;
        }
        if (step.has("wait")) {
            String what = step.get("wait").asText();
            for (int b = 0; b < 2; b++) {
                if (what.equals("topics")) waitTopics(b, step.get("topics"), step.path("absent").asBoolean(false));
                else if (what.equals("coordinator")) waitCoordinator(b, step.get("group").asText());
                else if (what.equals("groups")) waitGroups(b, step.get("groups"));
                else if (what.equals("producerId")) waitProducerId(b);
                else throw new IllegalArgumentException("unknown wait " + what);
            }
            return;
        }
        if (step.has("each")) {
            // Repeat the step for each value of ${i} (a range "a-b" or a list).
            List<String> values = new ArrayList<>();
            JsonNode each = step.get("each");
            if (each.isArray()) each.forEach(x -> values.add(x.asText()));
            else {
                String[] r = each.asText().split("-");
                for (int x = Integer.parseInt(r[0]); x <= Integer.parseInt(r[1]); x++) values.add(Integer.toString(x));
            }
            for (String val : values) {
                ObjectNode one = (ObjectNode) M.readTree(step.toString().replace("${i}", val));
                one.remove("each");
                runStep(cs, idx, one);
            }
            return;
        }
        ApiKeys api = apiByName(step.get("api").asText());
        boolean compare = step.path("compare").asBoolean(true);
        for (Wire w : wires) w.timeoutMs(step.path("timeoutMs").asInt(20_000));
        for (short v : versions(api, step.path("versions"))) {
            boolean adv = advertised.containsKey(api) && v >= advertised.get(api)[0] && v <= advertised.get(api)[1];
            short bodyVersion = (short) Math.max(api.messageType.lowestSupportedVersion(),
                Math.min(api.messageType.highestSupportedVersion(true), v));
            JsonNode[] resp = new JsonNode[2];
            JsonNode kafkaRequest = null;
            for (int b = 0; b < 2; b++) {
                JsonNode reqJson = template(step.path("request"), v, b);
                if (b == 0) kafkaRequest = reqJson;
                ApiMessage req = readRequest(api, reqJson, bodyVersion);
                requests++;
                Wire.Reply r = wires[b].send(api, v, bodyVersion, req);
                resp[b] = toJson(api, r, bodyVersion);
                if (step.has("capture")) {
                    int bb = b;
                    short vv = v;
                    step.get("capture").fields().forEachRemaining(e ->
                        vars.get(bb).put(e.getKey().replace("${v}", Short.toString(vv)), resp[bb].at(e.getValue().asText())));
                }
            }
            if (!compare) continue;
            if (adv) covered.add(api.name + " v" + v);
            else unadvertisedTried.add(api.name + " v" + v);
            Result res = new Result(cs, idx, api, v, adv);
            JsonNode nk = Compare.normalize(resp[0]);
            JsonNode nr = Compare.normalize(resp[1]);
            Compare.diff("", nk, nr, res.diffs);
            for (Compare.Diff d : res.diffs) {
                Known m = null;
                for (Known k : known) if (k.matches(cs, api, v, d)) { m = k; break; }
                if (m != null) m.hits++;
                res.matched.add(m);
            }
            results.add(res);
            long fresh = res.matched.stream().filter(x -> x == null).count();
            System.out.printf("  %-28s v%-2d %s%s%n", api.name, v, res.diffs.isEmpty() ? "same" : res.diffs.size() + " diff(s)",
                fresh > 0 ? ", " + fresh + " NEW" : "");
            if (dump != null) {
                Path dir = dump.resolve(cs);
                Files.createDirectories(dir);
                ObjectNode d = F.objectNode();
                d.set("request", kafkaRequest);
                d.set("kafka", nk);
                d.set("ringbroker", nr);
                Files.writeString(dir.resolve(String.format("%02d-%s-v%d.json", idx, api.name, v)), M.writeValueAsString(d));
            }
        }
    }

    private List<Short> versions(ApiKeys api, JsonNode spec) {
        short lo, hi;
        short[] adv = advertised.get(api);
        List<Short> out = new ArrayList<>();
        if (spec.isMissingNode() || spec.asText().equals("all")) {
            if (adv == null) throw new IllegalArgumentException(api.name + " is not advertised by ringbroker: give versions");
            for (short v = adv[0]; v <= adv[1]; v++) out.add(v);
            return out;
        }
        if (spec.isArray()) {
            for (JsonNode s : spec) out.addAll(versions(api, s));
            return out;
        }
        String s = spec.asText();
        int dash = s.indexOf('-');
        if (dash < 0) {
            out.add(Short.parseShort(s));
            return out;
        }
        lo = dash == 0 ? adv[0] : Short.parseShort(s.substring(0, dash));
        hi = dash == s.length() - 1 ? adv[1] : Short.parseShort(s.substring(dash + 1));
        for (short v = lo; v <= hi; v++) out.add(v);
        return out;
    }

    static ApiKeys apiByName(String n) {
        for (ApiKeys k : ApiKeys.values()) if (k.name.equals(n)) return k;
        throw new IllegalArgumentException("unknown API " + n);
    }

    // ------------------------------------------------------------------ templating
    private static final Pattern INT = Pattern.compile("^\\$\\{int:(-?\\d+)\\}$");
    private static final Pattern WHOLE = Pattern.compile("^\\$\\{(var|topicId):([^}]+)\\}$");
    private static final Pattern PART = Pattern.compile("\\$\\{((?:var|str):[^}]+)\\}");

    private JsonNode template(JsonNode n, short v, int b) throws IOException {
        if (n.isTextual()) {
            String s = n.asText().replace("${v}", Short.toString(v));
            Matcher num = INT.matcher(s);
            if (num.matches()) return F.numberNode(Long.parseLong(num.group(1)));
            Matcher w = WHOLE.matcher(s);
            if (w.matches()) {
                if (w.group(1).equals("var")) {
                    JsonNode x = vars.get(b).get(w.group(2));
                    if (x == null || x.isMissingNode()) throw new IllegalArgumentException("no captured ${var:" + w.group(2) + "} on " + wires[b].name);
                    return x;
                }
                return F.textNode(topicId(b, w.group(2)).toString());
            }
            Matcher p = PART.matcher(s);
            StringBuilder sb = new StringBuilder();
            while (p.find()) {
                String g = p.group(1);
                JsonNode x = vars.get(b).get(g.substring(4));
                if (x == null || x.isMissingNode()) throw new IllegalArgumentException("no captured ${" + g + "} on " + wires[b].name);
                String rep = x.asText();
                p.appendReplacement(sb, Matcher.quoteReplacement(rep));
            }
            p.appendTail(sb);
            return F.textNode(sb.toString());
        }
        if (n.isObject()) {
            if (n.has("$records")) {
                return new BinaryNode(Records.build(template(n.get("$records"), v, b)));
            }
            ObjectNode o = F.objectNode();
            var it = n.fields();
            while (it.hasNext()) {
                var e = it.next();
                o.set(e.getKey(), template(e.getValue(), v, b));
            }
            return o;
        }
        if (n.isArray()) {
            ArrayNode a = F.arrayNode();
            for (JsonNode x : n) a.add(template(x, v, b));
            return a;
        }
        return n;
    }

    private Uuid topicId(int b, String topic) throws IOException {
        MetadataResponseData md = metadata(b, topic);
        for (MetadataResponseData.MetadataResponseTopic t : md.topics()) if (topic.equals(t.name())) return t.topicId();
        return Uuid.ZERO_UUID;
    }

    private MetadataResponseData metadata(int b, String... topics) throws IOException {
        MetadataRequestData req = new MetadataRequestData().setAllowAutoTopicCreation(false);
        for (String t : topics) req.topics().add(new MetadataRequestData.MetadataRequestTopic().setName(t));
        Wire.Reply r = wires[b].send(ApiKeys.METADATA, (short) 12, (short) 12, req);
        if (r.body == null) throw new IOException(wires[b].name + ": Metadata " + r.outcome);
        return new MetadataResponseData(new ByteBufferAccessor(r.body), (short) 12);
    }

    private void waitTopics(int b, JsonNode topics, boolean absent) throws Exception {
        String[] names = new String[topics.size()];
        for (int i = 0; i < names.length; i++) names[i] = topics.get(i).asText();
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            MetadataResponseData md = metadata(b, names);
            boolean ok = true;
            for (MetadataResponseData.MetadataResponseTopic t : md.topics()) {
                if (absent) {
                    if (t.errorCode() != 3) ok = false;
                } else {
                    if (t.errorCode() != 0 || t.partitions().isEmpty()) ok = false;
                    for (var p : t.partitions()) if (p.errorCode() != 0 || p.leaderId() < 0) ok = false;
                }
            }
            if (ok) return;
            if (System.currentTimeMillis() > deadline) throw new IOException(wires[b].name + ": topics " + topics + " not ready after 30 s");
            Thread.sleep(100);
        }
    }

    private void waitCoordinator(int b, String group) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            FindCoordinatorRequestData req = new FindCoordinatorRequestData().setKeyType((byte) 0);
            req.coordinatorKeys().add(group);
            Wire.Reply r = wires[b].send(ApiKeys.FIND_COORDINATOR, (short) 4, (short) 4, req);
            if (r.body == null) throw new IOException(wires[b].name + ": FindCoordinator " + r.outcome);
            FindCoordinatorResponseData d = new FindCoordinatorResponseData(new ByteBufferAccessor(r.body), (short) 4);
            if (d.coordinators().get(0).errorCode() == 0) return;
            if (System.currentTimeMillis() > deadline) throw new IOException(wires[b].name + ": no coordinator for " + group);
            Thread.sleep(200);
        }
    }

    /** Until DescribeGroups answers every group without error (Kafka loads its coordinator partitions after startup). */
    private void waitGroups(int b, JsonNode groups) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        while (true) {
            var req = new org.apache.kafka.common.message.DescribeGroupsRequestData();
            for (JsonNode g : groups) req.groups().add(g.asText());
            Wire.Reply r = wires[b].send(ApiKeys.DESCRIBE_GROUPS, (short) 5, (short) 5, req);
            if (r.body == null) throw new IOException(wires[b].name + ": DescribeGroups " + r.outcome);
            var d = new org.apache.kafka.common.message.DescribeGroupsResponseData(new ByteBufferAccessor(r.body), (short) 5);
            if (d.groups().stream().allMatch(g -> g.errorCode() == 0)) return;
            if (System.currentTimeMillis() > deadline) throw new IOException(wires[b].name + ": group coordinators not ready");
            Thread.sleep(200);
        }
    }

    /** Until an idempotent InitProducerId succeeds (Kafka's producer id manager starts after the broker). */
    private void waitProducerId(int b) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        while (true) {
            var req = new org.apache.kafka.common.message.InitProducerIdRequestData().setTransactionalId(null).setTransactionTimeoutMs(60000)
                .setProducerId(-1).setProducerEpoch((short) -1);
            Wire.Reply r = wires[b].send(ApiKeys.INIT_PRODUCER_ID, (short) 4, (short) 4, req);
            if (r.body == null) throw new IOException(wires[b].name + ": InitProducerId " + r.outcome);
            var d = new org.apache.kafka.common.message.InitProducerIdResponseData(new ByteBufferAccessor(r.body), (short) 4);
            if (d.errorCode() == 0) return;
            if (System.currentTimeMillis() > deadline) throw new IOException(wires[b].name + ": InitProducerId not ready");
            Thread.sleep(200);
        }
    }

    // ------------------------------------------------------------------ conversion
    private static Class<?> cls(String n) throws ClassNotFoundException {
        return Class.forName(PKG + n);
    }

    static ApiMessage readRequest(ApiKeys api, JsonNode json, short version) throws Exception {
        Method m = cls(api.name + "RequestDataJsonConverter").getMethod("read", JsonNode.class, short.class);
        JsonNode filled = fill(cls(api.name + "RequestData"), json, version, api.name + "Request");
        try {
            return (ApiMessage) m.invoke(null, filled, version);
        } catch (InvocationTargetException e) {
            throw new IllegalArgumentException(api.name + " v" + version + " request JSON: " + e.getCause(), e.getCause());
        }
    }

    /**
     * Case files give only the fields that matter: every field the version has
     * and the case leaves out takes its schema default, and fields the version
     * does not have are dropped (so one request serves every version, e.g. a
     * Fetch with both "topic" and "topicId"). A name no version has is an error.
     */
    static JsonNode fill(Class<?> data, JsonNode user, short version, String where) throws Exception {
        if (!user.isObject()) return user;
        Object def = data.getConstructor().newInstance();
        ObjectNode out = (ObjectNode) converterWrite(data).invoke(null, def, version);
        Map<String, Boolean> names = FIELD_NAMES.computeIfAbsent(data, Oracle::allFieldNames);
        var it = user.fields();
        while (it.hasNext()) {
            var e = it.next();
            String k = e.getKey();
            boolean forced = k.startsWith("+");
            if (forced) k = k.substring(1);
            if (!names.containsKey(k)) throw new IllegalArgumentException(where + ": no field '" + k + "' in any version");
            if (!out.has(k) && !forced) continue;
            JsonNode v = e.getValue();
            Class<?> elem = elementClass(data, k);
            if (elem != null && v.isArray()) {
                ArrayNode a = F.arrayNode();
                for (JsonNode x : v) a.add(fill(elem, x, version, where + "." + k));
                v = a;
            } else if (elem != null && v.isObject()) {
                v = fill(elem, v, version, where + "." + k);
            }
            out.set(k, v);
        }
        return out;
    }

    private static final Map<Class<?>, Map<String, Boolean>> FIELD_NAMES = new HashMap<>();

    private static Method converterWrite(Class<?> data) throws Exception {
        Class<?> top = data.getDeclaringClass() == null ? data : data.getDeclaringClass();
        String conv = top.getName() + "JsonConverter" + (top == data ? "" : "$" + data.getSimpleName() + "JsonConverter");
        return Class.forName(conv).getMethod("write", data, short.class);
    }

    private static Map<String, Boolean> allFieldNames(Class<?> data) {
        Map<String, Boolean> names = new HashMap<>();
        try {
            Object def = data.getConstructor().newInstance();
            Method w = converterWrite(data);
            for (short v = 0; v < 64; v++) {
                try {
                    ((JsonNode) w.invoke(null, def, v)).fieldNames().forEachRemaining(n -> names.put(n, true));
                } catch (InvocationTargetException ignored) { }
            }
            // Tagged and nullable-struct fields may be left out at their default: accept every accessor too.
            Class<?> top = data.getDeclaringClass() == null ? data : data.getDeclaringClass();
            for (Method m : data.getDeclaredMethods()) {
                if (m.getParameterCount() == 0 && java.lang.reflect.Modifier.isPublic(m.getModifiers())
                    && !m.getName().equals("size") && !m.getName().equals("apiKey") && !m.getName().startsWith("unknown")
                    && !m.getName().equals("duplicate") && !m.getName().equals("hashCode") && !m.getName().equals("toString")
                    && !m.getName().endsWith("SupportedVersion") && top != null) {
                    names.putIfAbsent(m.getName(), true);
                }
            }
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
        return names;
    }

    /** The struct class of field `k` (or of its elements), or null for a scalar field. */
    private static Class<?> elementClass(Class<?> data, String k) {
        Method g;
        try {
            g = data.getMethod(k);
        } catch (NoSuchMethodException e) {
            return null;
        }
        java.lang.reflect.Type t = g.getGenericReturnType();
        Class<?> raw = g.getReturnType();
        if (org.apache.kafka.common.protocol.Message.class.isAssignableFrom(raw)) return raw;
        while (t != null) {
            if (t instanceof java.lang.reflect.ParameterizedType) {
                java.lang.reflect.Type arg = ((java.lang.reflect.ParameterizedType) t).getActualTypeArguments()[0];
                if (arg instanceof Class && org.apache.kafka.common.protocol.Message.class.isAssignableFrom((Class<?>) arg)) return (Class<?>) arg;
                return null;
            }
            if (t instanceof Class) t = ((Class<?>) t).getGenericSuperclass(); else return null;
        }
        return null;
    }

    static JsonNode toJson(ApiKeys api, Wire.Reply r, short version) throws Exception {
        if (r.body == null) {
            ObjectNode o = F.objectNode();
            o.put("$connection", r.outcome);
            return o;
        }
        short v = version;
        ByteBuffer body = r.body;
        // ApiVersions refuses an unsupported version with a v0 body (error 35).
        if (api == ApiKeys.API_VERSIONS && body.remaining() >= 2 && body.getShort(0) == 35) v = 0;
        ApiMessage resp = ApiMessageType.fromApiKey(api.id).newResponse();
        ObjectNode o;
        try {
            resp.read(new ByteBufferAccessor(body), v);
            Class<?> data = resp.getClass();
            Method w = cls(api.name + "ResponseDataJsonConverter").getMethod("write", data, short.class, boolean.class);
            o = (ObjectNode) w.invoke(null, resp, v, true);
        } catch (Exception e) {
            o = F.objectNode();
            o.put("$parseError", String.valueOf(e));
            return o;
        }
        if (body.hasRemaining()) o.put("$trailingBytes", body.remaining());
        if (v != version) o.put("$parsedAtVersion", v);
        decodeRecords(o);
        attachRecords(o, resp);
        return o;
    }

    /**
     * The generated JSON converters write record sets as empty strings; take
     * them from the parsed message objects instead (JSON and objects have the
     * same shape) and decode them into batches.
     */
    static void attachRecords(JsonNode json, Object msg) throws Exception {
        if (json == null || msg == null) return;
        if (json.isArray()) {
            int i = 0;
            for (Object x : (Iterable<?>) msg) attachRecords(json.get(i++), x);
            return;
        }
        if (!json.isObject() || !(msg instanceof org.apache.kafka.common.protocol.Message)) return;
        ObjectNode o = (ObjectNode) json;
        List<String> keys = new ArrayList<>();
        o.fieldNames().forEachRemaining(keys::add);
        for (String k : keys) {
            Method g;
            try {
                g = msg.getClass().getMethod(k);
            } catch (NoSuchMethodException e) {
                continue;
            }
            Object child = g.invoke(msg);
            if (child instanceof org.apache.kafka.common.record.internal.MemoryRecords) {
                ByteBuffer buf = ((org.apache.kafka.common.record.internal.MemoryRecords) child).buffer();
                byte[] bytes = new byte[buf.remaining()];
                buf.get(bytes);
                o.set(k, Records.decode(bytes));
            } else if (child instanceof Iterable || child instanceof org.apache.kafka.common.protocol.Message) {
                attachRecords(o.get(k), child);
            }
        }
    }

    private static byte[] binary(JsonNode n) {
        try {
            return n.binaryValue();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    /** Replaces every binary "records" field by its decoded batches (other bytes fields become base64 text). */
    static void decodeRecords(JsonNode n) {
        if (n.isObject()) {
            ObjectNode o = (ObjectNode) n;
            var it = o.fields();
            List<String> bin = new ArrayList<>();
            while (it.hasNext()) {
                var e = it.next();
                if (e.getValue().isBinary() && e.getKey().equals("records")) bin.add(e.getKey());
                else if (e.getValue().isBinary()) e.setValue(F.textNode(java.util.Base64.getEncoder().encodeToString(binary(e.getValue()))));
                else decodeRecords(e.getValue());
            }
            for (String k : bin) {
                try {
                    o.set(k, Records.decode(o.get(k).binaryValue()));
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            }
        } else if (n.isArray()) {
            for (JsonNode x : n) decodeRecords(x);
        }
    }

    // ------------------------------------------------------------------ report
    private int report(String reportFile, int cases, double secs, boolean full, boolean strict) throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("# ringbroker vs Apache Kafka: differential protocol check\n\n");
        // Group identical differences across versions of the same step.
        Map<String, TreeSet<Short>> groups = new LinkedHashMap<>();
        Map<String, String[]> groupInfo = new LinkedHashMap<>();
        int fresh = 0, legit = 0, defect = 0;
        for (Result r : results) {
            for (int i = 0; i < r.diffs.size(); i++) {
                Compare.Diff d = r.diffs.get(i);
                Known k = r.matched.get(i);
                String status = k == null ? "NEW" : k.kind();
                if (k == null) fresh++; else if (k.kind().equals("defect")) defect++; else legit++;
                String key = r.caseName + "\u0000" + r.step + "\u0000" + r.api.name + "\u0000" + d.path + "\u0000"
                    + Compare.compact(d.kafka) + "\u0000" + Compare.compact(d.ringbroker) + "\u0000" + status;
                groups.computeIfAbsent(key, x -> new TreeSet<>()).add(r.version);
                groupInfo.put(key, new String[] {r.caseName, "step " + r.step + " " + r.api.name, d.path, withErrorName(d.path, d.kafka),
                    withErrorName(d.path, d.ringbroker), status, k == null ? "" : k.spec.path("reason").asText()});
            }
        }
        int apiVersionsAdvertised = 0;
        List<String> uncovered = new ArrayList<>();
        for (var e : advertised.entrySet()) {
            for (short v = e.getValue()[0]; v <= e.getValue()[1]; v++) {
                apiVersionsAdvertised++;
                if (!covered.contains(e.getKey().name + " v" + v)) uncovered.add(e.getKey().name + " v" + v);
            }
        }
        long same = results.stream().filter(r -> r.diffs.isEmpty()).count();
        sb.append(String.format("- %d cases, %d compared requests (%d identical after normalization), %d requests sent in all, %.1f s%n",
            cases, results.size(), same, requests, secs));
        sb.append(String.format("- ringbroker advertises %d APIs, %d API versions; %d covered%s%n", advertised.size(),
            apiVersionsAdvertised, apiVersionsAdvertised - uncovered.size(), uncovered.isEmpty() ? "" : "; NOT covered: " + uncovered));
        sb.append("- versions ringbroker does not advertise, tried on both: " + unadvertisedTried + "\n");
        sb.append(String.format("- differences: %d NEW, %d known defects, %d legitimate (field x version)%n", fresh, defect, legit));
        List<String> stale = new ArrayList<>();
        for (Known k : known) if (k.hits == 0) stale.add(k.spec.path("api").asText("*") + " " + k.spec.path("path").asText());
        if (full && !stale.isEmpty()) sb.append("- known-differences entries that matched nothing (fixed? remove them): " + stale + "\n");
        if (!errors.isEmpty()) {
            sb.append("\n## Runner errors\n\n");
            for (String e : errors) sb.append("- ").append(e).append('\n');
        }
        for (String section : List.of("NEW", "defect", "legitimate")) {
            sb.append("\n## ").append(section.equals("NEW") ? "New differences (not in the known-differences file)" :
                section.equals("defect") ? "Known ringbroker defects" : "Legitimate differences").append("\n\n");
            String lastCase = null;
            for (var e : groups.entrySet()) {
                String[] g = groupInfo.get(e.getKey());
                if (!g[5].equals(section)) continue;
                if (!g[0].equals(lastCase)) { sb.append("### ").append(g[0]).append('\n'); lastCase = g[0]; }
                sb.append(String.format("- %s %s `%s`: kafka=`%s` ringbroker=`%s`%s%n", g[1], ranges(e.getValue()), g[2], g[3], g[4],
                    g[6].isEmpty() ? "" : " — " + g[6]));
            }
        }
        String text = sb.toString();
        if (reportFile != null) Files.writeString(Path.of(reportFile), text, StandardCharsets.UTF_8);
        // The console gets the summary and the new differences.
        int cut = text.indexOf("\n## Known ringbroker defects");
        System.out.println();
        System.out.println(cut > 0 ? text.substring(0, cut) : text);
        boolean fail = fresh > 0 || !errors.isEmpty() || (full && !uncovered.isEmpty()) || (strict && (defect > 0 || (full && !stale.isEmpty())));
        return fail ? 1 : 0;
    }

    /** An error code value with its name: `42 INVALID_REQUEST`. */
    static String withErrorName(String path, JsonNode v) {
        String c = Compare.compact(v);
        if (path.endsWith("errorCode") && v.isNumber()) {
            c += " " + org.apache.kafka.common.protocol.Errors.forCode((short) v.asInt()).name();
        }
        return c;
    }

    static String ranges(TreeSet<Short> vs) {
        StringBuilder sb = new StringBuilder("v");
        Short start = null, prev = null;
        for (Short v : vs) {
            if (start == null) { start = v; prev = v; continue; }
            if (v == prev + 1) { prev = v; continue; }
            sb.append(start.equals(prev) ? "" + start : start + "-" + prev).append(',');
            start = v; prev = v;
        }
        sb.append(start.equals(prev) ? "" + start : start + "-" + prev);
        return sb.toString();
    }
}
