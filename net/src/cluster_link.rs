//! Broker-to-broker connections of the metadata quorum, on the controller
//! shard: a listener on `cluster_listen` for messages from peers (raft
//! messages, and brokers' heartbeats to the active controller), and one
//! outgoing connection per peer voter.
//!
//! Each outgoing link has a bounded queue. Raft tolerates loss (it
//! retransmits from its own state on the next heartbeat), so a full queue
//! or a broken connection drops messages rather than buffering without
//! bound; a link reconnects with backoff while there is something to send.
//! Frames are `[len: u32 BE][envelope]` (`ringbroker_controller::quorum::wire`);
//! a peer that sends a frame that does not decode, is too long, or names
//! another receiver is disconnected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use ringbroker_controller::quorum::wire::{self, Inbound};
use ringbroker_controller::quorum::RaftMessage;

use crate::config::Voter;
use crate::quorum_driver::{node_id, QuorumDriver};
use crate::shard::Shard;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Quorum frames are small; a snapshot of a very large image is the
/// biggest. Longer frames are refused before being read.
const MAX_FRAME: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The outgoing side: a queue per peer voter.
pub struct QuorumLinks {
    me: i32,
    peers: BTreeMap<i32, mpsc::Sender<Vec<u8>>>,
}

impl QuorumLinks {
    /// Starts a link task per peer (every voter but `me`).
    pub fn start(me: i32, voters: &[Voter], shard: &Rc<Shard>) -> QuorumLinks {
        let mut peers = BTreeMap::new();
        for v in voters.iter().filter(|v| v.node_id != me) {
            let (tx, rx) = mpsc::channel(QUEUE);
            glommio::spawn_local(link(v.node_id, v.addr.clone(), rx, shard.clone())).detach();
            peers.insert(v.node_id, tx);
        }
        QuorumLinks { me, peers }
    }

    /// A framed message to node `to` (a heartbeat to the active controller,
    /// the controller's status to a voter); dropped when its queue is full.
    pub fn send_frame(&self, to: i32, frame: Vec<u8>) {
        if let Some(tx) = self.peers.get(&to) {
            let _ = tx.clone().try_send(frame);
        }
    }

    pub fn send(&self, msgs: Vec<RaftMessage>) {
        for m in msgs {
            let to = node_id(m.to);
            match self.peers.get(&to) {
                // Full or closed: dropped; raft sends again.
                Some(tx) => {
                    let _ = tx.clone().try_send(wire::encode(self.me, to, &m));
                }
                None => tracing::error!(to, "quorum message for a node that is not a voter"),
            }
        }
    }
}

/// One peer's outgoing connection.
async fn link(peer: i32, addr: String, mut rx: mpsc::Receiver<Vec<u8>>, shard: Rc<Shard>) {
    let mut backoff = Duration::from_millis(50);
    let mut pending: Option<Vec<u8>> = None;
    while !shard.shutdown.load(Ordering::Relaxed) {
        let first = match pending.take() {
            Some(f) => f,
            None => match rx.next().await {
                Some(f) => f,
                None => return,
            },
        };
        let mut stream = match TcpStream::connect_timeout(addr.as_str(), CONNECT_TIMEOUT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer, addr, error = %e, "cannot reach quorum peer");
                // What was queued is stale by the time we reconnect.
                while rx.try_recv().is_ok() {}
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(peer, addr, "connected to quorum peer");
        backoff = Duration::from_millis(50);
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if let Err(e) = stream.write_all(&frame).await {
                tracing::info!(peer, addr, error = %e, "quorum peer connection lost");
                break;
            }
            next = rx.next().await;
            if next.is_none() {
                return;
            }
        }
    }
}

/// Accepts peers' connections on `addr` and hands their messages to the
/// quorum. Runs on the controller shard.
pub async fn serve(addr: SocketAddr, driver: Rc<QuorumDriver>, shard: Rc<Shard>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("binding cluster listener {addr}: {e}"))?;
    tracing::info!(cluster_listen = %addr, "listening for brokers");
    glommio::spawn_local(async move {
        while !shard.shutdown.load(Ordering::Relaxed) {
            match listener.accept().await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    glommio::spawn_local(read_peer(s, driver.clone(), shard.clone())).detach();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a broker connection");
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .detach();
    Ok(())
}

async fn read_peer(mut s: TcpStream, driver: Rc<QuorumDriver>, shard: Rc<Shard>) {
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let me = shard.config.broker.node_id;
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    loop {
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            tracing::warn!(peer, len = n, "broker frame too long; closing");
            return;
        }
        buf.clear();
        // Grows as bytes arrive: a length alone reserves nothing.
        match (&mut s).take(n as u64).read_to_end(&mut buf).await {
            Ok(got) if got == n => {}
            _ => return,
        }
        match wire::decode_inbound(&buf) {
            Ok(Inbound::Raft { from, to, msg }) if to == me && driver.is_voter(from) => {
                driver.receive(msg, &shard).await
            }
            Ok(Inbound::Raft { from, to, .. }) => {
                tracing::warn!(peer, from, to, me, "quorum message not for this broker or not from a voter; closing");
                return;
            }
            Ok(Inbound::Heartbeat { from, epoch }) => driver.heartbeat(from, epoch),
            Ok(Inbound::Status { from, term, commit_index, voters }) => driver.status(from, term, commit_index, voters),
            Err(e) => {
                tracing::warn!(peer, error = %e, "bad frame from a broker; closing");
                return;
            }
        }
    }
}
