//! [`S3Store`]: the [`ObjectStore`] over Amazon S3 and S3-compatible servers.
//!
//! Every object of the store lives under `<prefix>/` in one bucket; callers use keys
//! relative to that prefix and never see it (a listing strips it again). The client is
//! `aws-sdk-s3` on tokio, so every future here runs on the [`IoRuntime`](super::IoRuntime).
//!
//! Integrity: a single put carries a CRC32C of the body (`x-amz-checksum-crc32c`), so
//! the server rejects a body that changed on the way (`BadDigest`). Parts of a multipart
//! upload carry the SDK's default CRC32 (request checksums are pinned to
//! "when supported", whatever the environment says). A ranged read is checked against
//! the range asked for: a short answer is an error, never a short buffer.
//!
//! Retries: the SDK makes [`S3Config::max_attempts`] attempts (1 by default) because
//! retry policy belongs to the retrying decorator, which sees every store alike.
//! Failures are mapped to [`StoreErrorKind`]s by [`classify`] from the HTTP status and
//! the S3 error code.
//!
//! Times: `last_modified` is S3's `LastModified` (whole seconds from HeadObject,
//! milliseconds from ListObjectsV2; for an object made by a multipart upload, when the
//! upload was started), and [`PendingMultipart::initiated`] is ListMultipartUploads'
//! `Initiated`. A time that does not fit a [`SystemTime`] is reported as unknown.

#[cfg(feature = "s3-test-server")]
pub mod test_server;

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreError,
    StoreErrorKind, StoreResult,
};

/// Region used when neither the configuration nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Most keys S3 returns in one ListObjectsV2 page (and most uploads in one
/// ListMultipartUploads page).
pub const MAX_LIST_PAGE_SIZE: i32 = 1000;

/// Where an [`S3Store`] points and how it talks to the server.
///
/// `Debug` never prints the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket holding the objects.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (they are trimmed);
    /// empty means the bucket root.
    pub prefix: String,
    /// Endpoint URL (`http://127.0.0.1:9000`) of an S3-compatible server; `None` uses
    /// AWS (or whatever endpoint the standard AWS configuration names).
    pub endpoint: Option<String>,
    /// Region; `None` means [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`;
    /// local and most S3-compatible servers need it.
    pub force_path_style: bool,
    /// `(access key id, secret key)` to use instead of the standard AWS credential
    /// chain (environment variables, profile files, instance metadata).
    pub credentials: Option<(String, String)>,
    /// Keys per ListObjectsV2 page and uploads per ListMultipartUploads page,
    /// 1..=[`MAX_LIST_PAGE_SIZE`].
    pub list_page_size: i32,
    /// Attempts the SDK makes per request, at least 1. More than 1 retries inside the
    /// SDK on top of any retrying decorator.
    pub max_attempts: u32,
    /// Limit on establishing a connection.
    pub connect_timeout_ms: u64,
    /// Limit on one attempt of one request, body included.
    pub attempt_timeout_ms: u64,
}

impl S3Config {
    /// A configuration with the defaults and nothing read from the environment:
    /// AWS endpoint, [`DEFAULT_REGION`], virtual-hosted addressing, standard
    /// credential chain, full list pages, one attempt, 3 s connect and 120 s attempt
    /// timeouts.
    pub fn new(bucket: String, prefix: String) -> S3Config {
        S3Config {
            bucket,
            prefix,
            endpoint: None,
            region: None,
            force_path_style: false,
            credentials: None,
            list_page_size: MAX_LIST_PAGE_SIZE,
            max_attempts: 1,
            connect_timeout_ms: 3_000,
            attempt_timeout_ms: 120_000,
        }
    }

