//! `Partition`: this broker's replica of one partition, between the request
//! handlers and the storage (`PartitionLog`).
//!
//! The log stores batches and knows what is durable; the partition decides
//! what is *committed*: it owns the high watermark (what consumers may read
//! and what acks=all waits for), the leader epoch stamped into new batches
//! and the history of epochs (persisted as `leader-epoch-checkpoint`, the
//! answer to OffsetForLeaderEpoch), and the replica's role. On a single
//! replica the high watermark follows the log's own commit point (durable
//! offset under `flush.policy=always`, the log end otherwise); with
//! followers (the replication issue) it becomes the lowest durable offset
//! over the in-sync replicas, set through `set_high_watermark`.
//!
//! Invariants: log_start <= high watermark <= log end; the epoch history's
//! entries start at or after the log start and before the log end, the
//! latest one is at most the current leader epoch.
//!
//! Owned by one shard; no borrow is held across an await.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ringbroker_engine::batch::BatchHeader;
use ringbroker_engine::epoch_history::EpochHistory;
use ringbroker_engine::ids::LeaderEpoch;
use ringbroker_engine::io::SegmentStorage;
use ringbroker_engine::log::{AppendInfo, PartitionLog, ReadResult};
use ringbroker_engine::notify::OffsetWatch;
use ringbroker_engine::EngineError;

use crate::{commit_wait, Acks, CommitWait};

/// What this broker's replica does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes produce requests and decides the high watermark.
    Leader,
    /// Appends what the leader sends (`append_replicated`).
    Follower,
    /// Neither: its broker is fenced or the partition has no leader.
    Offline,
}

/// Why a partition refused a write.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("this replica is not the partition's leader ({0:?})")]
    NotLeader(Role),
    #[error("a replicated batch with leader epoch {0}, not one this follower's leader can have written")]
    BadEpoch(i32),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub struct Partition<S: SegmentStorage> {
    log: RefCell<PartitionLog<S>>,
    dir: PathBuf,
    high_watermark: OffsetWatch,
    leader_epoch: Cell<LeaderEpoch>,
    epochs: RefCell<EpochHistory>,
    role: Cell<Role>,
    /// In-sync replicas including this one (1 until partitions replicate).
    isr_size: Cell<usize>,
}

impl<S: SegmentStorage + Clone> Partition<S> {
    /// Wraps an opened log. The epoch history is loaded from its checkpoint
    /// and cut to the log's bounds (a crash can fall between a log
    /// truncation and the checkpoint's update); a log from before epoch
    /// histories existed was written in epoch 0 throughout.
    pub fn new(log: PartitionLog<S>) -> Result<Self, EngineError> {
        let dir = log.dir().to_path_buf();
        let (start, end) = (log.log_start_offset(), log.next_offset());
        let mut epochs = EpochHistory::load(&dir).unwrap_or_default();
        let mut changed = epochs.truncate_from_end(end);
        changed |= epochs.truncate_from_start(start);
        if epochs.latest().is_none() && end > start {
            changed |= epochs.assign(0, start);
        }
        if changed {
            epochs.persist(&dir)?;
        }
        // Nothing is known committed until a role says so: a leader takes
        // its log's commit point (`become_leader`), a follower its leader's.
        Ok(Partition {
            log: RefCell::new(log),
            dir,
            high_watermark: OffsetWatch::new(start),
            leader_epoch: Cell::new(LeaderEpoch(epochs.latest().map(|(e, _)| e).unwrap_or(0))),
            epochs: RefCell::new(epochs),
            role: Cell::new(Role::Offline),
            isr_size: Cell::new(1),
        })
    }

    /// The storage underneath, for what the partition does not decide:
    /// configs, sizes, flushing, compaction, retention scheduling.
    pub fn log(&self) -> &RefCell<PartitionLog<S>> {
        &self.log
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn role(&self) -> Role {
        self.role.get()
    }
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch.get()
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }
    /// The high watermark's watch, for long polls.
    pub fn high_watermark_watch(&self) -> OffsetWatch {
        self.high_watermark.clone()
    }
    pub fn epoch_history(&self) -> EpochHistory {
        self.epochs.borrow().clone()
    }

