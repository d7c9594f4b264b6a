//! Time and randomness, through one seam.
//!
//! Engine code never asks the operating system for the time or for entropy directly
//! (`clippy.toml` disallows `Instant::now`, `SystemTime::now` and entropy-seeded RNGs
//! everywhere else). It asks a [`Clock`], which tests replace with a [`ManualClock`]
//! they advance by hand, and it draws random numbers from RNGs seeded with a number
//! that is printed or recorded, so a failing run is replayed from its seed.
//!
//! [`now`] is the monotonic system time for code that measures real elapsed time
//! (benchmarks, test deadlines); [`fresh_seed`] is the one place entropy is drawn.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::SeedableRng;

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time, for durations and deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock time, for timestamps that are persisted or compared across processes.
    fn system_time(&self) -> SystemTime;
}

/// The operating system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the seam itself
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[allow(clippy::disallowed_methods)] // the seam itself
    fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock as a shared [`Clock`].
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Monotonic system time, for measuring real elapsed time (benchmarks, deadlines of
/// tests). Engine logic takes its time from a [`Clock`] instead.
pub fn now() -> Instant {
    SystemClock.now()
}

/// Wall-clock system time (see [`now`]).
pub fn system_time() -> SystemTime {
    SystemClock.system_time()
}

/// A clock that moves only when told to. Starts at the system time of its creation.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_system: SystemTime,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the current system time.
    pub fn new() -> ManualClock {
        ManualClock {
            start: now(),
            start_system: system_time(),
            offset_nanos: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::AcqRel);
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn system_time(&self) -> SystemTime {
        self.start_system + self.offset()
    }
}

/// A seed drawn from the operating system's entropy: the one place a run's
/// randomness is not chosen by the caller. Print or record it so the run replays.
#[allow(clippy::disallowed_methods)] // the seam itself
pub fn fresh_seed() -> u64 {
    use rand::RngCore;
    SmallRng::from_entropy().next_u64()
}

/// A fast RNG seeded with `seed` (same seed, same numbers).
pub fn seeded_rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        let (a, sa) = (c.now(), c.system_time());
        assert_eq!(c.now(), a);
        c.advance(Duration::from_secs(3));
        assert_eq!(c.now() - a, Duration::from_secs(3));
        assert_eq!(
            c.system_time().duration_since(sa).ok(),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn seeded_rngs_repeat() {
        use rand::Rng;
        let a: Vec<u32> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(9), |r, _| Some(r.gen()))
            .collect();
        let b: Vec<u32> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(9), |r, _| Some(r.gen()))
            .collect();
        assert_eq!(a, b);
    }
}