    /// A configuration from the standard AWS environment variables:
    /// the endpoint from `AWS_ENDPOINT_URL_S3` or else `AWS_ENDPOINT_URL`, the region
    /// from `AWS_REGION` or else `AWS_DEFAULT_REGION` (else [`DEFAULT_REGION`]).
    /// Path-style addressing is on when an endpoint is set, unless
    /// `TERRACE_S3_PATH_STYLE` says otherwise (`1`/`true` on, `0`/`false` off).
    /// Credentials come from the standard chain when the store connects.
    pub fn from_env(bucket: String, prefix: String) -> S3Config {
        S3Config::from_lookup(bucket, prefix, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] over any variable lookup, so tests need not touch the
    /// process environment.
    fn from_lookup(
        bucket: String,
        prefix: String,
        var: impl Fn(&str) -> Option<String>,
    ) -> S3Config {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = set("AWS_ENDPOINT_URL_S3").or_else(|| set("AWS_ENDPOINT_URL"));
        let region = set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let force_path_style = match set("TERRACE_S3_PATH_STYLE").as_deref().map(str::trim) {
            Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            _ => endpoint.is_some(),
        };
        S3Config {
            endpoint,
            region: Some(region),
            force_path_style,
            ..S3Config::new(bucket, prefix)
        }
    }

    fn region_or_default(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(redact_endpoint))
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<given, redacted>"),
            )
            .field("list_page_size", &self.list_page_size)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("attempt_timeout_ms", &self.attempt_timeout_ms)
            .finish()
    }
}

