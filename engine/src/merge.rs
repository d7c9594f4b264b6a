//! Merge operators: read-modify-write state without a read on the write path.
//!
//! A table with a [`MergeOperator`] (set in [`TableOptions`](crate::TableOptions))
//! accepts `merge(table, key, operand)`: the operand is written as an entry of kind
//! [`ValueKind::Merge`](crate::key::ValueKind) next to puts and tombstones, and
//! nothing is read. The key's value is resolved when it is read: the versions of the
//! key are collected newest first down to a put, a tombstone or the bottom of the
//! tree, and the operator's [`MergeOperator::full_merge`] applies the operands (oldest
//! first) to that base. Flushes and compactions combine the operands of one key with
//! [`MergeOperator::partial_merge`] (or, once the base is among their inputs or they
//! write the bottom level, `full_merge` into a put), so a key never piles up more
//! than one operand per sorted run.
//!
//! Operands are combined without knowing the base, so `partial_merge` must be
//! associative: `full(base, [a, b, c]) == full(base, [partial([a, b]), c])`.
//!
//! Operators are code, not data: only [`MergeOperator::name`] is persisted (in
//! `TERRACE-META`), and a database refuses to open a table with another operator
//! than the one it recorded.
//!
//! Built-ins: [`AppendOperator`] (list state) and [`U64AddOperator`] (counters).

use std::borrow::Cow;
use std::sync::Arc;

/// Why a merge operator refused its inputs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MergeError {
    /// What was wrong with the operand or value.
    pub reason: String,
}

impl MergeError {
    /// An error with `reason`.
    pub fn new(reason: impl Into<String>) -> MergeError {
        MergeError {
            reason: reason.into(),
        }
    }
}

/// Combines a key's value with the operands merged into it since.
pub trait MergeOperator: Send + Sync {
    /// The operator's name, persisted with the table: reopening the table with an
    /// operator of another name is refused.
    fn name(&self) -> &str;

    /// Turns what the caller passed to `merge` into the operand that is stored
    /// (called on the write path; no read). Validates it too: an `Err` fails the
    /// `merge` call with an InvalidArgument error and writes nothing. The default
    /// stores the bytes as given.
    fn encode_operand<'a>(&self, operand: &'a [u8]) -> Result<Cow<'a, [u8]>, MergeError> {
        Ok(Cow::Borrowed(operand))
    }

    /// Checks a value `put` into the table (called on the write path): a value the
    /// operator could not merge into later is refused with an InvalidArgument error
    /// then, not when a flush or compaction meets it. The default accepts any.
    fn validate_value(&self, value: &[u8]) -> Result<(), MergeError> {
        let _ = value;
        Ok(())
    }

    /// The value after applying `operands` (oldest first, at least one) to
    /// `existing` (`None`: the key had no value, or was deleted).
    fn full_merge(
        &self,
        key: &[u8],
        existing: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, MergeError>;

    /// One operand equivalent to `operands` (oldest first, at least two) applied in
    /// turn. Must be associative (see the module docs).
    fn partial_merge(&self, key: &[u8], operands: &[&[u8]]) -> Result<Vec<u8>, MergeError>;
}

impl std::fmt::Debug for dyn MergeOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MergeOperator({:?})", self.name())
    }
}

/// Name of [`AppendOperator`].
pub const APPEND: &str = "terrace.append";
/// Name of [`U64AddOperator`].
pub const U64_ADD: &str = "terrace.u64_add";

/// List state: every merged operand is appended to the list.
///
/// A list value is its elements in merge order, each as `[len: u32 LE][bytes]`
/// (an empty list is empty bytes); read it with [`decode_list`]. The caller merges
/// one element's raw bytes; a put of a list value must use this encoding
/// ([`encode_list`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendOperator;

impl MergeOperator for AppendOperator {
    fn name(&self) -> &str {
        APPEND
    }

    fn encode_operand<'a>(&self, operand: &'a [u8]) -> Result<Cow<'a, [u8]>, MergeError> {
        let len = u32::try_from(operand.len())
            .map_err(|_| MergeError::new("a list element longer than 4 GiB"))?;
        let mut out = Vec::with_capacity(4 + operand.len());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(operand);
        Ok(Cow::Owned(out))
    }

    fn validate_value(&self, value: &[u8]) -> Result<(), MergeError> {
        check_list(value)
    }

    fn full_merge(
        &self,
        _key: &[u8],
        existing: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, MergeError> {
        let base = existing.unwrap_or(&[]);
        check_list(base)?;
        let mut out =
            Vec::with_capacity(base.len() + operands.iter().map(|o| o.len()).sum::<usize>());
        out.extend_from_slice(base);
        for o in operands {
            check_list(o)?;
            out.extend_from_slice(o);
        }
        Ok(out)
    }

    fn partial_merge(&self, key: &[u8], operands: &[&[u8]]) -> Result<Vec<u8>, MergeError> {
        self.full_merge(key, None, operands)
    }
}

