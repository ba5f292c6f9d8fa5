//! A shard: one pinned glommio executor and everything it owns.
//!
//! A shard owns the partitions that placement maps to it (their logs, caches
//! and flusher tasks), its own SO_REUSEPORT listener and connections, and its
//! own copy of the metadata image. Shard 0 also owns the metadata store and
//! applies metadata changes (the controller role on a single node).
//!
//! Nothing here is shared with other shards except through `Router` calls and
//! immutable `Arc`s; all interior mutability is `RefCell`/`Cell`, and no
//! borrow is held across an await.

use futures::StreamExt;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringbroker_engine::cache::CacheLedger;
use ringbroker_engine::config::{FlushPolicy, LogConfig};
use ringbroker_engine::ids::{LeaderEpoch, TopicId};
use ringbroker_engine::io::DmaStorage;
use ringbroker_engine::log::PartitionLog;
use ringbroker_engine::now_ms;
use ringbroker_replication::partition::Partition;

use crate::config::{BrokerConfig, CoreTuning};
use crate::messages::{Request, Response};
use crate::metadata::{placement, MetadataChange, MetadataImage};
use crate::metrics::ShardMetrics;
use crate::router::{Router, ShardId, Transport};

pub type Log = PartitionLog<DmaStorage>;
pub type Replica = Partition<DmaStorage>;

/// One partition owned by this shard.
pub struct PartitionHandle {
    pub topic: String,
    pub partition: i32,
    pub topic_id: TopicId,
    /// This broker's replica: high watermark, epochs, role, and the log.
    pub replica: Replica,
}

impl PartitionHandle {
    /// The storage underneath the replica.
    pub fn log(&self) -> &RefCell<Log> {
        self.replica.log()
    }
}

pub struct Shard {
    pub id: ShardId,
    pub config: Arc<BrokerConfig>,
    pub tuning: CoreTuning,
    pub router: Router,
    pub metadata: RefCell<Arc<MetadataImage>>,
    pub partitions: RefCell<crate::partition_map::PartitionMap>,
    /// Only on shard 0: this broker's member of the metadata quorum.
    pub quorum: Option<Rc<crate::quorum_driver::QuorumDriver>>,
    /// Serialises metadata installs on this shard.
    pub install_lock: glommio::sync::Semaphore,
    /// The image the last install brought the partitions in line with
    /// (None before the first): an install looks only at what changed since.
    pub installed: RefCell<Option<Arc<MetadataImage>>>,
    /// Serialises this broker's metadata proposals.
    pub admin_lock: glommio::sync::Semaphore,
    pub metrics: Arc<ShardMetrics>,
    pub all_metrics: Vec<Arc<ShardMetrics>>,
    pub shutdown: Arc<AtomicBool>,
    pub connections: Cell<usize>,
    /// Requests being handled on this shard's connections (for shutdown).
    pub inflight: Cell<usize>,
    /// Controller only: producer ids reserved in metadata, [next, end).
    pub producer_id_block: Cell<(i64, i64)>,
    /// Group coordinators of the `__consumer_offsets` partitions owned here.
    pub coordinators: RefCell<HashMap<i32, Rc<crate::coordinator::PartitionCoordinator>>>,
    /// The batch-cache budget (`batch_cache_bytes`) shared by this shard's partitions.
    pub cache: Rc<CacheLedger>,
    /// Request frame buffers to reuse (frame_pool.rs).
    pub frames: crate::frame_pool::FramePool,
    /// Rate limit of the log lines clients can trigger (log_limit.rs).
    pub log_limiter: RefCell<crate::log_limit::LogLimiter>,
}

/// Where a topic config's default comes from (DescribeConfigs' source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultSource {
    /// `[topic_defaults]` in the config file.
    StaticBroker,
    /// AlterConfigs on the cluster-default broker resource ("").
    DynamicDefault,
    /// AlterConfigs on this broker's resource.
    DynamicBroker,
}

