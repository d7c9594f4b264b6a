//! Injects latency, errors, timeouts and slow bodies into any [`ObjectStore`].
//!
//! For tests and benchmarks of how the engine lives with a real network. Every call
//! first draws a [`Plan`] from a seeded RNG (always the same number of draws, so the
//! sequence of plans depends only on the seed and the order of calls), then:
//!
//! 1. sleeps the planned latency;
//! 2. on an injected error fails with `Transient`. For writes (put, part, complete)
//!    half of those errors come *after* the wrapped call succeeded: the object is
//!    written, the caller hears it failed, as when a response is lost;
//! 3. on an injected timeout sleeps [`FaultConfig::timeout`] and fails with `Timeout`
//!    without calling the wrapped store;
//! 4. on a slow body (ranged gets only) sleeps [`FaultConfig::slow_body`] after the
//!    wrapped call returned its bytes.
//!
//! An error wins over a timeout when both are drawn.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreError,
    StoreErrorKind, StoreResult,
};

/// Latency added before each call.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Latency {
    /// No added latency.
    #[default]
    None,
    /// The same delay every time.
    Fixed(Duration),
    /// A delay drawn uniformly from `min..=max`.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Usually `base`; with `probability`, `spike` instead.
    Spikes {
        /// The usual delay.
        base: Duration,
        /// The delay of a spike.
        spike: Duration,
        /// Chance of a spike per call, in `[0, 1]`.
        probability: f64,
    },
}

/// What to inject. The default injects nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Seeds the RNG: the same seed and call order give the same faults.
    pub seed: u64,
    /// Delay before every call.
    pub latency: Latency,
    /// Chance per call of a `Transient` error, in `[0, 1]`.
    pub error_rate: f64,
    /// Chance per call of a timeout, in `[0, 1]`.
    pub timeout_rate: f64,
    /// How long an injected timeout hangs before failing.
    pub timeout: Duration,
    /// Chance per ranged get of a slow body, in `[0, 1]`.
    pub slow_body_rate: f64,
    /// Extra time a slow body takes.
    pub slow_body: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            latency: Latency::None,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout: Duration::from_secs(5),
            slow_body_rate: 0.0,
            slow_body: Duration::from_secs(1),
        }
    }
}

impl FaultConfig {
    /// Rejects rates outside `[0, 1]` (NaN included) and a uniform range whose `min`
    /// is above its `max`.
    pub fn validate(&self) -> StoreResult<()> {
        let bad = |why: String| {
            Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "config",
                "faults",
                why,
            ))
        };
        let mut rates = vec![
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
            ("slow_body_rate", self.slow_body_rate),
        ];
        match &self.latency {
            Latency::Uniform { min, max } if min > max => {
                return bad(format!("uniform latency min {min:?} is above max {max:?}"))
            }
            Latency::Spikes { probability, .. } => {
                rates.push(("latency spike probability", *probability))
            }
            _ => {}
        }
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return bad(format!("{name} is {rate}; it must be within [0, 1]"));
            }
        }
        Ok(())
    }

    /// Draws what happens to the next call. Always makes the same number of draws.
    fn plan(&self, rng: &mut SmallRng) -> Plan {
        let latency_draw: f64 = rng.gen();
        let error_draw: f64 = rng.gen();
        let timeout_draw: f64 = rng.gen();
        let after_draw: bool = rng.gen();
        let slow_draw: f64 = rng.gen();
        let delay = match &self.latency {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => *d,
            Latency::Uniform { min, max } => *min + max.saturating_sub(*min).mul_f64(latency_draw),
            Latency::Spikes {
                base,
                spike,
                probability,
            } => {
                if latency_draw < *probability {
                    *spike
                } else {
                    *base
                }
            }
        };
        let fault = if error_draw < self.error_rate {
            Some(Fault::Error { after: after_draw })
        } else if timeout_draw < self.timeout_rate {
            Some(Fault::Timeout)
        } else {
            None
        };
        Plan {
            delay,
            fault,
            slow_body: slow_draw < self.slow_body_rate,
        }
    }
}

/// What happens to one call.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    delay: Duration,
    fault: Option<Fault>,
    slow_body: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// A `Transient` error; for writes, `after` means after the call succeeded.
    Error { after: bool },
    /// A hang of [`FaultConfig::timeout`], then a `Timeout` error.
    Timeout,
}

/// Faults injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Errors returned instead of calling the wrapped store.
    pub errors_before: u64,
    /// Errors returned after the wrapped store did the write.
    pub errors_after: u64,
    /// Injected timeouts.
    pub timeouts: u64,
    /// Ranged gets slowed down.
    pub slow_bodies: u64,
}

impl FaultCounts {
    /// Calls that failed because of an injected fault.
    pub fn failures(&self) -> u64 {
        self.errors_before + self.errors_after + self.timeouts
    }
}

