//! One interface over the two ways a benchmark drives Terrace.
//!
//! Embedded mode runs workers on a shard's executor with a [`LocalDb`]; thread mode
//! runs them on plain OS threads with the cross-thread [`Db`]. Both handles offer the
//! same operations, so workloads are written once against [`Store`]. The futures are
//! not `Send`: each worker is polled on the thread that created it.

use std::ops::Bound;

use terrace::{Batch, Db, DbIter, IterOptions, KeyRange, LocalDb, LocalDbIter, Result, TableId};

/// A key-value entry returned by a scan.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An open iterator of either handle.
#[allow(async_fn_in_trait)]
pub trait Batches {
    /// The next entries in key order into `out` (its buffers reused); empty at the
    /// end.
    async fn next_batch_into(&mut self, out: &mut Batch) -> Result<()>;
}

impl Batches for DbIter {
    async fn next_batch_into(&mut self, out: &mut Batch) -> Result<()> {
        DbIter::next_batch_into(self, out).await
    }
}

impl Batches for LocalDbIter {
    async fn next_batch_into(&mut self, out: &mut Batch) -> Result<()> {
        LocalDbIter::next_batch_into(self, out).await
    }
}

/// The operations a benchmark issues.
#[allow(async_fn_in_trait)]
pub trait Store: Clone + 'static {
    /// The handle's iterator.
    type Iter: Batches;
    /// Whether this worker should handle `key`: in embedded mode only keys of the
    /// shard it runs on, so no request crosses threads; always true otherwise.
    fn owns(&self, key: &[u8]) -> bool;
    /// Writes a value.
    async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> Result<()>;
    /// Merges an operand (mergerandom).
    async fn merge(&self, t: TableId, key: &[u8], operand: &[u8]) -> Result<()>;
    /// Reads a value.
    async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Reads several values.
    async fn multi_get(&self, t: TableId, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Reads up to `limit` entries of a key range, in user-key order.
    async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>>;
    /// Opens an iterator over a key range (readseq).
    async fn iter(&self, t: TableId, range: KeyRange, opts: IterOptions) -> Result<Self::Iter>;
}

impl Store for Db {
    type Iter = DbIter;
    async fn iter(&self, t: TableId, range: KeyRange, opts: IterOptions) -> Result<DbIter> {
        Db::iter(self, t, range, opts).await
    }
    fn owns(&self, _key: &[u8]) -> bool {
        true
    }
    async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> Result<()> {
        Db::put(self, t, key, value).await
    }
    async fn merge(&self, t: TableId, key: &[u8], operand: &[u8]) -> Result<()> {
        Db::merge(self, t, key, operand).await
    }
    async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Db::get(self, t, key).await
    }
    async fn multi_get(&self, t: TableId, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        Db::multi_get(self, t, keys).await
    }
    async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        Db::scan(self, t, lower, upper, limit).await
    }
}

impl Store for LocalDb {
    type Iter = LocalDbIter;
    async fn iter(&self, t: TableId, range: KeyRange, opts: IterOptions) -> Result<LocalDbIter> {
        LocalDb::iter(self, t, range, opts).await
    }
    fn owns(&self, key: &[u8]) -> bool {
        LocalDb::owns(self, key)
    }
    async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> Result<()> {
        LocalDb::put(self, t, key, value).await
    }
    async fn merge(&self, t: TableId, key: &[u8], operand: &[u8]) -> Result<()> {
        LocalDb::merge(self, t, key, operand).await
    }
    async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        LocalDb::get(self, t, key).await
    }
    async fn multi_get(&self, t: TableId, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        LocalDb::multi_get(self, t, keys).await
    }
    async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        LocalDb::scan(self, t, lower, upper, limit).await
    }
}
