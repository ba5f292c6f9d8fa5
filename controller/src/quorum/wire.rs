//! Controller traffic on the wire between brokers: an inter-broker
//! `Envelope` (flatbuffers, `flatbuffers/schemas/inter_broker.fbs`) holding a
//! `QuorumMessage` (whose `raft` field is raft-rs's protobuf encoding of its
//! message) or a broker's `Heartbeat` to the active controller. Frames on
//! the connection are `[len: u32 BE][envelope]`.
//!
//! Everything from another broker is hostile until checked: the envelope is
//! verified, the raft message parsed with bounded sizes, and its sender and
//! receiver must match the envelope's. A message that fails any check is an
//! error (the connection is closed), never a panic.

use protobuf::Message as PbMessage;
use raft::prelude::Message;
use ringbroker_flatbuffers::flatbuffers::{self, FlatBufferBuilder};
use ringbroker_flatbuffers::inter_broker as fb;

/// No quorum message comes near this (a snapshot of a large image is the
/// biggest); a longer frame is refused before it is read.
pub const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a valid inter-broker envelope: {0}")]
    Envelope(String),
    #[error("not a quorum message")]
    NotQuorum,
    #[error("raft message does not decode: {0}")]
    Raft(String),
    #[error("raft message from {raft_from} to {raft_to} on an envelope from node {from} to node {to}")]
    Mismatch { from: i32, to: i32, raft_from: u64, raft_to: u64 },
}

/// Node ids are Kafka's (from 0); raft ids are node id + 1.
fn raft_id(node: i32) -> u64 {
    node as u64 + 1
}

/// Finishes an envelope and puts the connection's length prefix before it.
fn framed(mut b: FlatBufferBuilder<'_>, env: flatbuffers::WIPOffset<fb::Envelope<'_>>) -> Vec<u8> {
    b.finish(env, None);
    let data = b.finished_data();
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// One framed quorum message, ready to write.
pub fn encode(from_node: i32, to_node: i32, msg: &Message) -> Vec<u8> {
    let raft = msg.write_to_bytes().expect("raft messages encode");
    let mut b = FlatBufferBuilder::with_capacity(raft.len() + 64);
    let raft = b.create_vector(&raft);
    let q = fb::QuorumMessage::create(&mut b, &fb::QuorumMessageArgs { from_node, to_node, raft: Some(raft) });
    let env = fb::Envelope::create(
        &mut b,
        &fb::EnvelopeArgs { sequence: 0, body_type: fb::Body::QuorumMessage, body: Some(q.as_union_value()) },
    );
    framed(b, env)
}

/// A broker's heartbeat to the active controller, framed.
pub fn encode_heartbeat(from_broker: i32, broker_epoch: i64, sent_at_ms: i64) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(64);
    let h = fb::Heartbeat::create(&mut b, &fb::HeartbeatArgs { from_broker, broker_epoch, sent_at_ms });
    let env = fb::Envelope::create(
        &mut b,
        &fb::EnvelopeArgs { sequence: 0, body_type: fb::Body::Heartbeat, body: Some(h.as_union_value()) },
    );
    framed(b, env)
}

/// One voter in a `QuorumStatus`: node, log end, last contact (ms), last
/// caught up (ms); -1 for unknown.
pub type VoterStatus = (i32, i64, i64, i64);

/// At most this many voters in a status (a hostile peer cannot make a
/// receiver hold more).
pub const MAX_STATUS_VOTERS: usize = 1024;

/// The active controller's view of the quorum, framed.
pub fn encode_status(from_node: i32, term: u64, commit_index: u64, voters: &[VoterStatus]) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(64 + voters.len() * 32);
    let states: Vec<fb::VoterState> =
        voters.iter().map(|&(node, end, contact, caught)| fb::VoterState::new(node, end, contact, caught)).collect();
    let voters = b.create_vector(&states);
    let q =
        fb::QuorumStatus::create(&mut b, &fb::QuorumStatusArgs { from_node, term, commit_index, voters: Some(voters) });
    let env = fb::Envelope::create(
        &mut b,
        &fb::EnvelopeArgs { sequence: 0, body_type: fb::Body::QuorumStatus, body: Some(q.as_union_value()) },
    );
    framed(b, env)
}

/// What a controller-bound frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Raft { from: i32, to: i32, msg: Message },
    Heartbeat { from: i32, epoch: i64 },
    Status { from: i32, term: u64, commit_index: u64, voters: Vec<VoterStatus> },
}

