//! Errors, in two layers.
//!
//! [`Error`] is what callers see: a small [`ErrorKind`] that tells them what to do
//! (fix the input, retry, treat the data as damaged, stop using the handle) and a
//! message that names the file, block, key or option involved. Inside, every failure
//! is a variant of [`ErrorDetail`] carrying its context.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What the caller should make of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request or the options are wrong; retrying the same call fails again.
    InvalidArgument,
    /// Persisted data failed a checksum or does not parse; it is damaged.
    Corruption,
    /// The operating system refused an I/O request (disk full, permissions, ...).
    Io,
    /// The database (or the shard) is closed, or stopped after an earlier failure.
    Closed,
    /// The resource is held by someone else (a database directory another writer
    /// has open); retry once they are done.
    Unavailable,
    /// A bug or an invariant broken inside Terrace.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Corruption => "corruption",
            ErrorKind::Io => "I/O error",
            ErrorKind::Closed => "closed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// Every way a Terrace operation fails, with its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// An empty user key.
    #[error("user keys must not be empty")]
    EmptyKey,
    /// A user key longer than `Options::max_key_bytes`.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the key.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A key whose key group this database does not own (`Options::key_group_range`).
    #[error("key group {key_group} of the key is outside this database's key group range {range}")]
    KeyGroupOutOfRange {
        /// The key's group.
        key_group: u16,
        /// The groups the database owns.
        range: crate::key::KeyGroupRange,
    },
    /// A state call from keyed execution for a key another shard owns (the
    /// operator sees its own shard's keys only).
    #[error("key group {key_group} belongs to shard {owner}, not to shard {shard} where this keyed operator runs")]
    NotThisShard {
        /// The key's group.
        key_group: u16,
        /// The shard owning it.
        owner: u32,
        /// The shard the operator runs on.
        shard: u32,
    },
    /// A value longer than `Options::max_value_bytes`.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the value.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A state table that was not declared in the options.
    #[error("unknown state table {name:?} (declare it in Options::tables)")]
    UnknownTable {
        /// The name asked for.
        name: String,
    },
    /// A table id that this database does not have.
    #[error("unknown state table id {id}")]
    UnknownTableId {
        /// The id given.
        id: u16,
    },
    /// An option out of range or inconsistent with another.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Name of the option.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Options that disagree with what the database on disk was created with.
    #[error("database at {path} was created with {option} = {on_disk}, options say {given}")]
    OptionMismatch {
        /// Database directory.
        path: PathBuf,
        /// Name of the option.
        option: &'static str,
        /// Value recorded on disk.
        on_disk: String,
        /// Value in the options.
        given: String,
    },
    /// A range or argument that makes no sense.
    #[error("invalid argument: {0}")]
    BadArgument(String),
    /// A merge on a table configured without a merge operator.
    #[error("merge on state table {table:?}, which has no merge operator (set TableOptions::merge_operator)")]
    NoMergeOperator {
        /// The table.
        table: String,
    },
    /// A merge operator refused an operand or a value (a counter operand of the
    /// wrong width, a damaged list).
    #[error("merge operator {operator:?} of state table {table:?} failed: {reason}")]
    MergeFailed {
        /// The table.
        table: String,
        /// The operator's name.
        operator: String,
        /// What it reported.
        reason: String,
    },
    /// A table opened with another merge operator or TTL setting than the one its
    /// data was written with.
    #[error("state table {table:?} of the database at {path} was created with {what} = {on_disk}, options say {given}")]
    TableMismatch {
        /// Database directory.
        path: PathBuf,
        /// The table.
        table: String,
        /// `merge_operator` or `ttl`.
        what: &'static str,
        /// What `TERRACE-META` records.
        on_disk: String,
        /// What the options say.
        given: String,
    },

    /// A block whose checksum does not match its contents.
    #[error("checksum mismatch in {file} at block offset {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// File the block came from.
        file: PathBuf,
        /// Offset of the block in the file.
        offset: u64,
        /// Checksum stored with the block.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// Persisted bytes that do not parse.
    #[error("corrupt {file} at offset {offset}: {what}")]
    Corrupt {
        /// File holding the bytes.
        file: PathBuf,
        /// Offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A format version this build cannot read.
    #[error("{file} has format version {found}, this build reads versions up to {supported}")]
    UnsupportedVersion {
        /// File with the version.
        file: PathBuf,
        /// Version found.
        found: u32,
        /// Highest version understood.
        supported: u32,
    },
    /// An operating-system error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The database is closed.
    #[error("the database is closed")]
    Closed,
    /// A shard stopped taking writes after a failure it cannot recover from in place.
    #[error("shard {shard} stopped after an earlier failure: {reason}")]
    Poisoned {
        /// The shard.
        shard: u32,
        /// The first failure.
        reason: String,
    },
    /// A shard thread or executor could not be started or went away.
    #[error("shard {shard}: {what}")]
    ShardGone {
        /// The shard.
        shard: u32,
        /// What happened.
        what: String,
    },
    /// An object-store request failed (after its retries).
    #[error("{0}")]
    ObjectStore(terrace_tiering::store::StoreError),
    /// The database directory is locked by another writer.
    #[error("database directory {} is in use by another writer{}", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The database directory.
        path: PathBuf,
        /// The PID recorded by the lock holder, if readable.
        pid: Option<u32>,
    },
    /// A shard has `Options::max_open_cursors_per_shard` iterators open already.
    #[error("shard {shard} has {max} iterators open (Options::max_open_cursors_per_shard); drop some first")]
    TooManyCursors {
        /// The shard.
        shard: u32,
        /// The limit.
        max: usize,
    },
    /// A write (or flush, compaction) on a database opened read-only.
    #[error("the database was opened read-only")]
    ReadOnly,
    /// A broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ErrorDetail {
    fn kind(&self) -> ErrorKind {
        use ErrorDetail::*;
        match self {
            EmptyKey
            | KeyTooLarge { .. }
            | KeyGroupOutOfRange { .. }
            | NotThisShard { .. }
            | ValueTooLarge { .. }
            | UnknownTable { .. }
            | UnknownTableId { .. }
            | InvalidOption { .. }
            | OptionMismatch { .. }
            | BadArgument(_)
            | NoMergeOperator { .. }
            | MergeFailed { .. }
            | TableMismatch { .. }
            | ReadOnly => ErrorKind::InvalidArgument,
            InUse { .. } | TooManyCursors { .. } => ErrorKind::Unavailable,
            ChecksumMismatch { .. } | Corrupt { .. } | UnsupportedVersion { .. } => {
                ErrorKind::Corruption
            }
            Io { .. } => ErrorKind::Io,
            Closed | Poisoned { .. } | ShardGone { .. } => ErrorKind::Closed,
            ObjectStore(e) => {
                use terrace_tiering::store::StoreErrorKind as K;
                match e.kind {
                    K::NoSuchBucket | K::AccessDenied | K::InvalidArgument => {
                        ErrorKind::InvalidArgument
                    }
                    K::Corrupt | K::NotFound => ErrorKind::Corruption,
                    K::Transient | K::Timeout | K::Other => ErrorKind::Io,
                }
            }
            Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The error type of every Terrace operation.
pub struct Error {
    kind: ErrorKind,
    detail: Box<ErrorDetail>,
}

impl Error {
    /// What the caller should make of it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detailed cause.
    pub fn detail(&self) -> &ErrorDetail {
        &self.detail
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        ErrorDetail::Io {
            op,
            path: path.into(),
            source,
        }
        .into()
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Error {
        ErrorDetail::Corrupt {
            file: file.into(),
            offset,
            what: what.into(),
        }
        .into()
    }

    pub(crate) fn internal(what: impl Into<String>) -> Error {
        ErrorDetail::Internal(what.into()).into()
    }

    pub(crate) fn invalid_option(option: &'static str, reason: impl Into<String>) -> Error {
        ErrorDetail::InvalidOption {
            option,
            reason: reason.into(),
        }
        .into()
    }
}

impl From<ErrorDetail> for Error {
    fn from(detail: ErrorDetail) -> Error {
        Error {
            kind: detail.kind(),
            detail: Box::new(detail),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.detail, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.detail)
    }
}

/// Result with a Terrace [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