/// An [`ObjectStore`] over one bucket and prefix of S3.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Trimmed of `/` at both ends; empty for the bucket root.
    prefix: String,
    /// For messages: the endpoint without any user info, or the AWS region.
    location: String,
    list_page_size: i32,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("store", &self.describe())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client and checks the bucket with HeadBucket.
    ///
    /// A missing bucket is [`StoreErrorKind::NoSuchBucket`], rejected credentials are
    /// [`StoreErrorKind::AccessDenied`], an endpoint that cannot be reached is
    /// [`StoreErrorKind::Transient`] (or `Timeout`); each message names the bucket and
    /// the endpoint.
    pub async fn connect(cfg: S3Config) -> StoreResult<S3Store> {
        let store = S3Store::build(&cfg).await?;
        store.check_bucket().await?;
        Ok(store)
    }

    async fn build(cfg: &S3Config) -> StoreResult<S3Store> {
        let invalid =
            |msg: String| StoreError::new(StoreErrorKind::InvalidArgument, "open", "s3", msg);
        if cfg.bucket.is_empty() {
            return Err(invalid("S3 bucket name is empty".to_string()));
        }
        if !(1..=MAX_LIST_PAGE_SIZE).contains(&cfg.list_page_size) {
            return Err(invalid(format!(
                "list_page_size {} is not in 1..={MAX_LIST_PAGE_SIZE}",
                cfg.list_page_size
            )));
        }
        if cfg.max_attempts == 0 || cfg.connect_timeout_ms == 0 || cfg.attempt_timeout_ms == 0 {
            return Err(invalid(
                "max_attempts, connect_timeout_ms and attempt_timeout_ms must be positive"
                    .to_string(),
            ));
        }
        let region = cfg.region_or_default().to_string();
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.clone()));
        if let Some((access_key, secret_key)) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                access_key.clone(),
                secret_key.clone(),
                None,
                None,
                "terrace-s3-config",
            ));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
                    .operation_attempt_timeout(Duration::from_millis(cfg.attempt_timeout_ms))
                    .build(),
            )
            // Pinned so that an environment asking for "when required" cannot turn the
            // checksums of multipart parts off.
            .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
            .response_checksum_validation(ResponseChecksumValidation::WhenSupported);
        if let Some(endpoint) = &cfg.endpoint {
            conf = conf.endpoint_url(endpoint.clone());
        }
        let location = match &cfg.endpoint {
            Some(endpoint) => format!("endpoint {}", redact_endpoint(endpoint)),
            None => format!("AWS region {region}"),
        };
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.trim_matches('/').to_string(),
            location,
            list_page_size: cfg.list_page_size,
        })
    }

    async fn check_bucket(&self) -> StoreResult<()> {
        let result = self.client.head_bucket().bucket(&self.bucket).send().await;
        let Err(e) = result else { return Ok(()) };
        let mut err = self.error("open", &self.describe(), e);
        let bucket = &self.bucket;
        let location = &self.location;
        match err.kind {
            // HEAD answers carry no error code: a 404 here can only mean the bucket.
            StoreErrorKind::NotFound | StoreErrorKind::NoSuchBucket => {
                err.kind = StoreErrorKind::NoSuchBucket;
                err.message = format!("bucket {bucket:?} does not exist at {location}");
            }
            StoreErrorKind::AccessDenied => {
                err.message = format!(
                    "access to bucket {bucket:?} at {location} was denied: check the \
                     credentials and their permissions ({})",
                    err.message
                );
            }
            _ => {}
        }
        Err(err)
    }

    /// The full object key of `key`: `<prefix>/<key>`.
    fn object_key(&self, op: &'static str, key: &str) -> StoreResult<String> {
        if key.is_empty() || key.starts_with('/') {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                op,
                key,
                "object keys must be non-empty and must not start with '/'",
            ));
        }
        Ok(join_key(&self.prefix, key))
    }

    /// The S3 prefix to list for the store-relative `prefix`.
    fn list_prefix(&self, prefix: &str) -> String {
        if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{}", self.prefix, prefix.trim_start_matches('/'))
        }
    }

    /// The store-relative key of `full`, a key a listing of `s3_prefix` returned.
    fn relative_key<'k>(
        &self,
        op: &'static str,
        prefix: &str,
        s3_prefix: &str,
        full: &'k str,
    ) -> StoreResult<&'k str> {
        if self.prefix.is_empty() {
            return Ok(full);
        }
        full.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Other,
                    op,
                    prefix,
                    format!(
                        "{} listed {full:?}, which is outside prefix {s3_prefix:?}",
                        self.location
                    ),
                )
            })
    }

    /// Maps an SDK failure to a [`StoreError`] about `key`.
    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = &self.location;
        let (kind, message) = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code();
                let what = service.err().message().unwrap_or("no message");
                (
                    classify(Some(status), code),
                    format!(
                        "{} (HTTP {status}): {what} [{location}]",
                        code.unwrap_or("no error code")
                    ),
                )
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                (
                    classify(Some(status), None),
                    format!(
                        "unreadable response (HTTP {status}) from {location}: {}",
                        DisplayErrorContext(&err)
                    ),
                )
            }
            SdkError::TimeoutError(_) => (
                StoreErrorKind::Timeout,
                format!(
                    "request to {location} timed out: {}",
                    DisplayErrorContext(&err)
                ),
            ),
            SdkError::DispatchFailure(dispatch) => {
                let kind = if dispatch.is_timeout() {
                    StoreErrorKind::Timeout
                } else if dispatch.is_user() {
                    StoreErrorKind::InvalidArgument
                } else {
                    StoreErrorKind::Transient
                };
                (
                    kind,
                    format!("cannot reach {location}: {}", DisplayErrorContext(&err)),
                )
            }
            SdkError::ConstructionFailure(_) => (
                StoreErrorKind::Other,
                format!(
                    "request to {location} could not be built: {}",
                    DisplayErrorContext(&err)
                ),
            ),
            _ => (
                StoreErrorKind::Other,
                format!(
                    "request to {location} failed: {}",
                    DisplayErrorContext(&err)
                ),
            ),
        };
        StoreError::new(kind, op, key, message)
    }

    fn bad_answer(&self, op: &'static str, key: &str, what: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Other,
            op,
            key,
            format!("{} answered without {what}", self.location),
        )
    }

    async fn do_put(&self, key: &str, body: Bytes) -> StoreResult<()> {
        let full = self.object_key("put", key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .body(ByteStream::from(body))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    async fn do_create_multipart(&self, key: &str) -> StoreResult<MultipartId> {
        let full = self.object_key("multipart", key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error("multipart", key, e))?;
        let id = out
            .upload_id
            .ok_or_else(|| self.bad_answer("multipart", key, "an upload id"))?;
        Ok(MultipartId(id))
    }

    async fn do_put_part(
        &self,
        key: &str,
        upload: &MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<PartReceipt> {
        let full = self.object_key("multipart", key)?;
        let number = part_number_i32(key, part_number)?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(&upload.0)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("multipart", key, e))?;
        let etag = out
            .e_tag
            .ok_or_else(|| self.bad_answer("multipart", key, "an ETag for the part"))?;
        Ok(PartReceipt { part_number, etag })
    }

    async fn do_complete_multipart(
        &self,
        key: &str,
        upload: &MultipartId,
        mut parts: Vec<PartReceipt>,
    ) -> StoreResult<()> {
        let full = self.object_key("multipart", key)?;
        parts.sort_by_key(|p| p.part_number);
        if parts.is_empty()
            || parts
                .windows(2)
                .any(|w| w[0].part_number == w[1].part_number)
        {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "multipart",
                key,
                "completing a multipart upload needs at least one part and distinct part numbers",
            ));
        }
        let mut completed = Vec::with_capacity(parts.len());
        for part in parts {
            completed.push(
                CompletedPart::builder()
                    .part_number(part_number_i32(key, part.part_number)?)
                    .e_tag(part.etag)
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(&upload.0)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("multipart", key, e))?;
        Ok(())
    }

    async fn do_abort_multipart(&self, key: &str, upload: &MultipartId) -> StoreResult<()> {
        let full = self.object_key("multipart", key)?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(&upload.0)
            .send()
            .await
            .map_err(|e| self.error("multipart", key, e))?;
        Ok(())
    }

    /// Reads a `GetObject` answer's body to its end; a connection that breaks
    /// meanwhile is a transient failure.
    async fn collect_body(
        &self,
        key: &str,
        body: aws_sdk_s3::primitives::ByteStream,
    ) -> StoreResult<Bytes> {
        Ok(body
            .collect()
            .await
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Transient,
                    "get",
                    key,
                    format!("reading the body from {} failed: {e}", self.location),
                )
            })?
            .into_bytes())
    }

    async fn do_get(&self, key: &str) -> StoreResult<Bytes> {
        let full = self.object_key("get", key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error("get", key, e))?;
        let announced = out.content_length.and_then(|n| u64::try_from(n).ok());
        let body = self.collect_body(key, out.body).await?;
        match announced {
            Some(n) if n != body.len() as u64 => Err(StoreError::new(
                StoreErrorKind::Transient,
                "get",
                key,
                format!(
                    "{} announced {n} bytes and sent {}",
                    self.location,
                    body.len()
                ),
            )),
            _ => Ok(body),
        }
    }

    async fn do_get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let full = self.object_key("get", key)?;
        if range.start > range.end {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                "get",
                key,
                format!("range {}..{} is reversed", range.start, range.end),
            ));
        }
        if range.is_empty() {
            // HTTP cannot ask for zero bytes; the object must still exist and be long enough.
            let meta = self.do_head(key).await?;
            if range.start > meta.size {
                return Err(past_end(key, &range, meta.size));
            }
            return Ok(Bytes::new());
        }
        let want = range.end - range.start;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.error("get", key, e))?;
        // Where the answer says it starts and how long the object is.
        let (start, total) = match out.content_range.as_deref() {
            Some(header) => match parse_content_range(header) {
                Some((first, _last, total)) => (first, total),
                None => {
                    return Err(StoreError::new(
                        StoreErrorKind::Other,
                        "get",
                        key,
                        format!("unparsable Content-Range {header:?} from {}", self.location),
                    ))
                }
            },
            // A server that ignored the range sent the whole object.
            None => (0, out.content_length.and_then(|n| u64::try_from(n).ok())),
        };
        let body = self.collect_body(key, out.body).await?;
        let got = body.len() as u64;
        if start == range.start && got == want {
            return Ok(body);
        }
        if let Some(total) = total {
            if total < range.end {
                return Err(past_end(key, &range, total));
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Corrupt,
            "get",
            key,
            format!(
                "asked {} for bytes {}..{} and got {got} bytes starting at {start}",
                self.location, range.start, range.end
            ),
        ))
    }

    async fn do_head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let full = self.object_key("head", key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error("head", key, e))?;
        let size = out
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| self.bad_answer("head", key, "a Content-Length"))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            last_modified: out.last_modified.as_ref().and_then(system_time),
        })
    }

    async fn do_list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let s3_prefix = self.list_prefix(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&s3_prefix)
                .max_keys(self.list_page_size)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.error("list", prefix, e))?;
            for object in page.contents.unwrap_or_default() {
                let Some(full) = object.key else {
                    return Err(self.bad_answer("list", prefix, "a key for a listed object"));
                };
                let key = self.relative_key("list", prefix, &s3_prefix, &full)?;
                let size = object
                    .size
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| self.bad_answer("list", prefix, "a size for a listed object"))?;
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size,
                    last_modified: object.last_modified.as_ref().and_then(system_time),
                });
            }
            let next = page.next_continuation_token.filter(|t| !t.is_empty());
            match next {
                Some(next) if page.is_truncated == Some(true) => {
                    // A server repeating its token would page forever.
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(StoreError::new(
                            StoreErrorKind::Other,
                            "list",
                            prefix,
                            format!("{} repeated continuation token {next:?}", self.location),
                        ));
                    }
                    token = Some(next);
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// ListMultipartUploads of the same S3 prefix [`S3Store::do_list`] lists, page by
    /// page (each page resumes after the last key and upload id of the one before).
    async fn do_list_multipart(&self, prefix: &str) -> StoreResult<Vec<PendingMultipart>> {
        let op = "list_multipart";
        let s3_prefix = self.list_prefix(prefix);
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let (key_marker, upload_id_marker) = marker.clone().unzip();
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&s3_prefix)
                .max_uploads(self.list_page_size)
                .set_key_marker(key_marker)
                .set_upload_id_marker(upload_id_marker)
                .send()
                .await
                .map_err(|e| self.error(op, prefix, e))?;
            for upload in page.uploads.unwrap_or_default() {
                let Some(full) = upload.key else {
                    return Err(self.bad_answer(op, prefix, "a key for a listed upload"));
                };
                let Some(id) = upload.upload_id.filter(|id| !id.is_empty()) else {
                    return Err(self.bad_answer(op, prefix, "an upload id for a listed upload"));
                };
                let key = self.relative_key(op, prefix, &s3_prefix, &full)?;
                out.push(PendingMultipart {
                    key: key.to_string(),
                    upload: MultipartId(id),
                    initiated: upload.initiated.as_ref().and_then(system_time),
                });
            }
            if page.is_truncated != Some(true) {
                break;
            }
            // S3 names where the next page starts; without that there is no next page to
            // ask for, and a server repeating its markers would page forever.
            let next = match (page.next_key_marker, page.next_upload_id_marker) {
                (Some(key), Some(id)) if !key.is_empty() && !id.is_empty() => (key, id),
                _ => {
                    return Err(self.bad_answer(
                        op,
                        prefix,
                        "the markers of the next page of a truncated upload listing",
                    ))
                }
            };
            if marker.as_ref() == Some(&next) {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    op,
                    prefix,
                    format!(
                        "{} repeated upload listing markers {:?} / {:?}",
                        self.location, next.0, next.1
                    ),
                ));
            }
            marker = Some(next);
        }
        out.sort_by(|a, b| (&a.key, &a.upload.0).cmp(&(&b.key, &b.upload.0)));
        Ok(out)
    }

    async fn do_delete(&self, key: &str) -> StoreResult<()> {
        let full = self.object_key("delete", key)?;
        let result = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = self.error("delete", key, e);
                // S3 answers 204 for a missing key; some compatible servers say 404.
                if err.kind == StoreErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.do_put(key, body))
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(self.do_create_multipart(key))
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(self.do_put_part(key, upload, part_number, body))
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.do_complete_multipart(key, upload, parts))
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.do_abort_multipart(key, upload))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.do_get_range(key, range))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.do_get(key))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(self.do_head(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(self.do_list(prefix))
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(self.do_list_multipart(prefix))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.do_delete(key))
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{} ({})", self.bucket, self.location)
        } else {
            format!("s3://{}/{} ({})", self.bucket, self.prefix, self.location)
        }
    }
}

