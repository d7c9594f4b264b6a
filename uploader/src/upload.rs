//! The upload engine: moves finished SSTs from local disk to the object store.
//!
//! Flow of one file: [`Uploader::upload`] counts the job as queued and spawns it on the
//! I/O runtime at once. The job waits for one of `max_parallel_uploads` slots (the
//! uploader's own FIFO semaphore; the runtime's permits are for single requests), or
//! of `max_parallel_urgent_uploads` for an [`UploadPriority::Urgent`] job,
//! opens the file and checks its size, then sends it in one `put` (small files) or as
//! a multipart upload (`upload/multipart.rs`), computing the CRC32 of the whole file
//! as it reads. It then checks the file did not change meanwhile and, if configured,
//! reads the object back (`upload/verify.rs`).
//!
//! Invariants:
//! - Memory per file is the file itself below `multipart_threshold_bytes`, else at
//!   most `max_parallel_parts × part_bytes`.
//! - The uploader does not retry: wrap the store in the retrying decorator. A failed
//!   multipart upload is aborted; an object that fails verification is deleted (best
//!   effort), so a failed upload never leaves a known-bad object behind.
//! - Stats stay exact whatever happens to a job: see `upload/stats.rs`.

mod config;
mod error;
mod multipart;
mod source_file;
mod stats;
mod verify;

pub use config::{plan_parts, PartPlan, UploaderConfig, MAX_PARTS, MAX_PART_BYTES, MIN_PART_BYTES};
pub use error::UploadError;
pub use stats::UploadStats;
pub use verify::VERIFY_TAIL_BYTES;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use terrace_tiering::store::{IoHandle, IoTask, ObjectStore};
use tokio::sync::Semaphore;

use source_file::SourceFile;
use stats::{Counters, JobTicket, Outcome};

/// One file to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadJob {
    /// Object key.
    pub key: String,
    /// Local path of the finished, immutable file.
    pub path: PathBuf,
    /// Its size in bytes; the upload fails if the file is not exactly this big.
    pub size: u64,
    /// Which slots it waits for.
    pub priority: UploadPriority,
}

/// Which upload slots a job takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadPriority {
    /// One of `max_parallel_uploads` slots, in arrival order (compaction outputs).
    #[default]
    Background,
    /// One of `max_parallel_urgent_uploads` slots of its own, so it does not queue
    /// behind background uploads: files a checkpoint waits for (memtable snapshots,
    /// flush outputs).
    Urgent,
}

/// What a successful upload reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadReceipt {
    /// Object key.
    pub key: String,
    /// Bytes uploaded.
    pub size: u64,
    /// CRC32 (IEEE, as `crc32fast`) of the whole file as read for the upload; `None`
    /// when the store took the file without it being read (the local-directory
    /// store hard-links files on its own file system, see `ObjectStore::put_file`).
    pub crc32: Option<u32>,
    /// Multipart parts sent; 1 for a single `put`.
    pub parts: u32,
    /// Time from [`Uploader::upload`] to completion, queue wait included.
    pub elapsed: Duration,
}

/// The upload engine, shared by every shard (`Send + Sync`, held in an `Arc`).
pub struct Uploader {
    shared: Arc<Shared>,
}

struct Shared {
    io: IoHandle,
    store: Arc<dyn ObjectStore>,
    cfg: UploaderConfig,
    /// One permit per upload slot; closed by [`Uploader::close`].
    slots: Semaphore,
    /// The slots of urgent jobs; closed with `slots`.
    urgent_slots: Semaphore,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("store", &self.shared.store.describe())
            .field("cfg", &self.shared.cfg)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// An uploader sending to `store` (wrap it in the retrying decorator first) from
    /// tasks on `io`. Pass a config that passed [`UploaderConfig::validate`]; zero
    /// parallelism is raised to 1 rather than deadlocking.
    pub fn new(io: IoHandle, store: Arc<dyn ObjectStore>, cfg: UploaderConfig) -> Uploader {
        let cfg = UploaderConfig {
            max_parallel_uploads: cfg.max_parallel_uploads.max(1),
            max_parallel_urgent_uploads: cfg.max_parallel_urgent_uploads.max(1),
            max_parallel_parts: cfg.max_parallel_parts.max(1),
            part_bytes: cfg.part_bytes.max(1),
            ..cfg
        };
        Uploader {
            shared: Arc::new(Shared {
                io,
                store,
                slots: Semaphore::new(cfg.max_parallel_uploads),
                urgent_slots: Semaphore::new(cfg.max_parallel_urgent_uploads),
                cfg,
                counters: Arc::new(Counters::new()),
            }),
        }
    }

