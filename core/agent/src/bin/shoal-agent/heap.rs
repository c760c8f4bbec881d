//! The agent's live heap, counted: the bytes its allocations hold right now, exported on `/metrics`
//! as `shoal_agent_heap_bytes` (with `shoal_agent_heap_allocations`, the blocks held).
//!
//! RSS alone cannot tell a leak from memory the allocator keeps: freed blocks it has not returned,
//! arenas of threads that came and went, stack pages touched once by a deep call. A leak raises the
//! live heap; those do not. The count costs one relaxed atomic add per allocation and per free.
//! The agent also hands the allocator's free pages back to the system every minute ([`trim`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting what is held. Installed as the agent's global allocator.
pub struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; the counters only observe its results.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size(), Relaxed);
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size(), Relaxed);
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size(), Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller's contract is `System`'s.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // The old block is freed and the new one held: its size changed, the count did not.
            BYTES.fetch_add(new_size, Relaxed);
            BYTES.fetch_sub(layout.size(), Relaxed);
        }
        p
    }
}

/// Hands back to the system the pages the allocator keeps with nothing live in them. glibc keeps
/// freed memory for reuse; in a process that runs for months on a few hundred KB of live heap,
/// what it keeps of each burst (a join, a push-pull with a large cluster) shows as RSS that creeps
/// up, though nothing leaks. Elsewhere this does nothing.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps glibc to one arena: a per-thread arena for each runtime worker holds its own free lists,
/// and what it keeps of each burst adds to RSS. Call once, first thing in `main`, before any
/// thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Calls [`trim`] every `period`, for as long as the agent runs. Spawn once at start.
pub async fn trim_every(period: std::time::Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        trim();
    }
}

/// The live heap in Prometheus text: bytes held and blocks held, right now.
pub fn to_prometheus() -> String {
    format!(
        "# HELP shoal_agent_heap_bytes Bytes the agent's allocations hold now (a leak raises it; allocator caches do not).\n\
         # TYPE shoal_agent_heap_bytes gauge\n\
         shoal_agent_heap_bytes {}\n\
         # HELP shoal_agent_heap_allocations Heap blocks the agent holds now.\n\
         # TYPE shoal_agent_heap_allocations gauge\n\
         shoal_agent_heap_allocations {}\n",
        BYTES.load(Relaxed),
        BLOCKS.load(Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_held_is_counted_until_it_is_freed() {
        let text = |t: &str| -> usize {
            t.lines().find_map(|l| l.strip_prefix("shoal_agent_heap_bytes ")).and_then(|v| v.parse().ok()).unwrap()
        };
        // The test binary's allocator is the counting one too (see `main.rs`); other test threads
        // allocate meanwhile, so only a large block stands out.
        let before = text(&to_prometheus());
        let block = vec![7u8; 64 << 20];
        let held = text(&to_prometheus());
        drop(block);
        let after = text(&to_prometheus());
        assert!(held >= before + (60 << 20), "{before} -> {held}");
        assert!(after + (60 << 20) <= held, "{held} -> {after}");
    }
}
