//! `group list|describe|delete|reset-offsets|delete-offsets`: consumer group
//! administration, like Kafka's `kafka-consumer-groups.sh`.
//!
//! Group requests go to the group's coordinator (FindCoordinator); log
//! offsets come from the partition leaders (ListOffsets).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{json, Value};

use crate::client::{describe_error, error_name, KafkaConnection};
use crate::cluster::Cluster;
use crate::topic::{build_list_offsets_request, topic_name, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

/// Kafka error codes this module reacts to.
pub mod codes {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

/// FindCoordinator key type of consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// Attempts for requests answered with a retriable coordinator error.
const COORDINATOR_ATTEMPTS: u32 = 20;
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);
/// The message printed when an admin commit is refused because members are active.
pub const GROUP_ACTIVE_MSG: &str = "group is active; stop its consumers first";

// --- command line ------------------------------------------------------------------------------

/// `ringbroker group ...`
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The `group` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups: id, protocol type, state.
    List,
    /// Show a group's state, members, and per partition the committed
    /// offset, log end offset, lag and owning member.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete groups (only groups without active members can be deleted).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (default) or commit (--execute) new committed offsets for a group.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete committed offsets of a group.
    DeleteOffsets {
        /// Group id.
        group: String,
        /// TOPIC (all partitions) or TOPIC:P[,P...] (repeatable).
        #[arg(long = "topic", value_name = "TOPIC[:P,...]", required = true, value_parser = parse_topic_partitions)]
        topics: Vec<TopicPartitions>,
    },
}

/// `group reset-offsets` arguments.
#[derive(clap::Args, Debug)]
pub struct ResetOffsetsArgs {
    /// Group id.
    pub group: String,
    /// TOPIC (all partitions) or TOPIC:P[,P...] (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:P,...]", value_parser = parse_topic_partitions, required_unless_present = "all_topics")]
    pub topics: Vec<TopicPartitions>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    pub all_topics: bool,
    #[command(flatten)]
    pub to: ResetTo,
    /// Commit the new offsets (default: only print the plan).
    #[arg(long)]
    pub execute: bool,
    /// Only print the plan (the default; for symmetry with Kafka's tool).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
}

/// Where to reset to: exactly one of these.
#[derive(clap::Args, Debug, Default)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// The log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset (clamped to the log's range).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// The committed offset plus N (N may be negative; clamped).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// The first offset with a timestamp at or after this time:
    /// YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+HH:MM|-HH:MM], UTC if no zone is given.
    #[arg(long, value_name = "ISO8601")]
    pub to_datetime: Option<String>,
    /// The first offset with a timestamp at or after now minus this duration:
    /// ISO 8601 (PT30M, P1DT2H, P2W) or NUMBER+UNIT (500ms, 30s, 15m, 2h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub by_duration: Option<String>,
}

/// A `--topic` argument: a topic and optionally some of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    /// `None`: every partition of the topic.
    pub partitions: Option<Vec<i32>>,
}

/// Parse `TOPIC` or `TOPIC:P[,P...]`.
pub fn parse_topic_partitions(s: &str) -> Result<TopicPartitions, String> {
    let (topic, parts) = match s.split_once(':') {
        Some((t, p)) => (t.trim(), Some(p)),
        None => (s.trim(), None),
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P[,P...], got {s:?}"));
    }
    let partitions = match parts {
        None => None,
        Some(p) => {
            let mut ids = BTreeSet::new();
            for item in p.split(',') {
                let item = item.trim();
                match item.parse::<i32>() {
                    Ok(n) if n >= 0 => {
                        ids.insert(n);
                    }
                    _ => return Err(format!("invalid partition {item:?} in {s:?}: expected non-negative integers")),
                }
            }
            Some(ids.into_iter().collect())
        }
    };
    Ok(TopicPartitions { topic: topic.to_string(), partitions })
}

/// A resolved reset target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStrategy {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl ResetTo {
    /// The strategy these flags select; `now_ms` anchors `--by-duration`.
    pub fn strategy(&self, now_ms: i64) -> Result<ResetStrategy> {
        if self.to_earliest {
            Ok(ResetStrategy::Earliest)
        } else if self.to_latest {
            Ok(ResetStrategy::Latest)
        } else if let Some(n) = self.to_offset {
            Ok(ResetStrategy::Offset(n))
        } else if let Some(n) = self.shift_by {
            Ok(ResetStrategy::ShiftBy(n))
        } else if let Some(s) = &self.to_datetime {
            Ok(ResetStrategy::Timestamp(parse_datetime_ms(s).map_err(|e| anyhow!("--to-datetime: {e}"))?))
        } else if let Some(s) = &self.by_duration {
            let d = parse_duration_ms(s).map_err(|e| anyhow!("--by-duration: {e}"))?;
            Ok(ResetStrategy::Timestamp(now_ms.saturating_sub(d).max(0)))
        } else {
            bail!(
                "one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, --by-duration is required"
            )
        }
    }
}

// --- pure helpers ------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid {what} {s:?}"));
    }
    s.parse().map_err(|_| format!("invalid {what} {s:?}"))
}

