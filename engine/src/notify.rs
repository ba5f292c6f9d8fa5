//! Single-threaded wake-up primitives for one shard.
//!
//! `OffsetWatch` publishes a monotonically increasing offset (the durable
//! offset, the high watermark) and lets any number of tasks wait until it
//! reaches a target, without polling. `Doorbell` wakes one background task
//! (the flusher) when there is work. Neither is `Send`: both live and are
//! awaited on the shard that owns the partition.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct WatchState {
    value: i64,
    failed: Option<String>,
    waiters: Vec<Waker>,
    generation: u64,
    /// Times the value was moved back (`truncate`).
    truncations: u64,
    /// The values of the most recent truncations, (count after, value), so
    /// a waiter can tell whether its target was cut.
    recent_truncations: std::collections::VecDeque<(u64, i64)>,
}

/// Truncations remembered per watch; a waiter that slept through more of
/// them fails (conservatively) as if its target had been cut.
const TRUNCATIONS_KEPT: usize = 8;

/// A watched, non-decreasing offset. Cloning shares the same watch.
#[derive(Clone, Default)]
pub struct OffsetWatch(Rc<RefCell<WatchState>>);

impl OffsetWatch {
    pub fn new(value: i64) -> Self {
        let w = Self::default();
        w.0.borrow_mut().value = value;
        w
    }
    pub fn get(&self) -> i64 {
        self.0.borrow().value
    }
    /// Publishes a new value; waiters re-check. Values never go backwards
    /// except through `reset` (truncation).
    pub fn advance(&self, value: i64) {
        let mut s = self.0.borrow_mut();
        if value > s.value {
            s.value = value;
            s.generation += 1;
            for w in s.waiters.drain(..) {
                w.wake();
            }
        }
    }
    /// Moves the value back to `value` (the log was truncated). Every
    /// waiter for a target past `value` fails: what it waited for is gone,
    /// and data appended later under the same offsets is not what it wrote.
    /// Waiters for targets at or below it wait on.
    pub fn truncate(&self, value: i64) {
        let mut s = self.0.borrow_mut();
        s.value = s.value.min(value);
        s.generation += 1;
        s.truncations += 1;
        let n = s.truncations;
        s.recent_truncations.push_back((n, value));
        if s.recent_truncations.len() > TRUNCATIONS_KEPT {
            s.recent_truncations.pop_front();
        }
        for w in s.waiters.drain(..) {
            w.wake();
        }
    }
    /// Fails every present and future waiter (the partition is poisoned or gone).
    pub fn fail(&self, reason: String) {
        let mut s = self.0.borrow_mut();
        s.failed = Some(reason);
        s.generation += 1;
        for w in s.waiters.drain(..) {
            w.wake();
        }
    }
    pub fn generation(&self) -> u64 {
        self.0.borrow().generation
    }
    /// Resolves when the value is >= target, or with the failure reason.
    pub fn wait_for(&self, target: i64) -> WaitFor {
        let truncations = self.0.borrow().truncations;
        WaitFor { watch: self.clone(), target: Some(target), since_generation: 0, truncations }
    }
    /// Resolves on the next change after `generation`.
    pub fn changed_since(&self, generation: u64) -> WaitFor {
        let truncations = self.0.borrow().truncations;
        WaitFor { watch: self.clone(), target: None, since_generation: generation, truncations }
    }
}

/// Whether a truncation after `since` cut below `target` (or too many
/// happened to tell).
fn cut_below(s: &WatchState, since: u64, target: i64) -> bool {
    let missed = s.truncations - since;
    if missed as usize > s.recent_truncations.len() {
        return true;
    }
    s.recent_truncations.iter().filter(|(n, _)| *n > since).any(|(_, v)| *v < target)
}

pub struct WaitFor {
    watch: OffsetWatch,
    target: Option<i64>,
    since_generation: u64,
    /// `truncations` when the wait began.
    truncations: u64,
}

impl Future for WaitFor {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.watch.0.borrow_mut();
        if let Some(reason) = &s.failed {
            return Poll::Ready(Err(reason.clone()));
        }
        if let Some(target) = self.target {
            if s.truncations != self.truncations && cut_below(&s, self.truncations, target) {
                return Poll::Ready(Err("log truncated".to_string()));
            }
        }
        let done = match self.target {
            Some(t) => s.value >= t,
            None => s.generation != self.since_generation,
        };
        if done {
            return Poll::Ready(Ok(()));
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[derive(Default)]
struct BellState {
    rung: bool,
    closed: bool,
    waiter: Option<Waker>,
}

/// Wakes a single background task when there is work for it.
#[derive(Clone, Default)]
pub struct Doorbell(Rc<RefCell<BellState>>);

impl Doorbell {
    pub fn ring(&self) {
        let mut s = self.0.borrow_mut();
        s.rung = true;
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
    }
    /// Stops the waiting task: `wait` returns false from now on.
    pub fn close(&self) {
        let mut s = self.0.borrow_mut();
        s.closed = true;
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
    }
    /// Waits until rung (true) or closed (false); consumes the ring.
    pub fn wait(&self) -> BellWait {
        BellWait(self.clone())
    }
}

pub struct BellWait(Doorbell);

impl Future for BellWait {
    type Output = bool;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = (self.0).0.borrow_mut();
        if s.rung {
            s.rung = false;
            return Poll::Ready(true);
        }
        if s.closed {
            return Poll::Ready(false);
        }
        s.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn truncation_fails_waiters_but_not_later_waits() {
        let w = OffsetWatch::new(10);
        let mut pending = Box::pin(w.wait_for(20));
        assert!(block_on(poll_once(&mut pending)).is_none());
        w.truncate(5);
        assert_eq!(w.get(), 5);
        assert_eq!(block_on(poll_once(&mut pending)), Some(Err("log truncated".into())));
        // Truncation never moves the value forward.
        w.truncate(8);
        assert_eq!(w.get(), 5);
        // A waiter whose target survives a truncation waits on.
        let mut kept = Box::pin(w.wait_for(6));
        assert!(block_on(poll_once(&mut kept)).is_none());
        w.truncate(6);
        assert!(block_on(poll_once(&mut kept)).is_none());
        w.advance(6);
        assert_eq!(block_on(poll_once(&mut kept)), Some(Ok(())));
        w.truncate(5);
        // A wait that starts after the truncation is an ordinary wait.
        let mut later = Box::pin(w.wait_for(7));
        assert!(block_on(poll_once(&mut later)).is_none());
        w.advance(7);
        assert_eq!(block_on(poll_once(&mut later)), Some(Ok(())));
    }

    #[test]
    fn watch_wakes_at_target_and_fails_loudly() {
        let w = OffsetWatch::new(0);
        let mut f = Box::pin(w.wait_for(5));
        assert!(block_on(poll_once(&mut f)).is_none());
        w.advance(4);
        assert!(block_on(poll_once(&mut f)).is_none());
        w.advance(5);
        assert_eq!(block_on(poll_once(&mut f)), Some(Ok(())));
        let mut g = Box::pin(w.wait_for(10));
        w.fail("disk".into());
        assert_eq!(block_on(poll_once(&mut g)), Some(Err("disk".into())));
    }

    #[test]
    fn doorbell_coalesces_rings() {
        let d = Doorbell::default();
        d.ring();
        d.ring();
        assert_eq!(block_on(poll_once(d.wait())), Some(true));
        assert_eq!(block_on(poll_once(d.wait())), None);
        d.close();
        assert_eq!(block_on(poll_once(d.wait())), Some(false));
    }
}
