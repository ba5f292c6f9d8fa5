//! Cluster metadata on this broker: the image every shard reads, and the
//! store of the single-node versions before the metadata quorum, kept to
//! migrate their data directories (`quorum_driver::open`).
//!
//! The image is immutable and shared as `Arc<MetadataImage>`: every shard
//! holds the latest one and reads it without locks. Changes are made only by
//! the controller shard (shard 0) through `MetadataStore::apply`, which
//! validates and applies them with the controller's pure state machine
//! (`ringbroker_controller`), persists atomically, and hands the new image
//! to every shard before the change is acknowledged. On a single node the
//! store is a file; the Raft metadata quorum replaces that file with a
//! replicated log of the same changes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use ringbroker_controller::records;
use ringbroker_engine::ids::TopicId;

use crate::metadata_log::MetadataLog;

pub use ringbroker_controller::{
    apply_change, check_client_write, is_internal_topic, placement, valid_topic_name, validate_broker_config,
    ClientWrite, MetadataChange, MetadataImage, TopicMeta,
};

/// The controller's durable copy of the metadata: a snapshot of the image
/// (`meta/metadata.json`, replaced atomically: write to temp, fsync, rename,
/// fsync of the directory) and the log of changes since it
/// (`meta/metadata.log`, flatbuffers records, `metadata_log.rs`). A change is
/// one appended, fdatasync'ed record, whatever the size of the image; every
/// `SNAPSHOT_EVERY` records the image is snapshotted and the log emptied.
pub struct MetadataStore {
    path: PathBuf,
    image: Arc<MetadataImage>,
    log: MetadataLog,
}

/// Records between snapshots: replaying this many at start takes
/// milliseconds, and a snapshot of a large image is written rarely.
const SNAPSHOT_EVERY: usize = 1024;

impl MetadataStore {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("metadata.json");
        let image = match std::fs::read(&path) {
            Ok(b) => {
                let mut img: MetadataImage = serde_json::from_slice(&b).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?;
                // Images written before internal meant Kafka's list (not any
                // "__" name) are corrected on load.
                for t in img.topics.values_mut() {
                    let t = std::sync::Arc::make_mut(t);
                    t.internal = is_internal_topic(&t.name);
                }
                img
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let img = MetadataImage {
                    cluster_id: new_cluster_id(),
                    version: 0,
                    topics: BTreeMap::new(),
                    next_producer_id: 0,
                    broker_configs: BTreeMap::new(),
                    brokers: BTreeMap::new(),
                };
                write_atomic(&path, &serde_json::to_vec_pretty(&img).expect("serializable"))?;
                img
            }
            Err(e) => return Err(e),
        };
        let (log, frames) = MetadataLog::open(&dir)?;
        let mut image = image;
        image.brokers.insert(LEGACY_BROKER, legacy_broker());
        let image = replay(image, frames, log.path())?;
        Ok(MetadataStore { path, image: Arc::new(image), log })
    }
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.clone()
    }
    /// Validates, persists and installs a change (how the single-node
    /// versions wrote their store; tests use it to build one).
    pub fn apply(&mut self, change: &MetadataChange) -> Result<Arc<MetadataImage>, (ResponseError, String)> {
        let mut change = change.clone();
        legacy_fill(&self.image, &mut change);
        let next = apply_change(&self.image, &change)?;
        self.log.append(next.version, &records::encode(&change)).map_err(|e| match e.kind() {
            // A change too large to be a record (a huge config value).
            std::io::ErrorKind::InvalidInput => (ResponseError::InvalidRequest, e.to_string()),
            _ => (ResponseError::KafkaStorageError, format!("persisting metadata: {e}")),
        })?;
        self.image = Arc::new(next);
        if self.log.len() >= SNAPSHOT_EVERY {
            // The change is durable in the log already; a failed snapshot
            // only means a longer replay at the next start.
            if let Err(e) = self.snapshot() {
                tracing::warn!(error = %e, "metadata snapshot failed; the log keeps the changes");
            }
        }
        Ok(self.image.clone())
    }

    /// Writes the image as the snapshot and empties the log.
    pub fn snapshot(&mut self) -> std::io::Result<()> {
        write_atomic(&self.path, &serde_json::to_vec_pretty(&*self.image).expect("serializable"))?;
        self.log.clear()
    }
}

/// Applies the log's frames after the snapshot's version, in order. A frame
/// that passed its CRC but does not decode, is out of sequence or does not
/// apply means a broken store: refuse to start rather than serve a guess.
fn replay(
    mut image: MetadataImage,
    frames: Vec<crate::metadata_log::Frame>,
    path: &Path,
) -> std::io::Result<MetadataImage> {
    let broken =
        |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    for f in frames {
        if f.version <= image.version {
            continue; // already in the snapshot
        }
        if f.version != image.version + 1 {
            return Err(broken(format!("record for version {} after version {}", f.version, image.version)));
        }
        let mut change = records::decode(&f.record).map_err(|e| broken(format!("version {}: {e}", f.version)))?;
        legacy_fill(&image, &mut change);
        image = apply_change(&image, &change)
            .map_err(|(e, msg)| broken(format!("version {} does not apply: {e:?} {msg}", f.version)))?;
        debug_assert_eq!(image.version, f.version);
    }
    Ok(image)
}

