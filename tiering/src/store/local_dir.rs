//! A local directory that plays the bucket: key `a/b/c.sst` is `<root>/a/b/c.sst`.
//!
//! Used by tests, benchmarks and single-machine deployments. It keeps the contract of
//! [`ObjectStore`] the way S3 does:
//!
//! - **Atomic puts.** Bytes go to a uniquely named temp file under `<root>/.tmp/`, are
//!   fsynced, renamed into place (parents created durably) and the parent directory is
//!   fsynced. A reader sees no file or the whole file; a crash leaves at most a stray
//!   temp file, which no listing shows.
//! - **An object's mtime is when the store wrote it.** Before the file is synced and
//!   renamed into place its mtime is set to the current time (a precise clock reading, not the
//!   file system's coarse write timestamp), so `last_modified` is never earlier than
//!   the start of the call that wrote the object. This matters for
//!   [`put_file`](ObjectStore::put_file): the hard link shares the source's inode, whose
//!   mtime is when the engine wrote the file, possibly hours earlier; stamping it
//!   (which the source sees too) keeps a garbage collector from taking a fresh object
//!   for an old one. A file the store may not stamp is copied instead of linked.
//! - **Multipart uploads.** An upload is the directory `.tmp/multipart/<upload-id>/`
//!   holding the key it belongs to (`key`) and one file per part, named by its number.
//!   The directory is assembled under `.tmp/` (key written, stamped with the start
//!   time and fsynced) and renamed into `multipart/`, so every upload there has its
//!   key; the key file's mtime is when the upload started. Completing concatenates the
//!   parts in part order into a temp file and publishes it like a put; aborting
//!   removes the directory. [`list_multipart`](ObjectStore::list_multipart) reads the
//!   directories still there. Parts are not fsynced: only the completed object has to
//!   survive a crash.
//! - `.tmp` is reserved: no key may start with it and listings skip it.
//!
//! What S3 allows and a directory cannot: both `a/b` and `a/b/c` as objects (a name is
//! either a file or a directory). Such a put fails with `InvalidArgument`. Empty
//! directories left by deletes stay; they hold no objects and cost nothing.
//!
//! All file system work runs in `tokio::task::spawn_blocking`, so the futures must be
//! polled on a tokio runtime (the I/O runtime) and never block its workers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreError,
    StoreErrorKind, StoreResult,
};

/// Directory under the root for temp files and uploads in progress.
const TMP_DIR: &str = ".tmp";
/// Directory under [`TMP_DIR`] holding one directory per multipart upload.
const MULTIPART_DIR: &str = "multipart";
/// File inside an upload's directory naming the key the upload belongs to.
const UPLOAD_KEY_FILE: &str = "key";
/// S3's highest part number; the local store keeps the same bound.
const MAX_PART_NUMBER: u32 = 10_000;
/// Copy buffer when concatenating parts.
const COPY_BUF_BYTES: usize = 1 << 20;

/// Makes temp names unique within the process; the pid makes them unique across.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// An [`ObjectStore`] over a local directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    dirs: Arc<Dirs>,
}

#[derive(Debug)]
struct Dirs {
    /// Absolute, canonical root.
    root: PathBuf,
    /// `<root>/.tmp`.
    tmp: PathBuf,
    /// `<root>/.tmp/multipart`.
    multipart: PathBuf,
}

