//! Cross-shard calls.
//!
//! A call is a closure sent over a bounded glommio channel to the shard that
//! owns the state; it runs there as a local task and answers on a oneshot.
//! Only `Send` data crosses (`Bytes`, strings, numbers, `Arc`s of immutable
//! metadata); nothing is shared under a lock. A call to the local shard runs
//! inline, without a channel hop.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender};

use crate::shard::Shard;

pub type ShardId = usize;

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
/// Work sent to another shard.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalFuture + Send>;

/// The channel ends one shard gets at start: a sender to every other shard
/// and a receiver from every other shard (None for itself).
pub struct MeshEnds {
    pub senders: Vec<Option<SharedSender<Job>>>,
    pub receivers: Vec<SharedReceiver<Job>>,
}

/// Builds the full mesh of bounded channels for `n` shards.
pub fn build_mesh(n: usize, capacity: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> =
        (0..n).map(|_| MeshEnds { senders: (0..n).map(|_| None).collect(), receivers: Vec::new() }).collect();
    for src in 0..n {
        for dst in 0..n {
            if src != dst {
                let (tx, rx) = glommio::channels::shared_channel::new_bounded(capacity);
                ends[src].senders[dst] = Some(tx);
                ends[dst].receivers.push(rx);
            }
        }
    }
    ends
}

/// One shard's connected senders.
pub struct Router {
    pub id: ShardId,
    senders: Vec<Option<ConnectedSender<Job>>>,
}

impl Router {
    /// Connects this shard's channel ends; receivers are returned to be served.
    pub async fn connect(id: ShardId, ends: MeshEnds) -> (Router, Vec<ConnectedReceiver<Job>>) {
        // Both ends of a channel must connect before either completes, so
        // all of this shard's ends connect concurrently (sequential connects
        // would deadlock against the peers doing the same).
        let senders = futures::future::join_all(ends.senders.into_iter().map(|s| async move {
            match s {
                Some(s) => Some(s.connect().await),
                None => None,
            }
        }));
        let receivers = futures::future::join_all(ends.receivers.into_iter().map(|r| r.connect()));
        let (senders, receivers) = futures::future::join(senders, receivers).await;
        (Router { id, senders }, receivers)
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Runs `f` on shard `target` and returns its result. `None` if the
    /// target shard has stopped (only during shutdown).
    pub async fn call<R, F, Fut>(&self, local: &Rc<Shard>, target: ShardId, f: F) -> Option<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            return Some(f(local.clone()).await);
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let r = f(shard).await;
                let _ = tx.send(r);
            })
        });
        let sender = self.senders.get(target)?.as_ref()?;
        if sender.send(job).await.is_err() {
            return None;
        }
        rx.await.ok()
    }
}

/// Serves jobs arriving from one peer shard: each runs as its own task so a
/// slow one (a produce waiting for fsync) never blocks the next.
pub async fn serve_peer(shard: Rc<Shard>, rx: ConnectedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        glommio::spawn_local(job(shard.clone())).detach();
    }
}