    /// This replica leads from `epoch` on: new batches carry it, and the
    /// history records that it starts at the log end. `isr_size` counts the
    /// in-sync replicas, this one included.
    pub fn become_leader(&self, epoch: LeaderEpoch, isr_size: usize) -> Result<(), EngineError> {
        assert!(epoch >= self.leader_epoch.get(), "leader epochs never go back: {epoch} < {}", self.leader_epoch.get());
        assert!(isr_size >= 1, "the leader is in its own ISR");
        let end = self.log.borrow().next_offset();
        self.note_epoch(epoch, end)?;
        self.leader_epoch.set(epoch);
        self.role.set(Role::Leader);
        self.isr_size.set(isr_size);
        self.update_high_watermark();
        Ok(())
    }

    /// This replica follows a leader of `epoch`: it takes no produce and its
    /// high watermark comes from the leader.
    pub fn become_follower(&self, epoch: LeaderEpoch) {
        assert!(epoch >= self.leader_epoch.get(), "leader epochs never go back: {epoch} < {}", self.leader_epoch.get());
        self.leader_epoch.set(epoch);
        self.role.set(Role::Follower);
    }

    pub fn go_offline(&self) {
        self.role.set(Role::Offline);
    }

    fn note_epoch(&self, epoch: LeaderEpoch, start: i64) -> Result<(), EngineError> {
        let mut epochs = self.epochs.borrow_mut();
        if epochs.latest().is_none_or(|(e, _)| epoch.0 > e) && epochs.assign(epoch.0, start) {
            epochs.persist(&self.dir)?;
        }
        Ok(())
    }

    /// Appends a producer's batch as leader: offsets assigned, the leader
    /// epoch stamped.
    pub fn append(&self, raw: BytesMut, header: &BatchHeader, now_ms: i64) -> Result<AppendInfo, PartitionError> {
        if self.role.get() != Role::Leader {
            return Err(PartitionError::NotLeader(self.role.get()));
        }
        let info = self.log.borrow_mut().append(raw, header, now_ms, self.leader_epoch.get().0)?;
        self.update_high_watermark();
        Ok(info)
    }

    /// Appends a batch exactly as the leader stored it (a follower). A batch
    /// of a newer epoch than the history knows starts that epoch.
    pub fn append_replicated(&self, raw: Bytes, header: &BatchHeader, now_ms: i64) -> Result<(), PartitionError> {
        if self.role.get() != Role::Follower {
            return Err(PartitionError::NotLeader(self.role.get()));
        }
        // A batch from another broker is not trusted: a negative epoch is
        // not an epoch, and one above the leader's own is not its leader's.
        let epoch = header.partition_leader_epoch;
        if epoch < 0 || epoch > self.leader_epoch.get().0 {
            return Err(PartitionError::BadEpoch(epoch));
        }
        self.log.borrow_mut().append_replicated(raw, header, now_ms)?;
        // Recorded only once the log took the batch: a refused batch must
        // not rewrite the history.
        self.note_epoch(LeaderEpoch(epoch), header.base_offset)?;
        Ok(())
    }