impl LocalDirStore {
    /// Opens the store rooted at `root`. A missing root is created when
    /// `create_if_missing`, and is a `NoSuchBucket` error otherwise.
    ///
    /// Blocking: call it outside the I/O runtime's workers (or through
    /// [`open_uri`](super::uri::open_uri), which does that for you).
    pub fn open(root: &Path, create_if_missing: bool) -> StoreResult<LocalDirStore> {
        let shown = root.display().to_string();
        let io = |what: &str, e: &io::Error| {
            let mut err = StoreError::from_io("open", shown.clone(), e);
            err.message = format!("{what} {shown}: {e}");
            err
        };
        match fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "open",
                    shown.clone(),
                    format!("local store root {shown} exists but is not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create_if_missing {
                    return Err(StoreError::new(
                        StoreErrorKind::NoSuchBucket,
                        "open",
                        shown.clone(),
                        format!(
                            "local store root {shown} does not exist \
                             (create it, or open with create_if_missing)"
                        ),
                    ));
                }
                fs::create_dir_all(root).map_err(|e| io("creating local store root", &e))?;
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent).map_err(|e| io("syncing the parent of", &e))?;
                }
            }
            Err(e) => return Err(io("reading local store root", &e)),
        }
        let root = root
            .canonicalize()
            .map_err(|e| io("resolving local store root", &e))?;
        let tmp = root.join(TMP_DIR);
        let multipart = tmp.join(MULTIPART_DIR);
        fs::create_dir_all(&multipart).map_err(|e| io("creating the temp directory of", &e))?;
        Ok(LocalDirStore {
            dirs: Arc::new(Dirs {
                root,
                tmp,
                multipart,
            }),
        })
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.dirs.root
    }

    /// Runs `work` on tokio's blocking pool with the store's directories.
    async fn blocking<T, F>(&self, op: &'static str, key: &str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dirs) -> StoreResult<T> + Send + 'static,
    {
        let dirs = self.dirs.clone();
        match tokio::task::spawn_blocking(move || work(&dirs)).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::new(
                StoreErrorKind::Other,
                op,
                key,
                format!("blocking file system task did not finish: {e}"),
            )),
        }
    }
}

