package io.ringbroker.oracle;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;

import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.ObjectSerializationCache;

/** One plain TCP connection to a broker: length-prefixed request / response frames. */
final class Wire implements AutoCloseable {
    /** What came back for one request. */
    static final class Reply {
        final ByteBuffer body;     // the response body (after the response header), or null
        final String outcome;      // null when a body came back, else "closed" / "timeout"
        Reply(ByteBuffer body, String outcome) { this.body = body; this.outcome = outcome; }
    }

    final String name;
    private final String host;
    private final int port;
    private int timeoutMs;
    private Socket socket;
    private DataInputStream in;
    private OutputStream out;
    private int correlationId = 1;

    Wire(String name, String hostPort, int timeoutMs) {
        this.name = name;
        int i = hostPort.lastIndexOf(':');
        this.host = hostPort.substring(0, i);
        this.port = Integer.parseInt(hostPort.substring(i + 1));
        this.timeoutMs = timeoutMs;
    }

    private void connect() throws IOException {
        if (socket != null) return;
        Socket s = new Socket();
        s.setTcpNoDelay(true);
        s.connect(new InetSocketAddress(host, port), 5000);
        s.setSoTimeout(timeoutMs);
        socket = s;
        in = new DataInputStream(s.getInputStream());
        out = s.getOutputStream();
    }

    void timeoutMs(int ms) throws IOException {
        timeoutMs = ms;
        if (socket != null) socket.setSoTimeout(ms);
    }

    @Override
    public void close() {
        if (socket != null) {
            try { socket.close(); } catch (IOException ignored) { }
        }
        socket = null;
    }

    /**
     * Sends `body` serialized at `bodyVersion` with a header that says
     * `headerVersion` (they differ only for deliberately unsupported versions).
     */
    Reply send(ApiKeys api, short headerVersion, short bodyVersion, ApiMessage body) throws IOException {
        connect();
        int cid = correlationId++;
        short reqHeaderVersion = api.requestHeaderVersion(bodyVersion);
        RequestHeaderData header = new RequestHeaderData()
            .setRequestApiKey(api.id)
            .setRequestApiVersion(headerVersion)
            .setCorrelationId(cid)
            .setClientId("ringbroker-oracle");
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int hs = header.size(cache, reqHeaderVersion);
        int bs = body.size(cache, bodyVersion);
        ByteBuffer buf = ByteBuffer.allocate(4 + hs + bs);
        ByteBufferAccessor acc = new ByteBufferAccessor(buf);
        acc.writeInt(hs + bs);
        header.write(acc, cache, reqHeaderVersion);
        body.write(acc, cache, bodyVersion);
        try {
            out.write(buf.array(), 0, buf.position());
            out.flush();
        } catch (IOException e) {
            close();
            return new Reply(null, "closed");
        }
        byte[] frame;
        try {
            int len = in.readInt();
            frame = new byte[len];
            in.readFully(frame);
        } catch (SocketTimeoutException e) {
            close();
            return new Reply(null, "timeout");
        } catch (EOFException e) {
            close();
            return new Reply(null, "closed");
        } catch (IOException e) {
            close();
            return new Reply(null, "closed");
        }
        ByteBuffer rb = ByteBuffer.wrap(frame);
        // ApiVersions answers always carry a v0 header.
        short respHeaderVersion = api == ApiKeys.API_VERSIONS ? 0 : api.responseHeaderVersion(bodyVersion);
        ResponseHeaderData rh = new ResponseHeaderData(new ByteBufferAccessor(rb), respHeaderVersion);
        if (rh.correlationId() != cid) {
            throw new IOException(name + ": correlation id " + rh.correlationId() + ", expected " + cid);
        }
        return new Reply(rb.slice(), null);
    }
}