/// An [`ObjectStore`] that makes the store it wraps misbehave, reproducibly.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    cfg: FaultConfig,
    rng: Mutex<SmallRng>,
    enabled: AtomicBool,
    errors_before: AtomicU64,
    errors_after: AtomicU64,
    timeouts: AtomicU64,
    slow_bodies: AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("cfg", &self.cfg)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Wraps `inner`. Rates outside `[0, 1]` are clamped (NaN counts as 0); call
    /// [`FaultConfig::validate`] first to reject them instead.
    pub fn new(inner: Arc<dyn ObjectStore>, mut cfg: FaultConfig) -> FaultyStore {
        let clamp = |r: &mut f64| *r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        clamp(&mut cfg.error_rate);
        clamp(&mut cfg.timeout_rate);
        clamp(&mut cfg.slow_body_rate);
        if let Latency::Spikes { probability, .. } = &mut cfg.latency {
            clamp(probability);
        }
        FaultyStore {
            inner,
            rng: Mutex::new(SmallRng::seed_from_u64(cfg.seed)),
            cfg,
            enabled: AtomicBool::new(true),
            errors_before: AtomicU64::new(0),
            errors_after: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            slow_bodies: AtomicU64::new(0),
        }
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            errors_before: self.errors_before.load(Ordering::Relaxed),
            errors_after: self.errors_after.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            slow_bodies: self.slow_bodies.load(Ordering::Relaxed),
        }
    }

    /// Turns injection off (calls pass straight through, drawing nothing) or back on:
    /// to let a test heal the network and check recovery.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    fn next_plan(&self) -> Option<Plan> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        Some(self.cfg.plan(&mut rng))
    }

    /// Runs `call` under the next plan. `write` enables errors after success;
    /// `slow_body` lets the plan slow the answer down.
    async fn run<'a, T, Fut>(
        &'a self,
        op: &'static str,
        key: &'a str,
        write: bool,
        slow_body: bool,
        call: impl FnOnce() -> Fut,
    ) -> StoreResult<T>
    where
        Fut: Future<Output = StoreResult<T>>,
    {
        let Some(plan) = self.next_plan() else {
            return call().await;
        };
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        let injected = |when: &str| {
            StoreError::new(
                StoreErrorKind::Transient,
                op,
                key,
                format!(
                    "injected transient error {when} (fault seed {})",
                    self.cfg.seed
                ),
            )
        };
        match plan.fault {
            Some(Fault::Error { after: true }) if write => {
                call().await?;
                self.errors_after.fetch_add(1, Ordering::Relaxed);
                Err(injected("after the write succeeded"))
            }
            Some(Fault::Error { .. }) => {
                self.errors_before.fetch_add(1, Ordering::Relaxed);
                Err(injected("before the request"))
            }
            Some(Fault::Timeout) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.cfg.timeout).await;
                Err(StoreError::new(
                    StoreErrorKind::Timeout,
                    op,
                    key,
                    format!(
                        "injected timeout after {:?} (fault seed {})",
                        self.cfg.timeout, self.cfg.seed
                    ),
                ))
            }
            None => {
                let value = call().await?;
                if slow_body && plan.slow_body {
                    self.slow_bodies.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.cfg.slow_body).await;
                }
                Ok(value)
            }
        }
    }
}

impl ObjectStore for FaultyStore {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("put", key, true, false, move || self.inner.put(key, body)))
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(self.run("multipart", key, false, false, move || {
            self.inner.create_multipart(key)
        }))
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(self.run("multipart", key, true, false, move || {
            self.inner.put_part(key, upload, part_number, body)
        }))
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("multipart", key, true, false, move || {
            self.inner.complete_multipart(key, upload, parts)
        }))
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("multipart", key, false, false, move || {
            self.inner.abort_multipart(key, upload)
        }))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.run("get", key, false, true, move || {
            self.inner.get_range(key, range)
        }))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.run("get", key, false, true, move || self.inner.get(key)))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(self.run("head", key, false, false, move || self.inner.head(key)))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(self.run("list", prefix, false, false, move || {
            self.inner.list(prefix)
        }))
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(self.run("list_multipart", prefix, false, false, move || {
            self.inner.list_multipart(prefix)
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("delete", key, false, false, move || self.inner.delete(key)))
    }

    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_rates_outside_zero_to_one() {
        FaultConfig::default().validate().expect("default is valid");
        for bad in [
            FaultConfig {
                error_rate: 1.5,
                ..FaultConfig::default()
            },
            FaultConfig {
                timeout_rate: -0.1,
                ..FaultConfig::default()
            },
            FaultConfig {
                slow_body_rate: f64::NAN,
                ..FaultConfig::default()
            },
            FaultConfig {
                latency: Latency::Spikes {
                    base: Duration::ZERO,
                    spike: Duration::from_millis(1),
                    probability: 2.0,
                },
                ..FaultConfig::default()
            },
            FaultConfig {
                latency: Latency::Uniform {
                    min: Duration::from_millis(2),
                    max: Duration::from_millis(1),
                },
                ..FaultConfig::default()
            },
        ] {
            let err = bad.validate().expect_err("invalid");
            assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn plans_follow_the_configured_rates() {
        let cfg = FaultConfig {
            error_rate: 0.25,
            timeout_rate: 0.5,
            latency: Latency::Uniform {
                min: Duration::from_millis(1),
                max: Duration::from_millis(3),
            },
            ..FaultConfig::default()
        };
        let mut rng = SmallRng::seed_from_u64(9);
        let plans: Vec<Plan> = (0..10_000).map(|_| cfg.plan(&mut rng)).collect();
        let errors = plans
            .iter()
            .filter(|p| matches!(p.fault, Some(Fault::Error { .. })))
            .count();
        let timeouts = plans
            .iter()
            .filter(|p| p.fault == Some(Fault::Timeout))
            .count();
        // Errors: 25%. Timeouts: 50% of the remaining 75%.
        assert!((2_250..2_750).contains(&errors), "{errors} errors");
        assert!((3_500..4_000).contains(&timeouts), "{timeouts} timeouts");
        assert!(plans.iter().all(|p| !p.slow_body));
        assert!(plans
            .iter()
            .all(|p| (Duration::from_millis(1)..=Duration::from_millis(3)).contains(&p.delay)));
    }
}