impl ObjectStore for LocalDirStore {
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        size: u64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            check_key("put", key)?;
            let owned = key.to_owned();
            let source = path.to_path_buf();
            self.blocking("put", key, move |dirs| {
                link_into_place(dirs, &owned, &source, size)
            })
            .await
        })
    }

    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            check_key("put", key)?;
            let owned = key.to_owned();
            self.blocking("put", key, move |dirs| {
                publish(dirs, "put", &owned, |file| {
                    file.write_all(&body)
                        .map_err(|e| io_err("put", &owned, "writing temp file", &e))
                })
            })
            .await
        })
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(async move {
            check_key("multipart", key)?;
            let owned = key.to_owned();
            self.blocking("multipart", key, move |dirs| start_upload(dirs, &owned))
                .await
        })
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(async move {
            check_key("multipart", key)?;
            check_upload_id(key, upload)?;
            if !(1..=MAX_PART_NUMBER).contains(&part_number) {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "multipart",
                    key,
                    format!("part number {part_number} is outside 1..={MAX_PART_NUMBER}"),
                ));
            }
            let (owned, id) = (key.to_owned(), upload.0.clone());
            self.blocking("multipart", key, move |dirs| {
                let dir = upload_dir(dirs, &owned, &id)?;
                // Write under a unique name and rename, so a retried or concurrent
                // upload of the same part never leaves a torn part behind.
                let staging = dir.join(format!("{part_number}.{}", unique_name()));
                let written = fs::write(&staging, &body)
                    .and_then(|()| fs::rename(&staging, dir.join(part_number.to_string())));
                if let Err(e) = written {
                    let _ = fs::remove_file(&staging);
                    return Err(io_err("multipart", &owned, "writing part", &e));
                }
                Ok(PartReceipt {
                    part_number,
                    etag: etag(crc32fast::hash(&body), body.len() as u64),
                })
            })
            .await
        })
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        mut parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            check_key("multipart", key)?;
            check_upload_id(key, upload)?;
            parts.sort_by_key(|p| p.part_number);
            check_part_list(key, &parts)?;
            let (owned, id) = (key.to_owned(), upload.0.clone());
            self.blocking("multipart", key, move |dirs| {
                let dir = match upload_dir(dirs, &owned, &id) {
                    Ok(dir) => dir,
                    // A retry of a completion that succeeded but whose answer was lost:
                    // the upload is gone and the object is there. Objects are immutable,
                    // so it holds what this upload wrote.
                    Err(e) if e.kind == StoreErrorKind::NotFound && is_file(dirs, &owned) => {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                };
                publish(dirs, "multipart", &owned, |out| {
                    concat_parts(&owned, &dir, &parts, out)
                })?;
                // The object is published; a failure to clean up only leaves garbage
                // under `.tmp`, which no listing shows.
                let _ = fs::remove_dir_all(&dir);
                Ok(())
            })
            .await
        })
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            check_key("multipart", key)?;
            check_upload_id(key, upload)?;
            let (owned, id) = (key.to_owned(), upload.0.clone());
            self.blocking("multipart", key, move |dirs| {
                let dir = match upload_dir(dirs, &owned, &id) {
                    Ok(dir) => dir,
                    // Aborting twice is fine, as in S3.
                    Err(e) if e.kind == StoreErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                match fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_err("multipart", &owned, "removing upload", &e)),
                }
            })
            .await
        })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(async move {
            check_key("get", key)?;
            if range.start > range.end {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "get",
                    key,
                    format!("range {}..{} ends before it starts", range.start, range.end),
                ));
            }
            let owned = key.to_owned();
            self.blocking("get", key, move |dirs| {
                let (file, size) = open_object(dirs, &owned)?;
                if range.end > size {
                    return Err(StoreError::new(
                        StoreErrorKind::InvalidArgument,
                        "get",
                        owned,
                        format!(
                            "range {}..{} is past the end of the object ({size} bytes)",
                            range.start, range.end
                        ),
                    ));
                }
                read_object(&file, &owned, range)
            })
            .await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(async move {
            check_key("get", key)?;
            let owned = key.to_owned();
            self.blocking("get", key, move |dirs| {
                // Objects are immutable once published: the size read here is the
                // object's, and a read that ends early is an error, not a short object.
                let (file, size) = open_object(dirs, &owned)?;
                read_object(&file, &owned, 0..size)
            })
            .await
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(async move {
            check_key("head", key)?;
            let owned = key.to_owned();
            self.blocking("head", key, move |dirs| {
                let meta = fs::metadata(dirs.root.join(&owned))
                    .map_err(|e| io_err("head", &owned, "reading metadata of", &e))?;
                if !meta.is_file() {
                    return Err(not_found("head", &owned));
                }
                Ok(ObjectMeta {
                    key: owned,
                    size: meta.len(),
                    last_modified: meta.modified().ok(),
                })
            })
            .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(async move {
            // The walk starts in the deepest directory the prefix names whole.
            let dir_part = check_prefix("list", prefix)?;
            let (owned, start) = (prefix.to_owned(), dir_part.to_owned());
            self.blocking("list", prefix, move |dirs| list_under(dirs, &start, &owned))
                .await
        })
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(async move {
            check_prefix("list_multipart", prefix)?;
            let owned = prefix.to_owned();
            self.blocking("list_multipart", prefix, move |dirs| {
                list_uploads(dirs, &owned)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            check_key("delete", key)?;
            let owned = key.to_owned();
            self.blocking("delete", key, move |dirs| {
                let path = dirs.root.join(&owned);
                if path.is_dir() {
                    // A directory is not an object: deleting a missing object succeeds.
                    return Ok(());
                }
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(io_err("delete", &owned, "removing", &e)),
                }
                let parent = path.parent().unwrap_or(&dirs.root);
                sync_dir(parent).map_err(|e| io_err("delete", &owned, "syncing directory of", &e))
            })
            .await
        })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dirs.root.display())
    }
}

/// Rejects keys that could escape the root or clash with the temp directory.
fn check_key(op: &'static str, key: &str) -> StoreResult<()> {
    let bad = |why: &str| {
        Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            op,
            key,
            format!("invalid key: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("absolute (keys are relative to the store)");
    }
    if key.contains('\0') {
        return bad("contains a NUL byte");
    }
    for (i, part) in key.split('/').enumerate() {
        match part {
            "" => return bad("empty component (doubled or trailing '/')"),
            "." | ".." => return bad("'.' and '..' components are not allowed"),
            TMP_DIR if i == 0 => return bad("'.tmp/' is reserved for uploads in progress"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix the way keys are checked, and returns its directory part:
/// everything before the last `/`, which names whole directories.
fn check_prefix<'p>(op: &'static str, prefix: &'p str) -> StoreResult<&'p str> {
    let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    if prefix.starts_with('/') || (!dir_part.is_empty() && check_key(op, dir_part).is_err()) {
        return Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            op,
            prefix,
            "a prefix must be relative, without empty, '.' or '..' components",
        ));
    }
    Ok(dir_part)
}

/// Upload ids are names this store made; anything else could name another path.
fn check_upload_id(key: &str, upload: &MultipartId) -> StoreResult<()> {
    let ok = !upload.0.is_empty()
        && upload
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            "multipart",
            key,
            format!("{:?} is not an upload id of this store", upload.0),
        ))
    }
}

/// Parts must be numbered 1, 2, ..., n once each (after sorting).
fn check_part_list(key: &str, parts: &[PartReceipt]) -> StoreResult<()> {
    if parts.is_empty() {
        return Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            "multipart",
            key,
            "cannot complete an upload with no parts",
        ));
    }
    for (expected, part) in (1u32..).zip(parts) {
        if part.part_number != expected {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "multipart",
                key,
                format!(
                    "parts must be numbered 1..={} once each; found {} where {expected} belongs",
                    parts.len(),
                    part.part_number
                ),
            ));
        }
    }
    Ok(())
}

