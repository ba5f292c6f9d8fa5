//! Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups,
//! DescribeGroups, DeleteGroups.
//!
//! Each request is routed to the shard owning the group's `__consumer_offsets`
//! partition (`abs(java hash(group id)) % 50`), where the coordinator driver
//! runs the state machine. Versions decide only the wire shape here.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ringbroker_groups::group::{
    HeartbeatRequest as GHeartbeat, JoinRequest as GJoin, JoinResponse as GJoinResponse, LeaveMember,
    SyncRequest as GSync, SyncResponse as GSyncResponse,
};
use ringbroker_groups::offsets::{OffsetCommitPartition as GCommitPartition, OffsetCommitRequest as GCommit};
use ringbroker_groups::{partition_for, GroupError};

use super::str_bytes;
use crate::coordinator::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::group_ops::{GroupOp, GroupReply};
use crate::messages::{Request, Response};
use crate::router::{ShardId, Transport};
use crate::shard::Shard;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn sb(s: &str) -> StrBytes {
    str_bytes(s)
}

/// Runs `op` on the coordinator of `group_id`, wherever it lives.
async fn on_coordinator(shard: &Rc<Shard>, group_id: &str, op: GroupOp) -> Result<GroupReply, GroupError> {
    let partition = partition_for(group_id, OFFSETS_PARTITIONS as u32) as i32;
    let img = shard.image();
    let Some(meta) = img.topic(OFFSETS_TOPIC) else {
        return Err(GroupError::CoordinatorNotAvailable);
    };
    if !shard.leads(&img, meta, partition) {
        return Err(GroupError::NotCoordinator);
    }
    let owner = shard.owner(&meta.id, partition);
    match shard.router.request(shard, owner, Request::Group { partition, op }).await {
        Some(Response::Group(r)) => r,
        _ => Err(GroupError::CoordinatorNotAvailable),
    }
}

/// The payload of the reply a group operation gets (the coordinator answers
/// each operation with its own kind of reply).
macro_rules! reply {
    ($r:expr, $variant:path) => {
        $r.map(|reply| match reply {
            $variant(v) => v,
            _ => unreachable!(concat!("a group operation expecting ", stringify!($variant), " got another reply")),
        })
    };
}

/// The error code answered for (topic, partition); 0 if none was recorded.
fn code_for(per: &[(String, i32, i16)], topic: &str, partition: i32) -> i16 {
    per.iter().find(|(t, p, _)| t == topic && *p == partition).map(|(_, _, c)| *c).unwrap_or(0)
}

