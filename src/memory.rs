//! Handing the memory a routing-table rebuild freed back to the system.
//!
//! A rebuild allocates the next table's parts and its temporaries while the table in force
//! is still live, then frees the temporaries and the old table's replaced parts. glibc
//! returns freed memory by itself only from the top of a heap, so what was freed below a
//! block still in use stays resident: with 10,000 routes, a hundred edits left RSS half as
//! large again as after the first load. After a rebuild, [`release_freed`] gives those
//! pages back — at most once every [`MIN_INTERVAL`]: a trim walks each arena under its
//! lock (13 ms on average for 10,000 routes, 86 ms at worst), and in a busy cluster
//! endpoints change several times a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// Asks the allocator to return the free memory it holds to the system (glibc's
/// `malloc_trim`), now if the last trim was [`MIN_INTERVAL`] ago or more, else once that
/// interval has passed (one trim then serves every rebuild in between). The trim itself
/// runs on the blocking pool, never on a request worker. Elsewhere than on glibc it does
/// nothing: those allocators return memory themselves.
pub fn release_freed() {
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        // A trim is already on its way: it frees this rebuild's leftovers too.
        return;
    }
    let wait = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .map_or(Duration::ZERO, |at| {
            MIN_INTERVAL.saturating_sub(at.elapsed())
        });
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        PENDING.store(false, Ordering::Release);
        *LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        drop(tokio::task::spawn_blocking(trim));
    });
}

/// When the last trim began.
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and touches only the allocator's own free lists,
    // under each arena's lock; any thread may call it at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// See the glibc version: nothing to do here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
