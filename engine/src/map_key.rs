//! Composite keys for map state: one key's entries under `(key, map key)`, sorted
//! by map key and readable with one prefix scan.
//!
//! Encoding: the key with every `0x00` byte written as `0x00 0xff`, then the
//! terminator `0x00 0x01`, then the map key as is. Inside the escaped key a `0x00`
//! is always followed by `0xff`, so [`prefix`]`(key)` is a prefix of exactly the
//! composites of `key` (no other key's composites start with it), and composites
//! sort by key, then by map key (bytewise), like the pairs they encode.
//!
//! To read one key's map from one key group (`Db::scan_prefix`, or `Db::iter` with
//! [`KeyRange::prefix`](crate::KeyRange::prefix)), all its composites must share a
//! key group: open the database with `Options::key_group_prefix_bytes` at most
//! `prefix(key).len()` for every key, e.g. the key width for fixed-width keys (the
//! escaped key is never shorter than the key). With a longer partition prefix the
//! scan is still correct, but visits every key group.

/// The terminator after the escaped key.
const TERMINATOR: [u8; 2] = [0x00, 0x01];

fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
}

/// The prefix shared by every composite of `key` and by nothing else.
pub fn prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + TERMINATOR.len());
    escape_into(&mut out, key);
    out.extend_from_slice(&TERMINATOR);
    out
}

/// The composite key of entry `map_key` of `key`.
pub fn compose(key: &[u8], map_key: &[u8]) -> Vec<u8> {
    let mut out = prefix(key);
    out.extend_from_slice(map_key);
    out
}

/// Splits a composite into its key and map key; `None` if it is not one.
pub fn split(composite: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::new();
    let mut i = 0;
    while i < composite.len() {
        let b = composite[i];
        if b != 0 {
            key.push(b);
            i += 1;
            continue;
        }
        match composite.get(i + 1) {
            Some(0xff) => {
                key.push(0);
                i += 2;
            }
            Some(0x01) => return Some((key, &composite[i + 2..])),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_split_round_trip() {
        for (k, m) in [
            (&b"user-1"[..], &b"item"[..]),
            (b"\x00", b"\xff"),
            (b"a\x00b", b""),
            (b"", b"x"),
        ] {
            let c = compose(k, m);
            assert!(c.starts_with(&prefix(k)));
            let (k2, m2) = split(&c).expect("a composite");
            assert_eq!((k2.as_slice(), m2), (k, m));
        }
        assert_eq!(split(b"abc"), None);
        assert_eq!(split(b"a\x00\x02"), None);
    }

    #[test]
    fn prefixes_are_exclusive_and_order_is_kept() {
        // "a" with map key "\xff b" must not fall under the prefix of "a\x00b".
        let keys: [&[u8]; 6] = [b"", b"\x00", b"a", b"a\x00", b"a\x00b", b"ab"];
        let maps: [&[u8]; 4] = [b"", b"\x00", b"\x01", b"\xff b"];
        let mut pairs = Vec::new();
        for k in keys {
            for m in maps {
                pairs.push((k.to_vec(), m.to_vec(), compose(k, m)));
            }
        }
        for (k, _, c) in &pairs {
            for k2 in keys {
                assert_eq!(
                    c.starts_with(&prefix(k2)),
                    k.as_slice() == k2,
                    "{c:?} {k2:?}"
                );
            }
        }
        let mut by_pair = pairs.clone();
        by_pair.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut by_composite = pairs;
        by_composite.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(by_pair, by_composite);
    }
}