/// A replica this shard should hold: topic, partition, topic id, (leader
/// epoch, ISR size) if this broker leads it, and the partition's leader epoch.
type Wanted = (String, i32, TopicId, Option<(i32, usize)>, i32, LogConfig);

/// How many new partitions one shard opens at once when an image adds them.
const OPEN_CONCURRENCY: usize = 32;

/// The controller's shard.
pub const CONTROLLER_SHARD: ShardId = ShardId(0);

pub fn partition_dir(data_dir: &std::path::Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Shard {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.borrow().clone()
    }

    pub fn shard_count(&self) -> usize {
        self.router.shard_count()
    }

    /// Whether this broker serves partition `p` of `t` as its leader: the
    /// image names it leader and has not fenced it. Otherwise the client is
    /// told NOT_LEADER_OR_FOLLOWER and refreshes its metadata.
    pub fn leads(&self, img: &MetadataImage, t: &crate::metadata::TopicMeta, p: i32) -> bool {
        let me = self.config.broker.node_id;
        t.partition(p).is_some_and(|pm| pm.leader == me) && img.brokers.get(&me).is_some_and(|b| !b.fenced)
    }

    /// Owner shard of a partition under the current image.
    pub fn owner(&self, topic_id: &TopicId, partition: i32) -> ShardId {
        ShardId(placement(topic_id, partition, self.shard_count()))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<PartitionHandle>> {
        self.partitions.borrow().get(topic, partition).cloned()
    }

    /// Topic config defaults (by topic config name) and where each comes
    /// from: the config file, overlaid with the dynamic cluster default,
    /// overlaid with this broker's dynamic configs.
    pub fn topic_defaults(&self, img: &MetadataImage) -> BTreeMap<String, (String, DefaultSource)> {
        let mut out: BTreeMap<String, (String, DefaultSource)> = self
            .config
            .topic_defaults
            .iter()
            .map(|(k, v)| (k.clone(), (v.clone(), DefaultSource::StaticBroker)))
            .collect();
        let layers = [
            ("".to_string(), DefaultSource::DynamicDefault),
            (self.config.broker.node_id.to_string(), DefaultSource::DynamicBroker),
        ];
        for (resource, source) in layers {
            for (k, v) in img.broker_configs.get(&resource).into_iter().flatten() {
                if let Some(key) = ringbroker_engine::config::config_key_by_broker_name(k) {
                    out.insert(key.name.to_string(), (v.clone(), source));
                }
            }
        }
        out
    }

    /// A topic's log config: its overrides over the broker-level defaults
    /// (`topic_defaults`, gathered once by the caller).
    fn log_config_with(&self, defaults: &BTreeMap<String, String>, t: &crate::metadata::TopicMeta) -> LogConfig {
        LogConfig::resolve(defaults, &t.configs).unwrap_or_else(|e| {
            // Validated when stored; a bad stored value falls back to defaults loudly.
            tracing::error!(topic = t.name, error = %e, "invalid stored topic config; using defaults");
            LogConfig::resolve(&self.config.topic_defaults, &BTreeMap::new()).expect("defaults validated at start")
        })
    }

    /// Brings local partitions in line with `img`: opens new ones, drops
    /// deleted ones (removing their files), applies config changes.
    pub async fn install_metadata(self: &Rc<Self>, img: Arc<MetadataImage>) {
        // One install at a time (opening a partition awaits its recovery, and
        // a second install must not open it again), and images move forward
        // only: the quorum may deliver a newer image while a shard still
        // installs the one it recovered with.
        let _turn = self.install_lock.acquire_permit(1).await.expect("never closed");
        if img.version < self.metadata.borrow().version {
            return;
        }
        // Only topics that changed since the last install need work (an
        // image change is usually one topic; walking and resolving every
        // partition's config on each one made creating many topics
        // quadratic). A change of broker-level defaults touches them all.
        let prev = self.installed.replace(Some(img.clone()));
        let defaults_changed = prev.as_ref().is_none_or(|p| p.broker_configs != img.broker_configs);
        let defaults: BTreeMap<String, String> =
            self.topic_defaults(&img).into_iter().map(|(k, (v, _))| (k, v)).collect();
        // This broker's replicas that placement puts on this shard, and
        // whether this broker leads each (leader epoch, ISR size).
        let me = self.config.broker.node_id;
        let mut wanted: Vec<Wanted> = Vec::new();
        let (changed, prev_touched) = match &prev {
            Some(p) if !defaults_changed => img.topic_changes(p),
            _ => (img.topics.values().collect(), true),
        };
        for t in changed {
            let cfg = self.log_config_with(&defaults, t);
            for p in 0..t.partitions {
                let Some(pm) = t.partition(p) else { continue };
                if pm.replicas.contains(&me) && self.owner(&t.id, p) == self.id {
                    let lead = (pm.leader == me).then_some((pm.leader_epoch, pm.isr.len()));
                    wanted.push((t.name.clone(), p, t.id, lead, pm.leader_epoch, cfg.clone()));
                }
            }
        }
        // Drop partitions whose topic is gone or was recreated with a new id
        // (only topics of the last image that changed can have any).
        let gone: Vec<Rc<PartitionHandle>> = self
            .partitions
            .borrow()
            .values()
            .filter(|_| prev_touched)
            .filter(|h| {
                img.topic(&h.topic)
                    .map(|t| {
                        t.id != h.topic_id
                            || h.partition >= t.partitions
                            || t.partition(h.partition).is_some_and(|pm| !pm.replicas.contains(&me))
                    })
                    .unwrap_or(true)
            })
            .cloned()
            .collect();
        for h in gone {
            if h.topic == crate::coordinator::OFFSETS_TOPIC {
                if let Some(c) = self.coordinators.borrow_mut().remove(&h.partition) {
                    c.unload();
                }
            }
            self.partitions.borrow_mut().remove(&h.topic, h.partition).expect("present");
            h.replica.shutdown_deleted();
            let dir = h.replica.dir().to_path_buf();
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "removing deleted partition");
            }
            self.metrics.partitions.fetch_sub(1, Ordering::Relaxed);
        }
        *self.metadata.borrow_mut() = img.clone();
        let mut to_open = Vec::new();
        for (topic, p, id, lead, epoch, cfg) in wanted {
            if let Some(h) = self.partition(&topic, p) {
                if h.log().borrow().config() != &cfg {
                    h.log().borrow_mut().set_config(cfg);
                    h.log().borrow().flush_bell.ring();
                    // flush.policy decides what a single replica commits.
                    h.replica.update_high_watermark();
                }
                continue;
            }
            to_open.push((topic, p, id, lead, epoch, cfg));
        }
        // New partitions open concurrently: each one's creation is a few
        // file creations and syncs that mostly wait on the disk, so one at a
        // time made a CreateTopics of many partitions latency-bound.
        let opens = to_open.into_iter().map(|(topic, p, id, lead, epoch, cfg)| {
            let dir = partition_dir(&self.config.broker.data_dir, &topic, p);
            let cache = self.cache.clone();
            async move {
                let opened = Log::open(DmaStorage, &dir, cfg, cache).await.and_then(|log| {
                    let r = Replica::new(log)?;
                    match lead {
                        Some((leader_epoch, isr)) => r.become_leader(LeaderEpoch(leader_epoch), isr.max(1))?,
                        // A follower replica: placed and kept, idle until
                        // partition replication streams to it.
                        None => r.become_follower(LeaderEpoch(epoch)),
                    }
                    Ok(r)
                });
                (topic, p, id, lead, opened)
            }
        });
        let mut opened = futures::stream::iter(opens).buffer_unordered(OPEN_CONCURRENCY);
        while let Some((topic, p, id, lead, opened)) = opened.next().await {
            match opened {
                Ok(replica) => {
                    let h = Rc::new(PartitionHandle { topic: topic.clone(), partition: p, topic_id: id, replica });
                    self.partitions.borrow_mut().insert(h.clone());
                    self.metrics.partitions.fetch_add(1, Ordering::Relaxed);
                    glommio::spawn_local(flusher(self.clone(), h.clone())).detach();
                    if h.topic == crate::coordinator::OFFSETS_TOPIC && lead.is_some() {
                        let c = crate::coordinator::PartitionCoordinator::new(p, h, self.config.group_config());
                        self.coordinators.borrow_mut().insert(p, c.clone());
                        // Replay before the shard serves clients (install runs before accept).
                        c.load().await;
                    }
                }
                Err(e) => {
                    tracing::error!(topic, partition = p, error = %e, "cannot open partition");
                    // The next install walks every topic again, so the
                    // partition is retried rather than forgotten until its
                    // topic changes.
                    *self.installed.borrow_mut() = None;
                }
            }
        }
    }

    /// Applies a metadata change: runs on the controller shard, commits it
    /// through the metadata quorum, and installs the new image on every
    /// shard before returning.
    pub async fn change_metadata(
        self: &Rc<Self>,
        change: MetadataChange,
    ) -> Result<Arc<MetadataImage>, (kafka_protocol::ResponseError, String)> {
        assert_eq!(self.id, CONTROLLER_SHARD, "metadata changes run on the controller shard");
        let _permit = self.admin_lock.acquire_permit(1).await.expect("admin lock never closes");
        let quorum = self.quorum.clone().expect("the controller shard runs the quorum");
        quorum.propose(self, change).await
    }

    /// Runs a metadata change from any shard.
    pub async fn request_metadata_change(
        self: &Rc<Self>,
        change: MetadataChange,
    ) -> Result<Arc<MetadataImage>, (kafka_protocol::ResponseError, String)> {
        match self.router.request(self, CONTROLLER_SHARD, Request::ChangeMetadata(change)).await {
            Some(Response::MetadataChanged(r)) => r,
            _ => Err((kafka_protocol::ResponseError::BrokerNotAvailable, "controller shard stopped".into())),
        }
    }

    /// Closes every local partition cleanly (flush, sync, persist indexes).
    pub async fn close_partitions(&self) {
        // After any install in progress: partitions it is still opening are
        // closed too.
        let _turn = self.install_lock.acquire_permit(1).await.expect("never closed");
        let parts: Vec<_> = self.partitions.borrow().values().cloned().collect();
        for h in parts {
            if let Err(e) = h.replica.close(now_ms()).await {
                tracing::error!(topic = %h.topic, partition = h.partition, error = %e, "closing partition");
            }
        }
    }

    /// Partitions drop the cached batches the ledger retired when they
    /// append or flush; this sweep reaches the ones that have gone idle, so
    /// memory follows the budget within a second.
    pub async fn cache_sweep(self: Rc<Self>) {
        while !self.shutdown.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let parts: Vec<_> = self.partitions.borrow().values().cloned().collect();
            let mut held = 0;
            for h in parts {
                let mut log = h.log().borrow_mut();
                log.evict_cache();
                held += log.cached_bytes();
            }
            // What is really in memory, including unwritten batches (never
            // evicted) beyond the ledger's budget.
            self.metrics.cache_bytes.store(held as i64, Ordering::Relaxed);
        }
    }

    /// Periodic retention and time-based roll of local partitions.
    pub async fn housekeeping(self: Rc<Self>) {
        let every = Duration::from_millis(self.config.broker.retention_check_interval_ms.min(30_000));
        while !self.shutdown.load(Ordering::Relaxed) {
            glommio::timer::sleep(every).await;
            let parts: Vec<_> = self.partitions.borrow().values().cloned().collect();
            for h in parts {
                let now = now_ms();
                if h.log().borrow().active_segment_expired(now) {
                    if let Err(e) = h.replica.roll_now(now).await {
                        tracing::error!(topic = %h.topic, partition = h.partition, error = %e, "time-based roll");
                    }
                }
                let expired = h.log().borrow_mut().expire_producers(now, self.config.broker.producer_id_expiration_ms);
                if expired > 0 {
                    tracing::debug!(topic = %h.topic, partition = h.partition, producers = expired, "expired idle producer state");
                }
                let r = h.replica.apply_retention(now);
                match r {
                    Ok(n) if n > 0 => {
                        tracing::info!(topic = %h.topic, partition = h.partition, segments = n, "retention deleted segments")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(topic = %h.topic, partition = h.partition, error = %e, "retention"),
                }
            }
        }
    }
}

