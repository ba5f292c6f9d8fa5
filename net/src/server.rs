//! Starting and stopping the broker: one pinned executor per shard, each with
//! its own SO_REUSEPORT listener, and a clean shutdown on SIGTERM/SIGINT.
//!
//! Shutdown, in order: every shard stops accepting; waits (up to the grace
//! period) for its in-flight requests; waits for every other shard to get
//! that far (so no cross-shard call can arrive any more); then flushes,
//! syncs and closes its partitions, and its executor ends.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::BrokerConfig;
use crate::metadata::{valid_topic_name, MetadataImage};
use crate::metrics::{render, ShardMetrics};
use crate::router::{build_mesh, serve_peer, MeshEnds, Router, ShardId};
use crate::shard::Shard;
use ringbroker_controller::quorum::disk::FsDisk;
use ringbroker_controller::quorum::Quorum;

struct Common {
    config: Arc<BrokerConfig>,
    metrics: Vec<Arc<ShardMetrics>>,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    /// The client port re-checked just before the shards bind it:
    /// PORT_UNCHECKED, PORT_FREE or PORT_TAKEN.
    port: Arc<std::sync::atomic::AtomicU8>,
    drained: Arc<AtomicUsize>,
}

const PORT_UNCHECKED: u8 = 0;
const PORT_FREE: u8 = 1;
const PORT_TAKEN: u8 = 2;

/// Runs the broker until SIGTERM/SIGINT. Blocks the calling thread.
pub fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    ensure_port_free(config.listen)?;
    raise_open_file_limit();
    let node = config.broker.node_id;
    let voters: Vec<i32> = config.voters.iter().map(|v| v.node_id).collect();
    let store = crate::quorum_driver::open(&data_dir, node, &voters)
        .with_context(|| format!("opening the metadata quorum in {}", data_dir.display()))?;
    let image = store.image().clone();
    remove_orphan_partition_dirs(&data_dir, &image);

    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handler")?;
    }
    let n = config.shards.len();
    let capacity = config.shards.iter().map(|s| s.tuning.channel_capacity).max().unwrap_or(1024);
    let mesh = build_mesh(n, capacity);
    let common = Arc::new(Common {
        config: Arc::new(config),
        metrics: (0..n).map(|_| ShardMetrics::new()).collect(),
        shutdown,
        ready: Arc::new(AtomicUsize::new(0)),
        port: Arc::new(std::sync::atomic::AtomicU8::new(PORT_UNCHECKED)),
        drained: Arc::new(AtomicUsize::new(0)),
    });
    tracing::info!(shards = n, listen = %common.config.listen, data_dir = %data_dir.display(), "starting ringbroker");

    let mut store = Some(store);
    let mut handles = Vec::new();
    for (id, ends) in mesh.into_iter().enumerate() {
        let sc = common.config.shards[id].clone();
        let t = &sc.tuning;
        let mut b = LocalExecutorBuilder::new(sc.cpu.map(Placement::Fixed).unwrap_or(Placement::Unbound))
            .name(&format!("shard-{id}"))
            .io_memory(t.io_memory)
            .ring_depth(t.ring_depth)
            .preempt_timer(Duration::from_millis(t.preempt_timer_ms));
        if t.spin_before_park_us > 0 {
            b = b.spin_before_park(Duration::from_micros(t.spin_before_park_us));
        }
        let common2 = common.clone();
        let image2 = image.clone();
        let store2 = if id == 0 { store.take() } else { None };
        let h = b
            .spawn(move || async move { shard_main(id, common2, ends, image2, store2).await })
            .map_err(|e| anyhow::anyhow!("starting shard {id} on cpu {:?}: {e}", sc.cpu))?;
        handles.push(h);
    }
    let mut result = Ok(());
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(shard = id, error = %e, "shard failed");
                common.shutdown.store(true, Ordering::Relaxed);
                result = Err(e);
            }
            Err(e) => {
                common.shutdown.store(true, Ordering::Relaxed);
                result = Err(anyhow::anyhow!("shard {id} panicked: {e:?}"));
            }
        }
    }
    tracing::info!("ringbroker stopped");
    result
}

