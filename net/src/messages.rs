//! The work one shard asks of another, as data.
//!
//! Every request that crosses shards is a `Request` variant and every answer
//! a `Response` variant: no closures travel, so what a shard can be asked is
//! listed here, each message can be logged, checked and (once brokers talk
//! to each other) encoded for another broker behind the same `Transport`
//! trait (`router.rs`). `serve` runs a request on the shard that owns its
//! state; a request to the local shard runs inline, without a hop.
//!
//! Only `Send` data crosses: `Bytes`, strings, numbers, `Arc`s of immutable
//! metadata.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use ringbroker_groups::GroupError;

use crate::group_ops::{GroupOp, GroupReply};
use crate::handlers::fetch::{PartRead, PartResult};
use crate::handlers::produce::PartitionOutcome;
use crate::metadata::{MetadataChange, MetadataImage};
use crate::shard::Shard;

/// A partition's idempotent producer, as DescribeProducers lists it:
/// (producer id, epoch, last sequence, last timestamp).
pub type ProducerRow = (i64, i16, i32, i64);
/// A group as ListGroups lists it: (group id, protocol type, state).
pub type GroupRow = (String, String, String);

pub enum Request {
    /// Append a partition's record set (Produce).
    Produce { topic: String, partition: i32, records: Bytes, acks: i16 },
    /// Read partitions (Fetch).
    Read(Vec<PartRead>),
    /// Park until one of these partitions has data past the offset (an
    /// offset of `i64::MAX` is not waited on), or `max_wait` passes.
    WaitForData { positions: Vec<(String, i32, i64)>, max_wait: Duration },
    /// ListOffsets for one partition; `unsupported`: the target needs a
    /// newer version than the request's.
    ListOffset { topic: String, partition: i32, timestamp: i64, current_leader_epoch: i32, unsupported: bool },
    /// OffsetForLeaderEpoch for one partition.
    EpochEndOffset { topic: String, partition: i32, leader_epoch: i32, current_leader_epoch: i32 },
    /// DeleteRecords for one partition (-1: up to the high watermark).
    DeleteRecords { topic: String, partition: i32, offset: i64 },
    /// Bytes on disk of one partition (DescribeLogDirs).
    PartitionSize { topic: String, partition: i32 },
    /// The idempotent producers of one partition (DescribeProducers).
    DescribeProducers { topic: String, partition: i32 },
    /// A consumer-group operation, to the coordinator of offsets partition
    /// `partition`.
    Group { partition: i32, op: GroupOp },
    /// Every group this shard coordinates.
    ListGroups,
    /// The next producer id (controller shard).
    AllocateProducerId,
    /// Apply a metadata change (controller shard): validate, persist,
    /// install on every shard.
    ChangeMetadata(MetadataChange),
    /// Install a new metadata image on this shard.
    InstallMetadata(Arc<MetadataImage>),
    /// The metadata quorum as this broker sees it (controller shard).
    DescribeQuorum,
}

pub enum Response {
    Produce(PartitionOutcome),
    Read(Vec<((String, i32), PartResult)>),
    /// (error code, timestamp, offset, leader epoch)
    ListOffset(i16, i64, i64, i32),
    /// (error code, leader epoch, end offset)
    EpochEndOffset(i16, i32, i64),
    /// (error code, new log start offset)
    DeleteRecords(i16, i64),
    /// None: the partition is not on this shard.
    PartitionSize(Option<u64>),
    Producers(Option<Vec<ProducerRow>>),
    Group(Result<GroupReply, GroupError>),
    /// Err: the error code of a coordinator that cannot list yet.
    Groups(Result<Vec<GroupRow>, i16>),
    ProducerId(Result<i64, ResponseError>),
    MetadataChanged(Result<Arc<MetadataImage>, (ResponseError, String)>),
    Quorum(crate::quorum_driver::QuorumView),
    /// The request was carried out (WaitForData, InstallMetadata).
    Done,
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Produce { .. } => "Produce",
            Request::Read(_) => "Read",
            Request::WaitForData { .. } => "WaitForData",
            Request::ListOffset { .. } => "ListOffset",
            Request::EpochEndOffset { .. } => "EpochEndOffset",
            Request::DeleteRecords { .. } => "DeleteRecords",
            Request::PartitionSize { .. } => "PartitionSize",
            Request::DescribeProducers { .. } => "DescribeProducers",
            Request::Group { .. } => "Group",
            Request::ListGroups => "ListGroups",
            Request::AllocateProducerId => "AllocateProducerId",
            Request::ChangeMetadata(_) => "ChangeMetadata",
            Request::InstallMetadata(_) => "InstallMetadata",
            Request::DescribeQuorum => "DescribeQuorum",
        }
    }
}

