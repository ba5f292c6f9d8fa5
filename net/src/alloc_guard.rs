//! A global allocator that keeps absurd allocation *sizes* from killing the
//! process.
//!
//! The Kafka codec (the `kafka-protocol` crate) decodes an array by reading
//! its length from the wire and calling `Vec::with_capacity(length)` before
//! reading any element. A 19-byte Metadata request claiming 2^31 topics asks
//! for ~150 GB; the system allocator refuses, and Rust aborts the process.
//! The elements that can really be decoded are bounded by the frame size
//! (`socket.request.max.bytes`), so such a vector never gets filled: the
//! decode fails with "not enough bytes" and the connection is closed.
//!
//! This allocator serves allocations of `HUGE_BYTES` or more with an
//! anonymous `MAP_NORESERVE` mapping: address space is reserved, no memory
//! is committed until touched, and the untouched reservation is returned
//! when the failed decode drops the vector. Smaller allocations go to the
//! system allocator unchanged. Legitimate allocations in ringbroker are far
//! below the threshold (frames are at most `socket.request.max.bytes`, I/O
//! buffers a few MiB).

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily with mmap.
pub const HUGE_BYTES: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct GuardedAlloc;

/// glibc serves allocations above a moving threshold (128 KiB at start)
/// with a fresh `mmap` and unmaps them on free. The broker's large buffers
/// (request frames, stamped batches, the flusher's aligned write chunks) are
/// allocated and freed at the request rate, so each one paid page faults,
/// page zeroing and an munmap: 18% of broker CPU in a 1 KiB produce profile.
/// Keep them in the malloc arenas instead (frames up to 64 MiB). The price:
/// freed memory is returned to the system only when more than 256 MiB of it
/// sits at the top of an arena's heap, so after a burst of large requests
/// the process can keep some of that memory (fragmented) until reused.
///
/// Call once at start, before other threads exist.
pub fn keep_large_buffers_in_arenas() {
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping; no file, no aliasing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous pages are zero.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_are_lazy_and_usable() {
        let a = GuardedAlloc;
        unsafe {
            // 64 GiB: more than this machine has; only reserved, never committed.
            let l = Layout::from_size_align(64 << 30, 8).unwrap();
            let p = a.alloc(l);
            assert!(!p.is_null());
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            assert_eq!(*p, 7);
            let p2 = a.realloc(p, l, 2 << 30);
            assert_eq!(*p2, 7);
            a.dealloc(p2, Layout::from_size_align(2 << 30, 8).unwrap());
            let small = Layout::from_size_align(64, 8).unwrap();
            let q = a.alloc_zeroed(small);
            assert_eq!(*q, 0);
            let q2 = a.realloc(q, small, HUGE_BYTES);
            assert_eq!(*q2, 0);
            a.dealloc(q2, Layout::from_size_align(HUGE_BYTES, 8).unwrap());
        }
    }
}
