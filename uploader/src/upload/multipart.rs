//! Multipart upload of one large file with a bounded number of parts in flight.
//!
//! A part is read from disk only when a slot frees, so one file never holds more than
//! `max_parallel_parts` part buffers. Parts run as tasks on the I/O runtime (so they
//! use all its threads); the first failure stops the rest, waits until none is still
//! sending, and aborts the multipart upload so the store frees the parts. If the
//! runtime stops mid-upload the parts are abandoned without an abort (nothing can run
//! any more); the bucket's lifecycle rule for incomplete uploads reclaims them.

use std::sync::Arc;

use terrace_tiering::store::{MultipartId, ObjectStore, PartReceipt};
use tokio::task::JoinSet;

use super::config::PartPlan;
use super::source_file::SourceFile;
use super::UploadError;

/// What a finished multipart upload reports.
pub(crate) struct MultipartDone {
    /// CRC32 of the whole file.
    pub(crate) crc32: u32,
    /// Parts uploaded.
    pub(crate) parts: u32,
}

/// Uploads `file` (of `size` bytes) to `key` in the parts of `plan`.
pub(crate) async fn upload_multipart(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    file: &SourceFile,
    size: u64,
    plan: PartPlan,
    max_parallel_parts: usize,
) -> Result<MultipartDone, UploadError> {
    let id = store.create_multipart(key).await?;
    let sent = send_parts(store, key, &id, file, size, plan, max_parallel_parts).await;
    let result = match sent {
        Ok((receipts, crc32)) => store
            .complete_multipart(key, &id, receipts)
            .await
            .map(|()| MultipartDone {
                crc32,
                parts: plan.parts,
            })
            .map_err(UploadError::from),
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Best effort: the upload already failed, and an abort that fails too leaves
        // parts for the bucket's lifecycle rule, which is no worse.
        let _ = store.abort_multipart(key, &id).await;
    }
    result
}

/// Sends every part; returns the receipts in part order and the CRC32 of the file.
async fn send_parts(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    id: &MultipartId,
    file: &SourceFile,
    size: u64,
    plan: PartPlan,
    max_parallel_parts: usize,
) -> Result<(Vec<PartReceipt>, u32), UploadError> {
    let slots = max_parallel_parts.max(1);
    let mut done: Vec<(u32, PartReceipt, crc32fast::Hasher)> =
        Vec::with_capacity(plan.parts as usize);
    let mut tasks = JoinSet::new();
    let mut next: u32 = 0;
    loop {
        while tasks.len() < slots && next < plan.parts {
            let part = Part {
                store: store.clone(),
                key: key.to_owned(),
                id: id.clone(),
                file: file.clone(),
                index: next,
                range: plan.range(next, size),
            };
            tasks.spawn(part.send());
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let outcome = match joined {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(UploadError::Cancelled),
        };
        match outcome {
            Ok(part) => done.push(part),
            Err(e) => {
                // No part may still be sending when the caller aborts the upload, or
                // it could land after the abort and be orphaned.
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return Err(e);
            }
        }
    }
    // Every part was spawned once and joined without error: `done` holds each index
    // exactly once, in completion order.
    debug_assert_eq!(done.len(), plan.parts as usize);
    done.sort_unstable_by_key(|(index, _, _)| *index);
    let mut crc = crc32fast::Hasher::new();
    let mut receipts = Vec::with_capacity(done.len());
    for (_, receipt, part_crc) in done {
        crc.combine(&part_crc);
        receipts.push(receipt);
    }
    Ok((receipts, crc.finalize()))
}

/// One part, owned so it can run as its own task.
struct Part {
    store: Arc<dyn ObjectStore>,
    key: String,
    id: MultipartId,
    file: SourceFile,
    /// 0-based; the store's part number is `index + 1`.
    index: u32,
    range: std::ops::Range<u64>,
}

impl Part {
    async fn send(self) -> Result<(u32, PartReceipt, crc32fast::Hasher), UploadError> {
        let (body, crc) = self.file.read(self.range.clone()).await?;
        let receipt = self
            .store
            .put_part(&self.key, &self.id, self.index + 1, body)
            .await?;
        if receipt.part_number != self.index + 1 {
            return Err(UploadError::Mismatch {
                key: self.key,
                detail: format!(
                    "store acknowledged part {} as part {}",
                    self.index + 1,
                    receipt.part_number
                ),
            });
        }
        Ok((self.index, receipt, crc))
    }
}