    /// Queues `job` and returns at once. The returned task resolves when the upload
    /// ends; dropping it does not stop the upload. If the I/O runtime stops first, the
    /// task resolves to `Err(TaskCancelled)` and the job is counted as cancelled, its
    /// bytes leaving `pending_bytes`. The runtime drops its tasks on its own threads
    /// as it stops, so the counters may settle a moment after the task resolves.
    pub fn upload(&self, job: UploadJob) -> IoTask<Result<UploadReceipt, UploadError>> {
        let start = terrace_tiering::clock::now();
        // Made here, not in the task: if the runtime drops the task unpolled, the
        // ticket still leaves the counters.
        let ticket = JobTicket::queued(self.shared.counters.clone(), job.size);
        let shared = self.shared.clone();
        self.shared.io.spawn_unlimited(async move {
            let mut ticket = ticket;
            let result = shared.run(&job, &mut ticket).await;
            let elapsed = start.elapsed();
            let outcome = match &result {
                Ok(_) => Outcome::Completed,
                Err(UploadError::Cancelled) => Outcome::Cancelled,
                Err(_) => Outcome::Failed,
            };
            ticket.end(outcome, elapsed);
            result.map(|done| UploadReceipt {
                key: job.key,
                size: job.size,
                crc32: done.crc32,
                parts: done.parts,
                elapsed,
            })
        })
    }

    /// Stops taking work: queued and later jobs resolve to
    /// [`UploadError::Cancelled`]; uploads already running finish.
    pub fn close(&self) {
        self.shared.slots.close();
        self.shared.urgent_slots.close();
    }

    /// A consistent snapshot of the counters.
    pub fn stats(&self) -> UploadStats {
        self.shared.counters.snapshot()
    }

    /// The configuration in use.
    pub fn config(&self) -> &UploaderConfig {
        &self.shared.cfg
    }
}

/// What a transfer reports before the receipt is built.
struct Sent {
    crc32: Option<u32>,
    parts: u32,
}

impl Shared {
    async fn run(&self, job: &UploadJob, ticket: &mut JobTicket) -> Result<Sent, UploadError> {
        let slots = match job.priority {
            UploadPriority::Background => &self.slots,
            UploadPriority::Urgent => &self.urgent_slots,
        };
        let _slot = slots.acquire().await.map_err(|_| UploadError::Cancelled)?;
        ticket.start();
        let file = SourceFile::open(&job.path, job.size).await?;
        if self.store.put_file(&job.key, &job.path, job.size).await? {
            // The object is the file itself (a second name of the same immutable
            // file): nothing was read or copied, and there is nothing to compare.
            return Ok(Sent {
                crc32: None,
                parts: 1,
            });
        }
        let (sent, tail) = if self.cfg.is_multipart(job.size) {
            let plan = plan_parts(job.size, self.cfg.part_bytes);
            let done = multipart::upload_multipart(
                &self.store,
                &job.key,
                &file,
                job.size,
                plan,
                self.cfg.max_parallel_parts,
            )
            .await?;
            let sent = Sent {
                crc32: Some(done.crc32),
                parts: done.parts,
            };
            (sent, None)
        } else {
            let (body, crc) = file.read(0..job.size).await?;
            self.store.put(&job.key, body.clone()).await?;
            // A copy, so the whole body is freed before verification reads back. The
            // body is below the multipart threshold and so addressable.
            let tail = verify::tail_range(job.size);
            let tail = Bytes::copy_from_slice(&body[tail.start as usize..tail.end as usize]);
            drop(body);
            let sent = Sent {
                crc32: Some(crc.finalize()),
                parts: 1,
            };
            (sent, Some(tail))
        };
        // What was sent is the announced file only if it did not change meanwhile.
        file.check_size(job.size).await?;
        if self.cfg.verify {
            let checked = verify::verify(&*self.store, &job.key, job.size, &file, tail).await;
            if let Err(e @ UploadError::Mismatch { .. }) = checked {
                // Nothing references the object yet; remove the known-bad bytes. If the
                // delete fails, the next upload of the key overwrites them.
                let _ = self.store.delete(&job.key).await;
                return Err(e);
            }
            checked?;
        }
        Ok(sent)
    }
}
