//! Process CPU time, so a benchmark can report operations per CPU-second: what the
//! whole process (shard executors, the object-store I/O runtime, the benchmark's
//! own workers) spent, user and system, from `getrusage(RUSAGE_SELF)`.

use std::time::Duration;

/// User and system CPU time of the whole process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on the process's behalf.
    pub system: Duration,
}

impl CpuTime {
    /// The process's CPU time now (zero if the kernel refuses, which it does not for
    /// `RUSAGE_SELF`).
    pub fn now() -> CpuTime {
        // SAFETY: getrusage writes one `rusage` into the zeroed struct we own; no
        // pointer outlives the call.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return CpuTime::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        CpuTime {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }

    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The CPU time spent since `earlier`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let start = CpuTime::now();
        let mut x = 1u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        assert_ne!(x, 0);
        let spent = CpuTime::now().since(&start);
        assert!(spent.total() > Duration::ZERO, "{spent:?}");
    }
}
