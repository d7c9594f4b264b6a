//! Store URIs and the standard decorator stack.
//!
//! A store is named by a URI: `file:///abs/path` (or a bare absolute path) for a
//! [`LocalDirStore`], `s3://bucket/optional/prefix` for an [`S3Store`]. [`open_uri`]
//! opens either. [`stack`] layers the decorators in the one order that makes sense:
//!
//! ```text
//! Instrumented( Retrying( Faulty?( base ) ) )
//! ```
//!
//! Instrumented outermost sees what the engine asked for and how long it waited;
//! retries sit above injected faults so they recover from them, as they would from a
//! real network.
//!
//! [`S3Store`]: super::s3::S3Store

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::fault::{FaultConfig, FaultyStore};
use super::instrument::InstrumentedStore;
use super::local_dir::LocalDirStore;
use super::retry::{RetryConfig, RetryingStore};
use super::s3::{S3Config, S3Store};
use super::{ObjectStore, StoreError, StoreErrorKind, StoreResult};

/// What the accepted forms are, for error messages.
const ACCEPTED: &str = "expected file:///absolute/path, an absolute path, or s3://bucket[/prefix]";

/// Where a store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUri {
    /// A local directory (absolute, lexically normalized).
    Local(PathBuf),
    /// A bucket and a key prefix inside it.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`; empty for the bucket root.
        prefix: String,
    },
}

impl StoreUri {
    /// Parses `file:///abs/path`, `/abs/path` or `s3://bucket/optional/prefix`.
    pub fn parse(uri: &str) -> StoreResult<StoreUri> {
        let bad = |why: &str| {
            Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "open",
                uri,
                format!("bad store URI {uri:?}: {why}; {ACCEPTED}"),
            ))
        };
        let trimmed = uri.trim();
        if let Some(rest) = trimmed.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return bad("a file URI needs an absolute path and no host (file:///path)");
            }
            return local(rest).or_else(&bad);
        }
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if let Err(why) = check_bucket(bucket) {
                return bad(&why);
            }
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|part| matches!(part, "." | "..") || (part.is_empty() && !prefix.is_empty()))
            {
                return bad("the prefix has empty, '.' or '..' components");
            }
            return Ok(StoreUri::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if trimmed.starts_with('/') {
            return local(trimmed).or_else(&bad);
        }
        match trimmed.split_once("://") {
            Some((scheme, _)) => bad(&format!("unsupported scheme {scheme:?}")),
            None => bad("a relative path is ambiguous"),
        }
    }
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUri::Local(path) => write!(f, "file://{}", path.display()),
            StoreUri::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUri::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// An absolute path with `.` and `..` resolved lexically.
fn local(path: &str) -> Result<StoreUri, &'static str> {
    let mut out = PathBuf::new();
    for part in Path::new(path).components() {
        match part {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::Prefix(_) => return Err("Windows path prefixes are not supported"),
        }
    }
    if !out.has_root() {
        return Err("the path is not absolute");
    }
    Ok(StoreUri::Local(out))
}

