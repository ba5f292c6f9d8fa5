//! Cross-shard calls.
//!
//! A call is a typed `Request` (messages.rs) sent over a bounded glommio
//! channel to the shard that owns the state; it runs there as a local task,
//! and its `Response` comes back over the channel from that shard to the
//! caller's shard, where a local dispatcher hands it to the waiting task.
//! Only `Send` data crosses (`Bytes`, strings, numbers, `Arc`s of immutable
//! metadata); nothing is shared under a lock. A call to the local shard runs
//! inline. Callers reach it through the `Transport` trait, which the
//! inter-broker connection will implement too.
//!
//! Why replies travel over the channels instead of a cross-thread oneshot:
//! waking a glommio task from another thread (a foreign waker) races with the
//! task's destruction in glommio 0.9's reference counting, which corrupted
//! the heap under load. Every waker here is woken on its own thread; only
//! glommio's shared channels, built for it, cross threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender};

use crate::messages::{serve, Request, Response};
use crate::shard::Shard;

pub use ringbroker_engine::ids::ShardId;

/// What travels between two shards.
pub enum Message {
    Call { from: ShardId, id: u64, request: Request },
    Reply { id: u64, response: Response },
}

/// How a request reaches the shard that owns its state and its answer comes
/// back. `None`: the target has stopped (only during shutdown).
#[allow(async_fn_in_trait)] // used within one thread; no Send bound wanted
pub trait Transport {
    async fn request(&self, local: &Rc<Shard>, target: ShardId, request: Request) -> Option<Response>;
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
    pending: RefCell<HashMap<u64, oneshot::Sender<Response>>>,
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

    async fn send(&self, target: ShardId, request: Request) -> Option<Response> {
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        let sender = self.senders.get(target.0)?.as_ref()?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if sender.send(Message::Call { from: self.id, id, request }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        rx.await.ok()
    }

    fn complete(&self, id: u64, response: Response) {
        // The caller may have stopped waiting (a long poll that was answered
        // by another shard): then the reply is simply dropped.
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            let _ = tx.send(response);
        }
    }

    async fn reply(&self, to: ShardId, id: u64, response: Response) {
        if let Some(Some(sender)) = self.senders.get(to.0) {
            let _ = sender.send(Message::Reply { id, response }).await;
        }
    }
}

impl Transport for Router {
    async fn request(&self, local: &Rc<Shard>, target: ShardId, request: Request) -> Option<Response> {
        let name = request.name();
        let response = if target == self.id {
            Some(serve(local.clone(), request).await)
        } else {
            self.send(target, request).await
        };
        if let Some(r) = &response {
            assert!(r.answers(name), "a {name} request got another request's answer");
        }
        response
    }
}

/// Serves messages from one peer shard: each call runs as its own task (a
/// slow one, like a produce waiting for fsync, never blocks the next) and
/// sends its result back; replies complete this shard's waiting calls.
pub async fn serve_peer(shard: Rc<Shard>, rx: ConnectedReceiver<Message>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Message::Call { from, id, request } => {
                let shard2 = shard.clone();
                glommio::spawn_local(async move {
                    let response = serve(shard2.clone(), request).await;
                    shard2.router.reply(from, id, response).await;
                })
                .detach();
            }
            Message::Reply { id, response } => shard.router.complete(id, response),
        }
    }
}
