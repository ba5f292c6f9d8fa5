//! Readahead for consumers catching up from disk (DESIGN §3, Read).
//!
//! A catch-up fetch that misses the batch cache reads each partition from
//! its segment file. Without readahead the shard then sends the response
//! while the disk sits idle, and the consumer's next fetch starts the next
//! read from scratch: consuming from disk ran at 35-41% of the disk's read
//! bandwidth with a third of the CPU idle. After a disk read, the partition
//! starts reading the bytes that follow, for the fetch that will ask for the
//! next offset; that fetch takes the data, or waits for the rest of the read,
//! and starts the next one.
//!
//! One readahead per partition (a second consumer at another offset just
//! replaces it), at most `READAHEAD_MAX_BYTES`, and all of a shard's within
//! a quarter of its batch-cache budget (`CacheLedger::start_readahead`). A
//! readahead remembers the segment file it read: if that segment was deleted
//! or rewritten meanwhile (retention, compaction), the data is not used.

use bytes::Bytes;
use std::rc::Rc;

use crate::cache::CacheLedger;

/// Largest read started ahead for one partition.
pub const READAHEAD_MAX_BYTES: usize = (1 << 20) + (64 << 10);

/// A read of `file` at `pos` started for a fetch at `offset`.
pub struct Readahead<F> {
    pub offset: i64,
    pub file: Rc<F>,
    pub pos: u64,
    pub task: glommio::Task<std::io::Result<Bytes>>,
    len: usize,
    ledger: Rc<CacheLedger>,
}

impl<F: crate::io::SegmentFile + 'static> Readahead<F> {
    /// Starts reading `len` bytes of `file` at `pos` in the background, if
    /// the shard's readahead budget has room.
    pub fn start(ledger: &Rc<CacheLedger>, offset: i64, file: Rc<F>, pos: u64, len: usize) -> Option<Self> {
        let len = len.min(READAHEAD_MAX_BYTES);
        if len == 0 || !ledger.start_readahead(len) {
            return None;
        }
        let reader = file.clone();
        let task = glommio::spawn_local(async move { reader.read_at(pos, len).await });
        Some(Readahead { offset, file, pos, task, len, ledger: ledger.clone() })
    }
}

impl<F> Drop for Readahead<F> {
    fn drop(&mut self) {
        self.ledger.end_readahead(self.len);
    }
}
