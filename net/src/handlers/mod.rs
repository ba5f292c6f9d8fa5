//! Kafka API handlers: decode a request body, do the work (locally or on the
//! owning shards), encode the response.
//!
//! `SUPPORTED` is the single source of truth for what ApiVersions
//! advertises: an API is listed only at the versions its handler really
//! serves.

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod describe;
pub mod epochs;
pub mod fetch;
pub mod fetch_encode;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer_ids;
pub mod topics;

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::shard::Shard;

/// (api, min version, max version) we serve.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|(_, lo, hi)| (*lo, *hi))
}

/// A response frame as buffers to write in order (length prefix included).
/// An empty frame tells the connection to close.
#[derive(Debug, Default)]
pub struct Frame(pub Vec<Bytes>);

impl Frame {
    pub fn one(b: Bytes) -> Frame {
        Frame(vec![b])
    }
    pub fn close() -> Frame {
        Frame(Vec::new())
    }
    pub fn is_close(&self) -> bool {
        self.0.is_empty()
    }
}

pub type HandlerResult = anyhow::Result<Option<Frame>>;

/// Encodes a response frame: length, header, body.
pub fn encode_response<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> anyhow::Result<Bytes> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Decodes a request body of a supported API without handling it (for the
/// fuzzers and property tests of the decoders).
pub fn decode_only(api_key: ApiKey, version: i16, mut body: Bytes) -> anyhow::Result<()> {
    macro_rules! d {
        ($t:ty) => {{
            <$t>::decode(&mut body, version)?;
        }};
    }
    match api_key {
        ApiKey::Produce => d!(ProduceRequest),
        ApiKey::Fetch => d!(FetchRequest),
        ApiKey::ListOffsets => d!(ListOffsetsRequest),
        ApiKey::Metadata => d!(MetadataRequest),
        ApiKey::ApiVersions => d!(ApiVersionsRequest),
        ApiKey::CreateTopics => d!(CreateTopicsRequest),
        ApiKey::DeleteTopics => d!(DeleteTopicsRequest),
        ApiKey::DeleteRecords => d!(DeleteRecordsRequest),
        ApiKey::OffsetForLeaderEpoch => d!(OffsetForLeaderEpochRequest),
        ApiKey::DescribeConfigs => d!(DescribeConfigsRequest),
        ApiKey::AlterConfigs => d!(AlterConfigsRequest),
        ApiKey::CreatePartitions => d!(CreatePartitionsRequest),
        ApiKey::IncrementalAlterConfigs => d!(IncrementalAlterConfigsRequest),
        ApiKey::DescribeCluster => d!(DescribeClusterRequest),
        ApiKey::DescribeQuorum => d!(DescribeQuorumRequest),
        ApiKey::InitProducerId => d!(InitProducerIdRequest),
        ApiKey::FindCoordinator => d!(FindCoordinatorRequest),
        ApiKey::JoinGroup => d!(JoinGroupRequest),
        ApiKey::SyncGroup => d!(SyncGroupRequest),
        ApiKey::Heartbeat => d!(HeartbeatRequest),
        ApiKey::LeaveGroup => d!(LeaveGroupRequest),
        ApiKey::OffsetCommit => d!(OffsetCommitRequest),
        ApiKey::OffsetFetch => d!(OffsetFetchRequest),
        ApiKey::OffsetDelete => d!(OffsetDeleteRequest),
        ApiKey::ListGroups => d!(ListGroupsRequest),
        ApiKey::DescribeGroups => d!(DescribeGroupsRequest),
        ApiKey::DeleteGroups => d!(DeleteGroupsRequest),
        ApiKey::DescribeLogDirs => d!(DescribeLogDirsRequest),
        ApiKey::DescribeProducers => d!(DescribeProducersRequest),
        ApiKey::ListPartitionReassignments => d!(ListPartitionReassignmentsRequest),
        ApiKey::DescribeTopicPartitions => d!(DescribeTopicPartitionsRequest),
        other => anyhow::bail!("{other:?} is not supported"),
    }
    Ok(())
}

/// Dispatches one request (header already decoded; `body` is the rest).
/// `peer` is the client's IP address (DescribeGroups shows it as client host).
pub async fn handle(
    shard: &Rc<Shard>,
    api_key: ApiKey,
    header: &RequestHeader,
    mut body: Bytes,
    peer: &str,
) -> HandlerResult {
    let v = header.request_api_version;
    let cid = header.correlation_id;
    macro_rules! simple {
        ($req:ty, $f:path) => {{
            let req = <$req>::decode(&mut body, v)?;
            let resp = $f(shard, req, v).await;
            Ok(Some(Frame::one(encode_response(api_key, v, cid, &resp)?)))
        }};
    }
    match api_key {
        ApiKey::ApiVersions => {
            let req = ApiVersionsRequest::decode(&mut body, v)?;
            let valid = v < 3
                || (api_versions::valid_client_software(&req.client_software_name)
                    && api_versions::valid_client_software(&req.client_software_version));
            let resp = if valid {
                api_versions::response()
            } else {
                ApiVersionsResponse::default().with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
            };
            Ok(Some(Frame::one(encode_response(api_key, v, cid, &resp)?)))
        }
        ApiKey::Metadata => simple!(MetadataRequest, metadata::handle),
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, v)?;
            let acks = req.acks;
            let resp = produce::handle(shard, req, v).await;
            if acks == 0 {
                return Ok(None);
            }
            Ok(Some(Frame::one(encode_response(api_key, v, cid, &resp)?)))
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut body, v)?;
            Ok(Some(fetch::handle(shard, req, v, cid).await))
        }
        ApiKey::ListOffsets => simple!(ListOffsetsRequest, list_offsets::handle),
        ApiKey::CreateTopics => simple!(CreateTopicsRequest, topics::create_topics),
        ApiKey::DeleteTopics => simple!(DeleteTopicsRequest, topics::delete_topics),
        ApiKey::CreatePartitions => simple!(CreatePartitionsRequest, topics::create_partitions),
        ApiKey::DescribeConfigs => simple!(DescribeConfigsRequest, configs::describe_configs),
        ApiKey::AlterConfigs => simple!(AlterConfigsRequest, configs::alter_configs),
        ApiKey::IncrementalAlterConfigs => simple!(IncrementalAlterConfigsRequest, configs::incremental_alter_configs),
        ApiKey::DescribeCluster => simple!(DescribeClusterRequest, cluster::describe_cluster),
        ApiKey::DescribeQuorum => simple!(DescribeQuorumRequest, cluster::describe_quorum),
        ApiKey::OffsetForLeaderEpoch => simple!(OffsetForLeaderEpochRequest, cluster::offset_for_leader_epoch),
        ApiKey::DeleteRecords => simple!(DeleteRecordsRequest, cluster::delete_records),
        ApiKey::InitProducerId => simple!(InitProducerIdRequest, producer_ids::handle),
        ApiKey::FindCoordinator => simple!(FindCoordinatorRequest, groups::find_coordinator),
        ApiKey::JoinGroup => {
            let req = JoinGroupRequest::decode(&mut body, v)?;
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            let resp = groups::join_group(shard, req, v, client_id, format!("/{peer}")).await;
            Ok(Some(Frame::one(encode_response(api_key, v, cid, &resp)?)))
        }
        ApiKey::SyncGroup => simple!(SyncGroupRequest, groups::sync_group),
        ApiKey::Heartbeat => simple!(HeartbeatRequest, groups::heartbeat),
        ApiKey::LeaveGroup => simple!(LeaveGroupRequest, groups::leave_group),
        ApiKey::OffsetCommit => simple!(OffsetCommitRequest, groups::offset_commit),
        ApiKey::OffsetFetch => simple!(OffsetFetchRequest, groups::offset_fetch),
        ApiKey::OffsetDelete => simple!(OffsetDeleteRequest, groups::offset_delete),
        ApiKey::ListGroups => simple!(ListGroupsRequest, groups::list_groups),
        ApiKey::DescribeGroups => simple!(DescribeGroupsRequest, groups::describe_groups),
        ApiKey::DeleteGroups => simple!(DeleteGroupsRequest, groups::delete_groups),
        ApiKey::DescribeLogDirs => simple!(DescribeLogDirsRequest, describe::describe_log_dirs),
        ApiKey::DescribeProducers => simple!(DescribeProducersRequest, describe::describe_producers),
        ApiKey::ListPartitionReassignments => {
            simple!(ListPartitionReassignmentsRequest, describe::list_partition_reassignments)
        }
        ApiKey::DescribeTopicPartitions => simple!(DescribeTopicPartitionsRequest, describe::describe_topic_partitions),
        other => anyhow::bail!("{other:?} is not supported"),
    }
}
