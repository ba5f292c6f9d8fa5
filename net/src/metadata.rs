//! Cluster metadata on this broker: the controller's durable store and the
//! image every shard reads.
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
use ringbroker_engine::ids::TopicId;

pub use ringbroker_controller::{
    apply_change, check_client_write, is_internal_topic, placement, valid_topic_name, validate_broker_config,
    ClientWrite, MetadataChange, MetadataImage, TopicMeta,
};

/// The controller's durable copy of the metadata (one JSON file, replaced
/// atomically with write-to-temp, fsync, rename, fsync of the directory).
pub struct MetadataStore {
    path: PathBuf,
    image: Arc<MetadataImage>,
}

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
                };
                write_atomic(&path, &serde_json::to_vec_pretty(&img).expect("serializable"))?;
                img
            }
            Err(e) => return Err(e),
        };
        Ok(MetadataStore { path, image: Arc::new(image) })
    }
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.clone()
    }
    /// Validates, persists and installs a change. The caller then distributes
    /// the image to all shards before answering the client.
    pub fn apply(&mut self, change: &MetadataChange) -> Result<Arc<MetadataImage>, (ResponseError, String)> {
        let next = apply_change(&self.image, change)?;
        write_atomic(&self.path, &serde_json::to_vec_pretty(&next).expect("serializable"))
            .map_err(|e| (ResponseError::KafkaStorageError, format!("persisting metadata: {e}")))?;
        self.image = Arc::new(next);
        Ok(self.image.clone())
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

fn new_cluster_id() -> String {
    // Kafka cluster ids are 22-char url-safe base64 of 16 bytes.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    random_id().iter().chain(random_id()[..6].iter()).take(22).map(|b| ALPHABET[(*b & 63) as usize] as char).collect()
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
        })
        .unwrap();
        let s2 = MetadataStore::open(d.path()).unwrap();
        assert_eq!(s2.image().cluster_id, id);
        assert_eq!(s2.image().topic("x").unwrap().partitions, 2);
    }
}