impl Response {
    /// Whether this is the kind of answer a request named `request` gets
    /// (asserted when a reply arrives).
    pub fn answers(&self, request: &str) -> bool {
        let expected = match self {
            Response::Produce(_) => "Produce",
            Response::Read(_) => "Read",
            Response::ListOffset(..) => "ListOffset",
            Response::EpochEndOffset(..) => "EpochEndOffset",
            Response::DeleteRecords(..) => "DeleteRecords",
            Response::PartitionSize(_) => "PartitionSize",
            Response::Producers(_) => "DescribeProducers",
            Response::Group(_) => "Group",
            Response::Groups(_) => "ListGroups",
            Response::ProducerId(_) => "AllocateProducerId",
            Response::MetadataChanged(_) => "ChangeMetadata",
            Response::Quorum(_) => "DescribeQuorum",
            Response::Done => return matches!(request, "WaitForData" | "InstallMetadata"),
        };
        expected == request
    }
}

/// Runs `req` on `shard`, the shard that owns its state. The hot requests
/// (Produce, Read, WaitForData) run in place: a local call awaits them
/// inline, as it awaited a closure before messages were typed, and the
/// future stays the size of what they need (one produce A/B-measured 9%
/// slower when every call boxed a future sized for the largest request).
/// The rest are boxed: a metadata change sends requests of its own to every
/// shard, so its future would otherwise contain itself.
pub async fn serve(shard: Rc<Shard>, req: Request) -> Response {
    use crate::handlers::{fetch, produce};
    match req {
        Request::Produce { topic, partition, records, acks } => {
            Response::Produce(produce::append_local(&shard, &topic, partition, records, acks).await)
        }
        Request::Read(reads) => Response::Read(fetch::read_local(&shard, reads).await),
        Request::WaitForData { positions, max_wait } => {
            fetch::wait_local(&shard, positions, max_wait).await;
            Response::Done
        }
        other => serve_admin(shard, other).await,
    }
}

/// The requests off the hot path, boxed.
fn serve_admin(shard: Rc<Shard>, req: Request) -> Pin<Box<dyn Future<Output = Response>>> {
    use crate::handlers::{cluster, describe, list_offsets, producer_ids};
    Box::pin(async move {
        match req {
            Request::Produce { .. } | Request::Read(_) | Request::WaitForData { .. } => {
                unreachable!("served in place by serve()")
            }
            Request::ListOffset { topic, partition, timestamp, current_leader_epoch, unsupported } => {
                let (e, ts, off, epoch) = list_offsets::lookup_checked(
                    &shard,
                    &topic,
                    partition,
                    timestamp,
                    current_leader_epoch,
                    unsupported,
                )
                .await;
                Response::ListOffset(e, ts, off, epoch)
            }
            Request::EpochEndOffset { topic, partition, leader_epoch, current_leader_epoch } => {
                let (e, epoch, end) =
                    cluster::epoch_end_offset_local(&shard, &topic, partition, leader_epoch, current_leader_epoch);
                Response::EpochEndOffset(e, epoch, end)
            }
            Request::DeleteRecords { topic, partition, offset } => {
                let (e, low) = cluster::delete_records_local(&shard, &topic, partition, offset);
                Response::DeleteRecords(e, low)
            }
            Request::PartitionSize { topic, partition } => {
                Response::PartitionSize(shard.partition(&topic, partition).map(|h| h.log().borrow().size_bytes()))
            }
            Request::DescribeProducers { topic, partition } => {
                Response::Producers(describe::producers_local(&shard, &topic, partition))
            }
            Request::Group { partition, op } => {
                let c = shard.coordinators.borrow().get(&partition).cloned();
                Response::Group(match c {
                    Some(c) => crate::group_ops::run(&c, op).await,
                    None => Err(GroupError::NotCoordinator),
                })
            }
            Request::ListGroups => Response::Groups(crate::group_ops::list_local(&shard)),
            Request::AllocateProducerId => Response::ProducerId(producer_ids::next_producer_id(&shard).await),
            Request::ChangeMetadata(change) => Response::MetadataChanged(shard.change_metadata(change).await),
            Request::InstallMetadata(img) => {
                shard.install_metadata(img).await;
                Response::Done
            }
            Request::DescribeQuorum => {
                Response::Quorum(shard.quorum.as_ref().expect("the controller shard runs the quorum").view())
            }
        }
    })
}