/// The kind of an S3 failure, from the HTTP status and the S3 error code (HEAD answers
/// have no code, so the status alone must do).
pub fn classify(status: Option<u16>, code: Option<&str>) -> StoreErrorKind {
    use StoreErrorKind::*;
    let by_code = code.and_then(|code| match code {
        "NoSuchKey" | "NotFound" | "NoSuchUpload" => Some(NotFound),
        "NoSuchBucket" => Some(NoSuchBucket),
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "AccountProblem"
        | "AllAccessDisabled" => Some(AccessDenied),
        "InvalidRange"
        | "InvalidArgument"
        | "InvalidRequest"
        | "InvalidPart"
        | "InvalidPartOrder"
        | "EntityTooSmall"
        | "EntityTooLarge"
        | "KeyTooLongError"
        | "InvalidBucketName"
        | "MalformedXML"
        | "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => Some(InvalidArgument),
        // The body changed on the way; the server stored nothing, so sending again helps.
        "BadDigest" | "XAmzContentSHA256Mismatch" | "InvalidDigest" | "IncompleteBody" => {
            Some(Transient)
        }
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequests"
        | "InternalError"
        | "ServiceUnavailable"
        | "OperationAborted"
        | "RequestTimeTooSkewed" => Some(Transient),
        "RequestTimeout" => Some(Timeout),
        // A 501: the server lacks the operation (ListMultipartUploads on some
        // S3-compatible servers); asking again will not help.
        "NotImplemented" => Some(Other),
        _ => None,
    });
    if let Some(kind) = by_code {
        return kind;
    }
    match status {
        Some(404) => NotFound,
        Some(401 | 403) => AccessDenied,
        Some(416) => InvalidArgument,
        Some(301 | 307 | 400) => InvalidArgument,
        Some(408) => Timeout,
        Some(429) => Transient,
        Some(s) if s >= 500 => Transient,
        _ => Other,
    }
}