fn code(r: &Result<impl Sized, GroupError>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

/// The broker coordinating `group`: the leader of its `__consumer_offsets`
/// partition, with its client address.
fn group_coordinator(shard: &Shard, group: &str) -> Result<(i32, String, i32), (i16, &'static str)> {
    let img = shard.image();
    let not_available = ResponseError::CoordinatorNotAvailable.code();
    let meta = img.topic(OFFSETS_TOPIC).ok_or((not_available, "the offsets topic is not created yet"))?;
    let partition = partition_for(group, OFFSETS_PARTITIONS as u32) as i32;
    let leader = meta.partition(partition).map_or(-1, |p| p.leader);
    super::metadata::live_brokers(shard, &img)
        .into_iter()
        .find(|b| b.0 == leader)
        .ok_or((not_available, "the group's offsets partition has no live leader"))
}

pub async fn find_coordinator(shard: &Rc<Shard>, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let answer = |key_type: i8, key: &str| -> Result<(i32, String, i32), (i16, Option<&'static str>)> {
        if key_type == KEY_TYPE_GROUP {
            group_coordinator(shard, key).map_err(|(e, m)| (e, Some(m)))
        } else if key_type != KEY_TYPE_TRANSACTION {
            Err((ResponseError::InvalidRequest.code(), Some("unknown coordinator key type")))
        } else {
            // No transaction coordinator exists. A retriable error kept
            // transactional clients waiting for their whole timeout; this is
            // the refusal every client treats as fatal at once (a Kafka broker
            // whose authorizer denies all transactional ids answers the same).
            Err((
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                Some("transactions are not supported by this broker (ringbroker)"),
            ))
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = find_coordinator_response::Coordinator::default().with_key(k.clone());
                match answer(req.key_type, k.as_str()) {
                    Ok((node, host, port)) => {
                        c.with_error_code(0).with_node_id(BrokerId(node)).with_host(sb(&host)).with_port(port)
                    }
                    Err((err, msg)) => c
                        .with_error_code(err)
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1)
                        .with_error_message(msg.map(sb)),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match answer(req.key_type, req.key.as_str()) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_error_code(0)
            .with_node_id(BrokerId(node))
            .with_host(sb(&host))
            .with_port(port),
        Err((err, msg)) => {
            let mut r = FindCoordinatorResponse::default()
                .with_error_code(err)
                .with_node_id(BrokerId(-1))
                .with_host(sb(""))
                .with_port(-1);
            if version >= 1 {
                r = r.with_error_message(msg.map(sb));
            }
            r
        }
    }
}

pub async fn join_group(
    shard: &Rc<Shard>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let group_id = req.group_id.0.to_string();
    let request_member_id = req.member_id.to_string();
    let greq = GJoin {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        client_host,
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let gid = group_id.clone();
    let result: Result<GJoinResponse, GroupError> =
        reply!(on_coordinator(shard, &group_id, GroupOp::Join { group: gid, req: greq }).await, GroupReply::Joined);
    let base = JoinGroupResponse::default().with_generation_id(-1).with_leader(sb("")).with_member_id(sb(""));
    match result {
        Ok(r) => {
            let mut resp = base
                .with_error_code(0)
                .with_generation_id(r.generation_id)
                .with_leader(sb(&r.leader_id))
                .with_member_id(sb(&r.member_id))
                .with_members(
                    r.members
                        .into_iter()
                        .map(|m| {
                            let mut jm = join_group_response::JoinGroupResponseMember::default()
                                .with_member_id(sb(&m.member_id))
                                .with_metadata(m.metadata);
                            if version >= 5 {
                                jm = jm.with_group_instance_id(m.group_instance_id.as_deref().map(sb));
                            }
                            jm
                        })
                        .collect(),
                );
            if version >= 7 {
                resp = resp
                    .with_protocol_type(r.protocol_type.as_deref().map(sb))
                    .with_protocol_name(r.protocol_name.as_deref().map(sb));
            } else {
                resp = resp.with_protocol_name(Some(sb(r.protocol_name.as_deref().unwrap_or(""))));
            }
            if version >= 9 {
                resp = resp.with_skip_assignment(r.skip_assignment);
            }
            resp
        }
        Err(GroupError::MemberIdRequired { member_id }) => {
            let mut resp = base
                .with_error_code(GroupError::MemberIdRequired { member_id: String::new() }.code())
                .with_member_id(sb(&member_id));
            resp = resp.with_protocol_name(if version >= 7 { None } else { Some(sb("")) });
            resp
        }
        Err(e) => {
            // As in Kafka: the request's member id comes back, and from v7 the
            // protocol name is null rather than empty.
            let mut resp = base.with_error_code(e.code()).with_member_id(sb(&request_member_id));
            if version >= 7 {
                resp = resp.with_protocol_name(None);
            } else {
                resp = resp.with_protocol_name(Some(sb("")));
            }
            resp
        }
    }
}

pub async fn sync_group(shard: &Rc<Shard>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let greq = GSync {
        member_id: member_id.clone(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let gid = group_id.clone();
    let result: Result<GSyncResponse, GroupError> =
        reply!(on_coordinator(shard, &group_id, GroupOp::Sync { group: gid, req: greq }).await, GroupReply::Synced);
    match result {
        Ok(r) => {
            let mut resp = SyncGroupResponse::default().with_error_code(0).with_assignment(r.assignment);
            if version >= 5 {
                resp = resp
                    .with_protocol_type(r.protocol_type.as_deref().map(sb))
                    .with_protocol_name(r.protocol_name.as_deref().map(sb));
            }
            resp
        }
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()).with_assignment(Bytes::new()),
    }
}

pub async fn heartbeat(shard: &Rc<Shard>, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let greq = GHeartbeat {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: req.generation_id,
    };
    let gid = group_id.clone();
    let r = on_coordinator(shard, &group_id, GroupOp::Heartbeat { group: gid, req: greq }).await.map(|_| ());
    HeartbeatResponse::default().with_error_code(code(&r))
}

pub async fn leave_group(shard: &Rc<Shard>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = req.group_id.0.to_string();
    let members: Vec<LeaveMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeaveMember { member_id: req.member_id.to_string(), group_instance_id: None }]
    };
    let gid = group_id.clone();
    let r = reply!(on_coordinator(shard, &group_id, GroupOp::Leave { group: gid, members }).await, GroupReply::Left);
    match r {
        Ok(per_member) => {
            if version >= 3 {
                LeaveGroupResponse::default().with_error_code(0).with_members(
                    per_member
                        .into_iter()
                        .map(|(m, res)| {
                            leave_group_response::MemberResponse::default()
                                .with_member_id(sb(&m.member_id))
                                .with_group_instance_id(m.group_instance_id.as_deref().map(sb))
                                .with_error_code(code(&res))
                        })
                        .collect(),
                )
            } else {
                let err = per_member.first().map(|(_, r)| code(r)).unwrap_or(0);
                LeaveGroupResponse::default().with_error_code(err)
            }
        }
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
    }
}

pub async fn offset_commit(shard: &Rc<Shard>, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let img = shard.image();
    // Partitions of unknown topics are answered here; the rest go to the coordinator.
    let mut unknown = Vec::new();
    let mut parts = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            let exists =
                img.topic(&name).map(|m| p.partition_index >= 0 && p.partition_index < m.partitions).unwrap_or(false);
            if !exists {
                unknown.push((name.clone(), p.partition_index));
                continue;
            }
            parts.push(GCommitPartition {
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let greq = GCommit {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: req.generation_id_or_member_epoch,
        partitions: parts,
    };
    let gid = group_id.clone();
    let results: Result<Vec<(String, i32, i16)>, GroupError> = reply!(
        on_coordinator(shard, &group_id, GroupOp::CommitOffsets { group: gid, req: greq }).await,
        GroupReply::PartitionCodes
    );
    let mut per: Vec<(String, i32, i16)> = match results {
        Ok(v) => v,
        Err(e) => {
            let code = e.code();
            req.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, code)))
                .filter(|(t, p, _)| !unknown.contains(&(t.clone(), *p)))
                .collect()
        }
    };
    per.extend(unknown.into_iter().map(|(t, p)| (t, p, ResponseError::UnknownTopicOrPartition.code())));
    // Answer in request order.
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            offset_commit_response::OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        let code = code_for(&per, &name, p.partition_index);
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (partition, offset, leader epoch, metadata) of one committed offset.
type FetchedPartition = (i32, i64, i32, String);
type FetchedGroup = Result<Vec<(String, Vec<FetchedPartition>)>, GroupError>;

/// Committed offsets of one group: per topic, (partition, offset, leader epoch, metadata).
async fn fetch_group(shard: &Rc<Shard>, group_id: String, topics: Option<Vec<(String, Vec<i32>)>>) -> FetchedGroup {
    let gid = group_id.clone();
    let rows = reply!(
        on_coordinator(shard, &group_id, GroupOp::FetchOffsets { group: gid, topics }).await,
        GroupReply::Offsets
    )?;
    let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(t, _)| *t == r.topic) {
            Some((_, v)) => v.push((r.partition, r.offset, r.leader_epoch, r.metadata)),
            None => out.push((r.topic.clone(), vec![(r.partition, r.offset, r.leader_epoch, r.metadata)])),
        }
    }
    Ok(out)
}

