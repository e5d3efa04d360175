//! The scheduling policy of the store runtime's threads: `SCHED_BATCH` on Linux.
//!
//! Every disk-tier read is a `pread` on the store runtime's blocking pool (foyer's psync
//! engine): a request worker hands it over and is woken when it is done. With the default
//! policy the storage thread, once woken, preempts the busy worker that woke it, and the
//! worker preempts it back when the read completes: a pair of context switches per read on a
//! loaded core (3.1 switches per request in the load benchmark's disk set).
//!
//! `SCHED_BATCH` keeps the normal CPU share (the weight of nice 0) but tells the scheduler not
//! to preempt the running task when such a thread wakes up: a busy worker keeps its core, and
//! the reads it queued run together when it waits for I/O or at the end of its time slice.
//! The flusher and reclaimer run on this runtime too; they are background work all the same.
//! A thread inherits its creator's policy, but only this runtime's threads get it: new
//! blocking-pool threads are spawned by whichever thread hands work over (the request workers),
//! and `on_thread_start` sets the policy on each one (checked under load: every
//! `outpost-storage` thread `SCHED_BATCH`, the `outpost-worker` threads and main normal).
//! Measured in the disk set, interleaved against the previous binary (benches/load/README.md,
//! "Disk set"): 3.2 → 1.4–2.1 switches per request, CPU per request 80–86 → 75–82 µs, p99
//! 13.9–15.5 → 9.7–12.4 ms.
//!
//! A thread whose policy cannot be set (a seccomp filter, another OS) keeps the default; the
//! first failure is logged, the store works as before.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether a failure to set the policy was logged already (logged once per process).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Puts the calling thread in `SCHED_BATCH`. Called from the store runtime's
/// `on_thread_start`, so it covers its workers and its blocking pool.
pub(crate) fn batch_current_thread() {
    if let Err(e) = set_batch()
        && !WARNED.swap(true, Relaxed)
    {
        tracing::warn!(
            error = %e,
            "could not put the storage threads in SCHED_BATCH: disk reads will preempt request workers"
        );
    }
}

#[cfg(target_os = "linux")]
fn set_batch() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads the `sched_param` during the call, and the pointer
    // is to an initialised local that outlives it. Pid 0 is the calling thread.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_batch() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SCHED_BATCH is Linux-only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_thread_is_put_in_sched_batch() {
        let policy = std::thread::spawn(|| {
            super::batch_current_thread();
            // SAFETY: no arguments besides the pid (0 = this thread).
            #[allow(unsafe_code)]
            unsafe {
                libc::sched_getscheduler(0)
            }
        })
        .join();
        assert!(
            matches!(policy, Ok(p) if p == libc::SCHED_BATCH),
            "{policy:?}"
        );
    }
}