/// Creates `__consumer_offsets` if the cluster has none yet, with
/// min(`offsets_topic_replication_factor`, voters) replicas, once that many
/// brokers are registered (Kafka too waits for enough brokers; until then
/// FindCoordinator answers COORDINATOR_NOT_AVAILABLE). Several brokers may
/// race to create it; the first record applied wins and the others see
/// TOPIC_ALREADY_EXISTS. Retries while no controller is elected.
async fn ensure_offsets_topic(shard: Rc<Shard>) -> anyhow::Result<()> {
    use kafka_protocol::ResponseError;
    let cfg = &shard.config;
    let rf = cfg.broker.offsets_topic_replication_factor.min(cfg.voters.len() as i16).max(1);
    let started = Instant::now();
    let mut next_log = Duration::ZERO;
    while shard.image().topic(crate::coordinator::OFFSETS_TOPIC).is_none() {
        if shard.shutdown.load(Ordering::Relaxed) {
            anyhow::bail!("stopped before the offsets topic was created");
        }
        let img = shard.image();
        let outcome = match crate::handlers::topics::place(&img, 0, crate::coordinator::OFFSETS_PARTITIONS, rf) {
            Err(e) => Err(e),
            Ok(assignments) => {
                let mut configs = std::collections::BTreeMap::new();
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
                // Kafka's offsets.topic.segment.bytes default.
                configs.insert("segment.bytes".to_string(), "104857600".to_string());
                let change = crate::metadata::MetadataChange::CreateTopic {
                    name: crate::coordinator::OFFSETS_TOPIC.to_string(),
                    id: crate::metadata::random_topic_id(),
                    partitions: crate::coordinator::OFFSETS_PARTITIONS,
                    replication_factor: rf,
                    configs,
                    assignments,
                };
                shard.change_metadata(change).await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) | Err((ResponseError::TopicAlreadyExists, _)) => {}
            Err((
                e @ (ResponseError::NotController
                | ResponseError::RequestTimedOut
                | ResponseError::InvalidReplicationFactor
                | ResponseError::InvalidReplicaAssignment),
                msg,
            )) => {
                if started.elapsed() >= next_log {
                    next_log += Duration::from_secs(5);
                    tracing::info!(error = ?e, msg, replication_factor = rf, "waiting to create the offsets topic");
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
            Err((e, msg)) => anyhow::bail!("creating {}: {e:?} {msg}", crate::coordinator::OFFSETS_TOPIC),
        }
    }
    Ok(())
}

async fn shard_main(
    id: usize,
    common: Arc<Common>,
    ends: MeshEnds,
    image: Arc<MetadataImage>,
    store: Option<Quorum<FsDisk>>,
) -> anyhow::Result<()> {
    let n = common.config.shards.len();
    let (router, receivers) = Router::connect(ShardId(id), ends).await;
    let shard = Rc::new(Shard {
        id: ShardId(id),
        config: common.config.clone(),
        tuning: common.config.shards[id].tuning.clone(),
        router,
        metadata: std::cell::RefCell::new(Arc::new(MetadataImage::default())),
        partitions: Default::default(),
        quorum: store.map(crate::quorum_driver::QuorumDriver::new),
        admin_lock: glommio::sync::Semaphore::new(1),
        install_lock: glommio::sync::Semaphore::new(1),
        installed: std::cell::RefCell::new(None),
        metrics: common.metrics[id].clone(),
        all_metrics: common.metrics.clone(),
        shutdown: common.shutdown.clone(),
        connections: Default::default(),
        inflight: Default::default(),
        producer_id_block: Cell::new((0, 0)),
        coordinators: Default::default(),
        cache: ringbroker_engine::cache::CacheLedger::new(common.config.shards[id].tuning.batch_cache_bytes),
        frames: crate::frame_pool::FramePool::new(crate::frame_pool::SHARD_POOL_BYTES),
        log_limiter: Default::default(),
    });
    for rx in receivers {
        glommio::spawn_local(serve_peer(shard.clone(), rx)).detach();
    }
    if let Some(q) = shard.quorum.clone() {
        q.start_links(&shard).await?;
        glommio::spawn_local(q.ticker(shard.clone())).detach();
    }
    let started = Instant::now();
    ringbroker_engine::io::probe_direct_io(&common.config.broker.data_dir)
        .await
        .with_context(|| format!("direct I/O does not work in {}", common.config.broker.data_dir.display()))?;
    shard.install_metadata(image).await;
    tracing::info!(
        shard = id,
        partitions = shard.partitions.borrow().len(),
        ms = started.elapsed().as_millis() as u64,
        "shard recovered its partitions"
    );
    // The cluster's metadata is known and this broker registered before any
    // client is served (and, on a single node, the offsets topic exists).
    if let Some(q) = shard.quorum.clone() {
        q.wait_until_ready(&shard).await;
        q.register(&shard).await;
        if common.config.voters.len() == 1 {
            // A single node has what it needs now: serve groups from the start.
            ensure_offsets_topic(shard.clone()).await?;
        } else {
            let s = shard.clone();
            glommio::spawn_local(async move {
                if let Err(e) = ensure_offsets_topic(s).await {
                    tracing::warn!(error = %e, "offsets topic not created");
                }
            })
            .detach();
        }
    }
    common.ready.fetch_add(1, Ordering::SeqCst);
    while common.ready.load(Ordering::SeqCst) < n {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    // `run` checked the port before recovery, which can take minutes; check
    // again now, once, just before every shard binds it.
    if id == 0 {
        let free = ensure_port_free(common.config.listen);
        common.port.store(if free.is_ok() { PORT_FREE } else { PORT_TAKEN }, Ordering::SeqCst);
        free?;
    }
    loop {
        match common.port.load(Ordering::SeqCst) {
            PORT_FREE => break,
            PORT_TAKEN => anyhow::bail!("{} is already in use", common.config.listen),
            _ => glommio::timer::sleep(Duration::from_millis(2)).await,
        }
    }

    let (listener, wake_fd) = bind_reuseport(common.config.listen)?;
    if id == 0 {
        tracing::info!(listen = %common.config.listen, "ready for clients");
        if let Some(addr) = common.config.admin_listen {
            let admin = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("binding admin listener {addr}: {e}"))?;
            glommio::spawn_local(admin_http(admin, common.metrics.clone(), common.shutdown.clone())).detach();
        }
    }
    glommio::spawn_local(shard.clone().housekeeping()).detach();
    glommio::spawn_local(shard.clone().cache_sweep()).detach();
    glommio::spawn_local(crate::coordinator::timer_loop(shard.clone())).detach();
    glommio::spawn_local(crate::shard::cleaner_loop(shard.clone())).detach();
    // The accept loop is its own task and its accept is never cancelled: an
    // in-flight io_uring accept must complete (a dropped one could still be
    // written to by the kernel). Shutdown wakes it by shutting the socket down.
    let acceptor = glommio::spawn_local(accept_loop(shard.clone(), listener));
    while !common.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: wake_fd is our own dup of the listening socket.
    unsafe {
        libc::shutdown(wake_fd, libc::SHUT_RDWR);
    }
    acceptor.await;
    unsafe {
        libc::close(wake_fd);
    }
    let grace = Instant::now() + Duration::from_secs(common.config.broker.shutdown_grace_secs);
    while shard.inflight.get() > 0 && Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    common.drained.fetch_add(1, Ordering::SeqCst);
    while common.drained.load(Ordering::SeqCst) < n {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    shard.close_partitions().await;
    tracing::info!(shard = id, "shard closed its partitions");
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.shutdown.load(Ordering::Relaxed) {
                    break;
                }
                glommio::spawn_local(crate::conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                if shard.shutdown.load(Ordering::Relaxed) {
                    break;
                }
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every shard binds the client port with SO_REUSEPORT, and so could a
/// second broker started by the same user on the same port: the kernel would
/// then split new connections between the two processes, silently. So refuse
/// to start if a broker already answers there, the way a single-listener
/// broker would fail to bind.
///
/// It has to be a protocol-level check. A probe bind without SO_REUSEPORT
/// fails after any SIGKILL (the old connections still hold the port), and a
/// bare TCP connect succeeds for a while after one: a killed io_uring
/// process's listening socket lives on, accepting into its backlog, until the
/// kernel tears its ring down. Only a live broker answers ApiVersions.
fn ensure_port_free(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    if addr.port() == 0 {
        return Ok(());
    }
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        });
    }
    // Refused (nobody listens), unreachable or timed out: ours to bind.
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)) else { return Ok(()) };
    // A connect to a free port in the ephemeral range can connect to itself.
    if s.local_addr().ok() == s.peer_addr().ok() {
        return Ok(());
    }
    // ApiVersions v0, correlation id 1, null client id.
    let request = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 4];
    match s.write_all(&request).and_then(|()| s.read(&mut reply)) {
        Ok(n) if n > 0 => anyhow::bail!("{addr} is already in use: a broker answers there"),
        _ => Ok(()),
    }
}

