package io.ringbroker.oracle;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Normalization (what legitimately differs between two brokers is masked)
 * and the field-by-field diff of two normalized responses.
 */
final class Compare {
    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    static final String MASK = "<masked>";

    /** Masked whatever their value: differ between any two clusters or are free text. */
    private static final Set<String> ALWAYS = Set.of(
        "throttleTimeMs", "clusterId", "host", "port", "rack",
        // error messages: codes are compared, texts are not
        "errorMessage",
        // DescribeLogDirs: paths and disk sizes of the machine
        "logDir", "totalBytes", "usableBytes",
        // DescribeProducers: wall-clock time of the last append
        "lastTimestamp");

    /** Masked when they hold a real id (>= 0, non-empty, non-zero UUID); sentinels (-1, "", zero UUID) are compared. */
    private static final Set<String> IDS = Set.of(
        "nodeId", "leaderId", "controllerId", "brokerId", "coordinatorId",
        "producerId", "memberId", "leader", "topicId", "sessionId",
        "logAppendTimeMs", "replicaNodes", "isrNodes", "eligibleLeaderReplicas", "lastKnownElr",
        "offlineReplicas");

    /** Keys that identify an element of an array of objects (first one present in all elements wins). */
    private static final String[] IDENTITY = {
        "name", "topicName", "topic", "groupId", "resourceName", "partitionIndex", "partition",
        "partitionId", "apiKey", "logDir", "key", "memberId", "index"};

    private Compare() { }

    static JsonNode normalize(JsonNode n) {
        if (n == null) return null;
        if (n.isObject()) {
            ObjectNode o = F.objectNode();
            // Sorted keys: the report is stable whatever order the converter used.
            TreeMap<String, JsonNode> sorted = new TreeMap<>();
            n.fields().forEachRemaining(e -> sorted.put(e.getKey(), e.getValue()));
            boolean broker = n.path("resourceType").asInt() == 4 && n.path("resourceName").asText().matches("\\d+");
            for (Map.Entry<String, JsonNode> e : sorted.entrySet()) {
                String k = e.getKey();
                JsonNode v = e.getValue();
                if (broker && k.equals("resourceName")) {
                    // A BROKER config resource is named by the node id, which differs.
                    o.put(k, "<broker>");
                    continue;
                }
                if (ALWAYS.contains(k)) {
                    o.put(k, MASK);
                } else if (IDS.contains(k)) {
                    o.set(k, maskId(v));
                } else {
                    o.set(k, normalize(v));
                }
            }
            return o;
        }
        if (n.isArray()) {
            ArrayNode a = F.arrayNode();
            n.forEach(x -> a.add(normalize(x)));
            String key = identity(a);
            if (key != null) {
                List<JsonNode> l = new ArrayList<>();
                a.forEach(l::add);
                l.sort((x, y) -> compareScalars(x.get(key), y.get(key)));
                ArrayNode s = F.arrayNode();
                l.forEach(s::add);
                return s;
            }
            return a;
        }
        return n;
    }

    private static int compareScalars(JsonNode a, JsonNode b) {
        if (a.isNumber() && b.isNumber()) return Long.compare(a.asLong(), b.asLong());
        return a.asText().compareTo(b.asText());
    }

    private static JsonNode maskId(JsonNode v) {
        if (v == null || v.isNull()) return v;
        if (v.isArray()) {
            ArrayNode a = F.arrayNode();
            v.forEach(x -> a.add(maskId(x)));
            return a;
        }
        if (v.isNumber()) return v.asLong() >= 0 ? F.textNode(MASK) : v;
        if (v.isTextual()) {
            String s = v.asText();
            if (s.isEmpty() || s.equals("AAAAAAAAAAAAAAAAAAAAAA")) return v;
            return F.textNode(MASK);
        }
        return v;
    }

    /** The identity key of an array of objects, when every element has it, it is a scalar and values are unique. */
    static String identity(JsonNode a) {
        if (a.size() == 0 || !a.get(0).isObject()) return null;
        for (String k : IDENTITY) {
            Set<String> seen = new LinkedHashSet<>();
            boolean ok = true;
            for (JsonNode e : a) {
                JsonNode v = e.get(k);
                if (v == null || !v.isValueNode() || MASK.equals(v.asText()) || !seen.add(v.asText())) { ok = false; break; }
            }
            if (ok) return k;
        }
        return null;
    }

    /** One differing field. */
    static final class Diff {
        final String path;
        final JsonNode kafka;
        final JsonNode ringbroker;
        Diff(String path, JsonNode kafka, JsonNode ringbroker) { this.path = path; this.kafka = kafka; this.ringbroker = ringbroker; }
    }

    static final JsonNode ABSENT = F.textNode("(absent)");

    static void diff(String path, JsonNode k, JsonNode r, List<Diff> out) {
        if (k == null) k = ABSENT;
        if (r == null) r = ABSENT;
        if (k.isObject() && r.isObject()) {
            Set<String> keys = new LinkedHashSet<>();
            k.fieldNames().forEachRemaining(keys::add);
            r.fieldNames().forEachRemaining(keys::add);
            for (String key : keys) diff(path.isEmpty() ? key : path + "." + key, k.get(key), r.get(key), out);
            return;
        }
        if (k.isArray() && r.isArray()) {
            String ik = identity(k);
            String ir = identity(r);
            if (ik != null && ik.equals(ir) || (ik != null && r.size() == 0) || (ir != null && k.size() == 0)) {
                String key = ik != null ? ik : ir;
                Map<String, JsonNode> km = new TreeMap<>();
                Map<String, JsonNode> rm = new TreeMap<>();
                k.forEach(e -> km.put(e.get(key).asText(), e));
                r.forEach(e -> rm.put(e.get(key).asText(), e));
                Set<String> all = new LinkedHashSet<>(km.keySet());
                all.addAll(rm.keySet());
                for (String v : all) {
                    String p = path + "[" + key + "=" + v + "]";
                    JsonNode a = km.get(v);
                    JsonNode b = rm.get(v);
                    if (a == null || b == null) {
                        out.add(new Diff(p, a == null ? ABSENT : a, b == null ? ABSENT : b));
                    } else {
                        diff(p, a, b, out);
                    }
                }
                return;
            }
            int n = Math.max(k.size(), r.size());
            for (int i = 0; i < n; i++) {
                String p = path + "[" + i + "]";
                if (i >= k.size() || i >= r.size()) {
                    out.add(new Diff(p, i < k.size() ? k.get(i) : ABSENT, i < r.size() ? r.get(i) : ABSENT));
                } else {
                    diff(p, k.get(i), r.get(i), out);
                }
            }
            return;
        }
        if (!k.equals(r)) {
            // Numbers of different node types (short vs int) with the same value are equal.
            if (k.isNumber() && r.isNumber() && k.asLong() == r.asLong()) return;
            out.add(new Diff(path, k, r));
        }
    }

    static String compact(JsonNode n) {
        String s = n.isTextual() ? n.asText() : n.toString();
        return s.length() > 300 ? s.substring(0, 297) + "..." : s;
    }
}