/// Decodes one envelope (the bytes after the length prefix).
pub fn decode_inbound(bytes: &[u8]) -> Result<Inbound, WireError> {
    let opts = ringbroker_flatbuffers::verifier_options(bytes.len());
    let env =
        flatbuffers::root_with_opts::<fb::Envelope>(&opts, bytes).map_err(|e| WireError::Envelope(e.to_string()))?;
    if let Some(h) = env.body_as_heartbeat() {
        if h.from_broker() < 0 {
            return Err(WireError::Envelope(format!("heartbeat from broker {}", h.from_broker())));
        }
        return Ok(Inbound::Heartbeat { from: h.from_broker(), epoch: h.broker_epoch() });
    }
    if let Some(q) = env.body_as_quorum_status() {
        let voters = q.voters();
        if q.from_node() < 0 || voters.len() > MAX_STATUS_VOTERS || voters.iter().any(|v| v.node() < 0) {
            return Err(WireError::Envelope(format!(
                "quorum status from node {} with {} voters",
                q.from_node(),
                voters.len()
            )));
        }
        return Ok(Inbound::Status {
            from: q.from_node(),
            term: q.term(),
            commit_index: q.commit_index(),
            voters: voters
                .iter()
                .map(|v| (v.node(), v.log_end(), v.last_contact_ms(), v.last_caught_up_ms()))
                .collect(),
        });
    }
    let (from, to, msg) = decode_quorum(&env)?;
    Ok(Inbound::Raft { from, to, msg })
}

/// Decodes one envelope that must be a quorum message.
pub fn decode(bytes: &[u8]) -> Result<(i32, i32, Message), WireError> {
    let opts = ringbroker_flatbuffers::verifier_options(bytes.len());
    let env =
        flatbuffers::root_with_opts::<fb::Envelope>(&opts, bytes).map_err(|e| WireError::Envelope(e.to_string()))?;
    decode_quorum(&env)
}

fn decode_quorum(env: &fb::Envelope<'_>) -> Result<(i32, i32, Message), WireError> {
    let q = env.body_as_quorum_message().ok_or(WireError::NotQuorum)?;
    let msg = Message::parse_from_bytes(q.raft().bytes()).map_err(|e| WireError::Raft(e.to_string()))?;
    let (from, to) = (q.from_node(), q.to_node());
    if from < 0 || to < 0 || msg.from != raft_id(from) || msg.to != raft_id(to) {
        return Err(WireError::Mismatch { from, to, raft_from: msg.from, raft_to: msg.to });
    }
    Ok((from, to, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::prelude::{Entry, MessageType};

    fn sample() -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 2;
        m.to = 3;
        m.term = 7;
        m.index = 41;
        m.log_term = 6;
        m.commit = 40;
        m.entries = vec![Entry { index: 42, term: 7, data: b"record".to_vec().into(), ..Default::default() }].into();
        m
    }

    #[test]
    fn messages_round_trip_and_names_are_checked() {
        let f = encode(1, 2, &sample());
        assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()) as usize, f.len() - 4);
        let (from, to, m) = decode(&f[4..]).unwrap();
        assert_eq!((from, to), (1, 2));
        assert_eq!(m, sample());
        let f = encode(0, 2, &sample());
        assert!(matches!(decode(&f[4..]), Err(WireError::Mismatch { .. })));
        let h = encode_heartbeat(3, 77, 5);
        assert_eq!(decode_inbound(&h[4..]).unwrap(), Inbound::Heartbeat { from: 3, epoch: 77 });
        let st = encode_status(1, 7, 42, &[(0, 40, 1000, 900), (1, 42, 1001, 1001), (2, -1, -1, -1)]);
        assert_eq!(
            decode_inbound(&st[4..]).unwrap(),
            Inbound::Status {
                from: 1,
                term: 7,
                commit_index: 42,
                voters: vec![(0, 40, 1000, 900), (1, 42, 1001, 1001), (2, -1, -1, -1)]
            }
        );
        assert!(decode_inbound(&encode_status(-1, 7, 42, &[])[4..]).is_err());
        assert!(decode_inbound(&encode_status(1, 7, 42, &[(-3, 0, 0, 0)])[4..]).is_err());
        assert!(matches!(decode_inbound(&encode(1, 2, &sample())[4..]), Ok(Inbound::Raft { from: 1, to: 2, .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_inbound(&bytes);
        }

        #[test]
        fn corrupted_messages_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut f = encode(1, 2, &sample());
            for (i, x) in flips {
                let at = 4 + i.index(f.len() - 4);
                f[at] ^= x;
            }
            let _ = decode(&f[4..]);
        }
    }
}