/// The one broker of a single-node store. Its records carry no replica
/// assignments (every partition was on the one node); replaying them places
/// every partition on this stand-in, which the migration replaces with the
/// real node id (`quorum_driver::open`).
pub const LEGACY_BROKER: i32 = i32::MAX - 1;

fn legacy_broker() -> ringbroker_controller::BrokerMeta {
    ringbroker_controller::BrokerMeta {
        id: LEGACY_BROKER,
        epoch: 0,
        incarnation: [0; 16],
        host: String::new(),
        port: 0,
        cluster_host: String::new(),
        cluster_port: 0,
        shards: 1,
        fenced: false,
    }
}

/// Places the partitions of a single-node record on `LEGACY_BROKER`.
fn legacy_fill(img: &MetadataImage, change: &mut MetadataChange) {
    match change {
        MetadataChange::CreateTopic { partitions, replication_factor, assignments, .. } if assignments.is_empty() => {
            *replication_factor = 1;
            *assignments = vec![vec![LEGACY_BROKER]; (*partitions).clamp(0, 100_000) as usize];
        }
        MetadataChange::CreatePartitions { name, total, assignments } if assignments.is_empty() => {
            let current = img.topic(name).map_or(0, |t| t.partitions);
            *assignments = vec![vec![LEGACY_BROKER]; (*total - current).clamp(0, 100_000) as usize];
        }
        _ => {}
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A new topic id (random, never zero).
pub fn random_topic_id() -> TopicId {
    TopicId(random_id())
}

/// 16 random bytes from the kernel (topic ids, cluster id).
pub fn random_id() -> [u8; 16] {
    let mut b = [0u8; 16];
    // getrandom(2) never fails for 16 bytes once the pool is initialised.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 16, 0) };
    assert_eq!(n, 16, "getrandom");
    if b == [0u8; 16] {
        b[0] = 1; // the all-zero id means "no id" in Kafka
    }
    b
}

/// A random seed (for the quorum's seeded generator).
pub fn random_seed() -> u64 {
    u64::from_ne_bytes(random_id()[..8].try_into().expect("8 bytes"))
}

fn new_cluster_id() -> String {
    use ringbroker_controller::quorum::{cluster_id_from, SeededRng};
    cluster_id_from(&mut SeededRng::new(random_seed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_persists_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut s = MetadataStore::open(d.path()).unwrap();
        let id = s.image().cluster_id.clone();
        s.apply(&MetadataChange::CreateTopic {
            name: "x".into(),
            id: random_topic_id(),
            partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        })
        .unwrap();
        let s2 = MetadataStore::open(d.path()).unwrap();
        assert_eq!(s2.image().cluster_id, id);
        assert_eq!(s2.image().topic("x").unwrap().partitions, 2);
    }

    fn topic(name: &str) -> MetadataChange {
        MetadataChange::CreateTopic {
            name: name.into(),
            id: random_topic_id(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    #[test]
    fn changes_replay_from_the_log_over_the_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let mut s = MetadataStore::open(d.path()).unwrap();
        s.apply(&topic("a")).unwrap();
        s.apply(&topic("b")).unwrap();
        // A snapshot, then more changes in the log.
        s.snapshot().unwrap();
        s.apply(&topic("c")).unwrap();
        s.apply(&MetadataChange::DeleteTopic { name: "a".into() }).unwrap();
        let before = s.image();
        drop(s);
        let s = MetadataStore::open(d.path()).unwrap();
        assert_eq!(*s.image(), *before);
        assert_eq!(s.image().topics.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(s.image().version, 4);
    }

    #[test]
    fn a_crash_between_snapshot_and_log_clear_replays_nothing_twice() {
        let d = tempfile::tempdir().unwrap();
        let mut s = MetadataStore::open(d.path()).unwrap();
        s.apply(&topic("a")).unwrap();
        s.apply(&MetadataChange::AllocateProducerIds { count: 1000 }).unwrap();
        // The snapshot is written but the log not emptied.
        write_atomic(&s.path, &serde_json::to_vec_pretty(&*s.image()).unwrap()).unwrap();
        s.apply(&MetadataChange::AllocateProducerIds { count: 1000 }).unwrap();
        drop(s);
        let s = MetadataStore::open(d.path()).unwrap();
        assert_eq!(s.image().next_producer_id, 2000, "each allocation applied once");
        assert_eq!(s.image().version, 3);
    }

    #[test]
    fn a_log_record_that_does_not_follow_refuses_to_start() {
        let d = tempfile::tempdir().unwrap();
        let mut s = MetadataStore::open(d.path()).unwrap();
        s.apply(&topic("a")).unwrap();
        // Version 3 after version 1: a gap.
        s.log.append(3, &records::encode(&topic("b"))).unwrap();
        drop(s);
        let e = MetadataStore::open(d.path()).err().expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
