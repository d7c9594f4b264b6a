//! Retries with exponential backoff and full jitter around any [`ObjectStore`].
//!
//! Each call is tried at most [`RetryConfig::max_attempts`] times; only errors whose
//! kind [`is_retryable`](super::StoreErrorKind::is_retryable) (transient failures and
//! timeouts) are tried again. Each attempt runs under
//! [`RetryConfig::request_timeout`] when set; an attempt that runs out of time becomes
//! a `Timeout` error, which is retried like any other transient failure.
//!
//! Between attempts the store sleeps a random delay below a ceiling that starts at
//! `base_delay` and doubles per retry up to `max_delay` ("full jitter"), so clients
//! that failed together do not retry together. Multipart parts are retried one by
//! one: a failed part does not restart the upload.
//!
//! Retrying writes is safe because objects are immutable (a put stores the same bytes
//! again) and the stores make completion, abort and delete idempotent.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreError,
    StoreErrorKind, StoreResult,
};

/// Upper bound on [`RetryConfig::max_attempts`] accepted by [`RetryConfig::validate`].
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// How hard to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Tries per call, the first included. At least 1.
    pub max_attempts: u32,
    /// Ceiling of the first backoff; doubles with each retry.
    pub base_delay: Duration,
    /// Ceiling of any backoff.
    pub max_delay: Duration,
    /// Time allowed for one attempt; `None` waits as long as the store takes.
    pub request_timeout: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 6,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl RetryConfig {
    /// Rejects settings that cannot work: no attempts, absurdly many, a base delay
    /// above the maximum, a zero request timeout.
    pub fn validate(&self) -> StoreResult<()> {
        let bad = |why: String| {
            Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "config",
                "retry",
                why,
            ))
        };
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return bad(format!(
                "max_attempts is {}; it must be in 1..={MAX_ATTEMPTS_LIMIT}",
                self.max_attempts
            ));
        }
        if self.base_delay > self.max_delay {
            return bad(format!(
                "base_delay {:?} is above max_delay {:?}",
                self.base_delay, self.max_delay
            ));
        }
        if self.request_timeout == Some(Duration::ZERO) {
            return bad("request_timeout is zero; use None for no timeout".to_owned());
        }
        Ok(())
    }

    /// The backoff after failed attempt `attempt` (1-based), given `unit`, a uniform
    /// random number in `[0, 1)`. Pure, so the schedule can be tested without time.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let doubling = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let ceiling = self.base_delay.saturating_mul(doubling).min(self.max_delay);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// An [`ObjectStore`] that retries the calls of the store it wraps.
pub struct RetryingStore<S: ?Sized = dyn ObjectStore> {
    inner: Arc<S>,
    cfg: RetryConfig,
    jitter: Mutex<SmallRng>,
    retries: AtomicU64,
    gave_up: AtomicU64,
}

impl<S: ObjectStore + ?Sized> fmt::Debug for RetryingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStore")
            .field("inner", &self.inner)
            .field("cfg", &self.cfg)
            .field("retries", &self.retries())
            .field("gave_up", &self.gave_up())
            .finish()
    }
}

impl<S: ObjectStore + ?Sized> RetryingStore<S> {
    /// Wraps `inner`; the jitter comes from an entropy-seeded RNG.
    pub fn new(inner: Arc<S>, cfg: RetryConfig) -> RetryingStore<S> {
        Self::with_rng(
            inner,
            cfg,
            crate::clock::seeded_rng(crate::clock::fresh_seed()),
        )
    }

    /// Wraps `inner` with jitter drawn from an RNG seeded with `seed`, for replayable
    /// tests.
    pub fn with_jitter_seed(inner: Arc<S>, cfg: RetryConfig, seed: u64) -> RetryingStore<S> {
        Self::with_rng(inner, cfg, SmallRng::seed_from_u64(seed))
    }

    fn with_rng(inner: Arc<S>, cfg: RetryConfig, rng: SmallRng) -> RetryingStore<S> {
        RetryingStore {
            inner,
            cfg,
            jitter: Mutex::new(rng),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        }
    }

    /// Attempts made beyond the first, over all calls so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Calls that failed with a retryable error on their last allowed attempt.
    pub fn gave_up(&self) -> u64 {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// The settings.
    pub fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    fn next_delay(&self, attempt: u32) -> Duration {
        let unit = self
            .jitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gen::<f64>();
        self.cfg.backoff(attempt, unit)
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts.
    async fn run<'a, T, F, Fut>(
        &'a self,
        op: &'static str,
        key: &'a str,
        mut call: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = StoreResult<T>> + Send + 'a,
        T: Send,
    {
        let attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = match self.cfg.request_timeout {
                None => call().await,
                Some(limit) => match tokio::time::timeout(limit, call()).await {
                    Ok(result) => result,
                    Err(_elapsed) => Err(StoreError::new(
                        StoreErrorKind::Timeout,
                        op,
                        key,
                        format!("no answer within {limit:?}"),
                    )),
                },
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let delay = self.next_delay(attempt);
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(mut e) => {
                    if e.is_retryable() {
                        self.gave_up.fetch_add(1, Ordering::Relaxed);
                        e.message = format!("{} (gave up after {attempt} attempts)", e.message);
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl<S: ObjectStore + ?Sized> ObjectStore for RetryingStore<S> {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("put", key, move || self.inner.put(key, body.clone())))
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(self.run("multipart", key, move || self.inner.create_multipart(key)))
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a std::path::Path,
        size: u64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.run("put", key, move || self.inner.put_file(key, path, size)))
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(self.run("multipart", key, move || {
            self.inner.put_part(key, upload, part_number, body.clone())
        }))
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("multipart", key, move || {
            self.inner.complete_multipart(key, upload, parts.clone())
        }))
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("multipart", key, move || {
            self.inner.abort_multipart(key, upload)
        }))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.run("get", key, move || self.inner.get_range(key, range.clone())))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.run("get", key, move || self.inner.get(key)))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(self.run("head", key, move || self.inner.head(key)))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(self.run("list", prefix, move || self.inner.list(prefix)))
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(self.run("list_multipart", prefix, move || {
            self.inner.list_multipart(prefix)
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.run("delete", key, move || self.inner.delete(key)))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_jitters_below_the_ceiling() {
        let cfg = RetryConfig {
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            ..RetryConfig::default()
        };
        let top = |attempt| cfg.backoff(attempt, 1.0);
        assert_eq!(top(1), Duration::from_millis(50));
        assert_eq!(top(2), Duration::from_millis(100));
        assert_eq!(top(3), Duration::from_millis(200));
        assert_eq!(top(4), Duration::from_millis(300));
        assert_eq!(top(60), Duration::from_millis(300));
        assert_eq!(cfg.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(cfg.backoff(3, 0.5), Duration::from_millis(100));
    }

    #[test]
    fn config_validation_rejects_unworkable_settings() {
        RetryConfig::default().validate().expect("default is valid");
        for bad in [
            RetryConfig {
                max_attempts: 0,
                ..RetryConfig::default()
            },
            RetryConfig {
                max_attempts: MAX_ATTEMPTS_LIMIT + 1,
                ..RetryConfig::default()
            },
            RetryConfig {
                base_delay: Duration::from_secs(5),
                ..RetryConfig::default()
            },
            RetryConfig {
                request_timeout: Some(Duration::ZERO),
                ..RetryConfig::default()
            },
        ] {
            let err = bad.validate().expect_err("invalid");
            assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
        }
    }
}
