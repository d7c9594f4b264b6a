//! Invariants of the LSM layout, checked on a [`Db::live_files`](terrace::Db::live_files)
//! snapshot. Pure: a list of files in, a list of broken invariants out.
//!
//! Per file: its keys decode, `smallest <= largest`, its key groups belong to its
//! shard, its seqno range and counts are sane, its level exists, and it has a copy
//! somewhere (local or uploaded). Per shard: no file id twice; every level >= 1 is
//! sorted and its files' state-key ranges do not overlap; L0 files, newest first,
//! have disjoint descending seqno ranges; and an L0 file is newer than every deeper
//! file whose key range it overlaps (reads look at L0 first, so an older L0 version
//! would hide a newer one below).
//!
//! Across a close and reopen of a settled database ([`check_reopen`]): the same
//! files come back at the same levels with the same descriptions, and no file that
//! was uploaded before the close is pending upload after it (the manifest must
//! remember every upload, or a file whose local copy was dropped cannot be opened).

use std::cmp::Ordering;
use std::collections::HashSet;

use terrace::key::{
    compare_internal, shard_key_groups, state_key_group, state_key_of, InternalKey,
};
use terrace::LiveFile;

/// The shape the files must fit.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Shards of the database.
    pub shards: u32,
    /// Its key groups.
    pub max_key_groups: u16,
    /// Levels, L0 included.
    pub num_levels: usize,
}

fn show(ikey: &[u8]) -> String {
    match InternalKey::decode(ikey) {
        Some(k) if k.state_key.len() >= 4 => format!(
            "kg{} {:?}@{}",
            state_key_group(k.state_key),
            String::from_utf8_lossy(&k.state_key[4..]),
            k.seqno
        ),
        _ => format!("{ikey:?}"),
    }
}

fn name(f: &LiveFile) -> String {
    format!("shard {} L{} file {:016x}", f.shard, f.level, f.id)
}

fn check_file(f: &LiveFile, layout: &Layout, out: &mut Vec<String>) {
    let (Some(lo), Some(hi)) = (
        InternalKey::decode(&f.smallest),
        InternalKey::decode(&f.largest),
    ) else {
        out.push(format!(
            "{}: smallest or largest key does not decode",
            name(f)
        ));
        return;
    };
    if lo.state_key.len() < 4 || hi.state_key.len() < 4 {
        out.push(format!("{}: keys shorter than a state-key prefix", name(f)));
        return;
    }
    if compare_internal(&f.smallest, &f.largest) == Ordering::Greater {
        out.push(format!(
            "{}: smallest {} sorts after largest {}",
            name(f),
            show(&f.smallest),
            show(&f.largest)
        ));
    }
    let r = shard_key_groups(
        f.shard,
        layout.shards,
        terrace::KeyGroupRange::all(layout.max_key_groups),
    );
    let (first, last) = (r.first, r.last);
    for k in [lo, hi] {
        let kg = state_key_group(k.state_key);
        if !(first..=last).contains(&kg) {
            out.push(format!(
                "{}: holds key group {kg}, the shard owns {first}..={last}",
                name(f)
            ));
        }
    }
    if f.seqnos.0 > f.seqnos.1 {
        out.push(format!(
            "{}: seqno range {:?} is inverted",
            name(f),
            f.seqnos
        ));
    }
    if f.entries == 0 || f.deletions > f.entries {
        out.push(format!(
            "{}: {} entries, {} deletions",
            name(f),
            f.entries,
            f.deletions
        ));
    }
    if f.level as usize >= layout.num_levels {
        out.push(format!(
            "{}: only {} levels exist",
            name(f),
            layout.num_levels
        ));
    }
    if !f.local && !f.uploaded {
        out.push(format!(
            "{}: neither a local copy nor an uploaded object",
            name(f)
        ));
    }
}

fn overlaps(a: &LiveFile, b: &LiveFile) -> bool {
    state_key_of(&a.smallest) <= state_key_of(&b.largest)
        && state_key_of(&b.smallest) <= state_key_of(&a.largest)
}

/// Every broken invariant of `files` (in `live_files` order), one message each.
pub fn check_layout(files: &[LiveFile], layout: &Layout) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        check_file(f, layout, &mut out);
    }
    for shard in 0..layout.shards {
        let mine: Vec<&LiveFile> = files.iter().filter(|f| f.shard == shard).collect();
        let mut ids = HashSet::new();
        for f in &mine {
            if !ids.insert(f.id) {
                out.push(format!("{}: listed twice", name(f)));
            }
        }
        let level = |l: u32| mine.iter().copied().filter(move |f| f.level == l);
        for l in 1..layout.num_levels as u32 {
            let files: Vec<&LiveFile> = level(l).collect();
            for w in files.windows(2) {
                if state_key_of(&w[0].largest) >= state_key_of(&w[1].smallest) {
                    out.push(format!(
                        "{} [{} .. {}] and {} [{} .. {}] overlap or are out of order",
                        name(w[0]),
                        show(&w[0].smallest),
                        show(&w[0].largest),
                        name(w[1]),
                        show(&w[1].smallest),
                        show(&w[1].largest)
                    ));
                }
            }
        }
        let l0: Vec<&LiveFile> = level(0).collect();
        for w in l0.windows(2) {
            if w[1].seqnos.1 >= w[0].seqnos.0 {
                out.push(format!(
                    "L0 is not newest first with disjoint seqnos: {} has {:?}, the older {} has {:?}",
                    name(w[0]),
                    w[0].seqnos,
                    name(w[1]),
                    w[1].seqnos
                ));
            }
        }
        for young in &l0 {
            for old in mine.iter().filter(|f| f.level > 0 && overlaps(young, f)) {
                if old.seqnos.1 >= young.seqnos.0 {
                    out.push(format!(
                        "{} (seqnos {:?}) overlaps the deeper {} (seqnos {:?}) but is not newer",
                        name(young),
                        young.seqnos,
                        name(old),
                        old.seqnos
                    ));
                }
            }
        }
    }
    out
}

