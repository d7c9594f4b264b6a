//! `S3Store::list_multipart` over the wire: ListMultipartUploads pages are followed
//! by both markers (a page may end between two uploads of one key), the store's prefix
//! is applied and stripped as in `list`, `Initiated` becomes `initiated`, a listed
//! upload can be aborted by what the listing says, and a server whose pages do not
//! say where the next one starts is an error, never a short list.
//!
//! s3s-fs 0.14.1 does not implement ListMultipartUploads (it answers 501
//! NotImplemented), so the server here is s3s-fs behind a thin layer that keeps the
//! uploads it saw started and not yet completed or aborted, and answers
//! ListMultipartUploads from them with S3's semantics: uploads sorted by key and then
//! upload id, `prefix`, `max-uploads`, `key-marker` (keys after it) and
//! `upload-id-marker` (with the key marker: uploads of that key after that id). The
//! XML on the wire is s3s's, read back by aws-sdk-s3. What it cannot show is how AWS
//! itself orders uploads of one key (by initiation time, with opaque ids); the client
//! only passes the markers back, so it does not depend on that order.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Response, S3Result, S3};
use tempfile::TempDir;
use terrace_tiering::clock::system_time;
use terrace_tiering::store::s3::test_server::{TEST_ACCESS_KEY, TEST_SECRET_KEY};
use terrace_tiering::store::s3::{S3Config, S3Store};
use terrace_tiering::store::{MultipartId, ObjectStore, StoreErrorKind};

const BUCKET: &str = "terrace-test";

/// How the listing misbehaves, to check the client's guards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Quirk {
    /// Answers as S3 does.
    #[default]
    None,
    /// Truncated pages name no next markers.
    NoNextMarkers,
    /// Every truncated page names the first page's markers again.
    RepeatedMarkers,
}

/// What the layer over s3s-fs keeps: the open uploads, keyed by bucket, key and id,
/// with the time each was started.
#[derive(Default)]
struct Uploads {
    open: Mutex<BTreeMap<(String, String, String), SystemTime>>,
    list_requests: AtomicU64,
    quirk: Mutex<Quirk>,
}

impl Uploads {
    /// One ListMultipartUploads page, by S3's rules.
    fn page(&self, input: &ListMultipartUploadsInput) -> ListMultipartUploadsOutput {
        self.list_requests.fetch_add(1, Ordering::SeqCst);
        let quirk = *self.quirk.lock().unwrap();
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = usize::try_from(input.max_uploads.unwrap_or(1000)).unwrap_or(1000);
        let after = |key: &str, id: &str| match (&input.key_marker, &input.upload_id_marker) {
            (None, _) => true,
            (Some(km), None) => key > km.as_str(),
            (Some(km), Some(im)) => key > km.as_str() || (key == km && id > im.as_str()),
        };
        let open = self.open.lock().unwrap();
        let matching: Vec<MultipartUpload> = open
            .iter()
            .filter(|((bucket, key, id), _)| {
                bucket == &input.bucket && key.starts_with(&prefix) && after(key, id)
            })
            .map(|((_, key, id), initiated)| MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(Timestamp::from(*initiated)),
                ..MultipartUpload::default()
            })
            .collect();
        let truncated = matching.len() > max;
        let uploads: Vec<MultipartUpload> = matching.into_iter().take(max).collect();
        let (mut next_key, mut next_id) = match uploads.last() {
            Some(last) if truncated => (last.key.clone(), last.upload_id.clone()),
            _ => (None, None),
        };
        match quirk {
            Quirk::None => {}
            Quirk::NoNextMarkers => (next_key, next_id) = (None, None),
            Quirk::RepeatedMarkers if input.key_marker.is_some() => {
                (next_key, next_id) = (input.key_marker.clone(), input.upload_id_marker.clone())
            }
            Quirk::RepeatedMarkers => {}
        }
        ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: input.max_uploads,
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            ..ListMultipartUploadsOutput::default()
        }
    }
}

/// s3s-fs plus ListMultipartUploads.
struct WithUploadListing {
    fs: s3s_fs::FileSystem,
    uploads: Arc<Uploads>,
}

/// What `#[async_trait]` makes of an `async fn` of the `S3` trait.
type Answer<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

macro_rules! to_fs {
    ($($method:ident($input:ty) -> $output:ty;)*) => {$(
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> Answer<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.fs.$method(req)
        }
    )*};
}

impl S3 for WithUploadListing {
    to_fs! {
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        put_object(PutObjectInput) -> PutObjectOutput;
        get_object(GetObjectInput) -> GetObjectOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
    }

    fn create_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Answer<'async_trait, CreateMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let initiated = system_time();
            let answer = self.fs.create_multipart_upload(req).await?;
            if let Some(id) = &answer.output.upload_id {
                let mut open = self.uploads.open.lock().unwrap();
                open.insert((bucket, key, id.clone()), initiated);
            }
            Ok(answer)
        })
    }

    fn complete_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Answer<'async_trait, CompleteMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let i = &req.input;
            let upload = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
            let answer = self.fs.complete_multipart_upload(req).await?;
            self.uploads.open.lock().unwrap().remove(&upload);
            Ok(answer)
        })
    }

    fn abort_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Answer<'async_trait, AbortMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let i = &req.input;
            let upload = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
            let answer = self.fs.abort_multipart_upload(req).await?;
            self.uploads.open.lock().unwrap().remove(&upload);
            Ok(answer)
        })
    }

    fn list_multipart_uploads<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Answer<'async_trait, ListMultipartUploadsOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Ok(S3Response::new(self.uploads.page(&req.input))) })
    }
}