/// Starts an upload of `key`: assembles its directory under `.tmp/` with the key
/// recorded (stamped with the start time and synced), then renames it into
/// `multipart/`, so an upload listed there always names its key.
fn start_upload(dirs: &Dirs, key: &str) -> StoreResult<MultipartId> {
    let op = "multipart";
    let started = crate::clock::system_time();
    let (id, staging) = loop {
        let id = unique_name();
        let staging = dirs.tmp.join(&id);
        match fs::create_dir(&staging) {
            Ok(()) => break (id, staging),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(op, key, "creating upload directory", &e)),
        }
    };
    let recorded = (|| {
        let mut file = File::create(staging.join(UPLOAD_KEY_FILE))?;
        file.write_all(key.as_bytes())?;
        file.set_modified(started)?;
        file.sync_all()?;
        fs::rename(&staging, dirs.multipart.join(&id))
    })();
    if let Err(e) = recorded {
        let _ = fs::remove_dir_all(&staging);
        return Err(io_err(op, key, "recording upload key", &e));
    }
    Ok(MultipartId(id))
}

/// Every upload under `.tmp/multipart/` whose key starts with `prefix`, sorted by key
/// and upload id.
fn list_uploads(dirs: &Dirs, prefix: &str) -> StoreResult<Vec<PendingMultipart>> {
    let op = "list_multipart";
    let entries = fs::read_dir(&dirs.multipart)
        .map_err(|e| io_err(op, prefix, "reading the directory of uploads", &e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| io_err(op, prefix, "reading the directory of uploads", &e))?;
        // Names this store did not make are not uploads.
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        let upload = MultipartId(id);
        if check_upload_id(prefix, &upload).is_err() {
            continue;
        }
        let key_path = entry.path().join(UPLOAD_KEY_FILE);
        let (owner, initiated) = match read_upload_key(&key_path) {
            Ok(found) => found,
            // Completed or aborted while we looked, or a directory left by a crash in
            // a version of this store that recorded the key in place (it was never
            // handed out, so it is no upload).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(e) => return Err(io_err(op, prefix, "reading upload key", &e)),
        };
        // A key that is not one a caller could have passed cannot be aborted by key.
        let Ok(key) = String::from_utf8(owner) else {
            continue;
        };
        if check_key(op, &key).is_err() || !key.starts_with(prefix) {
            continue;
        }
        out.push(PendingMultipart {
            key,
            upload,
            initiated,
        });
    }
    out.sort_by(|a, b| (&a.key, &a.upload.0).cmp(&(&b.key, &b.upload.0)));
    Ok(out)
}

