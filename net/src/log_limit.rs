//! Per-peer rate limit for log lines that a misbehaving client can trigger
//! at will (refused versions, malformed frames): an old client that
//! reconnects in a loop once wrote 2,400 "closing connection" lines a
//! second. Each peer gets one line per window; the rest are counted and the
//! count is reported with the next line that passes.
//!
//! Owned by one shard (no locking); bounded: when full, peers whose window
//! has ended are forgotten, and if none has, the oldest entry goes.

use std::collections::HashMap;

/// Lines let through per peer per window.
const WINDOW_MS: i64 = 60_000;
/// Peers remembered at most (per shard).
const MAX_PEERS: usize = 4096;

#[derive(Debug, Default)]
pub struct LogLimiter {
    /// peer -> (window start, lines suppressed in this window)
    peers: HashMap<String, (i64, u64)>,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines from this peer were dropped before it.
    Log { suppressed: u64 },
    /// Drop it (counted).
    Drop,
}

impl LogLimiter {
    pub fn check(&mut self, peer: &str, now_ms: i64) -> Verdict {
        if let Some((start, dropped)) = self.peers.get_mut(peer) {
            if now_ms.saturating_sub(*start) < WINDOW_MS {
                *dropped += 1;
                return Verdict::Drop;
            }
            let suppressed = *dropped;
            *start = now_ms;
            *dropped = 0;
            return Verdict::Log { suppressed };
        }
        if self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, (start, _)| now_ms.saturating_sub(*start) < WINDOW_MS);
            if self.peers.len() >= MAX_PEERS {
                let oldest = self.peers.iter().min_by_key(|(_, (start, _))| *start).map(|(p, _)| p.clone());
                if let Some(p) = oldest {
                    self.peers.remove(&p);
                }
            }
        }
        self.peers.insert(peer.to_string(), (now_ms, 0));
        Verdict::Log { suppressed: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_per_window_with_the_count() {
        let mut l = LogLimiter::default();
        assert_eq!(l.check("a", 0), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check("b", 1), Verdict::Log { suppressed: 0 });
        for t in 1..1000 {
            assert_eq!(l.check("a", t), Verdict::Drop);
        }
        assert_eq!(l.check("a", WINDOW_MS), Verdict::Log { suppressed: 999 });
        assert_eq!(l.check("a", WINDOW_MS + 1), Verdict::Drop);
    }

    #[test]
    fn bounded_number_of_peers() {
        let mut l = LogLimiter::default();
        for i in 0..(MAX_PEERS * 3) {
            assert_eq!(l.check(&format!("p{i}"), i as i64), Verdict::Log { suppressed: 0 });
            assert!(l.peers.len() <= MAX_PEERS);
        }
    }
}
