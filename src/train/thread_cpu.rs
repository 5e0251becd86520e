//! The CPU time of the calling thread, for the host cost of each stage of a fit: unlike
//! wall time it leaves out the time a thread waits (for the GPU, for a lock) and the time
//! other processes take from it, and unlike the process's CPU time it leaves out the
//! threads of a software GPU driver.

/// CPU seconds the calling thread has run so far (`CLOCK_THREAD_CPUTIME_ID`); 0 where the
/// platform has no such clock.
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for the call to write.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0 {
            return t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// The CPU seconds a piece of work takes on the thread that runs it.
pub fn on_thread<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let start = thread_cpu_seconds();
    let out = work();
    (out, thread_cpu_seconds() - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn busy_work_counts_and_sleep_does_not() {
        // A fixed amount of work (tens of milliseconds on any machine), then a sleep.
        let (x, busy) = on_thread(|| {
            let mut x = 1u64;
            for _ in 0..50_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        });
        assert_ne!(x, 0);
        let ((), asleep) = on_thread(|| std::thread::sleep(std::time::Duration::from_millis(50)));
        assert!(busy > 0.01, "busy {busy}");
        assert!(asleep < 0.005, "asleep {asleep}");
    }
}
