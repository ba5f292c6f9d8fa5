package io.ringbroker.oracle;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.record.internal.MemoryRecords;
import org.apache.kafka.common.record.internal.MemoryRecordsBuilder;
import org.apache.kafka.common.record.internal.Record;
import org.apache.kafka.common.record.internal.RecordBatch;

/** Record batches: built from a case's "$records" spec, decoded into JSON for comparison. */
final class Records {
    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    /** Default CreateTime of the first record of a batch (deterministic, so both brokers store the same). */
    static final long BASE_TS = 1_700_000_000_000L;

    private Records() { }

    /** A spec is one batch object or an array of them (back-to-back batches). */
    static byte[] build(JsonNode spec) {
        List<JsonNode> batches = new ArrayList<>();
        if (spec.isArray()) spec.forEach(batches::add); else batches.add(spec);
        ByteBuffer all = ByteBuffer.allocate(1 << 20);
        for (JsonNode b : batches) {
            ByteBuffer one = buildBatch(b);
            all.put(one);
        }
        all.flip();
        byte[] out = new byte[all.remaining()];
        all.get(out);
        return out;
    }

    private static Compression compression(String name) {
        switch (name) {
            case "none": return Compression.NONE;
            case "gzip": return Compression.gzip().build();
            case "snappy": return Compression.snappy().build();
            case "lz4": return Compression.lz4().build();
            case "zstd": return Compression.zstd().build();
            default: throw new IllegalArgumentException("unknown compression " + name);
        }
    }

    private static ByteBuffer buildBatch(JsonNode b) {
        Compression c = compression(b.path("compression").asText("none"));
        long pid = b.path("producerId").asLong(RecordBatch.NO_PRODUCER_ID);
        short epoch = (short) b.path("producerEpoch").asInt(pid < 0 ? RecordBatch.NO_PRODUCER_EPOCH : 0);
        int seq = b.path("baseSequence").asInt(pid < 0 ? RecordBatch.NO_SEQUENCE : 0);
        boolean txn = b.path("transactional").asBoolean(false);
        byte magic = (byte) b.path("magic").asInt(RecordBatch.CURRENT_MAGIC_VALUE);
        long baseTs = b.path("timestamp").asLong(BASE_TS);
        MemoryRecordsBuilder mb = MemoryRecords.builder(ByteBuffer.allocate(1 << 18), magic, c,
            TimestampType.CREATE_TIME, 0L, RecordBatch.NO_TIMESTAMP, pid, epoch, seq, txn,
            RecordBatch.NO_PARTITION_LEADER_EPOCH);
        JsonNode recs = b.path("records");
        int count = b.has("count") ? b.get("count").asInt() : recs.size();
        for (int i = 0; i < count; i++) {
            JsonNode r = recs.size() > 0 ? recs.get(i % recs.size()) : F.objectNode();
            long ts = r.has("timestamp") ? r.get("timestamp").asLong() : baseTs + i;
            byte[] key = text(r.get("key"));
            byte[] value = r.has("size") ? new byte[r.get("size").asInt()] : text(r.get("value"));
            List<Header> headers = new ArrayList<>();
            if (r.has("headers")) {
                Iterator<Map.Entry<String, JsonNode>> it = r.get("headers").fields();
                while (it.hasNext()) {
                    Map.Entry<String, JsonNode> e = it.next();
                    headers.add(new RecordHeader(e.getKey(), text(e.getValue())));
                }
            }
            mb.append(ts, key, value, headers.toArray(new Header[0]));
        }
        ByteBuffer out = mb.build().buffer();
        if (b.path("corrupt").asBoolean(false)) {
            // Flip the last byte: the CRC no longer matches.
            out.put(out.limit() - 1, (byte) (out.get(out.limit() - 1) ^ 0x5a));
        }
        return out;
    }

    private static byte[] text(JsonNode n) {
        if (n == null || n.isNull()) return null;
        return n.asText().getBytes(StandardCharsets.UTF_8);
    }

    private static JsonNode bytesNode(ByteBuffer b) {
        if (b == null) return F.nullNode();
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return F.textNode(new String(a, StandardCharsets.UTF_8));
    }

    /** Decodes a records blob into batches and records. */
    static JsonNode decode(byte[] bytes) {
        ObjectNode o = F.objectNode();
        o.put("sizeInBytes", bytes.length);
        ArrayNode batches = o.putArray("batches");
        int covered = 0;
        try {
            MemoryRecords mr = MemoryRecords.readableRecords(ByteBuffer.wrap(bytes));
            for (RecordBatch b : mr.batches()) {
                covered += b.sizeInBytes();
                ObjectNode bn = batches.addObject();
                bn.put("baseOffset", b.baseOffset());
                bn.put("lastOffset", b.lastOffset());
                bn.put("magic", b.magic());
                bn.put("partitionLeaderEpoch", b.partitionLeaderEpoch());
                bn.put("compression", b.compressionType().name);
                bn.put("timestampType", b.timestampType().name);
                bn.put("maxTimestamp", b.maxTimestamp());
                bn.put("producerId", b.producerId());
                bn.put("producerEpoch", b.producerEpoch());
                bn.put("baseSequence", b.baseSequence());
                bn.put("transactional", b.isTransactional());
                bn.put("control", b.isControlBatch());
                bn.put("valid", b.isValid());
                ArrayNode rs = bn.putArray("records");
                for (Record r : b) {
                    ObjectNode rn = rs.addObject();
                    rn.put("offset", r.offset());
                    rn.put("timestamp", r.timestamp());
                    rn.set("key", bytesNode(r.key()));
                    rn.set("value", r.valueSize() > 64 ? F.textNode("<" + r.valueSize() + " bytes>") : bytesNode(r.value()));
                    if (r.headers().length > 0) {
                        ObjectNode hn = rn.putObject("headers");
                        for (Header h : r.headers()) hn.set(h.key(), h.value() == null ? F.nullNode() : F.textNode(new String(h.value(), StandardCharsets.UTF_8)));
                    }
                }
            }
        } catch (RuntimeException e) {
            o.put("decodeError", e.getClass().getSimpleName());
        }
        // Bytes after the last whole batch (a partial batch cut by max_bytes).
        o.put("trailingBytes", bytes.length - covered);
        return o;
    }
}
