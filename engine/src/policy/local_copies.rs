//! Which local copies of SSTs to drop so a shard's local files fit its share of the
//! local disk budget.
//!
//! Only a file the object store holds may lose its local copy, and only once its
//! warm window has passed (its first reads stay local). Among those, the oldest
//! uploads go first. Files not yet uploaded count against the budget but are never
//! candidates: the budget may stay exceeded until their uploads finish.

use std::time::{Duration, Instant};

/// What the policy knows of one file with a local copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalCopy {
    pub(crate) id: u64,
    pub(crate) size_bytes: u64,
    /// When its upload completed; `None` while not uploaded (or never to be).
    pub(crate) uploaded_at: Option<Instant>,
}

/// The files whose local copies to drop, oldest upload first, until the rest fit
/// `budget_bytes`; empty when they already fit.
pub(crate) fn choose_drops(
    copies: &[LocalCopy],
    budget_bytes: u64,
    warm_window: Duration,
    now: Instant,
) -> Vec<u64> {
    let mut local: u64 = copies.iter().map(|c| c.size_bytes).sum();
    if local <= budget_bytes {
        return Vec::new();
    }
    let mut candidates: Vec<(Instant, u64, u64)> = copies
        .iter()
        .filter_map(|c| {
            let at = c.uploaded_at?;
            (now.saturating_duration_since(at) >= warm_window).then_some((at, c.id, c.size_bytes))
        })
        .collect();
    candidates.sort_unstable();
    let mut drops = Vec::new();
    for (_, id, size) in candidates {
        if local <= budget_bytes {
            break;
        }
        drops.push(id);
        local = local.saturating_sub(size);
    }
    drops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(id: u64, size: u64, uploaded_secs_ago: Option<u64>, now: Instant) -> LocalCopy {
        LocalCopy {
            id,
            size_bytes: size,
            uploaded_at: uploaded_secs_ago.map(|s| now - Duration::from_secs(s)),
        }
    }

    #[test]
    fn nothing_is_dropped_within_the_budget() {
        let now = terrace_tiering::clock::now() + Duration::from_secs(1000);
        let c = [copy(1, 10, Some(100), now), copy(2, 10, Some(100), now)];
        assert!(choose_drops(&c, 20, Duration::ZERO, now).is_empty());
    }

    #[test]
    fn oldest_uploads_go_first_until_the_rest_fit() {
        let now = terrace_tiering::clock::now() + Duration::from_secs(1000);
        let c = [
            copy(1, 10, Some(50), now),
            copy(2, 10, Some(300), now),
            copy(3, 10, Some(200), now),
            copy(4, 10, Some(100), now),
        ];
        assert_eq!(choose_drops(&c, 20, Duration::ZERO, now), vec![2, 3]);
    }

    #[test]
    fn files_not_uploaded_or_still_warm_are_never_dropped() {
        let now = terrace_tiering::clock::now() + Duration::from_secs(1000);
        let c = [
            copy(1, 100, None, now),
            copy(2, 10, Some(5), now),
            copy(3, 10, Some(60), now),
        ];
        // Over budget by far, but only file 3 is uploaded and past a 30 s window.
        assert_eq!(choose_drops(&c, 10, Duration::from_secs(30), now), vec![3]);
    }
}
