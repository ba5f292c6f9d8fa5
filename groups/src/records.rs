//! The `__consumer_offsets` record layout, byte-compatible with Kafka's.
//!
//! Why it matters: the coordinator's durable state *is* these records in a compacted topic, and
//! after a restart it is rebuilt by replaying them ([`crate::CoordinatorState::replay`]). Using
//! Kafka's exact layout keeps the topic readable by Kafka tooling (e.g. the console consumer's
//! offsets formatter) and lets us read logs Kafka wrote.
//!
//! Every key and value starts with an i16 schema version, then big-endian fields. Strings are an
//! i16 length + UTF-8 (-1 = null for nullable ones), bytes an i32 length. Keys: versions 0 and 1
//! are offset commits (group, topic, partition), version 2 is group metadata (group). A tombstone
//! (null value) deletes the key. We write offset commit value v3 and group metadata value v3 and
//! read v0..=v3 of both. Decoding is bounds-checked and never panics.

use bytes::{BufMut, Bytes, BytesMut};

/// One record of `__consumer_offsets`: a key and a value (`None` = tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Decoded record key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    OffsetCommit { group: String, topic: String, partition: i32 },
    GroupMetadata { group: String },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::OffsetCommit { group, .. } | RecordKey::GroupMetadata { group } => group,
        }
    }
}

/// Offset commit value. `leader_epoch` is -1 when unknown; `expire_timestamp` only exists in v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    pub expire_timestamp: Option<i64>,
}

/// One member inside a group metadata value. `subscription` is the member's metadata for the
/// group's selected protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata value. `current_state_timestamp` is -1 when unknown (pre-v2 records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberMetadataValue>,
}

/// Decoded record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    OffsetCommit(OffsetCommitValue),
    GroupMetadata(GroupMetadataValue),
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} bytes at offset {at}, {available} available")]
    Truncated { at: usize, needed: usize, available: usize },
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown {kind} value version {version}")]
    UnknownValueVersion { kind: &'static str, version: i16 },
    #[error("invalid length {len} at offset {at}")]
    InvalidLength { at: usize, len: i64 },
    #[error("string at offset {at} is not UTF-8")]
    InvalidUtf8 { at: usize },
    #[error("null where a non-nullable string is required at offset {at}")]
    UnexpectedNull { at: usize },
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Longest string the i16 length prefix can describe. Longer input is truncated (at a char
/// boundary) so the output stays well-formed; the coordinator validates lengths before it gets
/// here, so this only guards against misuse.
const MAX_STR: usize = i16::MAX as usize;

fn put_str(buf: &mut BytesMut, s: &str) {
    let mut end = s.len().min(MAX_STR);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_i16(end as i16);
    buf.put_slice(&s.as_bytes()[..end]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len().min(i32::MAX as usize) as i32);
    buf.put_slice(&b[..b.len().min(i32::MAX as usize)]);
}

/// Encodes a key: offset commit keys as version 1, group metadata keys as version 2.
pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::OffsetCommit { group, topic, partition } => {
            buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
            put_str(&mut buf, group);
            put_str(&mut buf, topic);
            buf.put_i32(*partition);
        }
        RecordKey::GroupMetadata { group } => {
            buf.put_i16(GROUP_METADATA_KEY_VERSION);
            put_str(&mut buf, group);
        }
    }
    buf.freeze()
}

/// Encodes an offset commit value as version 3 (`expire_timestamp` is not part of v3 and is
/// dropped; Kafka only writes v1 for the legacy explicit-retention commits).
pub fn encode_offset_commit_value(v: &OffsetCommitValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 8 + 4 + 2 + v.metadata.len() + 8);
    buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_str(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp);
    buf.freeze()
}