/// The key an upload recorded and when it was recorded.
fn read_upload_key(path: &Path) -> io::Result<(Vec<u8>, Option<SystemTime>)> {
    let mut file = File::open(path)?;
    let initiated = file.metadata()?.modified().ok();
    let mut key = Vec::new();
    file.read_to_end(&mut key)?;
    Ok((key, initiated))
}

/// Gives `file` the current time as its modification time, so the object about to be
/// published counts its age from now (see the module docs).
fn stamp_now(file: &File) -> io::Result<()> {
    file.set_modified(crate::clock::system_time())
}

/// The directory of upload `id`, after checking it exists and belongs to `key`.
fn upload_dir(dirs: &Dirs, key: &str, id: &str) -> StoreResult<PathBuf> {
    let dir = dirs.multipart.join(id);
    let owner = match fs::read(dir.join(UPLOAD_KEY_FILE)) {
        Ok(owner) => owner,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::new(
                StoreErrorKind::NotFound,
                "multipart",
                key,
                format!("no multipart upload {id} in progress (completed or aborted?)"),
            ))
        }
        Err(e) => return Err(io_err("multipart", key, "reading upload", &e)),
    };
    if owner != key.as_bytes() {
        return Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            "multipart",
            key,
            format!(
                "upload {id} belongs to key {:?}",
                String::from_utf8_lossy(&owner)
            ),
        ));
    }
    Ok(dir)
}

/// Opens the object `key` for reading: its file and size. A directory is no object.
fn open_object(dirs: &Dirs, key: &str) -> StoreResult<(File, u64)> {
    let file = File::open(dirs.root.join(key)).map_err(|e| io_err("get", key, "opening", &e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_err("get", key, "reading size of", &e))?;
    if !meta.is_file() {
        return Err(not_found("get", key));
    }
    Ok((file, meta.len()))
}

/// Reads `range` (within the object) of the opened object `key`.
fn read_object(file: &File, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        StoreError::new(
            StoreErrorKind::InvalidArgument,
            "get",
            key,
            "range does not fit in memory",
        )
    })?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, range.start)
        .map_err(|e| io_err("get", key, "reading", &e))?;
    Ok(Bytes::from(buf))
}

/// Copies the parts, in order, into `out`, checking each against its receipt.
fn concat_parts(key: &str, dir: &Path, parts: &[PartReceipt], out: &mut File) -> StoreResult<()> {
    let mut buf = vec![0u8; COPY_BUF_BYTES];
    for part in parts {
        let n = part.part_number;
        let mut file = match File::open(dir.join(n.to_string())) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "multipart",
                    key,
                    format!("part {n} was never uploaded"),
                ))
            }
            Err(e) => return Err(io_err("multipart", key, "opening part", &e)),
        };
        let (mut hash, mut len) = (crc32fast::Hasher::new(), 0u64);
        loop {
            let got = file
                .read(&mut buf)
                .map_err(|e| io_err("multipart", key, "reading part", &e))?;
            if got == 0 {
                break;
            }
            hash.update(&buf[..got]);
            len += got as u64;
            out.write_all(&buf[..got])
                .map_err(|e| io_err("multipart", key, "writing temp file", &e))?;
        }
        let stored = etag(hash.finalize(), len);
        if stored != part.etag {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "multipart",
                key,
                format!(
                    "receipt of part {n} says {} but the stored part is {}",
                    part.etag, stored
                ),
            ));
        }
    }
    Ok(())
}