/// The server (on the test's runtime) and what it keeps.
struct Fixture {
    dir: TempDir,
    endpoint: String,
    uploads: Arc<Uploads>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket");
    let uploads = Arc::new(Uploads::default());
    let s3 = WithUploadListing {
        fs: s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs"),
        uploads: uploads.clone(),
    };
    let service = {
        let mut builder = S3ServiceBuilder::new(s3);
        builder.set_auth(SimpleAuth::from_single(TEST_ACCESS_KEY, TEST_SECRET_KEY));
        builder.build()
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Fixture {
        dir,
        endpoint,
        uploads,
    }
}

impl Fixture {
    async fn store(&self, prefix: &str, list_page_size: i32) -> S3Store {
        let config = S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_string()),
            force_path_style: true,
            credentials: Some((TEST_ACCESS_KEY.to_string(), TEST_SECRET_KEY.to_string())),
            list_page_size,
            ..S3Config::new(BUCKET.to_string(), prefix.to_string())
        };
        S3Store::connect(config).await.expect("connect")
    }

    fn list_requests(&self) -> u64 {
        self.uploads.list_requests.load(Ordering::SeqCst)
    }
}

/// `time` rounded down to a whole second: S3 times may be coarser than ours.
fn floor_to_second(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_uploads_page_through_the_prefix_and_abort_by_the_listing() {
    let fx = fixture().await;
    let store = fx.store("db", 2).await;
    let neighbour = fx.store("db2", 2).await;
    let root = fx.store("", 1000).await;

    let started = floor_to_second(system_time());
    let mut created: Vec<(String, MultipartId)> = Vec::new();
    for key in ["sst/a", "sst/a", "sst/a", "sst/b", "wal/1"] {
        let upload = store.create_multipart(key).await.expect("create");
        created.push((key.to_string(), upload));
    }
    neighbour.create_multipart("sst/x").await.expect("create");
    let done = system_time() + Duration::from_secs(1);
    created.sort_by(|a, b| (&a.0, &a.1 .0).cmp(&(&b.0, &b.1 .0)));

    // Four uploads in pages of two: the first page ends between two uploads of
    // `sst/a`, so the second only holds the third one if both markers were passed on.
    let before = fx.list_requests();
    let listed = store.list_multipart("sst/").await.expect("list sst/");
    assert_eq!(fx.list_requests() - before, 2);
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.key.clone(), p.upload.clone()))
            .collect::<Vec<_>>(),
        created[..4].to_vec()
    );
    for p in &listed {
        let initiated = p.initiated.expect("initiated");
        assert!(
            started <= initiated && initiated <= done,
            "{initiated:?} outside {started:?}..={done:?}"
        );
    }
    assert_eq!(store.list_multipart("").await.expect("list all").len(), 5);
    assert!(store
        .list_multipart("nothing/")
        .await
        .expect("list none")
        .is_empty());
    // The bucket root sees every store's uploads, with their full keys.
    let all = root.list_multipart("db").await.expect("list root");
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].key, "db2/sst/x");
    assert_eq!(all[0].key, "db/sst/a");

    // Abort what the listing names; complete another upload: neither is listed again.
    let b = &listed[3];
    assert_eq!(b.key, "sst/b");
    store
        .abort_multipart(&b.key, &b.upload)
        .await
        .expect("abort listed");
    let a = &listed[0];
    let part = store
        .put_part(&a.key, &a.upload, 1, Bytes::from_static(b"last part"))
        .await
        .expect("part");
    store
        .complete_multipart(&a.key, &a.upload, vec![part])
        .await
        .expect("complete");
    let left = store.list_multipart("sst/").await.expect("list again");
    assert_eq!(
        left.iter()
            .map(|p| (p.key.clone(), p.upload.clone()))
            .collect::<Vec<_>>(),
        vec![listed[1].clone(), listed[2].clone()]
            .into_iter()
            .map(|p| (p.key, p.upload))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.head("sst/a").await.expect("completed").size, 9);
    assert_eq!(
        store.head("sst/b").await.expect_err("aborted").kind,
        StoreErrorKind::NotFound
    );
    for p in left {
        store
            .abort_multipart(&p.key, &p.upload)
            .await
            .expect("abort");
    }
    assert!(store
        .list_multipart("sst/")
        .await
        .expect("empty")
        .is_empty());
    // s3s-fs keeps parts as `.upload_id-*` files in its root: only the aborted uploads'
    // parts existed, and they are gone.
    let leftovers: Vec<String> = std::fs::read_dir(fx.dir.path())
        .expect("read root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".upload_id-"))
        .collect();
    assert!(leftovers.is_empty(), "parts left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_pages_do_not_say_where_to_go_on_is_an_error() {
    let fx = fixture().await;
    let store = fx.store("db", 1).await;
    for key in ["a", "b", "c"] {
        store.create_multipart(key).await.expect("create");
    }
    assert_eq!(store.list_multipart("").await.expect("list").len(), 3);

    *fx.uploads.quirk.lock().unwrap() = Quirk::NoNextMarkers;
    let err = store.list_multipart("").await.expect_err("no markers");
    assert_eq!(err.kind, StoreErrorKind::Other, "{err}");
    assert_eq!(err.op, "list_multipart");
    assert!(err.message.contains("markers"), "{err}");

    *fx.uploads.quirk.lock().unwrap() = Quirk::RepeatedMarkers;
    let before = fx.list_requests();
    let err = store
        .list_multipart("")
        .await
        .expect_err("repeated markers");
    assert_eq!(err.kind, StoreErrorKind::Other, "{err}");
    assert!(err.message.contains("repeated"), "{err}");
    assert_eq!(fx.list_requests() - before, 2, "stops at the first repeat");
}