/// Encodes a group metadata value as version 3.
pub fn encode_group_metadata_value(v: &GroupMetadataValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_str(&mut buf, v.protocol.as_deref());
    put_nullable_str(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_nullable_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// A complete offset commit record.
pub fn offset_commit_record(group: &str, topic: &str, partition: i32, value: &OffsetCommitValue) -> Record {
    Record {
        key: encode_key(&RecordKey::OffsetCommit { group: group.into(), topic: topic.into(), partition }),
        value: Some(encode_offset_commit_value(value)),
    }
}

/// A tombstone for one committed offset.
pub fn offset_tombstone(group: &str, topic: &str, partition: i32) -> Record {
    Record {
        key: encode_key(&RecordKey::OffsetCommit { group: group.into(), topic: topic.into(), partition }),
        value: None,
    }
}

/// A complete group metadata record.
pub fn group_metadata_record(group: &str, value: &GroupMetadataValue) -> Record {
    Record {
        key: encode_key(&RecordKey::GroupMetadata { group: group.into() }),
        value: Some(encode_group_metadata_value(value)),
    }
}

/// A tombstone for a group's metadata.
pub fn group_tombstone(group: &str) -> Record {
    Record { key: encode_key(&RecordKey::GroupMetadata { group: group.into() }), value: None }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Bounds-checked big-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(RecordError::Truncated { at: self.pos, needed: n, available });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn nullable_str(&mut self) -> Result<Option<String>, RecordError> {
        let at = self.pos;
        let len = self.i16()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(RecordError::InvalidLength { at, len: len as i64 });
        }
        let raw = self.take(len as usize)?;
        std::str::from_utf8(raw).map(|s| Some(s.to_owned())).map_err(|_| RecordError::InvalidUtf8 { at })
    }

    fn str(&mut self) -> Result<String, RecordError> {
        let at = self.pos;
        self.nullable_str()?.ok_or(RecordError::UnexpectedNull { at })
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let at = self.pos;
        let len = self.i32()?;
        if len == -1 {
            // Kafka writes these as non-nullable; treat a null as empty rather than failing.
            return Ok(Bytes::new());
        }
        if len < 0 {
            return Err(RecordError::InvalidLength { at, len: len as i64 });
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }

    fn finish(&self) -> Result<(), RecordError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }
}

/// Decodes a key of any known version.
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader::new(bytes);
    let key = match r.i16()? {
        0 | 1 => RecordKey::OffsetCommit { group: r.str()?, topic: r.str()?, partition: r.i32()? },
        2 => RecordKey::GroupMetadata { group: r.str()? },
        v => return Err(RecordError::UnknownKeyVersion(v)),
    };
    r.finish()?;
    Ok(key)
}

/// Decodes an offset commit value, versions 0..=3.
pub fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    let value = match version {
        0 | 2 => OffsetCommitValue {
            offset: r.i64()?,
            leader_epoch: -1,
            metadata: r.str()?,
            commit_timestamp: r.i64()?,
            expire_timestamp: None,
        },
        1 => OffsetCommitValue {
            offset: r.i64()?,
            leader_epoch: -1,
            metadata: r.str()?,
            commit_timestamp: r.i64()?,
            expire_timestamp: Some(r.i64()?),
        },
        3 => OffsetCommitValue {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.str()?,
            commit_timestamp: r.i64()?,
            expire_timestamp: None,
        },
        version => return Err(RecordError::UnknownValueVersion { kind: "offset commit", version }),
    };
    r.finish()?;
    Ok(value)
}

