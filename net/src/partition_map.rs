//! A shard's partitions, found by topic name and index without allocating.
//!
//! Every produce and fetch looks partitions up by the topic name from the
//! request; a map keyed by `(String, i32)` had to allocate a `String` per
//! lookup to build the key. Here the outer map is keyed by `Arc<str>`, which
//! a `&str` can query directly.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::shard::PartitionHandle;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

#[derive(Default)]
pub struct PartitionMap {
    by_topic: Map<Arc<str>, Map<i32, Rc<PartitionHandle>>>,
    len: usize,
}

impl PartitionMap {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<PartitionHandle>> {
        self.by_topic.get(topic)?.get(&partition)
    }

    /// Adds a partition under its own topic and index; replaces nothing (a
    /// partition is opened once).
    pub fn insert(&mut self, h: Rc<PartitionHandle>) {
        let partitions = match self.by_topic.get_mut(h.topic.as_str()) {
            Some(m) => m,
            None => self.by_topic.entry(Arc::from(h.topic.as_str())).or_default(),
        };
        let partition = h.partition;
        let previous = partitions.insert(partition, h);
        assert!(previous.is_none(), "partition {partition} opened twice");
        self.len += 1;
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Rc<PartitionHandle>> {
        let partitions = self.by_topic.get_mut(topic)?;
        let h = partitions.remove(&partition)?;
        if partitions.is_empty() {
            self.by_topic.remove(topic);
        }
        self.len -= 1;
        Some(h)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn values(&self) -> impl Iterator<Item = &Rc<PartitionHandle>> {
        self.by_topic.values().flat_map(|m| m.values())
    }
}