/// Whether `a` and `b` describe the same file the same way, apart from where its
/// copies are (a reopen may find a local copy gone, and uploads are checked apart).
fn same_description(a: &LiveFile, b: &LiveFile) -> bool {
    let mut b = b.clone();
    b.local = a.local;
    b.uploaded = a.uploaded;
    *a == b
}

/// Differences between the files of a settled database before a close (`before`)
/// and after the reopen (`after`).
pub fn check_reopen(before: &[LiveFile], after: &[LiveFile]) -> Vec<String> {
    let mut out = Vec::new();
    let find = |files: &[LiveFile], f: &LiveFile| {
        files
            .iter()
            .find(|g| (g.shard, g.id) == (f.shard, f.id))
            .cloned()
    };
    for f in before {
        match find(after, f) {
            None => out.push(format!("{} was live before the close, not after", name(f))),
            Some(g) if !same_description(f, &g) => out.push(format!(
                "{} came back as {} with a different description: {f:?} became {g:?}",
                name(f),
                name(&g)
            )),
            Some(g) if f.uploaded && !g.uploaded => out.push(format!(
                "{} was uploaded before the close; after the reopen the manifest does not \
                 say so (local copy {})",
                name(f),
                if g.local { "present" } else { "gone" }
            )),
            Some(_) => {}
        }
    }
    for g in after {
        if find(before, g).is_none() {
            out.push(format!("{} appeared with the reopen", name(g)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use terrace::key::{make_internal_key, ValueKind};

    const LAYOUT: Layout = Layout {
        shards: 1,
        max_key_groups: 16,
        num_levels: 4,
    };

    fn ikey(user: &str, seqno: u64) -> Vec<u8> {
        let mut sk = vec![0, 3, 0, 0];
        sk.extend_from_slice(user.as_bytes());
        make_internal_key(&sk, seqno, ValueKind::Put)
    }

    fn file(id: u64, level: u32, lo: &str, hi: &str, seqnos: (u64, u64)) -> LiveFile {
        LiveFile {
            shard: 0,
            level,
            id,
            size_bytes: 100,
            smallest: ikey(lo, seqnos.1),
            largest: ikey(hi, seqnos.0),
            entries: 10,
            deletions: 1,
            seqnos,
            local: true,
            uploaded: false,
            object_key: format!("sst/0000000000000001/{id:016x}.sst"),
            home: String::new(),
            metadata_bytes: 0,
        }
    }

    #[test]
    fn a_healthy_layout_passes() {
        let files = vec![
            file(9, 0, "a", "z", (300, 400)),
            file(8, 0, "b", "c", (200, 299)),
            file(3, 1, "a", "f", (1, 150)),
            file(4, 1, "g", "m", (1, 199)),
            file(5, 2, "a", "z", (1, 100)),
        ];
        assert_eq!(check_layout(&files, &LAYOUT), Vec::<String>::new());
    }

    #[test]
    fn overlapping_levels_old_l0_files_and_lost_copies_are_caught() {
        let mut orphan = file(6, 2, "a", "b", (1, 2));
        orphan.local = false;
        let files = vec![
            file(9, 0, "a", "c", (100, 120)),
            file(3, 1, "a", "f", (1, 150)),
            file(4, 1, "f", "m", (1, 99)),
            orphan,
        ];
        let got = check_layout(&files, &LAYOUT);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].contains("neither a local copy"), "{got:#?}");
        assert!(got[1].contains("overlap or are out of order"), "{got:#?}");
        assert!(got[2].contains("is not newer"), "{got:#?}");
    }

    #[test]
    fn a_reopen_must_keep_files_levels_and_uploads() {
        let mut a = file(1, 1, "a", "c", (1, 5));
        a.uploaded = true;
        let b = file(2, 2, "d", "f", (1, 5));
        let before = vec![a.clone(), b.clone()];
        let mut dropped = a.clone();
        dropped.local = false;
        assert!(check_reopen(&before, &[dropped, b.clone()]).is_empty());
        let mut forgot = a.clone();
        forgot.uploaded = false;
        let got = check_reopen(&before, &[forgot, b.clone()]);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("was uploaded before the close"), "{got:#?}");
        let mut moved = b.clone();
        moved.level = 3;
        let got = check_reopen(&before, &[a.clone(), moved, file(7, 0, "a", "b", (9, 9))]);
        assert_eq!(got.len(), 2, "{got:#?}");
    }

    #[test]
    fn foreign_key_groups_and_inverted_ranges_are_caught() {
        let two = Layout {
            shards: 2,
            ..LAYOUT
        };
        let mut f = file(1, 1, "z", "a", (5, 1));
        f.shard = 1; // owns key groups 8..=15, the keys are in group 3
        let got = check_layout(&[f], &two);
        assert_eq!(got.len(), 4, "{got:#?}");
    }
}