fn check_list(bytes: &[u8]) -> Result<(), MergeError> {
    ListIter { rest: bytes }.try_for_each(|e| e.map(|_| ()))
}

/// The elements of a list value written by [`AppendOperator`], in merge order.
pub fn decode_list(value: &[u8]) -> Result<Vec<&[u8]>, MergeError> {
    ListIter { rest: value }.collect()
}

/// Encodes `elements` as a list value of [`AppendOperator`] (for a `put`).
pub fn encode_list<E: AsRef<[u8]>>(elements: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        let e = e.as_ref();
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

struct ListIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Result<&'a [u8], MergeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(MergeError::new("a list ends inside an element length")));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            self.rest = &[];
            return Some(Err(MergeError::new(format!(
                "a list element of {len} bytes runs past the list's end"
            ))));
        }
        let (e, rest) = tail.split_at(len);
        self.rest = rest;
        Some(Ok(e))
    }
}

/// Counters: operands and values are `u64` little-endian (8 bytes); a merge adds,
/// wrapping on overflow. A missing value counts as 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct U64AddOperator;

fn u64_of(bytes: &[u8], what: &str) -> Result<u64, MergeError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        MergeError::new(format!(
            "a u64_add {what} must be 8 bytes (u64 little-endian), not {}",
            bytes.len()
        ))
    })?;
    Ok(u64::from_le_bytes(arr))
}

impl MergeOperator for U64AddOperator {
    fn name(&self) -> &str {
        U64_ADD
    }

    fn encode_operand<'a>(&self, operand: &'a [u8]) -> Result<Cow<'a, [u8]>, MergeError> {
        u64_of(operand, "operand")?;
        Ok(Cow::Borrowed(operand))
    }

    fn validate_value(&self, value: &[u8]) -> Result<(), MergeError> {
        u64_of(value, "value").map(|_| ())
    }

    fn full_merge(
        &self,
        _key: &[u8],
        existing: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, MergeError> {
        let mut sum = match existing {
            Some(v) => u64_of(v, "value")?,
            None => 0,
        };
        for o in operands {
            sum = sum.wrapping_add(u64_of(o, "operand")?);
        }
        Ok(sum.to_le_bytes().to_vec())
    }

    fn partial_merge(&self, key: &[u8], operands: &[&[u8]]) -> Result<Vec<u8>, MergeError> {
        self.full_merge(key, None, operands)
    }
}

/// The built-in [`AppendOperator`], shared.
pub fn append() -> Arc<dyn MergeOperator> {
    Arc::new(AppendOperator)
}

/// The built-in [`U64AddOperator`], shared.
pub fn u64_add() -> Arc<dyn MergeOperator> {
    Arc::new(U64AddOperator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_concatenates_length_prefixed_elements_associatively() {
        let op = AppendOperator;
        let a = op.encode_operand(b"a").unwrap().into_owned();
        let bc = op.encode_operand(b"bc").unwrap().into_owned();
        let empty = op.encode_operand(b"").unwrap().into_owned();
        let base = encode_list(&[b"x".as_slice()]);
        let whole = op
            .full_merge(b"k", Some(&base), &[&a, &bc, &empty])
            .unwrap();
        assert_eq!(
            decode_list(&whole).unwrap(),
            vec![&b"x"[..], b"a", b"bc", b""]
        );
        let ab = op.partial_merge(b"k", &[&a, &bc]).unwrap();
        assert_eq!(
            op.full_merge(b"k", Some(&base), &[&ab, &empty]).unwrap(),
            whole
        );
        assert_eq!(
            decode_list(&op.full_merge(b"k", None, &[&a]).unwrap()).unwrap(),
            vec![&b"a"[..]]
        );
    }

    #[test]
    fn damaged_lists_and_bad_counters_are_errors_not_panics() {
        assert!(decode_list(&[1, 0]).is_err());
        assert!(decode_list(&[5, 0, 0, 0, 1]).is_err());
        assert!(AppendOperator
            .full_merge(b"k", Some(&[9]), &[&[0, 0, 0, 0]])
            .is_err());
        let op = U64AddOperator;
        assert!(op.encode_operand(b"1234567").is_err());
        assert!(op
            .full_merge(b"k", Some(b"short"), &[&1u64.to_le_bytes()])
            .is_err());
    }

    #[test]
    fn u64_add_sums_little_endian_and_wraps() {
        let op = U64AddOperator;
        let one = 1u64.to_le_bytes();
        let max = u64::MAX.to_le_bytes();
        let two = op.partial_merge(b"k", &[&one, &one]).unwrap();
        assert_eq!(
            op.full_merge(b"k", None, &[&two]).unwrap(),
            2u64.to_le_bytes()
        );
        assert_eq!(
            op.full_merge(b"k", Some(&max), &[&one]).unwrap(),
            0u64.to_le_bytes()
        );
    }
}
