//! How the upload engine is sized, and how a file is cut into parts.
//!
//! [`plan_parts`] is a pure function of a file size and the configured part size, so
//! the part layout can be tested without any I/O.

/// S3's smallest part (every part but the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's largest part, and its largest single `put`.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's limit on parts per multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// Sizes of the upload engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploaderConfig {
    /// Files uploading at once; the rest wait in arrival order.
    pub max_parallel_uploads: usize,
    /// Urgent files (see `UploadPriority`) uploading at once, in slots of their own
    /// on top of `max_parallel_uploads`.
    pub max_parallel_urgent_uploads: usize,
    /// Files at least this big go multipart; smaller ones go in one `put`.
    pub multipart_threshold_bytes: u64,
    /// Size of each part but the last.
    pub part_bytes: u64,
    /// Parts of one file in flight at once. Memory held by one file's upload is at
    /// most `max_parallel_parts × part_bytes`.
    pub max_parallel_parts: usize,
    /// Read back after the upload: `head` must report the exact size and the last
    /// [`VERIFY_TAIL_BYTES`](crate::VERIFY_TAIL_BYTES) must match the local file.
    pub verify: bool,
    /// Allows parts below S3's 5 MiB minimum (tests and the local store only).
    pub allow_small_parts: bool,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        UploaderConfig {
            max_parallel_uploads: 4,
            max_parallel_urgent_uploads: 2,
            multipart_threshold_bytes: 32 * 1024 * 1024,
            part_bytes: 8 * 1024 * 1024,
            max_parallel_parts: 4,
            verify: true,
            allow_small_parts: false,
        }
    }
}

impl UploaderConfig {
    /// Checks the sizes against each other and against S3's limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_parallel_uploads == 0 {
            return Err("uploader: max_parallel_uploads must be at least 1".into());
        }
        if self.max_parallel_urgent_uploads == 0 {
            return Err("uploader: max_parallel_urgent_uploads must be at least 1".into());
        }
        if self.max_parallel_parts == 0 {
            return Err("uploader: max_parallel_parts must be at least 1".into());
        }
        if self.part_bytes == 0 {
            return Err("uploader: part_bytes must be at least 1".into());
        }
        if self.part_bytes < MIN_PART_BYTES && !self.allow_small_parts {
            return Err(format!(
                "uploader: part_bytes is {} but S3 needs parts of at least {MIN_PART_BYTES} \
                 bytes (set allow_small_parts for tests)",
                self.part_bytes
            ));
        }
        if self.part_bytes > MAX_PART_BYTES {
            return Err(format!(
                "uploader: part_bytes is {} but S3 takes parts of at most {MAX_PART_BYTES} bytes",
                self.part_bytes
            ));
        }
        if self.multipart_threshold_bytes > MAX_PART_BYTES {
            return Err(format!(
                "uploader: multipart_threshold_bytes is {} but S3 takes single puts of at most \
                 {MAX_PART_BYTES} bytes",
                self.multipart_threshold_bytes
            ));
        }
        Ok(())
    }

    /// Whether a file of `size` bytes goes multipart.
    pub fn is_multipart(&self, size: u64) -> bool {
        size >= self.multipart_threshold_bytes
    }
}

/// How a file is cut into parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of every part but the last.
    pub part_bytes: u64,
    /// Number of parts, at least 1.
    pub parts: u32,
}

impl PartPlan {
    /// Byte range of part `index` (0-based) within the file of `size` bytes.
    pub fn range(&self, index: u32, size: u64) -> std::ops::Range<u64> {
        let start = u64::from(index) * self.part_bytes;
        start..size.min(start + self.part_bytes)
    }
}

/// Cuts `size` bytes into parts of `part_bytes`, growing the part size when the file
/// would need more than [`MAX_PARTS`] parts. An empty file is one empty part.
pub fn plan_parts(size: u64, part_bytes: u64) -> PartPlan {
    let part_bytes = part_bytes.max(size.div_ceil(MAX_PARTS)).max(1);
    let parts = size.div_ceil(part_bytes).max(1);
    // parts <= MAX_PARTS by construction, so it fits in u32.
    PartPlan {
        part_bytes,
        parts: u32::try_from(parts).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_small_parts_need_the_flag() {
        assert_eq!(UploaderConfig::default().validate(), Ok(()));
        let mut cfg = UploaderConfig {
            part_bytes: 64 * 1024,
            ..UploaderConfig::default()
        };
        assert!(cfg.validate().is_err());
        cfg.allow_small_parts = true;
        assert_eq!(cfg.validate(), Ok(()));
        cfg.max_parallel_parts = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn parts_cover_the_file_exactly() {
        for (size, part) in [
            (0, 10),
            (1, 10),
            (10, 10),
            (11, 10),
            (300 * 1024, 64 * 1024),
        ] {
            let plan = plan_parts(size, part);
            let mut next = 0;
            for i in 0..plan.parts {
                let r = plan.range(i, size);
                assert_eq!(r.start, next);
                assert!(r.end - r.start <= plan.part_bytes);
                next = r.end;
            }
            assert_eq!(next, size, "size {size} part {part}");
        }
        assert_eq!(plan_parts(300 * 1024, 64 * 1024).parts, 5);
    }

    #[test]
    fn huge_files_grow_the_part_size_to_stay_within_the_part_limit() {
        let plan = plan_parts(MAX_PARTS * 100 + 1, 10);
        assert!(u64::from(plan.parts) <= MAX_PARTS);
        assert_eq!(plan.part_bytes, 101);
    }
}