/// Writes a temp file with `fill`, fsyncs it and renames it to `key`, then fsyncs the
/// directory that now holds it.
fn publish(
    dirs: &Dirs,
    op: &'static str,
    key: &str,
    fill: impl FnOnce(&mut File) -> StoreResult<()>,
) -> StoreResult<()> {
    let (temp, mut file) =
        TempFile::create(&dirs.tmp).map_err(|e| io_err(op, key, "creating temp file", &e))?;
    fill(&mut file)?;
    stamp_now(&file).map_err(|e| io_err(op, key, "setting the time of temp file", &e))?;
    file.sync_all()
        .map_err(|e| io_err(op, key, "syncing temp file", &e))?;
    drop(file);
    rename_into_place(dirs, op, key, temp)
}

/// Gives the synced temp file `temp` its name `key`: creates the parent directories,
/// refuses a name a directory holds, renames, and syncs the directory.
fn rename_into_place(dirs: &Dirs, op: &'static str, key: &str, temp: TempFile) -> StoreResult<()> {
    let target = dirs.root.join(key);
    let parent = target.parent().unwrap_or(&dirs.root).to_path_buf();
    create_parents(dirs, op, key, &parent)?;
    if target.is_dir() {
        return Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            op,
            key,
            "a directory holds this name: other keys use it as a prefix",
        ));
    }
    fs::rename(&temp.path, &target).map_err(|e| io_err(op, key, "renaming into place", &e))?;
    temp.disarm();
    sync_dir(&parent).map_err(|e| io_err(op, key, "syncing directory of", &e))
}

/// Publishes `source` under `key` as a second name of the same file (the file is
/// immutable, so the object cannot change under readers): link into the temp
/// directory, check the size, stamp it with the current time, sync it, rename into
/// place, sync the directory. `Ok(false)` when the file system cannot link it here
/// (another file system, or no hard links) or the store may not set its time (a file
/// it does not own), so the caller copies the bytes instead.
fn link_into_place(dirs: &Dirs, key: &str, source: &Path, size: u64) -> StoreResult<bool> {
    let op = "put";
    let temp = dirs.tmp.join(unique_name());
    match fs::hard_link(source, &temp) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::CrossesDevices
                    | io::ErrorKind::Unsupported
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::TooManyLinks
            ) =>
        {
            return Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                op,
                key,
                format!("the file to store, {}, does not exist", source.display()),
            ))
        }
        Err(e) => return Err(io_err(op, key, "linking the file into the store", &e)),
    }
    let guard = TempFile::adopt(temp);
    let file = File::open(&guard.path).map_err(|e| io_err(op, key, "opening linked file", &e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err(op, key, "reading linked file size", &e))?
        .len();
    if len != size {
        return Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            op,
            key,
            format!("the file is {len} bytes but was announced as {size}"),
        ));
    }
    // Without a fresh time the object would look as old as the source file.
    match stamp_now(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(io_err(op, key, "setting the time of linked file", &e)),
    }
    file.sync_all()
        .map_err(|e| io_err(op, key, "syncing linked file", &e))?;
    drop(file);
    rename_into_place(dirs, op, key, guard)?;
    Ok(true)
}

