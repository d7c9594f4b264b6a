//! The expected contents of the database: one ordered map per table.

use std::collections::BTreeMap;
use std::ops::Bound;

/// What the database should hold.
#[derive(Debug, Default, Clone)]
pub struct Model {
    tables: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Model {
    /// An empty model of `tables` tables.
    pub fn new(tables: usize) -> Model {
        Model {
            tables: vec![BTreeMap::new(); tables],
        }
    }

    /// Records a put.
    pub fn put(&mut self, t: usize, key: &[u8], value: &[u8]) {
        self.tables[t].insert(key.to_vec(), value.to_vec());
    }

    /// Records a delete.
    pub fn delete(&mut self, t: usize, key: &[u8]) {
        self.tables[t].remove(key);
    }

    /// The expected value of a key.
    pub fn get(&self, t: usize, key: &[u8]) -> Option<&Vec<u8>> {
        self.tables[t].get(key)
    }

    /// The expected answer of a scan.
    pub fn scan(
        &self,
        t: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let lower = lower.map(<[u8]>::to_vec);
        let upper = upper.map(<[u8]>::to_vec);
        // BTreeMap::range panics on inverted or empty-exclusive ranges; such ranges
        // hold nothing.
        let empty = match (&lower, &upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        self.tables[t]
            .range((lower, upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Live keys over all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(BTreeMap::len).sum()
    }

    /// Whether no table holds a key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
