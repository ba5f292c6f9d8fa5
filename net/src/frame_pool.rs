//! Request frame buffers, reused once their request is done.
//!
//! A request is read into a buffer the reader hands out as `Bytes`: handlers
//! decode slices of it and produce batches travel (as slices) to the shard
//! that owns their partition. A fresh buffer must be zeroed before the socket
//! read, because the reader takes an initialised `&mut [u8]`; at 1 KiB
//! produce that memset was 4% of the machine's CPU, and malloc/free of
//! buffers of hundreds of KiB showed up too. So when a request's task ends
//! and nothing else holds its frame any more (`Bytes::try_into_mut`), the
//! buffer comes back here, still initialised, and the next frame is read
//! into it without clearing it. Safe code only: a reused buffer's bytes were
//! all written before, so truncating or growing it never exposes
//! uninitialised memory.
//!
//! One pool per shard (frames are read and their tasks run on the shard of
//! the connection), bounded in bytes so a burst of large requests does not
//! pin memory for good.

use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

/// Idle buffer bytes a shard keeps: enough for the frames a few pipelined
/// producers have in flight, small next to the batch cache.
pub const SHARD_POOL_BYTES: usize = 32 << 20;

/// Buffers larger than this are not kept: rare, and expensive to pin.
pub const MAX_POOLED_FRAME: usize = 8 << 20;

/// Smaller frames (fetches, heartbeats, metadata) are not worth pooling:
/// zeroing them is cheap, and thousands of tiny buffers would make the
/// searches below long.
pub const MIN_POOLED_FRAME: usize = 16 << 10;

/// Most finished frames waiting, and most idle buffers: every `take` looks
/// through both, so they stay short (a producer pipelining 16 requests to
/// two shards needs a few dozen).
const MAX_DONE: usize = 64;
const MAX_FREE: usize = 32;

pub struct FramePool {
    /// Frames whose requests are done, oldest first. A slice may still be
    /// alive elsewhere for a moment (a batch sent to another shard is
    /// dropped there after the reply is sent), so they are checked again
    /// when a buffer is wanted rather than only when the request ends.
    done: RefCell<VecDeque<Bytes>>,
    done_bytes: Cell<usize>,
    /// Reclaimed buffers, ready to read into.
    free: RefCell<Vec<BytesMut>>,
    /// Capacity of the buffers in `free`.
    free_bytes: Cell<usize>,
    budget: usize,
}

impl FramePool {
    /// A pool keeping at most `budget` bytes of idle buffers (and as much
    /// again of finished frames waiting to be reclaimed).
    pub fn new(budget: usize) -> FramePool {
        FramePool {
            done: RefCell::new(VecDeque::new()),
            done_bytes: Cell::new(0),
            free: RefCell::new(Vec::new()),
            free_bytes: Cell::new(0),
            budget,
        }
    }

    /// A buffer of exactly `len` bytes to read a frame into: the smallest
    /// idle one that is large enough, or a new zeroed one.
    pub fn take(&self, len: usize) -> BytesMut {
        if len < MIN_POOLED_FRAME {
            return BytesMut::zeroed(len);
        }
        self.reclaim();
        let mut free = self.free.borrow_mut();
        let best = free.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
        let Some((i, _)) = best else { return BytesMut::zeroed(len) };
        let mut buf = free.swap_remove(i);
        self.free_bytes.set(self.free_bytes.get() - buf.capacity());
        // Within the capacity: only bytes past the old length are written.
        buf.resize(len, 0);
        buf
    }

    /// Hands back a frame whose request is done (the whole frame, as read).
    pub fn give(&self, frame: Bytes) {
        if frame.len() > MAX_POOLED_FRAME || frame.len() < MIN_POOLED_FRAME {
            return;
        }
        let mut done = self.done.borrow_mut();
        self.done_bytes.set(self.done_bytes.get() + frame.len());
        done.push_back(frame);
        while self.done_bytes.get() > self.budget || done.len() > MAX_DONE {
            let old = done.pop_front().expect("bytes counted");
            self.done_bytes.set(self.done_bytes.get() - old.len());
        }
    }