/// Parse an ISO 8601 date-time into ms since the epoch:
/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH[:MM]]`. Without a zone, UTC.
pub fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("invalid date-time {s:?}: expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]");
    if s.len() < 10 || !s.is_char_boundary(10) {
        return Err(bad());
    }
    let (date, rest) = s.split_at(10);
    let dp: Vec<&str> = date.split('-').collect();
    if dp.len() != 3 || dp[0].len() != 4 || dp[1].len() != 2 || dp[2].len() != 2 {
        return Err(bad());
    }
    let year = i64::from(num(dp[0], "year")?);
    let month = num(dp[1], "month")?;
    let day = num(dp[2], "day")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("invalid date {date:?}"));
    }
    // Split the zone designator off the time part.
    let (time, zone) = match rest.find(['Z', 'z', '+']).or_else(|| rest.rfind('-')) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut ms = 0i64;
    if !time.is_empty() {
        let time = time.strip_prefix(['T', 't', ' ']).ok_or_else(bad)?;
        let (hms, frac) = match time.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (time, None),
        };
        let tp: Vec<&str> = hms.split(':').collect();
        if !(2..=3).contains(&tp.len()) || tp.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let (h, m) = (num(tp[0], "hour")?, num(tp[1], "minute")?);
        let sec = if tp.len() == 3 { num(tp[2], "second")? } else { 0 };
        if h > 23 || m > 59 || sec > 59 {
            return Err(format!("invalid time {time:?}"));
        }
        let frac_ms = match frac {
            None => 0,
            Some(f) if tp.len() == 3 && !f.is_empty() && f.len() <= 9 => {
                let digits = format!("{f:0<3}");
                num(&digits[..3], "fraction")?
            }
            Some(_) => return Err(bad()),
        };
        ms = i64::from(h) * 3_600_000 + i64::from(m) * 60_000 + i64::from(sec) * 1000 + i64::from(frac_ms);
    } else if !zone.is_empty() {
        return Err(bad());
    }
    let offset_ms = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let body = &z[1..];
            let (hh, mm) = match body.len() {
                2 => (body, "00"),
                4 => (&body[..2], &body[2..]),
                5 if body.as_bytes()[2] == b':' => (&body[..2], &body[3..]),
                _ => return Err(bad()),
            };
            let (hh, mm) = (num(hh, "zone hour")?, num(mm, "zone minute")?);
            if hh > 18 || mm > 59 {
                return Err(format!("invalid zone offset {z:?}"));
            }
            sign * (i64::from(hh) * 3_600_000 + i64::from(mm) * 60_000)
        }
    };
    Ok(days_from_civil(year, month, day) * 86_400_000 + ms - offset_ms)
}

/// Parse a duration into ms: ISO 8601 (`PnW`, `PnDTnHnMn.nS`, any subset) or
/// NUMBER+UNIT (`ms`, `s`, `m`, `h`, `d`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("invalid duration {s:?}: expected e.g. PT30M, P1DT2H, 90s, 15m, 2h, 7d");
    let upper = s.to_ascii_uppercase();
    if let Some(body) = upper.strip_prefix('P') {
        let (date, time) = match body.split_once('T') {
            Some((d, t)) => {
                if t.is_empty() {
                    return Err(bad());
                }
                (d, t)
            }
            None => (body, ""),
        };
        if date.is_empty() && time.is_empty() {
            return Err(bad());
        }
        let mut total = 0f64;
        for (part, units) in [
            (date, &[('W', 604_800_000f64), ('D', 86_400_000f64)][..]),
            (time, &[('H', 3_600_000f64), ('M', 60_000f64), ('S', 1000f64)][..]),
        ] {
            let mut rest = part;
            let mut next_unit = 0;
            while !rest.is_empty() {
                let i = rest.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?;
                let (n, u) = (&rest[..i], rest.as_bytes()[i] as char);
                let pos = units.iter().position(|(c, _)| *c == u).ok_or_else(bad)?;
                if pos < next_unit || n.is_empty() || n.starts_with(['+', '-']) {
                    return Err(bad());
                }
                let v: f64 = n.parse().map_err(|_| bad())?;
                if u != 'S' && n.contains('.') {
                    return Err(bad());
                }
                total += v * units[pos].1;
                next_unit = pos + 1;
                rest = &rest[i + 1..];
            }
        }
        if total > i64::MAX as f64 / 2.0 {
            return Err(format!("duration {s:?} too large"));
        }
        return Ok(total.round() as i64);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(|| format!("duration {s:?} too large"))
}

/// Clamp `offset` into `[log_start, log_end]`, as Kafka's tool does.
pub fn clamp_offset(offset: i64, log_start: i64, log_end: i64) -> i64 {
    offset.min(log_end).max(log_start)
}

/// The new committed offset of one partition.
///
/// `committed` is the current committed offset (`None` if there is none),
/// `at_time` the ListOffsets answer for a `Timestamp` strategy (`-1` or
/// `None`: no record that late, so the log end).
pub fn plan_offset(
    strategy: ResetStrategy,
    committed: Option<i64>,
    log_start: i64,
    log_end: i64,
    at_time: Option<i64>,
) -> Result<i64, String> {
    let target = match strategy {
        ResetStrategy::Earliest => log_start,
        ResetStrategy::Latest => log_end,
        ResetStrategy::Offset(n) => n,
        ResetStrategy::ShiftBy(n) => match committed {
            Some(c) => c.saturating_add(n),
            None => return Err("no committed offset to shift".to_string()),
        },
        ResetStrategy::Timestamp(_) => match at_time {
            Some(o) if o >= 0 => o,
            _ => log_end,
        },
    };
    Ok(clamp_offset(target, log_start, log_end))
}

/// Lag of a partition: log end minus committed offset, when both are known.
pub fn lag(committed: Option<i64>, log_end: Option<i64>) -> Option<i64> {
    match (committed, log_end) {
        (Some(c), Some(e)) if c >= 0 => Some(e - c),
        _ => None,
    }
}

/// Decode a member's assignment (consumer protocol: version, then
/// ConsumerProtocolAssignment) into (topic, partitions), sorted by topic.
/// Empty bytes (a member that has not synced yet) assign nothing.
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        bail!("truncated consumer protocol assignment");
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("invalid consumer protocol assignment version {version}");
    }
    // Newer versions only append fields: read them as the newest one we know.
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.min(3))
        .context("decoding consumer protocol assignment")?;
    let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        by_topic.entry(tp.topic.to_string()).or_default().extend(tp.partitions);
    }
    Ok(by_topic.into_iter().map(|(t, ps)| (t, ps.into_iter().collect())).collect())
}

/// Left-aligned columns separated by two spaces; no trailing whitespace.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// One line of `group describe`'s offsets table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
    /// Index into the members of the owning member.
    pub owner: Option<usize>,
}

/// Merge committed offsets, member assignments and log end offsets into rows
/// sorted by topic and partition: every committed or assigned partition.
pub fn offset_rows(
    committed: &BTreeMap<(String, i32), i64>,
    members: &[MemberInfo],
    log_ends: &BTreeMap<(String, i32), i64>,
) -> Vec<OffsetRow> {
    let mut owners: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for (t, ps) in &m.assignment {
            for &p in ps {
                owners.entry((t.clone(), p)).or_insert(i);
            }
        }
    }
    let keys: BTreeSet<&(String, i32)> = committed.keys().chain(owners.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let c = committed.get(k).copied().filter(|&o| o >= 0);
            let e = log_ends.get(k).copied();
            OffsetRow {
                topic: k.0.clone(),
                partition: k.1,
                committed: c,
                log_end: e,
                lag: lag(c, e),
                owner: owners.get(k).copied(),
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn retriable_coordinator_error(code: i16) -> bool {
    matches!(code, codes::COORDINATOR_LOAD_IN_PROGRESS | codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR)
}

/// Why an admin commit failed, for humans.
pub fn commit_error_hint(code: i16) -> Option<&'static str> {
    match code {
        codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION | codes::REBALANCE_IN_PROGRESS => Some(GROUP_ACTIVE_MSG),
        _ => None,
    }
}

fn group_error_hint(code: i16) -> &'static str {
    match code {
        codes::NON_EMPTY_GROUP => ": the group has active members; stop its consumers first",
        codes::GROUP_ID_NOT_FOUND => ": no such group",
        codes::GROUP_SUBSCRIBED_TO_TOPIC => ": active members of the group subscribe to this topic",
        _ => "",
    }
}

// --- requests ----------------------------------------------------------------------------------

/// Cluster plus coordinator lookup.
struct Admin {
    cluster: Cluster,
    coordinators: BTreeMap<String, i32>,
}

impl Admin {
    fn connect(bootstrap: &str) -> Result<Admin> {
        let mut cluster = Cluster::connect(bootstrap)?;
        cluster.metadata(Some(&[]))?;
        Ok(Admin { cluster, coordinators: BTreeMap::new() })
    }

    fn find_coordinator(&mut self, group: &str) -> Result<i32> {
        if let Some(&id) = self.coordinators.get(group) {
            return Ok(id);
        }
        let conn = self.cluster.bootstrap();
        let version = conn.version_of::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = KEY_TYPE_GROUP;
        if version >= 4 {
            req.coordinator_keys = vec![sb(group)];
        } else {
            req.key = sb(group);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.cluster.bootstrap().send_version(&req, version).context("FindCoordinator")?;
            let (code, msg, node) = if version >= 4 {
                let c = resp.coordinators.first().context("empty FindCoordinator response")?;
                (c.error_code, c.error_message.as_ref().map(|m| m.to_string()), c.node_id.0)
            } else {
                (resp.error_code, resp.error_message.as_ref().map(|m| m.to_string()), resp.node_id.0)
            };
            if code == 0 {
                self.coordinators.insert(group.to_string(), node);
                return Ok(node);
            }
            if retriable_coordinator_error(code) && attempt < COORDINATOR_ATTEMPTS {
                std::thread::sleep(COORDINATOR_BACKOFF);
                continue;
            }
            bail!("finding the coordinator of group {group}: {}", describe_error(code, msg.as_deref()));
        }
    }

    /// Run `f` on the coordinator of `group`. `f` returns the response's
    /// group-level error code alongside its value; retriable coordinator
    /// errors are retried after looking the coordinator up again.
    fn on_coordinator<T>(
        &mut self,
        group: &str,
        mut f: impl FnMut(&mut KafkaConnection) -> Result<(i16, T)>,
    ) -> Result<(i16, T)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self.find_coordinator(group)?;
            let (code, v) = f(self.cluster.node(node)?)?;
            if retriable_coordinator_error(code) && attempt < COORDINATOR_ATTEMPTS {
                self.coordinators.remove(group);
                std::thread::sleep(COORDINATOR_BACKOFF);
                continue;
            }
            return Ok((code, v));
        }
    }

    fn list_groups(&mut self) -> Result<Vec<(String, String, String)>> {
        let mut ids = self.cluster.broker_ids();
        if ids.is_empty() {
            ids.push(-1);
        }
        let mut all: BTreeMap<String, (String, String)> = BTreeMap::new();
        for id in ids {
            let conn = if id < 0 { self.cluster.bootstrap() } else { self.cluster.node(id)? };
            let req = ListGroupsRequest::default();
            let resp = conn.send(&req).context("ListGroups")?;
            if resp.error_code != 0 {
                bail!("ListGroups on {}: {}", conn.addr(), describe_error(resp.error_code, None));
            }
            for g in resp.groups {
                all.insert(g.group_id.to_string(), (g.protocol_type.to_string(), g.group_state.to_string()));
            }
        }
        Ok(all.into_iter().map(|(g, (pt, st))| (g, pt, st)).collect())
    }

    fn describe_group(&mut self, group: &str) -> Result<DescribedGroup> {
        let (code, d) = self.on_coordinator(group, |conn| {
            let mut req = DescribeGroupsRequest::default();
            req.groups = vec![GroupId(sb(group))];
            let resp = conn.send(&req).context("DescribeGroups")?;
            let g = resp.groups.into_iter().next().context("empty DescribeGroups response")?;
            Ok((g.error_code, g))
        })?;
        if code != 0 {
            bail!("describing group {group}: {}", describe_error(code, d.error_message.as_deref()));
        }
        let protocol_type = d.protocol_type.to_string();
        let mut members = Vec::new();
        for m in &d.members {
            let assignment = if protocol_type == "consumer" {
                decode_assignment(&m.member_assignment)
                    .with_context(|| format!("member {} of group {group}", m.member_id.as_str()))?
            } else {
                Vec::new()
            };
            members.push(MemberInfo {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
            });
        }
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(DescribedGroup {
            group: group.to_string(),
            state: d.group_state.to_string(),
            protocol_type,
            protocol: d.protocol_data.to_string(),
            members,
        })
    }

    /// Every committed offset of `group`.
    fn committed_offsets(&mut self, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let (code, rows) = self.on_coordinator(group, |conn| {
            let version = conn.version_of::<OffsetFetchRequest>()?;
            if version < 2 {
                bail!("the broker's OffsetFetch v{version} cannot list all offsets of a group (v2+ needed)");
            }
            let mut req = OffsetFetchRequest::default();
            let mut rows = Vec::new();
            if version >= 8 {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = GroupId(sb(group));
                g.topics = None;
                req.groups = vec![g];
                let resp = conn.send_version(&req, version).context("OffsetFetch")?;
                let g = resp.groups.into_iter().next().context("empty OffsetFetch response")?;
                if g.error_code != 0 {
                    return Ok((g.error_code, rows));
                }
                for t in g.topics {
                    for p in t.partitions {
                        rows.push((t.name.to_string(), p.partition_index, p.committed_offset, p.error_code));
                    }
                }
            } else {
                req.group_id = GroupId(sb(group));
                req.topics = None;
                let resp = conn.send_version(&req, version).context("OffsetFetch")?;
                if resp.error_code != 0 {
                    return Ok((resp.error_code, rows));
                }
                for t in resp.topics {
                    for p in t.partitions {
                        rows.push((t.name.to_string(), p.partition_index, p.committed_offset, p.error_code));
                    }
                }
            }
            Ok((0, rows))
        })?;
        if code != 0 {
            bail!("fetching committed offsets of group {group}: {}", describe_error(code, None));
        }
        let mut out = BTreeMap::new();
        for (t, p, o, e) in rows {
            if e != 0 {
                bail!("fetching committed offset of {t}-{p} for group {group}: {}", describe_error(e, None));
            }
            if o >= 0 {
                out.insert((t, p), o);
            }
        }
        Ok(out)
    }

    /// Offsets at `timestamp` of `partitions` of `topic`, per partition the
    /// offset or the error (unknown topic, no leader, ...).
    fn offsets_at(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, Result<i64, String>>> {
        let mut out = BTreeMap::new();
        let info = match self.cluster.topic(topic) {
            Ok(i) => i,
            Err(e) => {
                let e = format!("{e:#}");
                return Ok(partitions.iter().map(|&p| (p, Err(e.clone()))).collect());
            }
        };
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            match info.partitions.iter().find(|pi| pi.id == p) {
                None => {
                    out.insert(p, Err(format!("topic {topic} has no partition {p}")));
                }
                Some(pi) if pi.leader < 0 => {
                    out.insert(p, Err(format!("{topic}-{p}: no leader")));
                }
                Some(pi) => by_leader.entry(pi.leader).or_default().push(p),
            }
        }
        for (leader, parts) in by_leader {
            let req: ListOffsetsRequest = build_list_offsets_request(topic, &parts, timestamp);
            let resp = self.cluster.node(leader)?.send(&req).context("ListOffsets")?;
            for t in &resp.topics {
                for p in &t.partitions {
                    let r = if p.error_code != 0 {
                        Err(format!(
                            "ListOffsets {topic}-{}: {}",
                            p.partition_index,
                            describe_error(p.error_code, None)
                        ))
                    } else {
                        Ok(p.offset)
                    };
                    out.insert(p.partition_index, r);
                }
            }
            for p in parts {
                out.entry(p).or_insert_with(|| Err(format!("ListOffsets response lacks {topic}-{p}")));
            }
        }
        Ok(out)
    }

    /// Partition ids of `topic` from Metadata.
    fn partitions_of(&mut self, topic: &str) -> Result<Vec<i32>> {
        Ok(self.cluster.topic(topic)?.partitions.iter().map(|p| p.id).collect())
    }
}

/// A group as DescribeGroups reports it, assignments decoded.
#[derive(Debug, Clone)]
pub struct DescribedGroup {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberInfo>,
}

// --- subcommands -------------------------------------------------------------------------------

pub fn run(bootstrap: &str, args: GroupArgs) -> Result<()> {
    let stdout = std::io::stdout();
    run_to(bootstrap, args, &mut stdout.lock())
}

/// Run a group command, writing its output to `out`.
pub fn run_to(bootstrap: &str, args: GroupArgs, out: &mut impl Write) -> Result<()> {
    let mut admin = Admin::connect(bootstrap)?;
    let json = args.json;
    match args.command {
        GroupCommand::List => list(&mut admin, json, out),
        GroupCommand::Describe { group } => describe(&mut admin, &group, json, out),
        GroupCommand::Delete { groups } => delete(&mut admin, &groups, json, out),
        GroupCommand::ResetOffsets(a) => reset_offsets(&mut admin, &a, json, out),
        GroupCommand::DeleteOffsets { group, topics } => delete_offsets(&mut admin, &group, &topics, json, out),
    }
}

fn write_json(out: &mut impl Write, v: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn list(admin: &mut Admin, json: bool, out: &mut impl Write) -> Result<()> {
    let groups = admin.list_groups()?;
    if json {
        let v: Vec<Value> =
            groups.iter().map(|(g, pt, st)| json!({"group": g, "protocol_type": pt, "state": st})).collect();
        return write_json(out, &Value::Array(v));
    }
    let rows: Vec<Vec<String>> = groups.iter().map(|(g, pt, st)| vec![g.clone(), dash(pt), dash(st)]).collect();
    out.write_all(render_table(&["GROUP", "PROTOCOL-TYPE", "STATE"], &rows).as_bytes())?;
    Ok(())
}

fn describe(admin: &mut Admin, group: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let d = admin.describe_group(group)?;
    let committed = admin.committed_offsets(group)?;
    if d.state == "Dead" && d.members.is_empty() && committed.is_empty() {
        bail!("group {group} does not exist ({})", error_name(codes::GROUP_ID_NOT_FOUND));
    }
    // Log end offsets of every committed or assigned partition.
    let mut wanted: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (t, p) in committed.keys() {
        wanted.entry(t.clone()).or_default().insert(*p);
    }
    for m in &d.members {
        for (t, ps) in &m.assignment {
            wanted.entry(t.clone()).or_default().extend(ps);
        }
    }
    let mut log_ends = BTreeMap::new();
    for (t, ps) in &wanted {
        let ps: Vec<i32> = ps.iter().copied().collect();
        for (p, r) in admin.offsets_at(t, &ps, LATEST_TIMESTAMP)? {
            if let Ok(o) = r {
                log_ends.insert((t.clone(), p), o);
            }
        }
    }
    let rows = offset_rows(&committed, &d.members, &log_ends);

    if json {
        let members: Vec<Value> = d
            .members
            .iter()
            .map(|m| {
                json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "assignment": m.assignment.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let offsets: Vec<Value> = rows
            .iter()
            .map(|r| {
                let m = r.owner.map(|i| &d.members[i]);
                json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "committed_offset": r.committed,
                    "log_end_offset": r.log_end,
                    "lag": r.lag,
                    "consumer_id": m.map(|m| &m.member_id),
                    "host": m.map(|m| &m.host),
                    "client_id": m.map(|m| &m.client_id),
                })
            })
            .collect();
        return write_json(
            out,
            &json!({
                "group": d.group,
                "state": d.state,
                "protocol_type": d.protocol_type,
                "protocol": d.protocol,
                "members": members,
                "offsets": offsets,
            }),
        );
    }

    let summary = vec![vec![
        d.group.clone(),
        dash(&d.state),
        dash(&d.protocol_type),
        dash(&d.protocol),
        d.members.len().to_string(),
    ]];
    out.write_all(render_table(&["GROUP", "STATE", "PROTOCOL-TYPE", "PROTOCOL", "MEMBERS"], &summary).as_bytes())?;
    writeln!(out)?;
    if rows.is_empty() {
        writeln!(out, "Group {group} has no committed offsets and no assigned partitions.")?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let m = r.owner.map(|i| &d.members[i]);
                vec![
                    d.group.clone(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    opt(r.committed),
                    opt(r.log_end),
                    opt(r.lag),
                    m.map_or_else(|| "-".to_string(), |m| m.member_id.clone()),
                    m.map_or_else(|| "-".to_string(), |m| dash(&m.host)),
                    m.map_or_else(|| "-".to_string(), |m| dash(&m.client_id)),
                ]
            })
            .collect();
        out.write_all(
            render_table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ],
                &table,
            )
            .as_bytes(),
        )?;
    }
    if !d.members.is_empty() {
        writeln!(out)?;
        let table: Vec<Vec<String>> = d
            .members
            .iter()
            .map(|m| {
                let n: usize = m.assignment.iter().map(|(_, ps)| ps.len()).sum();
                let a = m
                    .assignment
                    .iter()
                    .map(|(t, ps)| format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    m.member_id.clone(),
                    m.group_instance_id.clone().unwrap_or_else(|| "-".to_string()),
                    dash(&m.host),
                    dash(&m.client_id),
                    n.to_string(),
                    dash(&a),
                ]
            })
            .collect();
        out.write_all(
            render_table(
                &["CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"],
                &table,
            )
            .as_bytes(),
        )?;
    } else if d.state == "Empty" {
        writeln!(out, "\nGroup {group} has no active members.")?;
    }
    Ok(())
}

fn delete(admin: &mut Admin, groups: &[String], json: bool, out: &mut impl Write) -> Result<()> {
    let mut results: Vec<(String, i16)> = Vec::new();
    for g in groups {
        let (code, _) = admin.on_coordinator(g, |conn| {
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(sb(g))];
            let resp = conn.send(&req).context("DeleteGroups")?;
            let r = resp
                .results
                .iter()
                .find(|r| r.group_id.as_str() == g)
                .or(resp.results.first())
                .context("empty DeleteGroups response")?;
            Ok((r.error_code, ()))
        })?;
        results.push((g.clone(), code));
    }
    if json {
        let v: Vec<Value> = results
            .iter()
            .map(|(g, c)| {
                json!({
                    "group": g,
                    "deleted": *c == 0,
                    "error": (*c != 0).then(|| error_name(*c)),
                    "error_code": c,
                })
            })
            .collect();
        write_json(out, &Value::Array(v))?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|(g, c)| {
                let status = if *c == 0 { "deleted".to_string() } else { describe_error(*c, None) };
                vec![g.clone(), status]
            })
            .collect();
        out.write_all(render_table(&["GROUP", "RESULT"], &rows).as_bytes())?;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, c)| *c != 0)
        .map(|(g, c)| format!("group {g}: {}{}", describe_error(*c, None), group_error_hint(*c)))
        .collect();
    if !failed.is_empty() {
        bail!("could not delete {} of {} groups: {}", failed.len(), results.len(), failed.join("; "));
    }
    Ok(())
}

/// One partition of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanRow {
    topic: String,
    partition: i32,
    current: Option<i64>,
    new: i64,
    error: i16,
}

/// Resolve `--topic` specs (or `--all-topics`) into (topic, partitions).
fn target_partitions(
    admin: &mut Admin,
    specs: &[TopicPartitions],
    all_topics: bool,
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut targets: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    if all_topics {
        for (t, p) in committed.keys() {
            targets.entry(t.clone()).or_default().insert(*p);
        }
        // Every partition of those topics, not only the committed ones.
        let topics: Vec<String> = targets.keys().cloned().collect();
        for t in topics {
            let parts = admin.partitions_of(&t)?;
            targets.get_mut(&t).expect("present").extend(parts);
        }
    }
    for s in specs {
        let all = admin.partitions_of(&s.topic)?;
        let parts = match &s.partitions {
            None => all,
            Some(ps) => {
                if let Some(p) = ps.iter().find(|p| !all.contains(p)) {
                    bail!("topic {} has no partition {p} (it has {})", s.topic, all.len());
                }
                ps.clone()
            }
        };
        targets.entry(s.topic.clone()).or_default().extend(parts);
    }
    Ok(targets.into_iter().map(|(t, ps)| (t, ps.into_iter().collect())).collect())
}

fn reset_offsets(admin: &mut Admin, a: &ResetOffsetsArgs, json: bool, out: &mut impl Write) -> Result<()> {
    let group = a.group.as_str();
    let strategy = a.to.strategy(now_ms())?;
    let d = admin.describe_group(group)?;
    let committed = admin.committed_offsets(group)?;
    let targets = target_partitions(admin, &a.topics, a.all_topics, &committed)?;
    if targets.is_empty() {
        bail!("no partitions to reset (group {group} has no committed offsets for --all-topics)");
    }
    let mut plan = Vec::new();
    for (topic, parts) in &targets {
        let start = admin.offsets_at(topic, parts, EARLIEST_TIMESTAMP)?;
        let end = admin.offsets_at(topic, parts, LATEST_TIMESTAMP)?;
        let at_time = match strategy {
            ResetStrategy::Timestamp(ts) => Some(admin.offsets_at(topic, parts, ts)?),
            _ => None,
        };
        for &p in parts {
            let s = start[&p].clone().map_err(|e| anyhow!(e))?;
            let e = end[&p].clone().map_err(|e| anyhow!(e))?;
            let t = match &at_time {
                Some(m) => Some(m[&p].clone().map_err(|e| anyhow!(e))?),
                None => None,
            };
            let cur = committed.get(&(topic.clone(), p)).copied();
            let new = plan_offset(strategy, cur, s, e, t).map_err(|e| anyhow!("{topic}-{p}: {e}"))?;
            plan.push(PlanRow { topic: topic.clone(), partition: p, current: cur, new, error: 0 });
        }
    }

    let active = !matches!(d.state.as_str(), "Empty" | "Dead");
    if a.execute {
        let (_, per) = admin.on_coordinator(group, |conn| {
            let req = build_admin_commit(group, &plan);
            let resp = conn.send(&req).context("OffsetCommit")?;
            let mut per = BTreeMap::new();
            let mut first = 0;
            for t in &resp.topics {
                for p in &t.partitions {
                    per.insert((t.name.to_string(), p.partition_index), p.error_code);
                    if first == 0 {
                        first = p.error_code;
                    }
                }
            }
            // Retry only when every partition failed the same retriable way.
            let all_same = per.values().all(|&c| c == first);
            Ok((if all_same { first } else { 0 }, per))
        })?;
        for r in &mut plan {
            r.error = per.get(&(r.topic.clone(), r.partition)).copied().unwrap_or(0);
        }
    } else if active {
        let _ = writeln!(
            std::io::stderr(),
            "warning: group {group} is {} with {} member(s): --execute will be refused until its consumers stop",
            d.state,
            d.members.len()
        );
    }

    if json {
        let parts: Vec<Value> = plan
            .iter()
            .map(|r| {
                json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "current_offset": r.current,
                    "new_offset": r.new,
                    "error": (r.error != 0).then(|| error_name(r.error)),
                })
            })
            .collect();
        write_json(out, &json!({"group": group, "state": d.state, "executed": a.execute, "partitions": parts}))?;
    } else {
        let with_errors = plan.iter().any(|r| r.error != 0);
        let mut headers = vec!["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"];
        if with_errors {
            headers.push("ERROR");
        }
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|r| {
                let mut row = vec![
                    group.to_string(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    opt(r.current),
                    r.new.to_string(),
                ];
                if with_errors {
                    row.push(if r.error == 0 { "-".to_string() } else { error_name(r.error) });
                }
                row
            })
            .collect();
        out.write_all(render_table(&headers, &rows).as_bytes())?;
    }
    if !a.execute {
        let _ = writeln!(std::io::stderr(), "Dry run: nothing was committed. Add --execute to commit these offsets.");
    }

    let failed: Vec<&PlanRow> = plan.iter().filter(|r| r.error != 0).collect();
    if let Some(first) = failed.first() {
        if let Some(hint) = failed.iter().find_map(|r| commit_error_hint(r.error)) {
            let code = failed.iter().find(|r| commit_error_hint(r.error).is_some()).map_or(first.error, |r| r.error);
            bail!("{hint} (group {group} is {}; the broker answered {})", d.state, describe_error(code, None));
        }
        let list: Vec<String> =
            failed.iter().map(|r| format!("{}-{}: {}", r.topic, r.partition, describe_error(r.error, None))).collect();
        bail!("committing offsets of group {group} failed for {} partition(s): {}", failed.len(), list.join("; "));
    }
    Ok(())
}

/// OffsetCommit of `plan` as an admin: generation -1, no member id.
fn build_admin_commit(group: &str, plan: &[PlanRow]) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for r in plan {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = r.partition;
        p.committed_offset = r.new;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(sb(""));
        by_topic.entry(&r.topic).or_default().push(p);
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(sb(group));
    req.generation_id_or_member_epoch = -1;
    req.member_id = sb("");
    req.group_instance_id = None;
    req.retention_time_ms = -1;
    req.topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut ot = OffsetCommitRequestTopic::default();
            ot.name = topic_name(t);
            ot.partitions = ps;
            ot
        })
        .collect();
    req
}

/// OffsetDelete of `targets`.
pub fn build_offset_delete(group: &str, targets: &BTreeMap<String, Vec<i32>>) -> OffsetDeleteRequest {
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(sb(group));
    req.topics = targets
        .iter()
        .map(|(t, ps)| {
            let mut ot = OffsetDeleteRequestTopic::default();
            ot.name = topic_name(t);
            ot.partitions = ps
                .iter()
                .map(|&p| {
                    let mut op = OffsetDeleteRequestPartition::default();
                    op.partition_index = p;
                    op
                })
                .collect();
            ot
        })
        .collect();
    req
}

fn delete_offsets(
    admin: &mut Admin,
    group: &str,
    specs: &[TopicPartitions],
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let mut targets: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut committed: Option<BTreeMap<(String, i32), i64>> = None;
    for s in specs {
        let parts = match &s.partitions {
            Some(ps) => ps.clone(),
            None => match admin.partitions_of(&s.topic) {
                Ok(ps) => ps,
                // A deleted topic: its committed partitions.
                Err(e) => {
                    if committed.is_none() {
                        committed = Some(admin.committed_offsets(group)?);
                    }
                    let ps: Vec<i32> = committed
                        .as_ref()
                        .expect("set above")
                        .keys()
                        .filter(|(t, _)| *t == s.topic)
                        .map(|(_, p)| *p)
                        .collect();
                    if ps.is_empty() {
                        return Err(e);
                    }
                    ps
                }
            },
        };
        let entry = targets.entry(s.topic.clone()).or_default();
        entry.extend(parts);
        entry.sort_unstable();
        entry.dedup();
    }
    let (code, per) = admin.on_coordinator(group, |conn| {
        let req = build_offset_delete(group, &targets);
        let resp = conn.send(&req).context("OffsetDelete")?;
        let mut per = Vec::new();
        for t in &resp.topics {
            for p in &t.partitions {
                per.push((t.name.to_string(), p.partition_index, p.error_code));
            }
        }
        Ok((resp.error_code, per))
    })?;
    if code != 0 {
        bail!("deleting offsets of group {group}: {}{}", describe_error(code, None), group_error_hint(code));
    }
    if json {
        let v: Vec<Value> = per
            .iter()
            .map(|(t, p, c)| json!({"topic": t, "partition": p, "error": (*c != 0).then(|| error_name(*c))}))
            .collect();
        write_json(out, &json!({"group": group, "partitions": v}))?;
    } else {
        let rows: Vec<Vec<String>> = per
            .iter()
            .map(|(t, p, c)| {
                let status = if *c == 0 { "deleted".to_string() } else { describe_error(*c, None) };
                vec![t.clone(), p.to_string(), status]
            })
            .collect();
        out.write_all(render_table(&["TOPIC", "PARTITION", "RESULT"], &rows).as_bytes())?;
    }
    let failed: Vec<String> = per
        .iter()
        .filter(|(_, _, c)| *c != 0)
        .map(|(t, p, c)| format!("{t}-{p}: {}{}", describe_error(*c, None), group_error_hint(*c)))
        .collect();
    if !failed.is_empty() {
        bail!("could not delete {} offset(s) of group {group}: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn topic_partition_parsing() {
        assert_eq!(parse_topic_partitions("t").unwrap(), TopicPartitions { topic: "t".into(), partitions: None });
        assert_eq!(
            parse_topic_partitions("t.x-1:2, 0,2").unwrap(),
            TopicPartitions { topic: "t.x-1".into(), partitions: Some(vec![0, 2]) }
        );
        for bad in ["", ":1", "t:", "t:a", "t:-1", "t:1,,2"] {
            assert!(parse_topic_partitions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn datetime_parsing() {
        assert_eq!(parse_datetime_ms("1970-01-01").unwrap(), 0);
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_datetime_ms("2024-02-29T12:34:56.789Z").unwrap(), 1_709_210_096_789);
        assert_eq!(parse_datetime_ms("2024-02-29T12:34:56.789").unwrap(), 1_709_210_096_789);
        assert_eq!(parse_datetime_ms("2024-02-29 12:34:56.7").unwrap(), 1_709_210_096_700);
        assert_eq!(parse_datetime_ms("2024-02-29T14:34:56.789+02:00").unwrap(), 1_709_210_096_789);
        assert_eq!(parse_datetime_ms("2024-02-29T10:04:56.789-0230").unwrap(), 1_709_210_096_789);
        assert_eq!(parse_datetime_ms("2024-02-29T13:34:56.789+01").unwrap(), 1_709_210_096_789);
        assert_eq!(parse_datetime_ms("2000-03-01T00:00").unwrap(), 951_868_800_000);
        assert_eq!(parse_datetime_ms("1969-12-31T23:59:59Z").unwrap(), -1000);
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T24:00",
            "2024-01-01T10",
            "2024-01-01T10:00:00.",
            "2024-01-01Z",
            "2024-1-01",
            "2024-01-01T10:00+2",
            "yesterday",
            "2024-01-01T10:00:00.1234567890",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duration_parsing() {
        assert_eq!(parse_duration_ms("PT0.004S").unwrap(), 4);
        assert_eq!(parse_duration_ms("PT30M").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("P1DT2H3M4S").unwrap(), 93_784_000);
        assert_eq!(parse_duration_ms("p2w").unwrap(), 1_209_600_000);
        assert_eq!(parse_duration_ms("P1D").unwrap(), 86_400_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("15m").unwrap(), 900_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        for bad in ["", "P", "PT", "P1H", "PT1D", "PT1M2H", "P-1D", "P1.5D", "10", "10x", "-5m", "h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strategy_from_flags() {
        let s = |to: ResetTo| to.strategy(10_000_000).unwrap();
        assert_eq!(s(ResetTo { to_earliest: true, ..Default::default() }), ResetStrategy::Earliest);
        assert_eq!(s(ResetTo { to_latest: true, ..Default::default() }), ResetStrategy::Latest);
        assert_eq!(s(ResetTo { to_offset: Some(7), ..Default::default() }), ResetStrategy::Offset(7));
        assert_eq!(s(ResetTo { shift_by: Some(-3), ..Default::default() }), ResetStrategy::ShiftBy(-3));
        assert_eq!(
            s(ResetTo { to_datetime: Some("1970-01-01T00:00:05Z".into()), ..Default::default() }),
            ResetStrategy::Timestamp(5000)
        );
        assert_eq!(
            s(ResetTo { by_duration: Some("PT1M".into()), ..Default::default() }),
            ResetStrategy::Timestamp(10_000_000 - 60_000)
        );
        assert_eq!(s(ResetTo { by_duration: Some("365d".into()), ..Default::default() }), ResetStrategy::Timestamp(0));
        assert!(ResetTo { to_datetime: Some("x".into()), ..Default::default() }.strategy(0).is_err());
        assert!(ResetTo::default().strategy(0).is_err());
    }

    #[test]
    fn reset_planning_and_clamping() {
        use ResetStrategy::*;
        // log range [10, 100], committed 50
        let p = |s, c| plan_offset(s, c, 10, 100, None).unwrap();
        assert_eq!(p(Earliest, Some(50)), 10);
        assert_eq!(p(Latest, Some(50)), 100);
        assert_eq!(p(Offset(42), Some(50)), 42);
        assert_eq!(p(Offset(5), Some(50)), 10, "below log start: clamped up");
        assert_eq!(p(Offset(500), None), 100, "beyond log end: clamped down");
        assert_eq!(p(ShiftBy(-20), Some(50)), 30);
        assert_eq!(p(ShiftBy(-45), Some(50)), 10);
        assert_eq!(p(ShiftBy(60), Some(50)), 100);
        assert_eq!(p(ShiftBy(i64::MAX), Some(50)), 100);
        assert_eq!(p(ShiftBy(1), Some(3)), 10, "committed below log start still lands in range");
        assert!(plan_offset(ShiftBy(1), None, 10, 100, None).unwrap_err().contains("no committed offset"));
        assert_eq!(plan_offset(Timestamp(5), Some(50), 10, 100, Some(33)).unwrap(), 33);
        assert_eq!(plan_offset(Timestamp(5), Some(50), 10, 100, Some(-1)).unwrap(), 100, "none that late: log end");
        assert_eq!(plan_offset(Timestamp(5), None, 10, 100, None).unwrap(), 100);
        assert_eq!(plan_offset(Timestamp(5), None, 10, 100, Some(3)).unwrap(), 10);
        // empty log
        assert_eq!(plan_offset(Offset(3), None, 0, 0, None).unwrap(), 0);
        assert_eq!(clamp_offset(-5, 0, 9), 0);
    }

    #[test]
    fn lag_computation() {
        assert_eq!(lag(Some(5), Some(12)), Some(7));
        assert_eq!(lag(Some(12), Some(12)), Some(0));
        assert_eq!(lag(None, Some(12)), None);
        assert_eq!(lag(Some(5), None), None);
        assert_eq!(lag(Some(-1), Some(3)), None);
        // Committed beyond the log end (e.g. a truncated log) shows as negative, as Kafka's tool does.
        assert_eq!(lag(Some(15), Some(12)), Some(-3));
    }

    fn assignment_bytes(version: i16, parts: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Bytes {
        let mut a = ConsumerProtocolAssignment::default();
        a.assigned_partitions = parts
            .iter()
            .map(|(t, ps)| {
                let mut tp = TopicPartition::default();
                tp.topic = topic_name(t);
                tp.partitions = ps.to_vec();
                tp
            })
            .collect();
        a.user_data = user_data.map(Bytes::copy_from_slice);
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.min(3)).unwrap();
        buf.freeze()
    }

    #[test]
    fn assignment_decoding() {
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), vec![]);
        let b = assignment_bytes(0, &[("b", &[2, 0]), ("a", &[1]), ("b", &[1])], None);
        assert_eq!(decode_assignment(&b).unwrap(), vec![("a".to_string(), vec![1]), ("b".to_string(), vec![0, 1, 2])]);
        let b = assignment_bytes(3, &[("t", &[0, 1])], Some(b"user"));
        assert_eq!(decode_assignment(&b).unwrap(), vec![("t".to_string(), vec![0, 1])]);
        // A future version with a trailing field is read as v3.
        let mut future = bytes::BytesMut::from(&assignment_bytes(3, &[("t", &[4])], None)[..]);
        future[..2].copy_from_slice(&7i16.to_be_bytes());
        future.put_i32(99);
        assert_eq!(decode_assignment(&future.freeze()).unwrap(), vec![("t".to_string(), vec![4])]);
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 5])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff])).is_err());
    }

    #[test]
    fn offset_rows_merge_committed_assigned_and_log_ends() {
        let members = vec![
            MemberInfo {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c1".into(),
                host: "/10.0.0.1".into(),
                assignment: vec![("t".into(), vec![0, 1])],
            },
            MemberInfo {
                member_id: "m2".into(),
                group_instance_id: None,
                client_id: "c2".into(),
                host: "/10.0.0.2".into(),
                assignment: vec![("t".into(), vec![2])],
            },
        ];
        let committed: BTreeMap<(String, i32), i64> =
            [(("t".to_string(), 0), 5), (("t".to_string(), 2), 9), (("old".to_string(), 0), 3)].into();
        let log_ends: BTreeMap<(String, i32), i64> =
            [(("t".to_string(), 0), 8), (("t".to_string(), 1), 4), (("t".to_string(), 2), 9)].into();
        let rows = offset_rows(&committed, &members, &log_ends);
        let summary: Vec<_> =
            rows.iter().map(|r| (r.topic.as_str(), r.partition, r.committed, r.log_end, r.lag, r.owner)).collect();
        assert_eq!(
            summary,
            vec![
                ("old", 0, Some(3), None, None, None),
                ("t", 0, Some(5), Some(8), Some(3), Some(0)),
                ("t", 1, None, Some(4), None, Some(0)),
                ("t", 2, Some(9), Some(9), Some(0), Some(1)),
            ]
        );
    }

    #[test]
    fn table_rendering() {
        let t = render_table(
            &["GROUP", "STATE", "X"],
            &[vec!["a-long-group".into(), "Stable".into(), "".into()], vec!["g".into(), "Empty".into(), "1".into()]],
        );
        assert_eq!(t, "GROUP         STATE   X\na-long-group  Stable\ng             Empty   1\n");
    }

    #[test]
    fn admin_commit_request() {
        let plan = vec![
            PlanRow { topic: "b".into(), partition: 1, current: None, new: 7, error: 0 },
            PlanRow { topic: "a".into(), partition: 0, current: Some(1), new: 2, error: 0 },
            PlanRow { topic: "b".into(), partition: 0, current: Some(1), new: 3, error: 0 },
        ];
        let req = build_admin_commit("g", &plan);
        assert_eq!(req.generation_id_or_member_epoch, -1);
        assert_eq!(req.member_id.as_str(), "");
        let got: Vec<(String, Vec<(i32, i64)>)> = req
            .topics
            .iter()
            .map(|t| {
                (t.name.to_string(), t.partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect())
            })
            .collect();
        assert_eq!(got, vec![("a".into(), vec![(0, 2)]), ("b".into(), vec![(1, 7), (0, 3)])]);
    }

    #[test]
    fn commit_errors_name_the_cause() {
        assert_eq!(commit_error_hint(codes::UNKNOWN_MEMBER_ID), Some(GROUP_ACTIVE_MSG));
        assert_eq!(commit_error_hint(codes::ILLEGAL_GENERATION), Some(GROUP_ACTIVE_MSG));
        assert_eq!(commit_error_hint(3), None);
        assert_eq!(error_name(codes::NON_EMPTY_GROUP), "NON_EMPTY_GROUP");
        assert_eq!(error_name(codes::GROUP_ID_NOT_FOUND), "GROUP_ID_NOT_FOUND");
        assert_eq!(error_name(codes::UNKNOWN_MEMBER_ID), "UNKNOWN_MEMBER_ID");
        assert_eq!(error_name(codes::ILLEGAL_GENERATION), "ILLEGAL_GENERATION");
        assert_eq!(error_name(codes::GROUP_SUBSCRIBED_TO_TOPIC), "GROUP_SUBSCRIBED_TO_TOPIC");
        assert_eq!(error_name(codes::COORDINATOR_LOAD_IN_PROGRESS), "COORDINATOR_LOAD_IN_PROGRESS");
    }
}
