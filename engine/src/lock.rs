//! The database lock: one writer per database directory, across processes.
//!
//! A process that opens a database for writing takes an exclusive `flock` on
//! `<db>/LOCK` (as RocksDB does) and writes its PID into it. A second writer — in
//! another process, or another `Db::open` in this one (flock locks belong to the open
//! file, not the process) — fails without changing anything, with an error that
//! names the directory and the holder's PID. The kernel drops the lock when the
//! holder exits, however it exits, so a crash never leaves a stale lock. Read-only
//! opens take no lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, ErrorDetail, Result};
use crate::files::LOCK_FILE;

/// A held database lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DbLock {
    _file: File,
}

impl DbLock {
    /// Takes the lock of the database in `dir` (which must exist).
    pub(crate) fn acquire(dir: &Path) -> Result<DbLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(ErrorDetail::InUse {
                    path: dir.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                }
                .into());
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .map_err(|e| Error::io("write", &path, e))?;
        Ok(DbLock { _file: file })
    }
}