/// Decodes a group metadata value, versions 0..=3.
pub fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion { kind: "group metadata", version });
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let at = r.pos;
    let count = r.i32()?;
    if count < 0 {
        return Err(RecordError::InvalidLength { at, len: count as i64 });
    }
    // Every member takes at least 20 bytes, so a count larger than that is a lie: refuse it
    // before allocating.
    let remaining = bytes.len() - r.pos;
    if count as usize > remaining / 20 {
        return Err(RecordError::InvalidLength { at, len: count as i64 });
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 { r.nullable_str()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let session_or_rebalance = r.i32()?;
        let (rebalance_timeout_ms, session_timeout_ms) =
            if version >= 1 { (session_or_rebalance, r.i32()?) } else { (session_or_rebalance, session_or_rebalance) };
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    r.finish()?;
    Ok(GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
}

/// Decodes a whole record: the key decides how the value is read. A `None` value is a tombstone.
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<(RecordKey, Option<RecordValue>), RecordError> {
    let key = decode_key(key)?;
    let value = match (value, &key) {
        (None, _) => None,
        (Some(v), RecordKey::OffsetCommit { .. }) => Some(RecordValue::OffsetCommit(decode_offset_commit_value(v)?)),
        (Some(v), RecordKey::GroupMetadata { .. }) => Some(RecordValue::GroupMetadata(decode_group_metadata_value(v)?)),
    };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_key_layout_is_kafkas() {
        let k = encode_key(&RecordKey::OffsetCommit { group: "g".into(), topic: "t".into(), partition: 7 });
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        let k = encode_key(&RecordKey::GroupMetadata { group: "g".into() });
        assert_eq!(&k[..], &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn offset_value_layout_is_kafkas() {
        let v = encode_offset_commit_value(&OffsetCommitValue {
            offset: 5,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 9,
            expire_timestamp: None,
        });
        let expected: Vec<u8> =
            [&[0u8, 3][..], &5i64.to_be_bytes(), &(-1i32).to_be_bytes(), &[0, 1, b'm'], &9i64.to_be_bytes()].concat();
        assert_eq!(&v[..], &expected[..]);
    }

    #[test]
    fn group_value_layout_is_kafkas() {
        let v = encode_group_metadata_value(&GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 2,
            members: vec![MemberMetadataValue {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 3,
                session_timeout_ms: 4,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::new(),
            }],
        });
        let expected: Vec<u8> = [
            &[0u8, 3, 0, 8][..],
            b"consumer",
            &1i32.to_be_bytes(),
            &[0, 5],
            b"range",
            &[0xff, 0xff],
            &2i64.to_be_bytes(),
            &1i32.to_be_bytes(),
            &[0, 1, b'm', 0xff, 0xff, 0, 1, b'c', 0, 2, b'/', b'h'],
            &3i32.to_be_bytes(),
            &4i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            b"s",
            &0i32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(&v[..], &expected[..]);
    }

    #[test]
    fn decodes_older_versions() {
        // Offset commit value v1 (with expire timestamp).
        let v1: Vec<u8> =
            [&[0u8, 1][..], &10i64.to_be_bytes(), &[0, 0], &11i64.to_be_bytes(), &12i64.to_be_bytes()].concat();
        let d = decode_offset_commit_value(&v1).unwrap();
        assert_eq!((d.offset, d.leader_epoch, d.commit_timestamp, d.expire_timestamp), (10, -1, 11, Some(12)));
        // Group metadata value v0: no rebalance timeout, no state timestamp, no instance id.
        let v0: Vec<u8> = [
            &[0u8, 0, 0, 1, b'p'][..],
            &3i32.to_be_bytes(),
            &[0xff, 0xff, 0xff, 0xff],
            &1i32.to_be_bytes(),
            &[0, 1, b'm', 0, 1, b'c', 0, 1, b'h'],
            &7i32.to_be_bytes(),
            &0i32.to_be_bytes(),
            &0i32.to_be_bytes(),
        ]
        .concat();
        let g = decode_group_metadata_value(&v0).unwrap();
        assert_eq!(g.generation, 3);
        assert_eq!(g.current_state_timestamp, -1);
        assert_eq!(g.members[0].session_timeout_ms, 7);
        assert_eq!(g.members[0].rebalance_timeout_ms, 7);
    }

    #[test]
    fn rejects_bad_bytes() {
        assert!(matches!(decode_key(&[]), Err(RecordError::Truncated { .. })));
        assert_eq!(decode_key(&[0, 9]), Err(RecordError::UnknownKeyVersion(9)));
        assert!(matches!(decode_key(&[0, 2, 0xff, 0xfe]), Err(RecordError::InvalidLength { .. })));
        assert!(matches!(decode_key(&[0, 2, 0xff, 0xff]), Err(RecordError::UnexpectedNull { .. })));
        assert!(matches!(decode_key(&[0, 2, 0, 1, 0xff]), Err(RecordError::InvalidUtf8 { .. })));
        assert_eq!(decode_key(&[0, 2, 0, 0, 1]), Err(RecordError::TrailingBytes(1)));
        // A member count that cannot fit is refused before allocation.
        let huge: Vec<u8> = [
            &[0u8, 3, 0, 0][..],
            &0i32.to_be_bytes(),
            &[0xff, 0xff, 0xff, 0xff],
            &0i64.to_be_bytes(),
            &i32::MAX.to_be_bytes(),
        ]
        .concat();
        assert!(matches!(decode_group_metadata_value(&huge), Err(RecordError::InvalidLength { .. })));
    }

    #[test]
    fn overlong_strings_are_truncated_not_corrupting() {
        let long = "é".repeat(20_000); // 40,000 bytes
        let k = encode_key(&RecordKey::GroupMetadata { group: long });
        let RecordKey::GroupMetadata { group } = decode_key(&k).unwrap() else { panic!() };
        assert!(group.len() <= MAX_STR);
    }

    fn string() -> impl Strategy<Value = String> {
        ".{0,20}"
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn member() -> impl Strategy<Value = MemberMetadataValue> {
        (string(), proptest::option::of(string()), string(), string(), any::<i32>(), any::<i32>(), bytes(), bytes())
            .prop_map(|(member_id, group_instance_id, client_id, client_host, r, s, subscription, assignment)| {
                MemberMetadataValue {
                    member_id,
                    group_instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout_ms: r,
                    session_timeout_ms: s,
                    subscription,
                    assignment,
                }
            })
    }

    proptest! {
        #[test]
        fn key_round_trip(group in string(), topic in string(), partition in any::<i32>(), offset_key in any::<bool>()) {
            let key = if offset_key {
                RecordKey::OffsetCommit { group, topic, partition }
            } else {
                RecordKey::GroupMetadata { group }
            };
            prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }

        #[test]
        fn offset_value_round_trip(offset in any::<i64>(), leader_epoch in any::<i32>(), metadata in string(), ts in any::<i64>()) {
            let v = OffsetCommitValue { offset, leader_epoch, metadata, commit_timestamp: ts, expire_timestamp: None };
            prop_assert_eq!(decode_offset_commit_value(&encode_offset_commit_value(&v)).unwrap(), v);
        }

        #[test]
        fn group_value_round_trip(
            protocol_type in string(),
            generation in any::<i32>(),
            protocol in proptest::option::of(string()),
            leader in proptest::option::of(string()),
            ts in any::<i64>(),
            members in proptest::collection::vec(member(), 0..5),
        ) {
            let v = GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp: ts, members };
            prop_assert_eq!(decode_group_metadata_value(&encode_group_metadata_value(&v)).unwrap(), v);
        }

        #[test]
        fn decode_never_panics(key in proptest::collection::vec(any::<u8>(), 0..64), value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256))) {
            let _ = decode_key(&key);
            let _ = decode_offset_commit_value(&key);
            let _ = decode_group_metadata_value(&key);
            if let Some(v) = &value {
                let _ = decode_offset_commit_value(v);
                let _ = decode_group_metadata_value(v);
            }
            let _ = decode_record(&key, value.as_deref());
        }

        #[test]
        fn decode_never_panics_on_mutated_valid_records(
            members in proptest::collection::vec(member(), 0..3),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let v = GroupMetadataValue { protocol_type: "consumer".into(), generation: 1, protocol: Some("range".into()), leader: None, current_state_timestamp: 0, members };
            let mut raw = encode_group_metadata_value(&v).to_vec();
            for (i, b) in flips {
                let i = i.index(raw.len());
                raw[i] = b;
            }
            let end = cut.index(raw.len() + 1);
            let _ = decode_group_metadata_value(&raw[..end]);
            let _ = decode_group_metadata_value(&raw);
        }
    }
}
