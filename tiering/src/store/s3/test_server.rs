//! An S3 server on loopback for tests, in process: `s3s` speaking the S3 protocol over
//! `s3s-fs`, which serves a directory (each subdirectory is a bucket).
//!
//! Built only with the `s3-test-server` feature, so the library itself never links it.
//! The server runs on a tokio runtime of its own (one worker thread), so tests may
//! drive clients from any executor, and it checks SigV4 signatures against one fixed
//! key pair ([`TEST_ACCESS_KEY`], [`TEST_SECRET_KEY`]): a wrong secret is rejected as
//! real S3 would. Dropping the server stops it; connections in flight are cut.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use super::S3Config;

/// Access key id the test server accepts.
pub const TEST_ACCESS_KEY: &str = "terrace-test-access";
/// Secret key the test server accepts.
pub const TEST_SECRET_KEY: &str = "terrace-test-secret";

/// A running S3 server on `127.0.0.1`.
pub struct S3TestServer {
    root: PathBuf,
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for S3TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3TestServer")
            .field("root", &self.root)
            .field("addr", &self.addr)
            .finish()
    }
}

impl S3TestServer {
    /// Serves `root` (which must exist) on a free loopback port. Callable from inside
    /// or outside a tokio runtime.
    pub fn start(root: impl AsRef<Path>) -> io::Result<S3TestServer> {
        let root = root.as_ref().to_path_buf();
        // s3s-fs's own error has no Display; check the usual failure first.
        std::fs::metadata(&root)?;
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| {
            io::Error::other(format!("s3s-fs cannot serve {}: {e:?}", root.display()))
        })?;
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(TEST_ACCESS_KEY, TEST_SECRET_KEY));
            builder.build()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-test-server")
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _in_rt = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        rt.spawn(async move {
            loop {
                let socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(_) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Without it every request waits for a delayed ACK (~40 ms).
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Ok(S3TestServer {
            root,
            addr,
            rt: Some(rt),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory served; bucket `b` is `root/b`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates bucket `name` (a subdirectory of the root).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.root.join(name))
    }

    /// A configuration that reaches this server with the accepted credentials.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".to_string()),
            force_path_style: true,
            credentials: Some((TEST_ACCESS_KEY.to_string(), TEST_SECRET_KEY.to_string())),
            ..S3Config::new(bucket.to_string(), prefix.to_string())
        }
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        // Never blocks, so dropping inside an async test is fine.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