    /// Moves the finished frames nothing else holds any more to `free`.
    fn reclaim(&self) {
        let mut done = self.done.borrow_mut();
        let mut free = self.free.borrow_mut();
        for _ in 0..done.len() {
            let frame = done.pop_front().expect("counted");
            let len = frame.len();
            match frame.try_into_mut() {
                Err(still_held) => done.push_back(still_held),
                Ok(buf) => {
                    self.done_bytes.set(self.done_bytes.get() - len);
                    let cap = buf.capacity();
                    if self.free_bytes.get() + cap <= self.budget && free.len() < MAX_FREE {
                        self.free_bytes.set(self.free_bytes.get() + cap);
                        free.push(buf);
                    }
                }
            }
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.reclaim();
        self.free_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = MIN_POOLED_FRAME;

    #[test]
    fn a_finished_frame_is_reused_without_clearing() {
        let pool = FramePool::new(1 << 20);
        let mut b = pool.take(2 * K);
        assert_eq!(b.len(), 2 * K);
        b[..4].copy_from_slice(b"abcd");
        let frame = b.freeze();
        let ptr = frame.as_ptr();
        pool.give(frame);
        assert_eq!(pool.idle_bytes(), 2 * K);
        // A smaller frame reuses it; the old bytes are still there (the
        // reader overwrites them), and the length is exactly what was asked.
        let again = pool.take(K + 600);
        assert_eq!((again.as_ptr(), again.len()), (ptr, K + 600));
        assert_eq!(&again[..4], b"abcd");
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn a_frame_still_in_use_is_taken_back_once_released() {
        let pool = FramePool::new(1 << 20);
        let frame = pool.take(K).freeze();
        let slice = frame.slice(10..20); // a batch on its way to another shard
        pool.give(frame);
        assert_eq!(pool.idle_bytes(), 0);
        assert_eq!(pool.take(K).capacity(), K, "a new buffer meanwhile");
        drop(slice);
        assert_eq!(pool.idle_bytes(), K);
    }

    #[test]
    fn finished_frames_waiting_are_bounded() {
        let pool = FramePool::new(5 * K / 2);
        let held: Vec<Bytes> = (0..5).map(|_| pool.take(K).freeze()).collect();
        for f in &held {
            pool.give(f.clone());
        }
        // Only the newest two fit the budget of frames waiting.
        assert!(pool.done_bytes.get() <= 5 * K / 2);
        drop(held);
        assert_eq!(pool.idle_bytes(), 2 * K);
        // And never more than MAX_DONE waiting or MAX_FREE idle.
        let pool = FramePool::new(usize::MAX);
        let held: Vec<Bytes> = (0..MAX_DONE + 10).map(|_| pool.take(K).freeze()).collect();
        for f in &held {
            pool.give(f.clone());
        }
        assert_eq!(pool.done.borrow().len(), MAX_DONE);
        drop(held);
        assert_eq!(pool.idle_bytes(), MAX_FREE * K);
    }

    #[test]
    fn small_frames_are_not_pooled() {
        let pool = FramePool::new(1 << 20);
        pool.give(pool.take(K - 1).freeze());
        assert_eq!(pool.idle_bytes(), 0);
        assert!(pool.take(100).iter().all(|&x| x == 0));
    }

    #[test]
    fn growing_a_reused_buffer_zeroes_only_the_new_bytes() {
        let pool = FramePool::new(1 << 20);
        let mut b = BytesMut::with_capacity(4 * K);
        b.resize(K, 7);
        pool.give(b.freeze());
        let grown = pool.take(K + 300);
        assert_eq!(grown.len(), K + 300);
        assert!(grown[..K].iter().all(|&x| x == 7));
        assert!(grown[K..].iter().all(|&x| x == 0));
    }

    #[test]
    fn best_fit_budget_and_size_limit() {
        let pool = FramePool::new(10 * K);
        pool.give(BytesMut::zeroed(4 * K).freeze());
        pool.give(BytesMut::zeroed(2 * K).freeze());
        assert_eq!(pool.idle_bytes(), 6 * K);
        // Over the budget of idle buffers: dropped.
        pool.give(BytesMut::zeroed(5 * K).freeze());
        assert_eq!(pool.idle_bytes(), 6 * K);
        assert_eq!(pool.take(3 * K / 2).capacity(), 2 * K, "smallest that fits");
        assert_eq!(pool.take(3 * K).capacity(), 4 * K);
        // Nothing idle fits: a fresh zeroed buffer.
        assert!(pool.take(9 * K).iter().all(|&x| x == 0));
        let big = FramePool::new(usize::MAX);
        big.give(BytesMut::zeroed(MAX_POOLED_FRAME + 1).freeze());
        assert_eq!(big.idle_bytes(), 0);
    }
}