/// S3's bucket naming rules, enough to catch typos before the network does.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "bucket name {bucket:?} must be 3 to 63 characters long"
        ));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let bytes = bucket.as_bytes();
    if !bytes.iter().all(|&b| allowed(b))
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return Err(format!(
            "bucket name {bucket:?} may hold only lowercase letters, digits, '.' and '-', \
             and must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// Opens the store `uri` names. A local root is created when `create_if_missing`;
/// an S3 bucket never is (a missing one is `NoSuchBucket`). S3 settings beyond the
/// bucket and prefix come from the environment ([`S3Config::from_env`]).
///
/// Must run on the I/O runtime (tokio).
pub async fn open_uri(
    uri: &StoreUri,
    create_if_missing: bool,
) -> StoreResult<Arc<dyn ObjectStore>> {
    match uri {
        StoreUri::Local(root) => {
            let root = root.clone();
            let shown = uri.to_string();
            let store =
                tokio::task::spawn_blocking(move || LocalDirStore::open(&root, create_if_missing))
                    .await
                    .map_err(|e| {
                        StoreError::new(
                            StoreErrorKind::Other,
                            "open",
                            shown,
                            format!("opening the local store did not finish: {e}"),
                        )
                    })??;
            Ok(Arc::new(store))
        }
        StoreUri::S3 { bucket, prefix } => {
            let cfg = S3Config::from_env(bucket.clone(), prefix.clone());
            Ok(Arc::new(S3Store::connect(cfg).await?))
        }
    }
}

/// The standard decorators over one base store, each layer kept for its counters.
#[derive(Clone, Debug)]
pub struct StoreStack {
    /// The store that holds the bytes.
    pub base: Arc<dyn ObjectStore>,
    /// Outermost: what the engine asked for, and how long it waited.
    pub instrumented: Arc<InstrumentedStore>,
    /// Retries beneath the instrumentation.
    pub retrying: Arc<RetryingStore>,
    /// Fault injection right above the base, when configured.
    pub faulty: Option<Arc<FaultyStore>>,
}

impl StoreStack {
    /// The outermost layer: the store the engine uses.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.instrumented.clone()
    }
}

/// Layers `Instrumented(Retrying(Faulty?(base)))`. Fault settings are used as given
/// (rates clamped); validate them first to reject bad input.
pub fn stack(
    base: Arc<dyn ObjectStore>,
    faults: Option<FaultConfig>,
    retry: RetryConfig,
) -> StoreStack {
    let faulty = faults.map(|cfg| Arc::new(FaultyStore::new(base.clone(), cfg)));
    let below_retry: Arc<dyn ObjectStore> = match &faulty {
        Some(faulty) => faulty.clone(),
        None => base.clone(),
    };
    let retrying: Arc<RetryingStore> = Arc::new(RetryingStore::new(below_retry, retry));
    let instrumented = Arc::new(InstrumentedStore::new(retrying.clone()));
    StoreStack {
        base,
        instrumented,
        retrying,
        faulty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(uri: &str) -> StoreErrorKind {
        StoreUri::parse(uri).expect_err(uri).kind
    }

    #[test]
    fn local_uris_and_bare_paths_parse_to_absolute_paths() {
        let local = |p: &str| StoreUri::Local(PathBuf::from(p));
        assert_eq!(
            StoreUri::parse("file:///data/sst").unwrap(),
            local("/data/sst")
        );
        assert_eq!(StoreUri::parse("/data/sst/").unwrap(), local("/data/sst"));
        assert_eq!(
            StoreUri::parse("/data/./x/../sst").unwrap(),
            local("/data/sst")
        );
        assert_eq!(StoreUri::parse("file:///").unwrap(), local("/"));
        assert_eq!(local("/data/sst").to_string(), "file:///data/sst");
    }

    #[test]
    fn s3_uris_split_bucket_and_prefix() {
        let s3 = |b: &str, p: &str| StoreUri::S3 {
            bucket: b.to_owned(),
            prefix: p.to_owned(),
        };
        assert_eq!(
            StoreUri::parse("s3://my-bucket").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            StoreUri::parse("s3://my-bucket/").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            StoreUri::parse("s3://my-bucket/db/one/").unwrap(),
            s3("my-bucket", "db/one")
        );
        assert_eq!(
            s3("my-bucket", "db/one").to_string(),
            "s3://my-bucket/db/one"
        );
        assert_eq!(s3("my-bucket", "").to_string(), "s3://my-bucket");
    }

    #[test]
    fn anything_else_is_an_invalid_argument_naming_the_uri() {
        for bad in [
            "",
            "data/sst",
            "file://host/data",
            "file://relative",
            "http://example.com/x",
            "s3://",
            "s3://ab",
            "s3://My_Bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
        ] {
            assert_eq!(kind(bad), StoreErrorKind::InvalidArgument, "{bad:?}");
        }
        let err = StoreUri::parse("gs://bucket/x").unwrap_err();
        assert!(err.message.contains("gs://bucket/x"), "{}", err.message);
        assert!(err.message.contains("s3://bucket"), "{}", err.message);
    }
}
