//! Cross-shard calls.
//!
//! A call is a closure sent over a bounded glommio channel to the shard that
//! owns the state; it runs there as a local task, and its result comes back
//! over the channel from that shard to the caller's shard, where a local
//! dispatcher hands it to the waiting task. Only `Send` data crosses
//! (`Bytes`, strings, numbers, `Arc`s of immutable metadata); nothing is
//! shared under a lock. A call to the local shard runs inline.
//!
//! Why replies travel over the channels instead of a cross-thread oneshot:
//! waking a glommio task from another thread (a foreign waker) races with the
//! task's destruction in glommio 0.9's reference counting, which corrupted
//! the heap under load. Every waker here is woken on its own thread; only
//! glommio's shared channels, built for it, cross threads.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender};

use crate::shard::Shard;

pub type ShardId = usize;

type LocalFuture = Pin<Box<dyn Future<Output = Box<dyn Any + Send>>>>;
/// Work sent to another shard; its output is sent back to the caller.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalFuture + Send>;

/// What travels between two shards.
pub enum Message {
    Call { from: ShardId, id: u64, job: Job },
    Reply { id: u64, value: Box<dyn Any + Send> },
}

/// The channel ends one shard gets at start: a sender to every other shard
/// and a receiver from every other shard (None for itself).
pub struct MeshEnds {
    pub senders: Vec<Option<SharedSender<Message>>>,
    pub receivers: Vec<SharedReceiver<Message>>,
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

/// One shard's connected senders and its table of calls awaiting replies.
pub struct Router {
    pub id: ShardId,
    senders: Vec<Option<ConnectedSender<Message>>>,
    next_call: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Box<dyn Any + Send>>>>,
}

impl Router {
    /// Connects this shard's channel ends; receivers are returned to be served.
    pub async fn connect(id: ShardId, ends: MeshEnds) -> (Router, Vec<ConnectedReceiver<Message>>) {
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
        (Router { id, senders, next_call: Cell::new(0), pending: RefCell::new(HashMap::new()) }, receivers)
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
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        let job: Job = Box::new(move |shard| Box::pin(async move { Box::new(f(shard).await) as Box<dyn Any + Send> }));
        let sender = self.senders.get(target)?.as_ref()?;
        if sender.send(Message::Call { from: self.id, id, job }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        let value = rx.await.ok()?;
        Some(*value.downcast::<R>().expect("a reply has the type its call expects"))
    }

    fn complete(&self, id: u64, value: Box<dyn Any + Send>) {
        // The caller may have stopped waiting (a long poll that was answered
        // by another shard): then the reply is simply dropped.
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            let _ = tx.send(value);
        }
    }

    async fn reply(&self, to: ShardId, id: u64, value: Box<dyn Any + Send>) {
        if let Some(Some(sender)) = self.senders.get(to) {
            let _ = sender.send(Message::Reply { id, value }).await;
        }
    }
}

/// Serves messages from one peer shard: each call runs as its own task (a
/// slow one, like a produce waiting for fsync, never blocks the next) and
/// sends its result back; replies complete this shard's waiting calls.
pub async fn serve_peer(shard: Rc<Shard>, rx: ConnectedReceiver<Message>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Message::Call { from, id, job } => {
                let shard2 = shard.clone();
                glommio::spawn_local(async move {
                    let value = job(shard2.clone()).await;
                    shard2.router.reply(from, id, value).await;
                })
                .detach();
            }
            Message::Reply { id, value } => shard.router.complete(id, value),
        }
    }
}
