//! End-to-end tests against a small in-process mock broker that decodes
//! requests with kafka-protocol exactly as a real broker would.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use ringbroker_cli::group::{GroupArgs, GroupCommand, ResetOffsetsArgs, ResetTo, TopicPartitions};
use ringbroker_cli::{ConsumeArgs, ProduceArgs, TopicCommand};

type Log = Vec<(Option<Bytes>, Option<Bytes>)>;
/// Partition logs and config overrides of a topic.
type Topic = (Vec<Log>, Vec<(String, String)>);

/// A consumer group: state, members (id, client id, host, assignment bytes)
/// and committed offsets.
#[derive(Default, Clone)]
struct MockGroup {
    state: String,
    protocol: String,
    members: Vec<(String, String, String, Bytes)>,
    offsets: BTreeMap<(String, i32), i64>,
}

#[derive(Default)]
struct State {
    reject_api_versions_v3: bool,
    /// Advertise at most this version of these APIs.
    caps: Vec<(ApiKey, i16)>,
    /// Log start offset of every partition (clamped to its length).
    log_start: i64,
    topics: BTreeMap<String, Topic>,
    groups: BTreeMap<String, MockGroup>,
    requests: Vec<(ApiKey, i16)>,
    produce_batches: usize,
}

fn start(reject_api_versions_v3: bool) -> (String, Arc<Mutex<State>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State { reject_api_versions_v3, ..Default::default() }));
    let st = state.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let st = st.clone();
            thread::spawn(move || serve(stream, st, port));
        }
    });
    (format!("127.0.0.1:{port}"), state)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, port: u16) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        let mut buf = Bytes::from(body);
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        let key = ApiKey::try_from(header.request_api_key).unwrap();
        let v = header.request_api_version;
        state.lock().unwrap().requests.push((key, v));
        let mut out = BytesMut::new();
        let mut resp_version = v;
        macro_rules! decode {
            ($t:ty) => {{
                let r = <$t>::decode(&mut buf, v).unwrap();
                assert_eq!(buf.remaining(), 0, "{key:?} v{v} has trailing bytes");
                r
            }};
        }
        match key {
            ApiKey::ApiVersions => {
                let mut resp = ApiVersionsResponse::default();
                resp.api_keys = ApiKey::iter()
                    .map(|k| {
                        let r = k.valid_versions();
                        let mut av = ApiVersion::default();
                        av.api_key = k as i16;
                        av.min_version = r.min;
                        av.max_version = r.max;
                        if let Some((_, cap)) = state.lock().unwrap().caps.iter().find(|(ck, _)| *ck == k) {
                            av.max_version = av.max_version.min(*cap);
                        }
                        av
                    })
                    .collect();
                if v > 2 && state.lock().unwrap().reject_api_versions_v3 {
                    resp.error_code = 35;
                    resp_version = 0;
                } else {
                    decode!(ApiVersionsRequest);
                }
                resp.encode(&mut header_out(&mut out, key, resp_version, &header), resp_version).unwrap();
            }
            ApiKey::Metadata => {
                let req = decode!(MetadataRequest);
                assert!(v < 4 || !req.allow_auto_topic_creation);
                let st = state.lock().unwrap();
                let wanted: Vec<String> = match &req.topics {
                    None => st.topics.keys().cloned().collect(),
                    Some(ts) => ts.iter().map(|t| t.name.as_ref().unwrap().to_string()).collect(),
                };
                let mut resp = MetadataResponse::default();
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(1);
                b.host = StrBytes::from_static_str("advertised.invalid");
                b.port = i32::from(port);
                resp.brokers = vec![b];
                resp.controller_id = BrokerId(1);
                resp.topics = wanted
                    .iter()
                    .map(|n| {
                        let mut t = MetadataResponseTopic::default();
                        t.name = Some(name(n));
                        match st.topics.get(n) {
                            None => t.error_code = 3,
                            Some((parts, _)) => {
                                t.partitions = (0..parts.len() as i32)
                                    .map(|i| {
                                        let mut p = MetadataResponsePartition::default();
                                        p.partition_index = i;
                                        p.leader_id = BrokerId(1);
                                        p.replica_nodes = vec![BrokerId(1)];
                                        p.isr_nodes = vec![BrokerId(1)];
                                        p
                                    })
                                    .rev()
                                    .collect()
                            }
                        }
                        t
                    })
                    .collect();
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::CreateTopics => {
                let req = decode!(CreateTopicsRequest);
                let mut st = state.lock().unwrap();
                let mut resp = CreateTopicsResponse::default();
                for t in req.topics {
                    let mut r = CreatableTopicResult::default();
                    r.name = t.name.clone();
                    if st.topics.contains_key(t.name.as_str()) {
                        r.error_code = 36;
                        r.error_message = Some(StrBytes::from_static_str("exists"));
                    } else {
                        let configs = t
                            .configs
                            .iter()
                            .map(|c| (c.name.to_string(), c.value.as_deref().unwrap().to_string()))
                            .collect();
                        st.topics.insert(t.name.to_string(), (vec![Vec::new(); t.num_partitions as usize], configs));
                    }
                    resp.topics.push(r);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::DeleteTopics => {
                let req = decode!(DeleteTopicsRequest);
                let names: Vec<TopicName> =
                    if v >= 6 { req.topics.into_iter().map(|t| t.name.unwrap()).collect() } else { req.topic_names };
                let mut st = state.lock().unwrap();
                let mut resp = DeleteTopicsResponse::default();
                for n in names {
                    let mut r = DeletableTopicResult::default();
                    if st.topics.remove(n.as_str()).is_none() {
                        r.error_code = 3;
                    }
                    r.name = Some(n);
                    resp.responses.push(r);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::DescribeConfigs => {
                let req = decode!(DescribeConfigsRequest);
                let st = state.lock().unwrap();
                let mut resp = DescribeConfigsResponse::default();
                for res in req.resources {
                    assert_eq!(res.resource_type, 2);
                    assert!(res.configuration_keys.is_none());
                    let mut r = DescribeConfigsResult::default();
                    r.resource_type = 2;
                    r.resource_name = res.resource_name.clone();
                    let (_, configs) = &st.topics[res.resource_name.as_str()];
                    for (k, val) in configs {
                        let mut c = DescribeConfigsResourceResult::default();
                        c.name = StrBytes::from_string(k.clone());
                        c.value = Some(StrBytes::from_string(val.clone()));
                        r.configs.push(c);
                    }
                    resp.results.push(r);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::ListOffsets => {
                let req = decode!(ListOffsetsRequest);
                assert_eq!(req.replica_id.0, -1);
                let st = state.lock().unwrap();
                let mut resp = ListOffsetsResponse::default();
                for t in req.topics {
                    let (parts, _) = &st.topics[t.name.as_str()];
                    let mut tr = ListOffsetsTopicResponse::default();
                    tr.name = t.name.clone();
                    for p in t.partitions {
                        let mut pr = ListOffsetsPartitionResponse::default();
                        pr.partition_index = p.partition_index;
                        let len = parts[p.partition_index as usize].len() as i64;
                        // Record i has timestamp i * 1000 ms.
                        pr.offset = match p.timestamp {
                            -2 => st.log_start.min(len),
                            -1 => len,
                            ts if ts >= 0 => {
                                let first = (ts + 999) / 1000;
                                if first < len {
                                    first
                                } else {
                                    -1
                                }
                            }
                            other => panic!("unexpected timestamp {other}"),
                        };
                        tr.partitions.push(pr);
                    }
                    resp.topics.push(tr);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::Produce => {
                let req = decode!(ProduceRequest);
                let mut st = state.lock().unwrap();
                st.produce_batches += 1;
                let mut resp = ProduceResponse::default();
                for t in req.topic_data {
                    let mut tr = TopicProduceResponse::default();
                    tr.name = t.name.clone();
                    for p in t.partition_data {
                        let mut pr = PartitionProduceResponse::default();
                        pr.index = p.index;
                        if t.name.as_str() == "fenced" {
                            pr.error_code = 6;
                        } else {
                            let mut data = p.records.unwrap();
                            let sets = RecordBatchDecoder::decode_all(&mut data).unwrap();
                            assert_eq!(sets.len(), 1, "one batch per partition");
                            let log = &mut st.topics.get_mut(t.name.as_str()).unwrap().0[p.index as usize];
                            pr.base_offset = log.len() as i64;
                            for r in &sets[0].records {
                                assert_eq!(r.producer_id, -1);
                                assert_eq!(r.timestamp_type, TimestampType::Creation);
                                log.push((r.key.clone(), r.value.clone()));
                            }
                        }
                        tr.partition_responses.push(pr);
                    }
                    resp.responses.push(tr);
                }
                if req.acks == 0 {
                    continue; // no response for acks=0
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::Fetch => {
                let req = decode!(FetchRequest);
                assert_eq!(req.max_wait_ms, 500);
                let mut resp = FetchResponse::default();
                let mut any = false;
                {
                    let st = state.lock().unwrap();
                    for t in req.topics {
                        let (parts, _) = &st.topics[t.topic.as_str()];
                        let mut tr = FetchableTopicResponse::default();
                        tr.topic = t.topic.clone();
                        for p in t.partitions {
                            let log = &parts[p.partition as usize];
                            let mut pd = PartitionData::default();
                            pd.partition_index = p.partition;
                            pd.high_watermark = log.len() as i64;
                            if p.fetch_offset > log.len() as i64 {
                                pd.error_code = 1;
                            } else {
                                pd.records = Some(encode_log(log, p.fetch_offset));
                                any |= (p.fetch_offset as usize) < log.len();
                            }
                            tr.partitions.push(pd);
                        }
                        resp.responses.push(tr);
                    }
                }
                if !any {
                    thread::sleep(Duration::from_millis(20));
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::FindCoordinator => {
                let req = decode!(FindCoordinatorRequest);
                assert_eq!(req.key_type, 0);
                let mut resp = FindCoordinatorResponse::default();
                if v >= 4 {
                    for k in req.coordinator_keys {
                        let mut c = Coordinator::default();
                        c.key = k;
                        c.node_id = BrokerId(1);
                        c.host = StrBytes::from_static_str("advertised.invalid");
                        c.port = i32::from(port);
                        resp.coordinators.push(c);
                    }
                } else {
                    assert!(!req.key.is_empty());
                    resp.node_id = BrokerId(1);
                    resp.host = StrBytes::from_static_str("advertised.invalid");
                    resp.port = i32::from(port);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::ListGroups => {
                decode!(ListGroupsRequest);
                let st = state.lock().unwrap();
                let mut resp = ListGroupsResponse::default();
                for (id, g) in &st.groups {
                    let mut lg = ListedGroup::default();
                    lg.group_id = GroupId(StrBytes::from_string(id.clone()));
                    lg.protocol_type = StrBytes::from_static_str("consumer");
                    if v >= 4 {
                        lg.group_state = StrBytes::from_string(g.state.clone());
                    }
                    resp.groups.push(lg);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::DescribeGroups => {
                let req = decode!(DescribeGroupsRequest);
                let st = state.lock().unwrap();
                let mut resp = DescribeGroupsResponse::default();
                for id in req.groups {
                    let mut dg = DescribedGroup::default();
                    match st.groups.get(id.as_str()) {
                        None => dg.group_state = StrBytes::from_static_str("Dead"),
                        Some(g) => {
                            dg.group_state = StrBytes::from_string(g.state.clone());
                            dg.protocol_type = StrBytes::from_static_str("consumer");
                            dg.protocol_data = StrBytes::from_string(g.protocol.clone());
                            for (mid, cid, host, assignment) in &g.members {
                                let mut m = DescribedGroupMember::default();
                                m.member_id = StrBytes::from_string(mid.clone());
                                m.client_id = StrBytes::from_string(cid.clone());
                                m.client_host = StrBytes::from_string(host.clone());
                                m.member_assignment = assignment.clone();
                                dg.members.push(m);
                            }
                        }
                    }
                    dg.group_id = id;
                    resp.groups.push(dg);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::OffsetFetch => {
                let req = decode!(OffsetFetchRequest);
                let st = state.lock().unwrap();
                let committed = |gid: &str| -> Vec<(String, i32, i64)> {
                    st.groups
                        .get(gid)
                        .map(|g| g.offsets.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect())
                        .unwrap_or_default()
                };
                let mut resp = OffsetFetchResponse::default();
                if v >= 8 {
                    for g in req.groups {
                        assert!(g.topics.is_none(), "the CLI asks for all offsets");
                        let mut rg = OffsetFetchResponseGroup::default();
                        for (t, p, o) in committed(g.group_id.as_str()) {
                            let mut rp = OffsetFetchResponsePartitions::default();
                            rp.partition_index = p;
                            rp.committed_offset = o;
                            match rg.topics.iter_mut().find(|x| x.name.as_str() == t) {
                                Some(x) => x.partitions.push(rp),
                                None => {
                                    let mut rt = OffsetFetchResponseTopics::default();
                                    rt.name = name(&t);
                                    rt.partitions.push(rp);
                                    rg.topics.push(rt);
                                }
                            }
                        }
                        rg.group_id = g.group_id;
                        resp.groups.push(rg);
                    }
                } else {
                    assert!(req.topics.is_none(), "the CLI asks for all offsets");
                    for (t, p, o) in committed(req.group_id.as_str()) {
                        let mut rp = OffsetFetchResponsePartition::default();
                        rp.partition_index = p;
                        rp.committed_offset = o;
                        match resp.topics.iter_mut().find(|x| x.name.as_str() == t) {
                            Some(x) => x.partitions.push(rp),
                            None => {
                                let mut rt = OffsetFetchResponseTopic::default();
                                rt.name = name(&t);
                                rt.partitions.push(rp);
                                resp.topics.push(rt);
                            }
                        }
                    }
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::OffsetCommit => {
                let req = decode!(OffsetCommitRequest);
                assert_eq!(req.generation_id_or_member_epoch, -1);
                assert!(req.member_id.is_empty());
                let mut st = state.lock().unwrap();
                let g = st
                    .groups
                    .entry(req.group_id.to_string())
                    .or_insert_with(|| MockGroup { state: "Empty".into(), ..Default::default() });
                // Kafka refuses an admin commit while the group has members.
                let code = if g.members.is_empty() { 0 } else { 25 };
                let mut resp = OffsetCommitResponse::default();
                for t in req.topics {
                    let mut rt = OffsetCommitResponseTopic::default();
                    for p in t.partitions {
                        if code == 0 {
                            g.offsets.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                        }
                        let mut rp = OffsetCommitResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.error_code = code;
                        rt.partitions.push(rp);
                    }
                    rt.name = t.name;
                    resp.topics.push(rt);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::OffsetDelete => {
                let req = decode!(OffsetDeleteRequest);
                let mut st = state.lock().unwrap();
                let mut resp = OffsetDeleteResponse::default();
                match st.groups.get_mut(req.group_id.as_str()) {
                    None => resp.error_code = 69,
                    Some(g) => {
                        for t in req.topics {
                            let mut rt = OffsetDeleteResponseTopic::default();
                            for p in t.partitions {
                                g.offsets.remove(&(t.name.to_string(), p.partition_index));
                                let mut rp = OffsetDeleteResponsePartition::default();
                                rp.partition_index = p.partition_index;
                                rt.partitions.push(rp);
                            }
                            rt.name = t.name;
                            resp.topics.push(rt);
                        }
                    }
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            ApiKey::DeleteGroups => {
                let req = decode!(DeleteGroupsRequest);
                let mut st = state.lock().unwrap();
                let mut resp = DeleteGroupsResponse::default();
                for id in req.groups_names {
                    let mut r = DeletableGroupResult::default();
                    r.error_code = match st.groups.get(id.as_str()) {
                        None => 69,
                        Some(g) if !g.members.is_empty() => 68,
                        Some(_) => {
                            st.groups.remove(id.as_str());
                            0
                        }
                    };
                    r.group_id = id;
                    resp.results.push(r);
                }
                resp.encode(&mut header_out(&mut out, key, v, &header), v).unwrap();
            }
            other => panic!("unexpected request {other:?}"),
        }
        let mut frame = (out.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&out);
        stream.write_all(&frame).unwrap();
    }
}

/// Write the response header and return the buffer for the body.
fn header_out<'a>(out: &'a mut BytesMut, key: ApiKey, version: i16, req: &RequestHeader) -> &'a mut BytesMut {
    let mut h = ResponseHeader::default();
    h.correlation_id = req.correlation_id;
    h.encode(out, key.response_header_version(version)).unwrap();
    out
}

/// Records from `from` on, as batches of two records with varying compression,
/// the first batch starting one record early (as a real broker may) and a
/// truncated batch appended.
fn encode_log(log: &Log, from: i64) -> Bytes {
    let start = (from - 1).max(0) as usize;
    let mut buf = BytesMut::new();
    let comps = [Compression::Gzip, Compression::None, Compression::Lz4, Compression::Zstd];
    let records: Vec<Record> =
        log.iter().enumerate().skip(start).map(|(i, (k, v))| record(i as i64, k.clone(), v.clone(), false)).collect();
    for (i, chunk) in records.chunks(2).enumerate() {
        let opts = RecordEncodeOptions { version: 2, compression: comps[i % comps.len()] };
        RecordBatchEncoder::encode(&mut buf, chunk.iter(), &opts).unwrap();
    }
    if !records.is_empty() {
        // A trailing partial batch, as a broker truncating at max bytes sends.
        let mut tail = BytesMut::new();
        let next = log.len() as i64;
        let opts = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(
            &mut tail,
            [record(next, None, Some(Bytes::from_static(b"future")), false)].iter(),
            &opts,
        )
        .unwrap();
        buf.extend_from_slice(&tail[..tail.len() - 5]);
    }
    buf.freeze()
}

fn record(offset: i64, key: Option<Bytes>, value: Option<Bytes>, control: bool) -> Record {
    Record {
        transactional: false,
        control,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 0,
        key,
        value,
        headers: IndexMap::new(),
    }
}

fn produce_args(topic: &str) -> ProduceArgs {
    ProduceArgs {
        topic: topic.to_string(),
        partition: None,
        key_separator: None,
        acks: "all".to_string(),
        batch_records: 1000,
    }
}

fn consume_args(topic: &str) -> ConsumeArgs {
    ConsumeArgs {
        topic: topic.to_string(),
        partition: None,
        offset: "earliest".to_string(),
        count: None,
        timeout_ms: 300,
        print_key: false,
        print_offset: false,
    }
}

fn topic_out(addr: &str, cmd: TopicCommand) -> anyhow::Result<String> {
    let mut out = Vec::new();
    ringbroker_cli::topic::run_to(addr, cmd, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn consume_out(addr: &str, args: &ConsumeArgs) -> String {
    let mut out = Vec::new();
    ringbroker_cli::consume::consume(addr, args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn produce(addr: &str, args: &ProduceArgs, input: &str) -> anyhow::Result<()> {
    ringbroker_cli::produce::produce_from(addr, args, BufReader::new(input.as_bytes()))
}

#[test]
fn topic_produce_consume_roundtrip() {
    let (addr, state) = start(true);
    let create = |configs: Vec<(String, String)>| TopicCommand::Create {
        name: "events".into(),
        partitions: 3,
        replication_factor: 1,
        configs,
    };
    topic_out(&addr, create(vec![("retention.ms".into(), "1000".into())])).unwrap();
    let err = topic_out(&addr, create(vec![])).unwrap_err();
    assert!(format!("{err:#}").contains("TOPIC_ALREADY_EXISTS (36): exists"), "{err:#}");
    assert_eq!(topic_out(&addr, TopicCommand::List).unwrap(), "events\n");

    // Keyed lines go to murmur2 partitions.
    let mut args = produce_args("events");
    args.key_separator = Some(":".into());
    produce(&addr, &args, "a:1\nb:2\nc:3\r\na:4\n").unwrap();
    {
        let st = state.lock().unwrap();
        let parts = &st.topics["events"].0;
        let pa = ringbroker_cli::produce::partition_for_key(b"a", 3) as usize;
        let a_values: Vec<_> = parts[pa]
            .iter()
            .filter(|(k, _)| k.as_deref() == Some(&b"a"[..]))
            .map(|(_, v)| v.clone().unwrap())
            .collect();
        assert_eq!(a_values, vec![Bytes::from_static(b"1"), Bytes::from_static(b"4")]);
        let total: usize = parts.iter().map(Vec::len).sum();
        assert_eq!(total, 4);
        assert!(parts.iter().flatten().all(|(_, v)| !v.as_ref().unwrap().ends_with(b"\r")));
    }

    // Explicit partition, small batches: one Produce request per 2 lines.
    let mut args = produce_args("events");
    args.partition = Some(1);
    args.batch_records = 2;
    let before = state.lock().unwrap().produce_batches;
    let p1_before = state.lock().unwrap().topics["events"].0[1].len();
    produce(&addr, &args, "x1\nx2\nx3\nx4\nx5").unwrap();
    assert_eq!(state.lock().unwrap().produce_batches - before, 3);
    let p1: Vec<_> = state.lock().unwrap().topics["events"].0[1][p1_before..]
        .iter()
        .map(|(k, v)| (k.is_none(), v.clone().unwrap()))
        .collect();
    assert_eq!(p1.len(), 5);
    assert!(p1.iter().all(|(no_key, _)| *no_key));
    assert_eq!(p1[4].1, Bytes::from_static(b"x5"));

    // Consume everything: 9 records, per-partition offset order.
    let out = consume_out(&addr, &consume_args("events"));
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    lines.sort_unstable();
    assert_eq!(lines, vec!["1", "2", "3", "4", "x1", "x2", "x3", "x4", "x5"]);

    // One partition from an offset, bounded count, with offset/key prefixes.
    let mut c = consume_args("events");
    c.partition = Some(1);
    c.offset = (p1_before + 1).to_string();
    c.count = Some(2);
    c.print_offset = true;
    c.print_key = true;
    let out = consume_out(&addr, &c);
    assert_eq!(out, format!("{}\tnull\tx2\n{}\tnull\tx3\n", p1_before + 1, p1_before + 2));

    // latest: nothing new arrives, exits after the idle timeout.
    let mut c = consume_args("events");
    c.offset = "latest".into();
    let t0 = Instant::now();
    assert_eq!(consume_out(&addr, &c), "");
    assert!(t0.elapsed() >= Duration::from_millis(300));

    let desc = topic_out(&addr, TopicCommand::Describe { name: "events".into() }).unwrap();
    assert!(desc.starts_with("Topic: events\tPartitionCount: 3\tReplicationFactor: 1\n"), "{desc}");
    assert!(
        desc.contains(&format!(
            "\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\tEarliestOffset: 0\tLatestOffset: {}\n",
            p1_before + 5
        )),
        "{desc}"
    );
    assert!(desc.ends_with("Configs:\n\tretention.ms=1000\n"), "{desc}");

    topic_out(&addr, TopicCommand::Delete { name: "events".into() }).unwrap();
    assert_eq!(topic_out(&addr, TopicCommand::List).unwrap(), "");
    let err = topic_out(&addr, TopicCommand::Describe { name: "events".into() }).unwrap_err();
    assert!(format!("{err:#}").contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err:#}");

    // Version negotiation: ApiVersions v3 rejected -> v0; Produce/Fetch capped at 12,
    // the rest at the highest version both sides know.
    let reqs = state.lock().unwrap().requests.clone();
    assert_eq!(reqs[0], (ApiKey::ApiVersions, 3));
    assert_eq!(reqs[1], (ApiKey::ApiVersions, 0));
    let max_of = |k: ApiKey| reqs.iter().filter(|(rk, _)| *rk == k).map(|(_, v)| *v).max();
    assert_eq!(max_of(ApiKey::Produce), Some(12));
    assert_eq!(max_of(ApiKey::Fetch), Some(12));
    assert_eq!(max_of(ApiKey::Metadata), Some(13));
    assert_eq!(max_of(ApiKey::ListOffsets), Some(10));
    assert_eq!(max_of(ApiKey::CreateTopics), Some(7));
    assert_eq!(max_of(ApiKey::DeleteTopics), Some(6));
    assert_eq!(max_of(ApiKey::DescribeConfigs), Some(4));
}

#[test]
fn produce_errors_and_acks_zero() {
    let (addr, state) = start(false);
    for t in ["fenced", "quiet"] {
        topic_out(
            &addr,
            TopicCommand::Create { name: t.into(), partitions: 2, replication_factor: 1, configs: vec![] },
        )
        .unwrap();
    }
    let err = produce(&addr, &produce_args("fenced"), "v\n").unwrap_err();
    assert!(format!("{err:#}").contains("NOT_LEADER_OR_FOLLOWER (6)"), "{err:#}");

    let err = produce(&addr, &produce_args("missing"), "v\n").unwrap_err();
    assert!(format!("{err:#}").contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err:#}");

    let mut args = produce_args("quiet");
    args.partition = Some(5);
    assert!(produce(&addr, &args, "v\n").is_err());

    let mut args = produce_args("quiet");
    args.acks = "0".into();
    args.partition = Some(0);
    produce(&addr, &args, "q1\nq2\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.lock().unwrap().topics["quiet"].0[0].len() < 2 {
        assert!(Instant::now() < deadline, "acks=0 records never arrived");
        thread::sleep(Duration::from_millis(10));
    }

    let mut c = consume_args("quiet");
    c.offset = "99".into();
    let mut out = Vec::new();
    let err = ringbroker_cli::consume::consume(&addr, &c, &mut out).unwrap_err();
    assert!(format!("{err:#}").contains("OFFSET_OUT_OF_RANGE"), "{err:#}");

    let reqs = state.lock().unwrap().requests.clone();
    assert!(reqs.iter().filter(|(k, _)| *k == ApiKey::ApiVersions).all(|(_, v)| *v == 3));
}

fn group_out(addr: &str, json: bool, command: GroupCommand) -> (anyhow::Result<()>, String) {
    let mut out = Vec::new();
    let r = ringbroker_cli::group::run_to(addr, GroupArgs { json, command }, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = parts
        .iter()
        .map(|(t, ps)| {
            let mut tp = TopicPartition::default();
            tp.topic = name(t);
            tp.partitions = ps.to_vec();
            tp
        })
        .collect();
    let mut buf = BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 1);
    a.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

fn reset(group: &str, topic: &str, to: ResetTo, execute: bool) -> GroupCommand {
    GroupCommand::ResetOffsets(ResetOffsetsArgs {
        group: group.into(),
        topics: vec![ringbroker_cli::group::parse_topic_partitions(topic).unwrap()],
        all_topics: false,
        to,
        execute,
        dry_run: false,
    })
}

/// The group commands against the mock, at the newest versions and with the
/// pre-KIP-709 OffsetFetch (v7) / pre-batched FindCoordinator (v3) shapes.
fn group_scenario(caps: Vec<(ApiKey, i16)>) -> Vec<(ApiKey, i16)> {
    let old = !caps.is_empty();
    let (addr, state) = start(false);
    topic_out(&addr, TopicCommand::Create { name: "t".into(), partitions: 2, replication_factor: 1, configs: vec![] })
        .unwrap();
    let mut args = produce_args("t");
    args.partition = Some(0);
    produce(&addr, &args, &"x\n".repeat(10)).unwrap();
    args.partition = Some(1);
    produce(&addr, &args, &"y\n".repeat(4)).unwrap();
    {
        let mut st = state.lock().unwrap();
        st.caps = caps;
        st.log_start = 2;
        st.groups.insert(
            "busy".into(),
            MockGroup {
                state: "Stable".into(),
                protocol: "range".into(),
                members: vec![
                    ("m-2".into(), "c2".into(), "/10.0.0.2".into(), assignment(&[("t", &[1])])),
                    ("m-1".into(), "c1".into(), "/10.0.0.1".into(), assignment(&[("t", &[0])])),
                ],
                offsets: [(("t".to_string(), 0), 3)].into(),
            },
        );
        st.groups.insert(
            "idle".into(),
            MockGroup { state: "Empty".into(), offsets: [(("t".to_string(), 1), 1)].into(), ..Default::default() },
        );
    }

    let (r, out) = group_out(&addr, false, GroupCommand::List);
    r.unwrap();
    // ListGroups before v4 carries no state.
    let states = if old { ("-", "-") } else { ("Stable", "Empty") };
    assert_eq!(
        out,
        format!(
            "GROUP  PROTOCOL-TYPE  STATE\nbusy   consumer       {}\nidle   consumer       {}\n",
            states.0, states.1
        )
    );

    let (r, out) = group_out(&addr, false, GroupCommand::Describe { group: "busy".into() });
    r.unwrap();
    assert!(
        out.starts_with(
            "GROUP  STATE   PROTOCOL-TYPE  PROTOCOL  MEMBERS\nbusy   Stable  consumer       range     2\n\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("\nbusy   t      0          3               10              7    m-1          /10.0.0.1  c1\n"),
        "{out}"
    );
    assert!(
        out.contains("\nbusy   t      1          -               4               -    m-2          /10.0.0.2  c2\n"),
        "{out}"
    );
    assert!(out.contains("\nm-1          -                  /10.0.0.1  c1         1            t:0\n"), "{out}");
    let (r, out) = group_out(&addr, true, GroupCommand::Describe { group: "busy".into() });
    r.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["offsets"][0]["lag"], 7);
    assert_eq!(v["offsets"][0]["consumer_id"], "m-1");
    assert!(v["offsets"][1]["lag"].is_null());
    assert_eq!(v["members"][1]["assignment"][0]["partitions"][0], 1);

    let (r, _) = group_out(&addr, false, GroupCommand::Describe { group: "nope".into() });
    assert!(format!("{:#}", r.unwrap_err()).contains("GROUP_ID_NOT_FOUND"));

    // Active group: the admin commit is refused.
    let to_earliest = || ResetTo { to_earliest: true, ..Default::default() };
    let (r, _) = group_out(&addr, false, reset("busy", "t", to_earliest(), true));
    let e = format!("{:#}", r.unwrap_err());
    assert!(e.contains("group is active; stop its consumers first") && e.contains("UNKNOWN_MEMBER_ID"), "{e}");
    assert_eq!(state.lock().unwrap().groups["busy"].offsets[&("t".to_string(), 0)], 3);

    // Dry run: plan only. to-offset 1 is clamped to the log start (2).
    let (r, out) =
        group_out(&addr, false, reset("idle", "t", ResetTo { to_offset: Some(1), ..Default::default() }, false));
    r.unwrap();
    assert_eq!(
        out,
        "GROUP  TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET\nidle   t      0          -               2\nidle   t      1          1               2\n"
    );
    assert_eq!(state.lock().unwrap().groups["idle"].offsets.len(), 1);
    let (r, _) =
        group_out(&addr, false, reset("idle", "t:0", ResetTo { shift_by: Some(1), ..Default::default() }, false));
    assert!(format!("{:#}", r.unwrap_err()).contains("t-0: no committed offset to shift"));

    // Execute by time: record i has timestamp i s; none at 30 s -> log end.
    let at = |s: &str| ResetTo { to_datetime: Some(s.into()), ..Default::default() };
    let (r, out) = group_out(&addr, true, reset("idle", "t", at("1970-01-01T00:00:03Z"), true));
    r.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["executed"], true);
    let offsets = |st: &State| st.groups["idle"].offsets.clone();
    assert_eq!(offsets(&state.lock().unwrap()), [(("t".to_string(), 0), 3), (("t".to_string(), 1), 3)].into());
    group_out(&addr, false, reset("idle", "t:1", at("1970-01-01T00:00:30Z"), true)).0.unwrap();
    group_out(&addr, false, reset("idle", "t:0", ResetTo { shift_by: Some(100), ..Default::default() }, true))
        .0
        .unwrap();
    assert_eq!(offsets(&state.lock().unwrap()), [(("t".to_string(), 0), 10), (("t".to_string(), 1), 4)].into());

    let (r, out) = group_out(
        &addr,
        false,
        GroupCommand::DeleteOffsets {
            group: "idle".into(),
            topics: vec![TopicPartitions { topic: "t".into(), partitions: Some(vec![0]) }],
        },
    );
    r.unwrap();
    assert_eq!(out, "TOPIC  PARTITION  RESULT\nt      0          deleted\n");
    assert_eq!(offsets(&state.lock().unwrap()), [(("t".to_string(), 1), 4)].into());

    let (r, out) = group_out(&addr, false, GroupCommand::Delete { groups: vec!["busy".into(), "idle".into()] });
    let e = format!("{:#}", r.unwrap_err());
    assert!(e.contains("could not delete 1 of 2 groups: group busy: NON_EMPTY_GROUP (68)"), "{e}");
    assert_eq!(out, "GROUP  RESULT\nbusy   NON_EMPTY_GROUP (68)\nidle   deleted\n");
    assert!(!state.lock().unwrap().groups.contains_key("idle"));

    let reqs = state.lock().unwrap().requests.clone();
    reqs
}

fn max_version(reqs: &[(ApiKey, i16)], k: ApiKey) -> Option<i16> {
    reqs.iter().filter(|(rk, _)| *rk == k).map(|(_, v)| *v).max()
}

#[test]
fn group_commands_newest_versions() {
    let reqs = group_scenario(vec![]);
    assert_eq!(max_version(&reqs, ApiKey::FindCoordinator), Some(6));
    assert_eq!(max_version(&reqs, ApiKey::OffsetFetch), Some(9));
    assert_eq!(max_version(&reqs, ApiKey::OffsetCommit), Some(9));
    assert_eq!(max_version(&reqs, ApiKey::ListGroups), Some(5));
    assert_eq!(max_version(&reqs, ApiKey::DescribeGroups), Some(6));
    assert_eq!(max_version(&reqs, ApiKey::DeleteGroups), Some(2));
    assert_eq!(max_version(&reqs, ApiKey::OffsetDelete), Some(0));
}

#[test]
fn group_commands_older_versions() {
    let reqs = group_scenario(vec![
        (ApiKey::FindCoordinator, 3),
        (ApiKey::OffsetFetch, 7),
        (ApiKey::OffsetCommit, 5),
        (ApiKey::ListGroups, 3),
        (ApiKey::DescribeGroups, 0),
        (ApiKey::DeleteGroups, 0),
        (ApiKey::ListOffsets, 1),
    ]);
    assert_eq!(max_version(&reqs, ApiKey::FindCoordinator), Some(3));
    assert_eq!(max_version(&reqs, ApiKey::OffsetFetch), Some(7));
    assert_eq!(max_version(&reqs, ApiKey::OffsetCommit), Some(5));
    assert_eq!(max_version(&reqs, ApiKey::ListOffsets), Some(1));
}