pub async fn offset_fetch(shard: &Rc<Shard>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::new();
        for g in req.groups {
            let topics =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let r = fetch_group(shard, g.group_id.0.to_string(), topics).await;
            let mut rg = offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match r {
                Ok(ts) => {
                    rg = rg.with_topics(
                        ts.into_iter()
                            .map(|(t, ps)| {
                                offset_fetch_response::OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(sb(&t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, e, m)| {
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(sb(&m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
                }
                Err(e) => rg = rg.with_error_code(e.code()),
            }
            groups.push(rg);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> =
        req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let r = fetch_group(shard, req.group_id.0.to_string(), requested.clone()).await;
    let part = |p: i32, o: i64, e: i32, m: &str, err: i16| {
        let mut rp = offset_fetch_response::OffsetFetchResponsePartition::default()
            .with_partition_index(p)
            .with_committed_offset(o)
            .with_metadata(Some(sb(m)))
            .with_error_code(err);
        if version >= 5 {
            rp = rp.with_committed_leader_epoch(e);
        }
        rp
    };
    match r {
        Ok(ts) => OffsetFetchResponse::default().with_topics(
            ts.into_iter()
                .map(|(t, ps)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(sb(&t)))
                        .with_partitions(ps.into_iter().map(|(p, o, e, m)| part(p, o, e, &m, 0)).collect())
                })
                .collect(),
        ),
        Err(e) if version >= 2 => OffsetFetchResponse::default().with_error_code(e.code()),
        // v1 has no top-level error code: report it on every requested partition.
        Err(e) => OffsetFetchResponse::default().with_topics(
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(sb(&t)))
                        .with_partitions(ps.into_iter().map(|p| part(p, -1, -1, "", e.code())).collect())
                })
                .collect(),
        ),
    }
}

pub async fn offset_delete(shard: &Rc<Shard>, req: OffsetDeleteRequest, _version: i16) -> OffsetDeleteResponse {
    let img = shard.image();
    let group_id = req.group_id.0.to_string();
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let gid = group_id.clone();
    let r = reply!(
        on_coordinator(shard, &group_id, GroupOp::DeleteOffsets { group: gid, partitions: parts }).await,
        GroupReply::PartitionCodes
    );
    match r {
        Ok(per) => OffsetDeleteResponse::default().with_error_code(0).with_topics(
            req.topics
                .iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    offset_delete_response::OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let known = img
                                        .topic(&name)
                                        .is_some_and(|m| p.partition_index >= 0 && p.partition_index < m.partitions);
                                    let code = if known {
                                        code_for(&per, &name, p.partition_index)
                                    } else {
                                        ResponseError::UnknownTopicOrPartition.code()
                                    };
                                    offset_delete_response::OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
    }
}

pub async fn list_groups(shard: &Rc<Shard>, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut all: Vec<(String, String, String)> = Vec::new();
    let mut error = 0;
    for s in 0..shard.shard_count() {
        let r = match shard.router.request(shard, ShardId(s), Request::ListGroups).await {
            Some(Response::Groups(r)) => Some(r),
            _ => None,
        };
        match r {
            Some(Ok(v)) => all.extend(v),
            Some(Err(code)) => error = code,
            None => error = ResponseError::CoordinatorNotAvailable.code(),
        }
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string().to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string().to_lowercase()).collect();
    let groups = all
        .into_iter()
        .filter(|(_, _, st)| states.is_empty() || states.contains(&st.to_lowercase()))
        .filter(|_| types.is_empty() || types.contains(&"classic".to_string()))
        .map(|(id, pt, st)| {
            let mut g = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(sb(&id)))
                .with_protocol_type(sb(&pt));
            if version >= 4 {
                g = g.with_group_state(sb(&st));
            }
            if version >= 5 {
                g = g.with_group_type(sb("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_error_code(error).with_groups(groups)
}

pub async fn describe_groups(shard: &Rc<Shard>, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut out = Vec::new();
    for g in req.groups {
        let gid = g.0.to_string();
        let gid2 = gid.clone();
        let r = reply!(on_coordinator(shard, &gid, GroupOp::Describe { group: gid2 }).await, GroupReply::Described);
        let mut dg = describe_groups_response::DescribedGroup::default().with_group_id(g.clone());
        match r {
            Ok(d) => {
                dg = dg
                    .with_error_code(0)
                    .with_group_state(sb(d.state))
                    .with_protocol_type(sb(&d.protocol_type))
                    .with_protocol_data(sb(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let mut dm = describe_groups_response::DescribedGroupMember::default()
                                    .with_member_id(sb(&m.member_id))
                                    .with_client_id(sb(&m.client_id))
                                    .with_client_host(sb(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    dm = dm.with_group_instance_id(m.group_instance_id.as_deref().map(sb));
                                }
                                dm
                            })
                            .collect(),
                    );
            }
            Err(e) => {
                dg = dg
                    .with_error_code(e.code())
                    .with_group_state(sb("Dead"))
                    .with_protocol_type(sb(""))
                    .with_protocol_data(sb(""))
            }
        }
        if version >= 3 {
            dg = dg.with_authorized_operations(if req.include_authorized_operations {
                GROUP_OPERATIONS
            } else {
                i32::MIN
            });
        }
        out.push(dg);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

/// READ, DELETE, DESCRIBE: what Kafka reports for a group without ACLs.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn delete_groups(shard: &Rc<Shard>, req: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in req.groups_names {
        let gid = g.0.to_string();
        let gid2 = gid.clone();
        let r = on_coordinator(shard, &gid, GroupOp::Delete { group: gid2 }).await.map(|_| ());
        results
            .push(delete_groups_response::DeletableGroupResult::default().with_group_id(g).with_error_code(code(&r)));
    }
    DeleteGroupsResponse::default().with_results(results)
}
