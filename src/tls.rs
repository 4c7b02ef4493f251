//! TLS on the gRPC port, with optional client certificates (mutual TLS).
//!
//! tonic's own `tls_config` reads its certificate once; here the files are read again
//! on SIGHUP and whenever their contents change, so a renewed certificate (cert-manager
//! rewrites a mounted Secret) takes effect without a restart. Connections already open
//! keep the certificate they were made with; new ones get the new one.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use sha2::{Digest, Sha256};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};

use crate::config::TlsConfig;

/// Makes ring the process's rustls provider. rustls panics on first use when more than
/// one provider is compiled in and none was chosen; choosing early keeps a dependency
/// that enables another one from turning into a crash. Later calls change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {key} {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{key} {}: {problem}", path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
}

#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// What the files held when last read.
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &Files) -> Result<Self, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                key,
                path: path.to_owned(),
                source,
            })
        };
        Ok(Self {
            cert: read("tls.cert_file", &files.cert)?,
            key: read("tls.key_file", &files.key)?,
            client_ca: files
                .client_ca
                .as_deref()
                .map(|path| read("tls.client_ca_file", path))
                .transpose()?,
        })
    }

    /// Compared between polls instead of modification times, which a rewrite within
    /// the same second (or an atomic symlink swap, as Kubernetes does) can leave equal;
    /// a digest also keeps the private key itself out of long-lived memory.
    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            let part = part.map(Vec::as_slice).unwrap_or_default();
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn server_config(&self, files: &Files) -> Result<Arc<ServerConfig>, TlsError> {
        let invalid = |key: &'static str, path: &Path, problem: String| TlsError::Invalid {
            key,
            path: path.to_owned(),
            problem,
        };
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid("tls.cert_file", &files.cert, err.to_string()))?;
        if chain.is_empty() {
            return Err(invalid(
                "tls.cert_file",
                &files.cert,
                "no PEM certificate in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|err| invalid("tls.key_file", &files.key, err.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid("tls.cert_file", &files.cert, err.to_string()))?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert =
                        cert.map_err(|err| invalid("tls.client_ca_file", path, err.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|err| invalid("tls.client_ca_file", path, err.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(invalid(
                        "tls.client_ca_file",
                        path,
                        "no PEM certificate in it".into(),
                    ));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| invalid("tls.client_ca_file", path, err.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        // Also checks that the key is the certificate's: a renewal caught between
        // writing the two files is refused here, and the previous pair stays in use.
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|err| invalid("tls.key_file", &files.key, err.to_string()))?;
        // gRPC needs HTTP/2; Connect and gRPC-Web clients may speak HTTP/1.1. Clients that
        // negotiate by ALPN must see what they speak offered (h2 first).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Each configuration gets its own session cache (the builder's default), so a
        // session resumed after a reload was verified against the current client CA.
        Ok(Arc::new(config))
    }
}

/// The gRPC port's TLS: the files, and the configuration last built from them.
pub struct TlsServer {
    files: Files,
    config: Arc<ServerConfig>,
    digest: [u8; 32],
    reload_interval: Duration,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// Reads the files when TLS is configured; `None` for a plaintext port. Bad files
    /// stop the start here rather than at the first client's handshake.
    pub fn load(config: &TlsConfig) -> Result<Option<Self>, TlsError> {
        let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.client_ca_file.clone(),
        };
        let contents = Contents::read(&files)?;
        Ok(Some(Self {
            config: contents.server_config(&files)?,
            digest: contents.digest(),
            files,
            reload_interval: Duration::from_millis(config.reload_interval_ms.max(10)),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms.max(1)),
        }))
    }

    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The connections of `listener` that completed a TLS handshake. Handshakes run
    /// side by side, each within the handshake timeout, so a slow or silent client
    /// delays no one else. The listener closes once the stream is dropped (tonic drops
    /// it when shutdown starts).
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
        let (ready, connections) = mpsc::channel(64);
        // Listening from here on, not from the task's first poll: a SIGHUP sent once the
        // server is up must never meet the default action, which ends the process.
        let hangup = hangup_signal();
        tokio::spawn(self.accept(listener, hangup, ready));
        ReceiverStream::new(connections).map(Ok)
    }

    async fn accept(
        mut self,
        listener: TcpListener,
        mut hangup: Hangup,
        ready: mpsc::Sender<TlsStream<TcpStream>>,
    ) {
        let mut poll = tokio::time::interval(self.reload_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                () = ready.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.handshake(stream, peer, ready.clone()),
                    Err(err) => {
                        // Out of file descriptors, typically: retrying at once would spin.
                        tracing::warn!(%err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = poll.tick() => self.reload(false).await,
                Some(()) = next_hangup(&mut hangup) => self.reload(true).await,
            }
        }
    }

    fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        ready: mpsc::Sender<TlsStream<TcpStream>>,
    ) {
        // Without it, a response larger than one segment waits for the client's
        // delayed ACK (see `server::without_nagle`).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(self.config.clone());
        let timeout = self.handshake_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(connection)) => {
                    let _ = ready.send(connection).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, ?timeout, "TLS handshake timed out"),
            }
        });
    }

    /// Builds a new configuration when the files changed (or always, on SIGHUP). A
    /// failure keeps the current one, said once per set of contents.
    async fn reload(&mut self, signalled: bool) {
        let files = self.files.clone();
        let read = tokio::task::spawn_blocking(move || {
            let contents = Contents::read(&files)?;
            let digest = contents.digest();
            Ok::<_, TlsError>((contents, digest, files))
        })
        .await;
        let (contents, digest, files) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(err)) => {
                tracing::warn!(%err, "cannot reload the TLS certificate; keeping the current one");
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "TLS reload task failed");
                return;
            }
        };
        if digest == self.digest && !signalled {
            return;
        }
        match contents.server_config(&files) {
            Ok(config) => {
                self.config = config;
                tracing::info!(signalled, "TLS certificate reloaded");
            }
            Err(err) => {
                tracing::warn!(%err, "cannot reload the TLS certificate; keeping the current one");
            }
        }
        // A bad set is not retried (nor reported again) until the files change.
        self.digest = digest;
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGHUP; TLS files are reloaded when they change");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// How this process calls another IQS service over `https://`: trusting
/// `tls.server_ca_file` (else the system's roots), and presenting its own certificate
/// when it has one, for services that require mutual TLS.
pub fn client_config(tls: &TlsConfig) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new();
    config = match &tls.server_ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read_file(
            "tls.server_ca_file",
            path,
        )?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(Identity::from_pem(
            read_file("tls.cert_file", cert)?,
            read_file("tls.key_file", key)?,
        ));
    }
    Ok(config)
}