/// Creates the directories from the root down to `parent`, fsyncing the directory each
/// new one was made in, so the published name survives a crash.
fn create_parents(dirs: &Dirs, op: &'static str, key: &str, parent: &Path) -> StoreResult<()> {
    let Ok(rel) = parent.strip_prefix(&dirs.root) else {
        return Ok(());
    };
    let mut at = dirs.root.clone();
    for part in rel.components() {
        let next = at.join(part);
        match fs::create_dir(&next) {
            Ok(()) => sync_dir(&at).map_err(|e| io_err(op, key, "syncing directory of", &e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !next.is_dir() {
                    return Err(StoreError::new(
                        StoreErrorKind::InvalidArgument,
                        op,
                        key,
                        format!(
                            "the object {:?} holds a name this key needs as a directory",
                            next.strip_prefix(&dirs.root).unwrap_or(&next).display()
                        ),
                    ));
                }
            }
            Err(e) => return Err(io_err(op, key, "creating directory for", &e)),
        }
        at = next;
    }
    Ok(())
}

/// Every object under `<root>/<start>` whose key starts with `prefix`, sorted.
fn list_under(dirs: &Dirs, start: &str, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut pending = vec![(dirs.root.join(start), start.to_owned())];
    while let Some((dir, rel)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // The prefix names nothing, or a file where it needs a directory.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(e) => return Err(io_err("list", prefix, "reading directory", &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", prefix, "reading directory", &e))?;
            // Names that are not UTF-8 were not written by this store.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if rel.is_empty() && name == TMP_DIR {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| io_err("list", prefix, "reading directory", &e))?;
            if kind.is_dir() {
                // Descend only where keys can still match the prefix.
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    pending.push((entry.path(), key));
                }
            } else if kind.is_file() && key.starts_with(prefix) {
                let meta = entry
                    .metadata()
                    .map_err(|e| io_err("list", prefix, "reading metadata", &e))?;
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().ok(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn is_file(dirs: &Dirs, key: &str) -> bool {
    dirs.root.join(key).is_file()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn not_found(op: &'static str, key: &str) -> StoreError {
    StoreError::new(StoreErrorKind::NotFound, op, key, "no such object")
}

/// Maps an I/O error, saying what the store was doing.
fn io_err(op: &'static str, key: &str, doing: &str, e: &io::Error) -> StoreError {
    let mut err = StoreError::from_io(op, key, e);
    err.message = if err.kind == StoreErrorKind::NotFound {
        format!("no such object ({doing}: {e})")
    } else {
        format!("{doing}: {e}")
    };
    err
}

/// A name no other writer in this or another process uses at the same time.
fn unique_name() -> String {
    let seq = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let nanos = crate::clock::system_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{seq}-{nanos:08x}", std::process::id())
}

/// A temp file under `.tmp/`, removed on drop unless published.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn create(tmp: &Path) -> io::Result<(TempFile, File)> {
        loop {
            let path = tmp.join(unique_name());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((TempFile { path, armed: true }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes charge of removing `path` (a name this module just created).
    fn adopt(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A part's receipt: its CRC32 (crc32fast runs at memory speed, so hashing a part
/// twice, on upload and on completion, costs little next to writing it) and length.
fn etag(crc: u32, len: u64) -> String {
    format!("{crc:08x}-{len}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_or_clash_are_rejected() {
        for bad in [
            "", "/a", "a//b", "a/", "./a", "a/../b", "..", ".tmp/x", ".tmp", "a\0b",
        ] {
            let err = check_key("put", bad).expect_err(bad);
            assert_eq!(err.kind, StoreErrorKind::InvalidArgument, "{bad:?}");
        }
        for good in ["a", "a/b/c.sst", "a/.tmp", ".tmpx/y", "x..y", ".hidden"] {
            check_key("put", good).expect(good);
        }
    }

    #[test]
    fn part_lists_must_be_contiguous_from_one() {
        let p = |n| PartReceipt {
            part_number: n,
            etag: String::new(),
        };
        check_part_list("k", &[p(1), p(2), p(3)]).expect("contiguous");
        for bad in [vec![], vec![p(2)], vec![p(1), p(1)], vec![p(1), p(3)]] {
            assert!(check_part_list("k", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upload_ids_are_plain_names() {
        let id = |s: &str| MultipartId(s.to_owned());
        check_upload_id("k", &id(&unique_name())).expect("own ids");
        for bad in ["", "../x", "a/b", "."] {
            assert!(check_upload_id("k", &id(bad)).is_err(), "{bad:?}");
        }
    }
}