/// `time` as a [`SystemTime`], or `None` if it is out of the range a `SystemTime` can
/// hold (never a panic: the conversion is checked).
fn system_time(time: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*time).ok()
}

/// `<prefix>/<key>`, or `key` alone under an empty prefix. `prefix` is already trimmed.
fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

/// Parses `bytes first-last/total` (total may be `*`) into `(first, last, total)`.
fn parse_content_range(header: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = header.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

fn past_end(key: &str, range: &Range<u64>, size: u64) -> StoreError {
    StoreError::new(
        StoreErrorKind::InvalidArgument,
        "get",
        key,
        format!(
            "range {}..{} is past the end of the object ({size} bytes)",
            range.start, range.end
        ),
    )
}

fn part_number_i32(key: &str, part_number: u32) -> StoreResult<i32> {
    match i32::try_from(part_number) {
        Ok(n @ 1..=10_000) => Ok(n),
        _ => Err(StoreError::new(
            StoreErrorKind::InvalidArgument,
            "multipart",
            key,
            format!("part number {part_number} is not in 1..=10000"),
        )),
    }
}

/// The endpoint URL with any `user:password@` removed.
fn redact_endpoint(endpoint: &str) -> String {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, endpoint),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn from_env_defaults_to_aws_in_us_east_1_virtual_hosted() {
        let cfg = S3Config::from_lookup("b".into(), "p".into(), lookup(&[]));
        assert_eq!(cfg.endpoint, None);
        assert_eq!(cfg.region.as_deref(), Some("us-east-1"));
        assert!(!cfg.force_path_style);
        assert_eq!(cfg.credentials, None);
    }

    #[test]
    fn from_env_prefers_the_s3_endpoint_and_aws_region_and_goes_path_style() {
        let cfg = S3Config::from_lookup(
            "b".into(),
            "p".into(),
            lookup(&[
                ("AWS_ENDPOINT_URL", "http://general:1"),
                ("AWS_ENDPOINT_URL_S3", "http://s3only:2"),
                ("AWS_REGION", "eu-west-3"),
                ("AWS_DEFAULT_REGION", "ap-south-1"),
            ]),
        );
        assert_eq!(cfg.endpoint.as_deref(), Some("http://s3only:2"));
        assert_eq!(cfg.region.as_deref(), Some("eu-west-3"));
        assert!(cfg.force_path_style);

        let cfg = S3Config::from_lookup(
            "b".into(),
            "p".into(),
            lookup(&[
                ("AWS_ENDPOINT_URL", "http://general:1"),
                ("AWS_ENDPOINT_URL_S3", ""),
                ("AWS_DEFAULT_REGION", "ap-south-1"),
            ]),
        );
        assert_eq!(cfg.endpoint.as_deref(), Some("http://general:1"));
        assert_eq!(cfg.region.as_deref(), Some("ap-south-1"));
    }

    #[test]
    fn path_style_variable_overrides_the_endpoint_rule() {
        let on = S3Config::from_lookup(
            "b".into(),
            "".into(),
            lookup(&[("TERRACE_S3_PATH_STYLE", "1")]),
        );
        assert!(on.force_path_style);
        let off = S3Config::from_lookup(
            "b".into(),
            "".into(),
            lookup(&[
                ("AWS_ENDPOINT_URL", "https://r2"),
                ("TERRACE_S3_PATH_STYLE", "0"),
            ]),
        );
        assert!(!off.force_path_style);
    }

    #[test]
    fn debug_never_shows_the_secret_or_endpoint_password() {
        let mut cfg = S3Config::new("b".into(), "p".into());
        cfg.credentials = Some(("AKIDEXAMPLE".into(), "wJalrXUtnFEMI/K7MDENG".into()));
        cfg.endpoint = Some("http://user:hunter2@host:9000/".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://host:9000/"), "{shown}");
    }

    #[test]
    fn keys_join_with_one_slash() {
        assert_eq!(join_key("", "a/b"), "a/b");
        assert_eq!(join_key("db", "a/b"), "db/a/b");
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        use StoreErrorKind::*;
        assert_eq!(classify(Some(404), Some("NoSuchKey")), NotFound);
        assert_eq!(classify(Some(404), Some("NoSuchBucket")), NoSuchBucket);
        assert_eq!(classify(Some(404), None), NotFound);
        assert_eq!(
            classify(Some(403), Some("SignatureDoesNotMatch")),
            AccessDenied
        );
        assert_eq!(
            classify(Some(403), Some("InvalidAccessKeyId")),
            AccessDenied
        );
        assert_eq!(classify(Some(403), None), AccessDenied);
        assert_eq!(classify(Some(503), Some("SlowDown")), Transient);
        assert_eq!(classify(Some(500), None), Transient);
        assert_eq!(classify(Some(400), Some("RequestTimeout")), Timeout);
        assert_eq!(classify(Some(416), Some("InvalidRange")), InvalidArgument);
        assert_eq!(classify(Some(416), None), InvalidArgument);
        assert_eq!(classify(Some(400), Some("BadDigest")), Transient);
        assert_eq!(classify(Some(409), Some("BucketNotEmpty")), Other);
        assert_eq!(classify(Some(501), Some("NotImplemented")), Other);
        assert!(!classify(Some(501), Some("NotImplemented")).is_retryable());
        assert!(classify(Some(503), None).is_retryable());
        assert!(!classify(Some(403), None).is_retryable());
    }

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 9, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
    }

    #[test]
    fn endpoint_user_info_is_removed() {
        assert_eq!(
            redact_endpoint("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(redact_endpoint("https://u:p@h/x@y"), "https://h/x@y");
        assert_eq!(redact_endpoint("u:p@h"), "h");
    }

    #[test]
    fn server_times_convert_without_panicking() {
        use std::time::UNIX_EPOCH;
        assert_eq!(
            system_time(&DateTime::from_secs_and_nanos(1_700_000_000, 250_000_000)),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
        assert_eq!(
            system_time(&DateTime::from_secs_and_nanos(-2, 500_000_000)),
            UNIX_EPOCH.checked_sub(Duration::from_millis(1_500))
        );
        // Whatever the platform's range, the extremes give an answer or `None`.
        for secs in [i64::MIN, i64::MIN + 1, i64::MAX] {
            for nanos in [0, 999_999_999] {
                let _ = system_time(&DateTime::from_secs_and_nanos(secs, nanos));
            }
        }
    }

    #[test]
    fn part_numbers_are_bounded() {
        assert_eq!(part_number_i32("k", 1).ok(), Some(1));
        assert_eq!(part_number_i32("k", 10_000).ok(), Some(10_000));
        assert!(part_number_i32("k", 0).is_err());
        assert!(part_number_i32("k", 10_001).is_err());
    }
}
