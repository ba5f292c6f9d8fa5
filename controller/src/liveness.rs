//! Which brokers the active controller still hears from.
//!
//! Brokers heartbeat the active controller every `HEARTBEAT_INTERVAL_MS`
//! with their broker epoch. The controller remembers when it last heard
//! each live broker; one silent for `broker_session_timeout_ms` is due to be
//! fenced (a `FenceBroker` record, so every broker sees its partitions go
//! offline). This state is the controller's alone and not in the log: a new
//! controller starts every broker's session afresh, so a change of
//! controller never fences a broker that was heartbeating the old one.
//!
//! Sans-IO: time is passed in, so the simulator drives the same code.

use std::collections::BTreeMap;

use crate::MetadataImage;

/// How often brokers heartbeat the active controller.
pub const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 9_000;

#[derive(Debug, Default)]
pub struct Liveness {
    /// When this node became the active controller (sessions start then).
    since_ms: Option<u64>,
    /// broker -> (epoch heard, when).
    heard: BTreeMap<i32, (i64, u64)>,
}

impl Liveness {
    /// This node leads (again) from `now_ms`: forget what an earlier
    /// leadership heard, and give every broker a full session.
    pub fn became_leader(&mut self, now_ms: u64) {
        self.since_ms = Some(now_ms);
        self.heard.clear();
    }

    pub fn lost_leadership(&mut self) {
        self.since_ms = None;
        self.heard.clear();
    }

    /// A heartbeat; one from an older epoch than already heard is stale.
    pub fn heartbeat(&mut self, broker: i32, epoch: i64, now_ms: u64) {
        match self.heard.get(&broker) {
            Some(&(known, _)) if known > epoch => {}
            _ => {
                self.heard.insert(broker, (epoch, now_ms));
            }
        }
    }

    /// Live brokers in `img` silent for `timeout_ms` at their current
    /// epoch: (id, epoch) of each, to fence. A registration this controller
    /// has not seen before (a new epoch) starts a full session now: a broker
    /// that just registered is not fenced for silence before it. The
    /// controller's own broker (`me`) is never due: it is running this
    /// check, so it is alive, however long its executor stalled.
    pub fn expired(&mut self, img: &MetadataImage, me: i32, now_ms: u64, timeout_ms: u64) -> Vec<(i32, i64)> {
        let Some(since) = self.since_ms else { return Vec::new() };
        let mut due = Vec::new();
        for b in img.live_brokers().filter(|b| b.id != me) {
            let last = match self.heard.get(&b.id) {
                Some(&(epoch, at)) if epoch == b.epoch => at.max(since),
                // An earlier epoch's heartbeats say nothing about this one.
                _ => {
                    self.heard.insert(b.id, (b.epoch, now_ms));
                    now_ms
                }
            };
            if now_ms.saturating_sub(last) >= timeout_ms {
                due.push((b.id, b.epoch));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image;

    #[test]
    fn silent_brokers_expire_after_the_session_and_a_new_leader_waits_a_full_session() {
        let img = test_image(&[1, 2]);
        let (e1, e2) = (img.brokers[&1].epoch, img.brokers[&2].epoch);
        let mut l = Liveness::default();
        assert!(l.expired(&img, 99, 100_000, 9_000).is_empty(), "not the controller: fences nobody");
        l.became_leader(1_000);
        l.heartbeat(1, e1, 5_000);
        l.heartbeat(2, e2, 1_000);
        assert!(l.expired(&img, 99, 9_999, 9_000).is_empty());
        assert_eq!(l.expired(&img, 99, 10_000, 9_000), vec![(2, e2)]);
        assert_eq!(l.expired(&img, 99, 14_000, 9_000), vec![(1, e1), (2, e2)]);
        // A heartbeat of an older epoch does not count.
        l.heartbeat(2, e2 - 1, 13_000);
        assert!(l.expired(&img, 99, 14_000, 9_000).contains(&(2, e2)));
        // A broker registering again (a new epoch) gets a full session from
        // when the controller first sees the registration.
        let again = crate::apply_change(
            &img,
            &crate::MetadataChange::RegisterBroker {
                id: 2,
                incarnation: [7; 16],
                host: "h".into(),
                port: 1,
                cluster_host: String::new(),
                cluster_port: 0,
                shards: 1,
            },
        )
        .unwrap();
        assert_eq!(l.expired(&again, 99, 14_000, 9_000), vec![(1, e1)]);
        assert!(!l.expired(&again, 99, 22_999, 9_000).contains(&(2, again.brokers[&2].epoch)));
        assert!(l.expired(&again, 99, 23_000, 9_000).contains(&(2, again.brokers[&2].epoch)));
        l.became_leader(30_000);
        assert!(l.expired(&img, 99, 38_000, 9_000).is_empty());
        // Its own broker, never.
        assert_eq!(l.expired(&img, 1, 60_000, 9_000), vec![(2, e2)]);
    }
}