/// Compacts this shard's `cleanup.policy=compact` partitions in the
/// background, one partition at a time (the cleaner yields between chunks,
/// so produce and fetch on the shard keep their latency).
pub async fn cleaner_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.broker.log_cleaner_backoff_ms);
    while !shard.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(every).await;
        let parts: Vec<_> = shard.partitions.borrow().values().cloned().collect();
        for h in parts {
            if !h.log().borrow().config().cleanup_policy.compact || h.log().borrow().poisoned().is_some() {
                continue;
            }
            let throttle = ringbroker_engine::cleaner::Throttle {
                bytes_per_sec: shard.config.broker.log_cleaner_io_max_bytes_per_second,
            };
            match Log::compact(h.log(), now_ms(), throttle, None).await {
                Ok(st) if st.segments_cleaned > 0 => tracing::info!(
                    topic = %h.topic,
                    partition = h.partition,
                    segments = st.segments_cleaned,
                    removed = st.records_removed,
                    bytes_before = st.bytes_before,
                    bytes_after = st.bytes_after,
                    "compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(topic = %h.topic, partition = h.partition, error = %e, "compaction failed"),
            }
        }
    }
}

/// The partition's flusher: writes queued batches and syncs them according
/// to the flush policy. One per partition, so a slow disk for one partition
/// never reorders another's writes.
async fn flusher(shard: Rc<Shard>, h: Rc<PartitionHandle>) {
    let bell = h.log().borrow().flush_bell.clone();
    loop {
        let (policy, flush_ms) = {
            let l = h.log().borrow();
            (l.config().flush_policy, l.config().flush_ms)
        };
        let rung = match policy {
            FlushPolicy::Always => bell.wait().await,
            // Interval and never also wake on a timer, so data reaches the
            // file (and, for interval, the disk) without further appends.
            FlushPolicy::Interval | FlushPolicy::Never => {
                let period = Duration::from_millis(if policy == FlushPolicy::Interval { flush_ms } else { 1000 });
                let deadline = std::time::Instant::now() + period;
                loop {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break true;
                    }
                    let timer = glommio::timer::sleep(deadline - now);
                    futures::pin_mut!(timer);
                    let wait = bell.wait();
                    futures::pin_mut!(wait);
                    match futures::future::select(wait, timer).await {
                        futures::future::Either::Left((false, _)) => break false,
                        // A lot of unwritten data is written early under `never`.
                        futures::future::Either::Left((true, _))
                            if policy == FlushPolicy::Never && h.log().borrow().wants_flush(now_ms()) =>
                        {
                            break true
                        }
                        futures::future::Either::Left((true, _)) => continue,
                        futures::future::Either::Right(_) => break true,
                    }
                }
            }
        };
        if !rung {
            break;
        }
        if h.log().borrow().poisoned().is_some() {
            break;
        }
        let start = std::time::Instant::now();
        let force = policy == FlushPolicy::Interval;
        match h.replica.flush_once(now_ms(), force).await {
            Ok(()) => {
                shard.metrics.flushes.fetch_add(1, Ordering::Relaxed);
                shard.metrics.flush_latency.record_us(start.elapsed().as_micros() as u64);
            }
            Err(e) => {
                tracing::error!(topic = %h.topic, partition = h.partition, error = %e, "flush failed; partition poisoned");
                break;
            }
        }
        // Appends that arrived during the flush rang the bell again, so the
        // next loop takes them: that is the group commit.
        if policy == FlushPolicy::Always && h.log().borrow().wants_flush(now_ms()) {
            bell.ring();
        }
    }
}
