//! TLS: the real server on 127.0.0.1:0 with certificates made here, called through tonic
//! clients that trust (or do not trust) them; mutual TLS; reloading renewed files; and
//! PostgreSQL over TLS.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use iqs::config::{Config, TlsConfig};
use iqs::proto::rubric::{ListRubricsRequest, rubric_service_client::RubricServiceClient};
use iqs::server::Server;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

use crate::helpers::{admin_key_in, create_test_database, with_key};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn server_leaf(&self) -> Leaf {
        self.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_leaf(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The files a server reads its TLS settings from.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl TlsFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("iqs-tls-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: dir.join("client-ca.crt"),
        }
    }

    fn write(&self, leaf: &Leaf) {
        write_atomically(&self.cert, &leaf.cert);
        write_atomically(&self.key, &leaf.key);
    }

    fn config(&self, mutual: bool, reload_interval_ms: u64) -> TlsConfig {
        TlsConfig {
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            client_ca_file: mutual.then(|| self.client_ca.clone()),
            reload_interval_ms,
            ..TlsConfig::default()
        }
    }
}

/// As a renewal tool does: a reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

struct TlsApp {
    port: u16,
    health_addr: std::net::SocketAddr,
    admin_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl TlsApp {
    async fn start(tls: TlsConfig, database_url: Option<String>) -> Self {
        iqs::tls::install_crypto_provider();
        let database_url = match database_url {
            Some(url) => url,
            None => create_test_database().await,
        };
        let config = Config {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(database_url.clone()),
            database_max_connections: 4,
            shutdown_grace_ms: 2_000,
            tls,
            health_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        let (served, shutdown, server) =
            crate::helpers::serve(Server::build(&config).await.expect("server starts"));
        let port = served.local_addr.port();
        let health_addr = served.health_addr.expect("a health port");
        Self {
            port,
            health_addr,
            admin_key: admin_key_in(&database_url).await,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Connects over TLS trusting `ca`, presenting `identity` when given.
    async fn connect(&self, ca: &Ca, identity: Option<&Leaf>) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
        }
        Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .tls_config(tls)
            .map_err(|err| format!("{err:?}"))?
            .connect()
            .await
            .map_err(|err| format!("{err:?}"))
    }

    /// A health check and an authenticated call over a new TLS connection.
    async fn calls(&self, ca: &Ca, identity: Option<&Leaf>) -> Result<(), String> {
        let channel = self.connect(ca, identity).await?;
        check_health(&channel).await?;
        RubricServiceClient::new(with_key(channel, &self.admin_key))
            .list_rubrics(ListRubricsRequest::default())
            .await
            .map_err(|status| format!("{status:?}"))?;
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

async fn check_health(channel: &Channel) -> Result<(), String> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(drop)
        .map_err(|status| format!("{status:?}"))
}

/// Waits until `call` succeeds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut call: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_tls_port_serves_health_and_authenticated_calls() {
    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let app = TlsApp::start(files.config(false, 5_000), None).await;
    app.calls(&ca, None).await.expect("calls over TLS");
    let stranger = Ca::new("someone else");
    assert!(
        app.calls(&stranger, None).await.is_err(),
        "a client that does not trust the server's CA refuses it"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_tls_port_answers_json_over_http1_to_a_client_that_offers_only_http1() {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let app = TlsApp::start(files.config(false, 5_000), None).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake offers http/1.1");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let body = "{}";
    let request = format!(
        "POST /iqs.rubric.v1.RubricService/ListRubrics HTTP/1.1\r\nhost: localhost\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        app.admin_key,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""rubrics":[]"#), "{answer}");
    app.stop().await;
}

/// Kubernetes' gRPC probes speak neither TLS nor mutual TLS.
#[tokio::test]
async fn probes_check_health_in_plaintext_on_the_health_port_and_nothing_else() {
    let server_ca = Ca::new("IQS server CA");
    let files = TlsFiles::new();
    files.write(&server_ca.server_leaf());
    write_atomically(&files.client_ca, &Ca::new("IQS client CA").pem());
    let app = TlsApp::start(files.config(true, 5_000), None).await;
    let probe = Endpoint::from_shared(format!("http://{}", app.health_addr))
        .unwrap()
        .connect()
        .await
        .expect("connect in plaintext");
    check_health(&probe).await.expect("health in plaintext");
    let status = RubricServiceClient::new(with_key(probe, &app.admin_key))
        .list_rubrics(ListRubricsRequest::default())
        .await
        .expect_err("only health is served there");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    app.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_certificate_of_the_client_ca() {
    let server_ca = Ca::new("IQS server CA");
    let client_ca = Ca::new("IQS client CA");
    let files = TlsFiles::new();
    files.write(&server_ca.server_leaf());
    write_atomically(&files.client_ca, &client_ca.pem());
    let app = TlsApp::start(files.config(true, 5_000), None).await;

    let without = app.calls(&server_ca, None).await;
    assert!(without.is_err(), "a client without a certificate got in");
    let forged = Ca::new("not the client CA").client_leaf("intruder");
    let forged = app.calls(&server_ca, Some(&forged)).await;
    assert!(forged.is_err(), "a certificate of another CA got in");
    let client = client_ca.client_leaf("evaluation-service");
    app.calls(&server_ca, Some(&client))
        .await
        .expect("a certificate of the client CA gets in");
    app.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_reaches_new_connections_after_sighup() {
    let old_ca = Ca::new("IQS CA 1");
    let new_ca = Ca::new("IQS CA 2");
    let files = TlsFiles::new();
    files.write(&old_ca.server_leaf());
    // Polling an hour apart: only the signal can make the change seen within the test.
    let app = TlsApp::start(files.config(false, 3_600_000), None).await;
    let open = app.connect(&old_ca, None).await.expect("connect");
    check_health(&open)
        .await
        .expect("the first connection works");

    files.write(&new_ca.server_leaf());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        app.calls(&new_ca, None).await.is_err(),
        "reloaded before any signal"
    );
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(sent.success());
    eventually(Duration::from_secs(5), || app.calls(&new_ca, None))
        .await
        .expect("new connections get the new certificate");
    assert!(
        app.calls(&old_ca, None).await.is_err(),
        "new connections still get the old certificate"
    );
    check_health(&open)
        .await
        .expect("a connection made before the reload keeps working");
    app.stop().await;
}

#[tokio::test]
async fn changed_files_are_picked_up_and_a_broken_pair_is_not() {
    let old_ca = Ca::new("IQS CA 1");
    let new_ca = Ca::new("IQS CA 2");
    let files = TlsFiles::new();
    files.write(&old_ca.server_leaf());
    let app = TlsApp::start(files.config(false, 100), None).await;
    app.calls(&old_ca, None).await.expect("calls over TLS");

    // Half a renewal: the new certificate with the old key. It is refused and the
    // server keeps serving the previous pair.
    let renewed = new_ca.server_leaf();
    write_atomically(&files.cert, &renewed.cert);
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.calls(&old_ca, None)
        .await
        .expect("the previous pair is still served");

    write_atomically(&files.key, &renewed.key);
    eventually(Duration::from_secs(5), || app.calls(&new_ca, None))
        .await
        .expect("new connections get the new certificate");
    app.stop().await;
}

#[tokio::test]
async fn a_plaintext_client_fails_cleanly_and_the_server_keeps_serving() {
    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let app = TlsApp::start(files.config(false, 5_000), None).await;
    let plaintext = async {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", app.port))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|err| format!("{err:?}"))?;
        check_health(&channel).await
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), plaintext)
        .await
        .expect("a plaintext client gets an answer, not a hang");
    assert!(refused.is_err(), "a plaintext client was served");
    app.calls(&ca, None)
        .await
        .expect("TLS clients are still served");
    app.stop().await;
}

#[tokio::test]
async fn a_silent_client_delays_no_one_and_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;

    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let tls = TlsConfig {
        handshake_timeout_ms: 500,
        ..files.config(false, 5_000)
    };
    let app = TlsApp::start(tls, None).await;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let started = Instant::now();
    app.calls(&ca, None)
        .await
        .expect("served while another handshake hangs");
    assert!(started.elapsed() < Duration::from_millis(500));
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("the silent connection is closed by the server");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    app.stop().await;
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_naming_the_key() {
    iqs::tls::install_crypto_provider();
    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    let leaf = ca.server_leaf();
    let other = ca.server_leaf();
    write_atomically(&files.cert, &leaf.cert);
    write_atomically(&files.key, &other.key);
    let config = Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(create_test_database().await),
        tls: files.config(false, 5_000),
        ..Config::default()
    };
    let err = Server::build(&config)
        .await
        .err()
        .expect("a key of another certificate is refused")
        .to_string();
    assert!(err.contains("tls.key_file"), "{err}");

    std::fs::remove_file(&files.cert).unwrap();
    let err = Server::build(&config)
        .await
        .err()
        .expect("a missing certificate is refused")
        .to_string();
    assert!(err.contains("tls.cert_file"), "{err}");
}

/// The local PostgreSQL of the tests has TLS on (as Debian's has by default); the check is
/// skipped where it has not.
#[tokio::test]
async fn postgres_connections_can_require_tls() {
    let url = create_test_database().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let required = format!("{url}{separator}sslmode=require");
    let pool = match sqlx::PgPool::connect(&required).await {
        Ok(pool) => pool,
        Err(err) if err.to_string().contains("does not support TLS") => {
            eprintln!("skipped: this PostgreSQL server has TLS off");
            return;
        }
        Err(err) => panic!("sslmode=require: {err}"),
    };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted);

    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let app = TlsApp::start(files.config(false, 5_000), Some(required)).await;
    app.calls(&ca, None)
        .await
        .expect("served from PostgreSQL over TLS");
    app.stop().await;
}

/// Summaries are cached in a Redis that speaks only TLS, verified against the CA that
/// `SSL_CERT_FILE` names (the variable replaces the system's roots, as documented).
#[tokio::test]
async fn summaries_are_cached_in_a_redis_reached_over_tls() {
    use iqs::proto::analytics::{
        GetAgentScoreRequest, analytics_service_client::AnalyticsServiceClient,
    };
    use iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient;

    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let ca_file = files.cert.with_file_name("redis-ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let redis = crate::owned_servers::Redis::start_tls(&files.cert, &files.key, &ca_file);
    let database_url = create_test_database().await;
    let key = admin_key_in(&database_url).await;
    let server = crate::owned_servers::ServerProcess::spawn(&[
        ("DATABASE_URL", database_url.as_str()),
        ("REDIS_URL", redis.url().as_str()),
        ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
    ]);
    let channel = with_key(server.channel().await, &key);
    let (rubric, _) =
        crate::helpers::published_rubric(&mut RubricServiceClient::new(channel.clone())).await;
    EvaluationServiceClient::new(channel.clone())
        .submit_evaluation(crate::helpers::submission(&rubric.id, "RTLS-1", 1, 4))
        .await
        .unwrap();
    let mut analytics = AnalyticsServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cached_summaries() == 0 {
        analytics
            .get_agent_score(GetAgentScoreRequest {
                agent_id: "agent-1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            Instant::now() < deadline,
            "nothing was cached over TLS:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn rediss_urls_are_accepted() {
    iqs::tls::install_crypto_provider();
    iqs::cache::redis::RedisCache::new(
        "rediss://127.0.0.1:6380",
        Duration::from_millis(100),
        Duration::from_secs(1),
    )
    .expect("a rediss:// URL is accepted");
}

/// An evaluation service alone, calling the rubric service at `rubric_endpoint`.
async fn evaluation_only(
    database_url: &str,
    rubric_endpoint: String,
    server_ca_file: Option<PathBuf>,
) -> (std::net::SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let config = Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url.to_owned()),
        database_max_connections: 4,
        shutdown_grace_ms: 2_000,
        services: "evaluation".parse().unwrap(),
        rubric_endpoint: Some(rubric_endpoint),
        tls: TlsConfig {
            server_ca_file,
            ..TlsConfig::default()
        },
        ..Config::default()
    };
    let (served, shutdown, handle) =
        crate::helpers::serve(Server::build(&config).await.expect("server starts"));
    (served.local_addr, shutdown, handle)
}

#[tokio::test]
async fn the_evaluation_service_calls_a_tls_rubric_service_trusting_the_configured_ca() {
    let database_url = create_test_database().await;
    let ca = Ca::new("IQS test CA");
    let files = TlsFiles::new();
    files.write(&ca.server_leaf());
    let rubric_app = TlsApp::start(files.config(false, 5_000), Some(database_url.clone())).await;
    let rubric_channel = with_key(
        rubric_app.connect(&ca, None).await.unwrap(),
        &rubric_app.admin_key,
    );
    let (rubric, _) =
        crate::helpers::published_rubric(&mut RubricServiceClient::new(rubric_channel)).await;
    let ca_file = files.cert.with_file_name("server-ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let endpoint = format!("https://localhost:{}", rubric_app.port);

    for (trusted, ca_file) in [(true, Some(ca_file)), (false, None)] {
        let (addr, shutdown, handle) =
            evaluation_only(&database_url, endpoint.clone(), ca_file).await;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut evaluations =
            iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient::new(
                with_key(channel, &rubric_app.admin_key),
            );
        let submitted = evaluations
            .submit_evaluation(crate::helpers::submission(
                &rubric.id,
                &format!("TLS-{trusted}"),
                1,
                4,
            ))
            .await;
        if trusted {
            submitted.expect("scored with the rubric fetched over TLS");
        } else {
            let refused = submitted.expect_err("the system's roots do not trust the test CA");
            assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        }
        let _ = shutdown.send(());
        handle.await.unwrap();
    }
    rubric_app.stop().await;
}
