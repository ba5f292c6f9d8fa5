//! Idempotent-producer state of one partition: per producer id, its epoch and
//! the last few batches it wrote, so a retried batch gets its original offsets
//! back instead of being appended twice, and a gap in sequence numbers is
//! refused.
//!
//! Pure: the partition log consults it before assigning offsets and updates
//! it after. It is rebuilt from batch headers on recovery (every batch carries
//! producer id, epoch and base sequence) starting from a snapshot, so the
//! work is bounded by the data since the last snapshot.

use std::collections::{HashMap, VecDeque};

/// Kafka keeps the last five batches per producer (max.in.flight.requests
/// per connection for idempotence is at most 5).
pub const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp (DescribeProducers' lastTimestamp, as Kafka).
    pub max_timestamp: i64,
}

/// Snapshot format version: the first byte of a snapshot body. Snapshots
/// of another format are not parsed; the state is rebuilt from the log.
const SNAPSHOT_FORMAT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall clock of the last write, for producer.id.expiration.ms.
    pub last_write_ms: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not an idempotent batch, or the next in sequence: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate { first_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
}

/// The sequence after `seq`, wrapping as Kafka does.
pub fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Last sequence of a batch of `count` records starting at `first_seq`.
pub fn last_sequence(first_seq: i32, count: i32) -> i32 {
    let last = first_seq as i64 + count as i64 - 1;
    if last > i32::MAX as i64 {
        (last - i32::MAX as i64 - 1) as i32
    } else {
        last as i32
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateMap {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateMap {
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }
    /// Every producer with state here (DescribeProducers), in id order.
    pub fn entries(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut v: Vec<(i64, &ProducerEntry)> = self.producers.iter().map(|(id, e)| (*id, e)).collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v
    }

    /// Checks a batch before append. `producer_id < 0` means not idempotent.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ProducerError> {
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer: its state may have expired; accept and start
            // tracking it (a retry of an expired batch cannot be recognised).
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch { producer_id, current: entry.epoch, got: epoch });
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence at 0.
            if first_seq != 0 {
                return Err(ProducerError::OutOfOrderSequence { producer_id, expected: 0, got: first_seq });
            }
            return Ok(SequenceCheck::Append);
        }
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
            return Ok(SequenceCheck::Duplicate { first_offset: b.first_offset, last_offset: b.last_offset });
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_seq)).unwrap_or(0);
        if first_seq != expected {
            return Err(ProducerError::OutOfOrderSequence { producer_id, expected, got: first_seq });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended (or recovered) batch.
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchMeta, now_ms: i64) {
        if producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(producer_id).or_insert_with(|| ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_write_ms: now_ms,
        });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
    }

    /// Forgets producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| now_ms - e.last_write_ms <= expiration_ms);
        before - self.producers.len()
    }

    /// Serialises the map (snapshot file body): the format byte, then per
    /// producer id, epoch, last write time and batches; all big-endian, with
    /// a CRC-32C trailer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_FORMAT];
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_write_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot; `None` if it is torn or corrupt (then the caller
    /// rebuilds from an older snapshot or from the log).
    pub fn decode(data: &[u8]) -> Option<Self> {
        if data.len() < 8 {
            return None;
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.u8()? != SNAPSHOT_FORMAT {
            return None;
        }
        let n = r.u32()?;
        let mut map = ProducerStateMap::default();
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_write_ms = r.i64()?;
            let count = r.u8()? as usize;
            if count > BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(count);
            for _ in 0..count {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp: r.i64()?,
                });
            }
            map.producers.insert(id, ProducerEntry { epoch, batches, last_write_ms });
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(map)
    }
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.0.len() < N {
            return None;
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        a.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(first_seq: i32, count: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq: last_sequence(first_seq, count),
            first_offset,
            max_timestamp: first_offset * 10,
            last_offset: first_offset + count as i64 - 1,
        }
    }

    #[test]
    fn in_order_duplicate_gap_and_epochs() {
        let mut m = ProducerStateMap::default();
        assert_eq!(m.check(-1, -1, -1, -1), Ok(SequenceCheck::Append));
        assert_eq!(m.check(7, 0, 0, 4), Ok(SequenceCheck::Append));
        m.record(7, 0, meta(0, 5, 100), 1);
        // The retry of the same batch gets its offsets back.
        assert_eq!(m.check(7, 0, 0, 4), Ok(SequenceCheck::Duplicate { first_offset: 100, last_offset: 104 }));
        // The next batch continues the sequence.
        assert_eq!(m.check(7, 0, 5, 9), Ok(SequenceCheck::Append));
        // A gap is refused.
        assert_eq!(m.check(7, 0, 6, 9), Err(ProducerError::OutOfOrderSequence { producer_id: 7, expected: 5, got: 6 }));
        // An older epoch is fenced.
        m.record(7, 1, meta(0, 1, 105), 2);
        assert_eq!(
            m.check(7, 0, 1, 1),
            Err(ProducerError::InvalidProducerEpoch { producer_id: 7, current: 1, got: 0 })
        );
        // A newer epoch must start at 0.
        assert!(matches!(m.check(7, 2, 3, 3), Err(ProducerError::OutOfOrderSequence { .. })));
        assert_eq!(m.check(7, 2, 0, 0), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut m = ProducerStateMap::default();
        for i in 0..7 {
            m.record(1, 0, meta(i, 1, 10 + i as i64), 0);
        }
        assert_eq!(m.get(1).unwrap().batches.len(), BATCHES_PER_PRODUCER);
        assert_eq!(m.check(1, 0, 6, 6), Ok(SequenceCheck::Duplicate { first_offset: 16, last_offset: 16 }));
        assert_eq!(m.check(1, 0, 2, 2), Ok(SequenceCheck::Duplicate { first_offset: 12, last_offset: 12 }));
        // Batch 1 fell out of the window: its retry is out of order, not appended again.
        assert!(m.check(1, 0, 1, 1).is_err());
    }

    #[test]
    fn sequences_wrap_and_expiry_forgets_idle_producers() {
        assert_eq!(next_sequence(i32::MAX), 0);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        let mut m = ProducerStateMap::default();
        m.record(1, 0, meta(i32::MAX, 1, 0), 0);
        assert_eq!(m.check(1, 0, 0, 0), Ok(SequenceCheck::Append));
        m.record(2, 0, meta(0, 1, 1), 1000);
        assert_eq!(m.expire(2000, 1500), 1);
        assert!(m.get(1).is_none() && m.get(2).is_some());
    }

    proptest! {
        #[test]
        fn snapshot_round_trips(entries in proptest::collection::vec((0i64..1000, 0i16..5, 0i32..1000, 1i32..50, 0i64..1_000_000), 0..40)) {
            let mut m = ProducerStateMap::default();
            for (id, epoch, seq, count, off) in entries {
                m.record(id, epoch, meta(seq, count, off), off);
            }
            let enc = m.encode();
            prop_assert_eq!(ProducerStateMap::decode(&enc), Some(m));
            // Any truncation or flipped byte is detected, never a panic.
            for cut in 0..enc.len() {
                prop_assert_eq!(ProducerStateMap::decode(&enc[..cut]), None);
            }
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ProducerStateMap::decode(&data);
        }
    }
}