/// The client listener of one shard: SO_REUSEPORT so every shard binds the
/// same address and the kernel spreads connections. Also returns a dup of the
/// socket, used to wake the accept loop at shutdown.
fn bind_reuseport(addr: std::net::SocketAddr) -> anyhow::Result<(TcpListener, std::os::fd::RawFd)> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).context("creating listener socket")?;
    sk.set_reuse_port(true).context("SO_REUSEPORT")?;
    sk.set_reuse_address(true).context("SO_REUSEADDR")?;
    sk.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    sk.listen(1024).with_context(|| format!("listening on {addr}"))?;
    let fd = sk.into_raw_fd();
    // SAFETY: fd is a valid socket we own; dup gives a second handle.
    let wake = unsafe { libc::dup(fd) };
    if wake < 0 {
        anyhow::bail!("dup of listener socket failed");
    }
    Ok((unsafe { TcpListener::from_raw_fd(fd) }, wake))
}

/// Minimal HTTP/1.0 endpoint for Prometheus: GET /metrics, GET /health.
async fn admin_http(listener: TcpListener, metrics: Vec<Arc<ShardMetrics>>, shutdown: Arc<AtomicBool>) {
    while !shutdown.load(Ordering::Relaxed) {
        let Ok(mut s) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        glommio::spawn_local(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read the request head (bounded); we only need the first line.
            while n < buf.len() {
                match s.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, ctype, body) = if head.starts_with("GET /metrics") {
                ("200 OK", "text/plain; version=0.0.4", render(&metrics))
            } else if head.starts_with("GET /health") {
                ("200 OK", "text/plain", "ok\n".to_string())
            } else {
                ("404 Not Found", "text/plain", "not found\n".to_string())
            };
            let resp = format!(
                "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.close().await;
        })
        .detach();
    }
}

/// One broker per data dir: an exclusive flock held for the process lifetime.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let p = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!("data dir {} is in use by another ringbroker process", dir.display());
    }
    Ok(f)
}

/// Partition directories of topics that no longer exist (a delete that was
/// interrupted by a crash) are removed before any shard opens partitions.
fn remove_orphan_partition_dirs(data_dir: &Path, img: &MetadataImage) {
    let Ok(rd) = std::fs::read_dir(data_dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some((topic, p)) = name.rsplit_once('-') else { continue };
        let Ok(p) = p.parse::<i32>() else { continue };
        if !valid_topic_name(topic) || !e.path().is_dir() {
            continue;
        }
        let live = img.topic(topic).map(|t| p < t.partitions).unwrap_or(false);
        if !live {
            tracing::info!(dir = %e.path().display(), "removing partition dir of a deleted topic");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Every segment holds an open file: raise the soft RLIMIT_NOFILE to the hard
/// limit, as brokers with many partitions need (the hard limit is the
/// operator's to set; see docs/operations.md).
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            tracing::info!(open_files = lim.rlim_cur, "open-file limit");
        }
    }
}
