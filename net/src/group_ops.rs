//! Consumer-group operations as messages to a group's coordinator.
//!
//! The handlers (`handlers/groups.rs`) turn Kafka requests into a `GroupOp`
//! for the shard owning the group's `__consumer_offsets` partition; `run`
//! executes it there against the coordinator's state machine and its log,
//! and the answer travels back as a `GroupReply`.

use std::rc::Rc;

use ringbroker_engine::now_ms;
use ringbroker_groups::group::{
    DescribedGroup, HeartbeatRequest, JoinReply, JoinRequest, JoinResponse, LeaveMember, LeaveRequest, SyncReply,
    SyncRequest, SyncResponse,
};
use ringbroker_groups::offsets::{OffsetCommitRequest, OffsetFetchPartition};
use ringbroker_groups::GroupError;

use crate::coordinator::{member_suffix, Answer, PartitionCoordinator};
use crate::messages::GroupRow;
use crate::shard::Shard;

pub enum GroupOp {
    Join {
        group: String,
        req: JoinRequest,
    },
    Sync {
        group: String,
        req: SyncRequest,
    },
    Heartbeat {
        group: String,
        req: HeartbeatRequest,
    },
    Leave {
        group: String,
        members: Vec<LeaveMember>,
    },
    CommitOffsets {
        group: String,
        req: OffsetCommitRequest,
    },
    /// None: every committed partition of the group.
    FetchOffsets {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
    Describe {
        group: String,
    },
    Delete {
        group: String,
    },
}

pub enum GroupReply {
    Joined(JoinResponse),
    Synced(SyncResponse),
    HeartbeatAccepted,
    /// Per member, whether it left.
    Left(Vec<(LeaveMember, Result<(), GroupError>)>),
    /// Per partition: (topic, partition, error code).
    PartitionCodes(Vec<(String, i32, i16)>),
    Offsets(Vec<OffsetFetchPartition>),
    Described(DescribedGroup),
    Deleted,
}

fn code(r: &Result<(), GroupError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// Runs `op` on the coordinator that owns the group (on its shard).
pub async fn run(c: &Rc<PartitionCoordinator>, op: GroupOp) -> Result<GroupReply, GroupError> {
    match op {
        GroupOp::Join { group, req } => {
            let (res, effects) = c.state.borrow_mut().join(&group, req, now_ms(), &mut member_suffix);
            let answer = match res {
                Ok(JoinReply::Done(r)) => Answer::Now(Ok(r)),
                Ok(JoinReply::Pending { member_id }) => Answer::Parked(c.park_join(&group, &member_id)),
                Err(e) => Answer::Now(Err(e)),
            };
            c.settle(effects, answer).await.map(GroupReply::Joined)
        }
        GroupOp::Sync { group, req } => {
            let member_id = req.member_id.clone();
            let (res, effects) = c.state.borrow_mut().sync(&group, req, now_ms());
            let answer = match res {
                Ok(SyncReply::Done(r)) => Answer::Now(Ok(r)),
                Ok(SyncReply::Pending) => Answer::Parked(c.park_sync(&group, &member_id)),
                Err(e) => Answer::Now(Err(e)),
            };
            c.settle(effects, answer).await.map(GroupReply::Synced)
        }
        GroupOp::Heartbeat { group, req } => {
            let (res, effects) = c.state.borrow_mut().heartbeat(&group, &req, now_ms());
            c.apply_effects(effects);
            res.map(|()| GroupReply::HeartbeatAccepted)
        }
        GroupOp::Leave { group, members } => {
            let (res, effects) = c.state.borrow_mut().leave(&group, &LeaveRequest { members }, now_ms());
            c.apply_effects(effects);
            res.map(GroupReply::Left)
        }
        GroupOp::CommitOffsets { group, req } => {
            let outcome = c.state.borrow_mut().commit_offsets(&group, &req, now_ms());
            c.apply_effects(outcome.effects);
            let appended = c.append_records(&outcome.records).await;
            if appended.is_ok() {
                c.state.borrow_mut().apply_commit(outcome.prepared, now_ms());
            }
            // A commit whose record could not be written failed, whatever
            // the state machine said of it.
            let codes = outcome
                .results
                .into_iter()
                .map(|(t, p, r)| {
                    let code = match (&r, &appended) {
                        (Ok(()), Err(e)) => e.code(),
                        _ => code(&r),
                    };
                    (t, p, code)
                })
                .collect();
            Ok(GroupReply::PartitionCodes(codes))
        }
        GroupOp::FetchOffsets { group, topics } => {
            c.state.borrow().fetch_offsets(&group, topics.as_deref()).map(GroupReply::Offsets)
        }
        GroupOp::DeleteOffsets { group, partitions } => {
            let (per, tombstones) = c.state.borrow_mut().delete_offsets(&group, &partitions)?;
            c.append_records(&tombstones).await?;
            Ok(GroupReply::PartitionCodes(per.into_iter().map(|(t, p, r)| (t, p, code(&r))).collect()))
        }
        GroupOp::Describe { group } => c.state.borrow().describe_group(&group).map(GroupReply::Described),
        GroupOp::Delete { group } => {
            let mut res = c.state.borrow_mut().delete_groups(std::slice::from_ref(&group), now_ms());
            let (_, outcome) = res.pop().expect("one result per group");
            let tombstones = outcome?;
            c.append_records(&tombstones).await?;
            Ok(GroupReply::Deleted)
        }
    }
}

/// Every group the coordinators on this shard hold; Err with the code of
/// one that is still loading.
pub fn list_local(shard: &Rc<Shard>) -> Result<Vec<GroupRow>, i16> {
    let coordinators: Vec<_> = shard.coordinators.borrow().values().cloned().collect();
    let mut out = Vec::new();
    for c in coordinators {
        match c.state.borrow().list_groups() {
            Ok(gs) => out.extend(gs.into_iter().map(|g| (g.group_id, g.protocol_type, g.state.to_string()))),
            Err(e) => return Err(e.code()),
        }
    }
    Ok(out)
}
