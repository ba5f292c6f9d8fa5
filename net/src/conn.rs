//! One client connection: framing, decoding, and in-order responses.
//!
//! Kafka clients pipeline requests and rely on responses coming back in the
//! order the requests were sent. Each request is handled in its own task (so
//! a produce waiting for fsync does not stall a metadata request behind it in
//! the *handling*), and the tasks' results are written strictly in arrival
//! order by a writer task reading a bounded FIFO of those tasks. The bound is
//! `max_inflight_per_connection`: when it is full the reader stops reading,
//! which is the backpressure.
//!
//! Frames larger than `socket.request.max.bytes`, negative lengths, unknown
//! API keys, unsupported versions (except ApiVersions, answered per KIP-511)
//! and undecodable requests close the connection, as Kafka does. Nothing read
//! from the network can panic the broker.

use crate::log_limit::Verdict;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::handlers;
use crate::shard::Shard;

/// Why a connection is closed by the broker.
#[derive(Debug)]
pub enum Close {
    Io(std::io::Error),
    FrameTooLarge(i64),
    Malformed(String),
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    shard.metrics.connections.fetch_add(1, Ordering::Relaxed);
    shard.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
    shard.connections.set(shard.connections.get() + 1);
    let (reader, writer) = stream.split();
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<glommio::Task<Option<handlers::Frame>>>(
        shard.tuning.max_inflight_per_connection,
    );

    let writer_task = glommio::spawn_local(async move {
        let mut writer = writer;
        while let Some(task) = rx.recv().await {
            if let Some(frame) = task.await {
                if frame.is_close() {
                    break;
                }
                let mut failed = false;
                for part in &frame.0 {
                    if writer.write_all(part).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
        }
        let _ = writer.close().await;
    });

    let peer_ip = stream_peer_ip(&peer);
    let result = read_loop(&shard, reader, &tx, peer_ip.clone()).await;
    if let Err(reason) = &result {
        match reason {
            Close::Io(_) => {}
            other => {
                shard.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
                let verdict = shard.log_limiter.borrow_mut().check(&peer_ip, ringbroker_engine::now_ms());
                if let Verdict::Log { suppressed } = verdict {
                    tracing::info!(%peer, reason = ?other, suppressed, "closing connection");
                }
            }
        }
    }
    // Let in-flight requests finish and their responses go out, then close.
    drop(tx);
    writer_task.await;
    shard.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    shard.connections.set(shard.connections.get() - 1);
}

async fn read_loop(
    shard: &Rc<Shard>,
    mut reader: futures::io::ReadHalf<TcpStream>,
    tx: &glommio::channels::local_channel::LocalSender<glommio::Task<Option<handlers::Frame>>>,
    peer_ip: String,
) -> Result<(), Close> {
    let max = shard.config.broker.socket_request_max_bytes as i64;
    loop {
        if shard.shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut len_buf = [0u8; 4];
        match reader.read_exact(&mut len_buf).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(Close::Io(e)),
        }
        let len = i32::from_be_bytes(len_buf) as i64;
        // Checked before allocating anything for the frame.
        if len < 8 || len > max {
            return Err(Close::FrameTooLarge(len));
        }
        let mut frame = shard.frames.take(len as usize);
        reader.read_exact(&mut frame).await.map_err(Close::Io)?;
        let frame = frame.freeze();
        // Handed back to the pool when the request is done (frame_pool.rs).
        let whole = frame.clone();
        let (api_key, header, frame) = match parse_request(frame)? {
            Parsed::Request { api_key, header, body } => (api_key, header, body),
            Parsed::UnsupportedApiVersions { correlation_id } => {
                // KIP-511: answer in v0 format with UNSUPPORTED_VERSION and our ranges.
                let resp = handlers::api_versions::unsupported_version_response(correlation_id);
                tx.send(glommio::spawn_local(async move { Some(handlers::Frame::one(resp)) }))
                    .await
                    .map_err(|_| Close::Malformed("writer gone".into()))?;
                continue;
            }
        };
        let started = Instant::now();
        let shard2 = shard.clone();
        let peer_ip = peer_ip.clone();
        // Decode errors surface inside the task; the writer then closes.
        shard.inflight.set(shard.inflight.get() + 1);
        let task = glommio::spawn_local(async move {
            let r = handlers::handle(&shard2, api_key, &header, frame, &peer_ip).await;
            shard2.frames.give(whole);
            shard2.inflight.set(shard2.inflight.get() - 1);
            shard2.metrics.record_request(api_key as i16, started.elapsed().as_micros() as u64);
            match r {
                Ok(resp) => resp,
                Err(e) => {
                    let verdict = shard2.log_limiter.borrow_mut().check(&peer_ip, ringbroker_engine::now_ms());
                    if let Verdict::Log { suppressed } = verdict {
                        tracing::info!(api = ?api_key, version = header.request_api_version, error = %e, suppressed, "malformed request; closing connection");
                    }
                    shard2.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
                    Some(handlers::Frame::close())
                }
            }
        });
        if tx.send(task).await.is_err() {
            return Ok(());
        }
    }
}

/// "1.2.3.4:5678" -> "1.2.3.4" (IPv6 brackets dropped).
fn stream_peer_ip(peer: &str) -> String {
    peer.rsplit_once(':').map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string()).unwrap_or_default()
}

/// A request frame, checked and with its header decoded.
pub enum Parsed {
    Request {
        api_key: ApiKey,
        header: RequestHeader,
        body: Bytes,
    },
    /// ApiVersions at a version we do not serve: answered per KIP-511.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
}

/// Checks a frame (without its length prefix) and decodes its header.
/// Pure: the fuzzers call it on arbitrary bytes.
pub fn parse_request(mut frame: Bytes) -> Result<Parsed, Close> {
    if frame.len() < 8 {
        return Err(Close::Malformed(format!("frame of {} bytes is too short", frame.len())));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(Close::Malformed(format!("unknown api key {api_key_raw}")));
    };
    let supported = handlers::supported_versions(api_key);
    if !supported.map(|(lo, hi)| api_version >= lo && api_version <= hi).unwrap_or(false) {
        if api_key == ApiKey::ApiVersions {
            return Ok(Parsed::UnsupportedApiVersions { correlation_id });
        }
        return Err(Close::Malformed(format!("{api_key:?} v{api_version} is not supported")));
    }
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| Close::Malformed(format!("request header: {e}")))?;
    Ok(Parsed::Request { api_key, header, body: frame })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Arbitrary bytes after a valid api key/version never panic the
        /// header or body decoders.
        #[test]
        fn arbitrary_requests_never_panic(key_idx in 0usize..handlers::SUPPORTED.len(), v in 0i16..20, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (key, lo, hi) = handlers::SUPPORTED[key_idx];
            let version = lo + v % (hi - lo + 1);
            let mut frame = Vec::new();
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&7i32.to_be_bytes());
            frame.extend_from_slice(&tail);
            if let Ok(Parsed::Request { api_key, header, body }) = parse_request(Bytes::from(frame)) {
                let _ = handlers::decode_only(api_key, header.request_api_version, body);
            }
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_request(Bytes::from(frame));
        }
    }
}
