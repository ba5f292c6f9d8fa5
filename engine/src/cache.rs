//! The shard's batch-cache budget, shared by all of its partitions.
//!
//! Every partition keeps its recent batches in memory: they are its write
//! queue and its read cache (`PartitionLog::recent`). The memory budget
//! belongs to the shard, not to each partition: a few busy partitions may use
//! all of it while idle ones (the 50 `__consumer_offsets` partitions, a
//! thousand-partition topic nobody writes to) hold nothing. A fixed
//! per-partition share would instead send consumers of the busy partitions
//! to disk while most of the memory sat unused.
//!
//! Eviction is oldest-first across the shard. The ledger numbers each cached
//! batch in admission order; when the total goes over budget it retires the
//! oldest numbers and raises `evict_below`. A partition drops its batches
//! numbered below that mark the next time it evicts (after a flush, on an
//! append, or in the shard's periodic sweep), so no partition ever reaches
//! into another one's state. A batch that is not yet written stays until its
//! flush is done, whatever its number.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Shared by the partitions of one shard (single-threaded: `Rc`).
#[derive(Debug)]
pub struct CacheLedger {
    inner: RefCell<Inner>,
    /// Bytes of disk reads started ahead for sequential consumers
    /// (`PartitionLog::read_disk`), held until the next fetch takes them.
    readahead_bytes: Cell<usize>,
}

#[derive(Debug)]
struct Inner {
    /// Live batches: admission number -> size.
    entries: BTreeMap<u64, usize>,
    bytes: usize,
    budget: usize,
    next_seq: u64,
    /// Every batch numbered below this is retired (or forgotten).
    evict_below: u64,
}

impl CacheLedger {
    pub fn new(budget_bytes: usize) -> Rc<Self> {
        Rc::new(CacheLedger {
            inner: RefCell::new(Inner {
                entries: BTreeMap::new(),
                bytes: 0,
                budget: budget_bytes,
                next_seq: 0,
                evict_below: 0,
            }),
            readahead_bytes: Cell::new(0),
        })
    }

    /// Reserves `len` bytes for a readahead: granted while all readaheads
    /// of the shard stay within a quarter of the cache budget (on top of
    /// it), so catching up on many partitions at once cannot pin unbounded
    /// memory. `end_readahead` gives them back.
    pub fn start_readahead(&self, len: usize) -> bool {
        let limit = self.inner.borrow().budget / 4;
        if self.readahead_bytes.get() + len > limit {
            return false;
        }
        self.readahead_bytes.set(self.readahead_bytes.get() + len);
        true
    }

    pub fn end_readahead(&self, len: usize) {
        let now = self.readahead_bytes.get();
        assert!(len <= now, "readahead bytes returned twice");
        self.readahead_bytes.set(now - len);
    }

    /// Bytes reserved by readaheads in flight or waiting.
    pub fn readahead_bytes(&self) -> usize {
        self.readahead_bytes.get()
    }

    /// Records a newly cached batch of `len` bytes; returns its number.
    pub fn admit(&self, len: usize) -> u64 {
        let mut s = self.inner.borrow_mut();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.entries.insert(seq, len);
        s.bytes += len;
        s.shrink();
        seq
    }

    /// A partition dropped batch `seq` for its own reasons (retention,
    /// truncation, deletion): its bytes no longer count.
    pub fn forget(&self, seq: u64) {
        let mut s = self.inner.borrow_mut();
        if let Some(len) = s.entries.remove(&seq) {
            s.bytes -= len;
        }
    }

    /// Batches numbered below this should be dropped once written.
    pub fn evict_below(&self) -> u64 {
        self.inner.borrow().evict_below
    }

    /// Bytes of live (not retired) batches.
    pub fn bytes(&self) -> usize {
        self.inner.borrow().bytes
    }

    pub fn budget(&self) -> usize {
        self.inner.borrow().budget
    }

    pub fn set_budget(&self, budget_bytes: usize) {
        let mut s = self.inner.borrow_mut();
        s.budget = budget_bytes;
        s.shrink();
    }
}

impl Inner {
    fn shrink(&mut self) {
        while self.bytes > self.budget {
            let (seq, len) = self.entries.pop_first().expect("bytes > 0 means entries exist");
            self.bytes -= len;
            self.evict_below = seq + 1;
        }
        debug_assert_eq!(self.bytes, self.entries.values().sum::<usize>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retires_oldest_first() {
        let l = CacheLedger::new(100);
        let a = l.admit(40);
        let b = l.admit(40);
        assert_eq!(l.evict_below(), 0);
        let c = l.admit(40); // 120 > 100: a retires
        assert_eq!(l.evict_below(), a + 1);
        assert_eq!(l.bytes(), 80);
        l.forget(b); // dropped by its partition: frees room without retiring c
        assert_eq!(l.bytes(), 40);
        l.forget(a); // already retired: no effect
        assert_eq!(l.bytes(), 40);
        l.set_budget(10);
        assert_eq!(l.evict_below(), c + 1);
        assert_eq!(l.bytes(), 0);
        // A batch larger than the budget retires at once.
        let d = l.admit(11);
        assert_eq!(l.evict_below(), d + 1);
    }

    proptest! {
        /// Live bytes never exceed the budget, equal the sum of live batches,
        /// and the mark only moves forward past batches admitted earlier.
        #[test]
        fn stays_within_budget(budget in 0usize..1000, ops in proptest::collection::vec((any::<bool>(), 0usize..300), 1..200)) {
            let l = CacheLedger::new(budget);
            let mut admitted: Vec<u64> = Vec::new();
            let mut mark = 0;
            for (forget, n) in ops {
                if forget && !admitted.is_empty() {
                    l.forget(admitted[n % admitted.len()]);
                } else {
                    admitted.push(l.admit(n));
                }
                prop_assert!(l.bytes() <= budget);
                prop_assert!(l.evict_below() >= mark);
                mark = l.evict_below();
                prop_assert!(mark <= admitted.len() as u64);
            }
        }
    }
}