    /// Takes back the log from `offset` on (see `PartitionLog::truncate_to`);
    /// the epoch history and the high watermark follow. Returns the new end.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, EngineError> {
        // Lowered first: while the log is being cut, no reader may be told
        // of, or read, offsets at or past the cut.
        if self.high_watermark.get() > offset {
            self.high_watermark.truncate(offset.max(self.log.borrow().log_start_offset()));
        }
        let end = PartitionLog::truncate_to(&self.log, offset).await?;
        {
            let mut epochs = self.epochs.borrow_mut();
            if epochs.truncate_from_end(end) {
                epochs.persist(&self.dir)?;
            }
        }
        if self.high_watermark.get() > end {
            self.high_watermark.truncate(end);
        }
        Ok(end)
    }

    /// Recomputes the high watermark of a leader without followers from the
    /// log's own commit point. Called after appends and flushes.
    pub fn update_high_watermark(&self) {
        if self.role.get() == Role::Leader && self.isr_size.get() == 1 {
            let end = self.log.borrow().local_commit_end();
            self.high_watermark.advance(end);
        }
    }

    /// Sets the high watermark from outside: the leader's ISR tracking, or
    /// a follower taking the leader's. Never past the local log end.
    pub fn set_high_watermark(&self, hw: i64) {
        let end = self.log.borrow().next_offset();
        self.high_watermark.advance(hw.min(end));
    }

    /// What a produce with `acks` must wait for before it is answered, for
    /// records ending before `end_offset`.
    pub fn commit_wait(&self, acks: Acks, end_offset: i64) -> CommitWait {
        let policy = self.log.borrow().config().flush_policy;
        commit_wait(acks, policy, self.isr_size.get(), end_offset)
    }

    /// Waits as `commit_wait` said; `Err` with the reason if the partition
    /// failed or the records were truncated away meanwhile.
    pub async fn wait_committed(&self, wait: CommitWait) -> Result<(), String> {
        match wait {
            CommitWait::Nothing => Ok(()),
            CommitWait::LocalDurable { end_offset } => {
                let durable = self.log.borrow().durable.clone();
                durable.wait_for(end_offset).await
            }
            CommitWait::Committed { end_offset } => self.high_watermark.wait_for(end_offset).await,
        }
    }

    /// Committed batches from the cache, starting at the one holding `offset`.
    pub fn read_cached(&self, offset: i64, max_bytes: usize) -> Option<ReadResult> {
        self.log.borrow().read_cached(offset, max_bytes, self.high_watermark.get())
    }

    /// Committed batches from disk (see `PartitionLog::read_disk`).
    pub async fn read_disk(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, EngineError> {
        PartitionLog::read_disk(&self.log, offset, max_bytes, self.high_watermark.get()).await
    }

    /// The first committed batch with a record at or after `ts`.
    pub async fn find_by_timestamp(&self, ts: i64) -> Result<Option<Bytes>, EngineError> {
        PartitionLog::find_by_timestamp(&self.log, ts, self.high_watermark.get()).await
    }

    /// DeleteRecords: moves the log start up to at most the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, EngineError> {
        let start = self.log.borrow_mut().delete_records_before(offset, self.high_watermark.get())?;
        self.forget_epochs_before(start)?;
        Ok(start)
    }

    /// retention.ms / retention.bytes; returns the segments deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, EngineError> {
        let deleted = self.log.borrow_mut().apply_retention(now_ms)?;
        if deleted > 0 {
            let start = self.log.borrow().log_start_offset();
            self.forget_epochs_before(start)?;
        }
        Ok(deleted)
    }

    fn forget_epochs_before(&self, start: i64) -> Result<(), EngineError> {
        let mut epochs = self.epochs.borrow_mut();
        if epochs.truncate_from_start(start) {
            epochs.persist(&self.dir)?;
        }
        Ok(())
    }

    /// One flush round of the partition's flusher; the high watermark
    /// follows what became durable.
    pub async fn flush_once(&self, now_ms: i64, force_sync: bool) -> Result<(), EngineError> {
        let r = PartitionLog::flush_once(&self.log, now_ms, force_sync).await;
        self.update_high_watermark();
        r
    }

    pub async fn roll_now(&self, now_ms: i64) -> Result<(), EngineError> {
        let r = PartitionLog::roll_now(&self.log, now_ms).await;
        self.update_high_watermark();
        r
    }

    pub async fn close(&self, now_ms: i64) -> Result<(), EngineError> {
        let r = PartitionLog::close(&self.log, now_ms).await;
        self.update_high_watermark();
        r
    }

    /// The partition was deleted: every waiter fails, the flusher stops.
    pub fn shutdown_deleted(&self) {
        self.log.borrow_mut().shutdown_deleted();
        self.high_watermark.fail("partition deleted".into());
        self.role.set(Role::Offline);
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `requested` this replica
    /// knows, and where it ends (the log end for the latest epoch).
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let end = self.log.borrow().next_offset();
        self.epochs.borrow().end_offset_for(requested, end)
    }

    /// Checks the invariants (tests and debug builds).
    pub fn check_invariants(&self) {
        let log = self.log.borrow();
        let (start, end, hw) = (log.log_start_offset(), log.next_offset(), self.high_watermark.get());
        assert!(hw <= end, "high watermark {hw} past the log end {end}");
        let epochs = self.epochs.borrow();
        if let Some((e, s)) = epochs.latest() {
            assert!(e <= self.leader_epoch.get().0, "history epoch {e} above the current {}", self.leader_epoch.get());
            assert!(s < end || (s == end && self.role.get() == Role::Leader), "epoch {e} starts at {s}, log end {end}");
        }
        if let Some(&(_, s)) = epochs.entries().first() {
            assert!(s >= start, "history starts at {s}, below the log start {start}");
        }
    }
}
