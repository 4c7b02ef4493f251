//! Assembly: stores, services, tower layers, health, reflection and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::auth::{
    fair_share::{FairShare, Shares},
    keys::KeyVerifier,
    layer::{AuthLayer, Authentication},
    limits::RateLimiter,
};
use crate::autoqa_worker::AutoQaWorker;
use crate::cache::{SummaryCache, memory::MemoryCache, redis::RedisCache, tiered::TieredCache};
use crate::config::{AuthMode, Config, ServiceKind, ServiceSet};
use crate::connect::ConnectLayer;
use crate::connection::{ConnectionActivityLayer, ConnectionLimits, Connections};
use crate::dashboard::DashboardLayer;
use crate::domain::paging::PageTokens;
use crate::domain::webhook::RetrySchedule;
use crate::error::Error;
use crate::layers::{
    Around,
    admission::AdmissionLayer,
    call_telemetry::CallTelemetryLayer,
    deadline::{BodyTimeouts, DeadlineLayer},
    early_answer::EarlyAnswerLayer,
};
use crate::projector::Projector;
use crate::proto::integration::webhook_service_server::WebhookServiceServer;
use crate::proto::{
    self,
    analytics::analytics_service_server::AnalyticsServiceServer,
    evaluation::{
        assignment_service_server::AssignmentServiceServer,
        calibration_service_server::CalibrationServiceServer,
        coaching_service_server::CoachingServiceServer,
        dispute_service_server::DisputeServiceServer,
        evaluation_service_server::EvaluationServiceServer,
    },
    rubric::rubric_service_server::RubricServiceServer,
};
use crate::services::grpc_service_names;
use crate::services::import_flow::ProjectionBackpressure;
use crate::services::rubric_client::{
    CachedRubricClient, InProcessRubricClient, RemoteRubricClient, RubricClient,
};
use crate::services::scorers::ExternalScorers;
use crate::services::webhook::{ProtoJsonRenderer, WebhookApi};
use crate::services::{
    analytics::{AnalyticsApi, ProgramStores},
    assignment::AssignmentApi,
    calibration::CalibrationApi,
    coaching::CoachingApi,
    dispute::DisputeApi,
    evaluation::EvaluationApi,
    rubric::RubricApi,
};
use crate::store::{
    Store,
    postgres::{PoolSettings, PostgresStore},
    sqlite::SqliteStore,
};
use crate::store_watch::StoreWatch;
use crate::webhook_worker::{WebhookSettings, WebhookWorker};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "DATABASE_URL {0:?} is neither a PostgreSQL URL (postgres://…) nor a SQLite one (sqlite:…)"
    )]
    UnknownDatabase(String),
    #[error(
        "DATABASE_READ_URL names a replica of a PostgreSQL DATABASE_URL; the embedded store has none"
    )]
    ReplicaWithoutPostgres,
    #[error(
        "the evaluation service runs without the rubric service here: set IQS_RUBRIC_ENDPOINT \
         to the rubric service's address, e.g. http://rubric:50051"
    )]
    NoRubricEndpoint,
    #[error("{0}")]
    Store(#[from] Error),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// In-process when this process serves the rubric service, else over gRPC to
/// `rubric_endpoint`; cached either way.
fn rubric_client(
    config: &Config,
    store: Arc<dyn Store>,
) -> Result<Arc<dyn RubricClient>, StartError> {
    if config.services.contains(ServiceKind::Rubric)
        || !config.services.contains(ServiceKind::Evaluation)
    {
        return Ok(Arc::new(CachedRubricClient::new(
            InProcessRubricClient::new(store),
        )));
    }
    let endpoint = config
        .rubric_endpoint
        .as_deref()
        .ok_or(StartError::NoRubricEndpoint)?;
    let tls = if endpoint.starts_with("https://") {
        Some(crate::tls::client_config(&config.tls)?)
    } else {
        None
    };
    Ok(Arc::new(CachedRubricClient::new(RemoteRubricClient::new(
        endpoint, tls,
    )?)))
}

/// Redis when `REDIS_URL` is set; otherwise a cache in this process's memory.
fn summary_cache(config: &Config) -> Result<Option<Arc<dyn SummaryCache>>, StartError> {
    let ttl = Duration::from_millis(config.cache_ttl_ms);
    let Some(url) = config.redis_url.as_deref() else {
        return Ok(Some(Arc::new(MemoryCache::new(ttl))));
    };
    let redis: Arc<dyn SummaryCache> = Arc::new(
        RedisCache::new(url, Duration::from_millis(config.redis_timeout_ms), ttl)
            .map_err(|err| StartError::Store(Error::Internal(err)))?,
    );
    let near_ttl = Duration::from_millis(config.cache_near_ttl_ms).min(ttl);
    if near_ttl.is_zero() {
        return Ok(Some(redis));
    }
    Ok(Some(Arc::new(TieredCache::new(redis, near_ttl))))
}

/// Page tokens signed with the deployment's secret, which the store keeps so that every
/// replica and every restart accepts the tokens of the others.
async fn page_tokens(store: &dyn Store) -> Result<PageTokens, StartError> {
    let secret = store.deployment_secret("page_tokens").await?;
    PageTokens::new(&secret).ok_or_else(|| {
        StartError::Store(Error::Internal(
            "the stored page_tokens secret is shorter than 32 bytes".into(),
        ))
    })
}

/// Whether the store is the embedded SQLite one (no `DATABASE_URL`, or a `sqlite:` one).
pub fn is_embedded(config: &Config) -> bool {
    config
        .database_url
        .as_deref()
        .is_none_or(|url| url.starts_with("sqlite:"))
}

/// Opens the store `DATABASE_URL` names (PostgreSQL or SQLite), else the embedded SQLite
/// store under the data directory, and applies its migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    // The database and Redis may be reached over TLS: one rustls provider, chosen first.
    crate::tls::install_crypto_provider();
    let store: Arc<dyn Store> = match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let settings = PoolSettings {
                max_connections: config.database_max_connections,
                acquire_timeout: config.database_acquire_timeout(),
            };
            let mut store = PostgresStore::connect(url, &settings).await?;
            store.migrate().await?;
            if let Some(read_url) = config.database_read_url.as_deref() {
                store = store.with_read_replica(read_url, &settings)?;
            }
            Arc::new(store)
        }
        _ if config.database_read_url.is_some() => return Err(StartError::ReplicaWithoutPostgres),
        Some(url) if url.starts_with("sqlite:") => {
            let store = SqliteStore::connect(url).await?;
            store.migrate().await?;
            Arc::new(store)
        }
        Some(url) => return Err(StartError::UnknownDatabase(url.to_owned())),
        None => {
            let store = SqliteStore::open_dir(&config.data_dir).await?;
            store.migrate().await?;
            Arc::new(store)
        }
    };
    Ok(store)
}

/// What the tower layers and services enforce.
#[derive(Debug, Clone)]
struct Limits {
    max_concurrent_calls: usize,
    shares: Shares,
    queue_timeout: Duration,
    request_timeout: Duration,
    body_timeouts: BodyTimeouts,
    connections: ConnectionLimits,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    max_message_bytes: usize,
    health_check_interval: Duration,
    cors_allowed_origins: Vec<String>,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Self {
            max_concurrent_calls: config.max_concurrent_calls,
            shares: Shares {
                per_key: config.max_concurrent_calls_per_key,
                per_tenant: config.max_concurrent_calls_per_tenant,
            },
            body_timeouts: BodyTimeouts {
                unary: Duration::from_millis(config.request_body_timeout_ms.max(1)),
                stream_idle: Duration::from_millis(config.stream_idle_timeout_ms.max(1)),
                stream_total: Duration::from_millis(config.stream_max_duration_ms.max(1)),
            },
            connections: ConnectionLimits {
                handshake_timeout: Duration::from_millis(config.http2_handshake_timeout_ms.max(1)),
                idle_timeout: Duration::from_millis(config.connection_idle_timeout_ms.max(1)),
            },
            keepalive_interval: Duration::from_millis(config.http2_keepalive_interval_ms.max(1)),
            keepalive_timeout: Duration::from_millis(config.http2_keepalive_timeout_ms.max(1)),
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
            max_message_bytes: config.max_message_bytes,
            health_check_interval: Duration::from_millis(config.health_check_interval_ms.max(10)),
            cors_allowed_origins: config.cors_allowed_origins.clone(),
        }
    }
}

/// A server whose listener is bound (so its address is known) but not yet serving.
pub struct Server {
    store: Arc<dyn Store>,
    limits: Limits,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<crate::tls::TlsServer>,
    health_listener: Option<TcpListener>,
    services: ServiceSet,
    authentication: Authentication,
    shutdown_grace: Duration,
    rubric_client: Arc<dyn RubricClient>,
    cache: Option<Arc<dyn SummaryCache>>,
    page_tokens: Arc<PageTokens>,
    embedded: bool,
    /// External AutoQA scorers, one set per process: the API and the automatic mode
    /// share each scorer's circuit breaker.
    scorers: Arc<ExternalScorers>,
    /// Holds imports back while the projector is far behind, one per process: a
    /// projector seen not moving is noticed once for every import.
    projection: Arc<ProjectionBackpressure>,
    webhooks: WebhookSettings,
    outbox_retention: Duration,
}

impl Server {
    /// Migrates the database, then binds the listener.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let store = open_store(config).await?;
        let tls = crate::tls::TlsServer::load(&config.tls)?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen_addr,
            source,
        })?;
        let health_listener = match config.health_listen_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let rubric_client = rubric_client(config, store.clone())?;
        crate::store_watch::observe_pool(store.clone());
        Ok(Self {
            store: store.clone(),
            limits: Limits::from(config),
            listener,
            local_addr,
            tls,
            health_listener,
            services: config.services.clone(),
            authentication: match config.auth {
                AuthMode::Keys => Authentication::Keys(
                    Arc::new(KeyVerifier::new(store.clone())),
                    Arc::new(RateLimiter::new(config.rate_limits.clone())),
                ),
                AuthMode::Disabled => Authentication::Disabled(config.default_tenant()),
            },
            shutdown_grace: config.shutdown_grace(),
            cache: summary_cache(config)?,
            page_tokens: Arc::new(page_tokens(store.as_ref()).await?),
            rubric_client,
            embedded: is_embedded(config),
            scorers: Arc::new(ExternalScorers::new(Duration::from_millis(
                config.autoqa_scorer_timeout_ms.max(1),
            ))),
            webhooks: webhook_settings(config),
            projection: Arc::new(ProjectionBackpressure::new(
                store.clone(),
                config.import_max_projection_lag,
            )),
            outbox_retention: Duration::from_secs(config.outbox_retention_s),
        })
    }

    /// On the embedded store's first run (no key at all), an admin key of a new `default`
    /// tenant, to be shown once; `None` otherwise.
    pub async fn first_run_key(&self) -> Result<Option<String>, StartError> {
        if !self.embedded || !matches!(self.authentication, Authentication::Keys(..)) {
            return Ok(None);
        }
        Ok(crate::auth::bootstrap::first_admin_key(self.store.as_ref()).await?)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the plaintext health port, when there is one.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes; then health turns NOT_SERVING, the listener
    /// closes, and calls in flight finish before this returns.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in self.services.iter().flat_map(grpc_service_names) {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        // v1alpha too, for clients (older grpcurl) that only speak it.
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let ApiServices {
            rubric,
            evaluation,
            calibration,
            dispute,
            coaching,
            assignment,
            webhook,
            analytics,
        } = self.api_services();
        let background = self.start_background(health.clone());
        // Probes see the same statuses (NOT_SERVING while draining) as on the main port.
        let health_port = self.health_listener.take().map(|listener| {
            tracing::info!(address = ?listener.local_addr().ok(), "health checks also on");
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(health_service.clone())
                    .serve_with_incoming(without_nagle(listener)),
            )
        });

        tracing::info!(
            address = %self.local_addr,
            services = %self.services,
            tls = self.tls.as_ref().map(|tls| if tls.mutual() { "mutual" } else { "server" }),
            "listening"
        );
        let services = self.services.clone();
        let (signalled, grace_started) = tokio::sync::oneshot::channel();
        let (store_watch, stop_store_watch) = (background.store_watch, background.stop_store_watch);
        let drain = async move {
            shutdown.await;
            tracing::info!("shutting down: refusing new calls, finishing calls in flight");
            let _ = stop_store_watch.send(true);
            let _ = store_watch.await;
            mark_not_serving(&health, &services).await;
            let _ = signalled.send(());
        };
        let grace = self.shutdown_grace;
        // Long-lived streams (a health Watch, say) never finish by themselves: after the
        // grace period, the remaining connections are closed.
        let grace_elapsed = async move {
            if grace_started.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let connections = Connections::default();
        // Outermost first: an HTTP/1.1 call answered early still has its body read,
        // GET requests get the dashboard's files, browsers' preflights are answered, Connect and gRPC-Web calls become the gRPC
        // calls they stand for; then every call is traced and counted, even one refused
        // for capacity.
        let layers = tower::ServiceBuilder::new()
            .layer(Around(EarlyAnswerLayer::new(
                self.limits.max_message_bytes,
                self.limits.body_timeouts.unary,
            )))
            .layer(Around(DashboardLayer))
            .option_layer(cors_layer(&self.limits.cors_allowed_origins))
            .layer(Around(ConnectLayer::new(self.limits.max_message_bytes)))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(Around(ConnectionActivityLayer::new(connections.clone())))
            .layer(Around(CallTelemetryLayer::new()))
            .layer(Around(AdmissionLayer::new(
                self.limits.max_concurrent_calls,
                self.limits.queue_timeout,
            )))
            .layer(Around(DeadlineLayer::new(
                self.limits.request_timeout,
                self.limits.body_timeouts,
            )))
            .layer(Around(AuthLayer::new(
                self.authentication.clone(),
                self.store.clone(),
                Arc::new(FairShare::new(self.limits.shares)),
            )))
            .into_inner();
        let router = tonic::transport::Server::builder()
            // HTTP/1.1 for Connect and gRPC-Web clients; HTTP/2 (h2c or TLS) as before.
            .accept_http1(true)
            // One connection cannot hold more calls than the whole server admits: beyond
            // that, the client's HTTP/2 stack holds calls back before they cost this
            // server anything (a flood otherwise queues in the runtime ahead of admission).
            .max_concurrent_streams(u32::try_from(self.limits.max_concurrent_calls).ok())
            .http2_keepalive_interval(Some(self.limits.keepalive_interval))
            .http2_keepalive_timeout(Some(self.limits.keepalive_timeout))
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_optional_service(rubric)
            .add_optional_service(evaluation)
            .add_optional_service(calibration)
            .add_optional_service(dispute)
            .add_optional_service(coaching)
            .add_optional_service(assignment)
            .add_optional_service(webhook)
            .add_optional_service(analytics);
        let limits = self.limits.connections;
        let serving: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match self.tls {
            Some(tls) => {
                let incoming = tls
                    .incoming(self.listener)
                    .map(move |accepted| accepted.map(|io| connections.guard(io, limits)));
                Box::pin(router.serve_with_incoming_shutdown(incoming, drain))
            }
            None => {
                let incoming = without_nagle(self.listener)
                    .map(move |accepted| accepted.map(|io| connections.guard(io, limits)));
                Box::pin(router.serve_with_incoming_shutdown(incoming, drain))
            }
        };
        tokio::select! {
            served = serving => served.map_err(|err| StartError::Store(Error::Internal(err.to_string())))?,
            () = grace_elapsed => tracing::warn!(?grace, "grace period over; closing remaining connections"),
        }
        let _ = background.stop_projector.send(true);
        if let Some(projector) = background.projector {
            let _ = projector.await;
        }
        if let Some(autoqa) = background.autoqa {
            let _ = autoqa.await;
        }
        if let Some(pruner) = background.outbox_pruner {
            let _ = pruner.await;
        }
        if let Some(webhooks) = background.webhooks {
            let _ = webhooks.await;
        }
        // Aborted rather than drained: a health Watch would hold a drain open forever.
        if let Some(health_port) = health_port {
            health_port.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// The API services this process serves.
    fn api_services(&self) -> ApiServices {
        let bytes = self.limits.max_message_bytes;
        let rubric = self.services.contains(ServiceKind::Rubric).then(|| {
            RubricServiceServer::new(RubricApi::new(self.store.clone(), self.page_tokens.clone()))
                .max_decoding_message_size(bytes)
                .max_encoding_message_size(bytes)
        });
        let evaluation = self.services.contains(ServiceKind::Evaluation).then(|| {
            EvaluationServiceServer::new(EvaluationApi::new(
                self.store.clone(),
                self.store.clone(),
                self.rubric_client.clone(),
                self.page_tokens.clone(),
                self.scorers.clone(),
                self.projection.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let calibration = self.services.contains(ServiceKind::Evaluation).then(|| {
            CalibrationServiceServer::new(CalibrationApi::new(
                self.store.clone(),
                self.rubric_client.clone(),
                self.page_tokens.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let dispute = self.services.contains(ServiceKind::Evaluation).then(|| {
            DisputeServiceServer::new(DisputeApi::new(
                self.store.clone(),
                self.store.clone(),
                self.rubric_client.clone(),
                self.page_tokens.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let coaching = self.services.contains(ServiceKind::Evaluation).then(|| {
            CoachingServiceServer::new(CoachingApi::new(
                self.store.clone(),
                self.page_tokens.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let assignment = self.services.contains(ServiceKind::Evaluation).then(|| {
            AssignmentServiceServer::new(AssignmentApi::new(
                self.store.clone(),
                self.rubric_client.clone(),
                self.page_tokens.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let webhook = self.services.contains(ServiceKind::Evaluation).then(|| {
            WebhookServiceServer::new(WebhookApi::new(
                self.store.clone(),
                self.page_tokens.clone(),
                self.webhooks.allow_private_targets,
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        let analytics = self.services.contains(ServiceKind::Analytics).then(|| {
            AnalyticsServiceServer::new(AnalyticsApi::new(
                self.store.clone(),
                ProgramStores {
                    calibrations: self.store.clone(),
                    disputes: self.store.clone(),
                    coaching: self.store.clone(),
                    assignments: self.store.clone(),
                    autoqa: self.store.clone(),
                },
                self.cache.clone(),
                self.page_tokens.clone(),
            ))
            .max_decoding_message_size(bytes)
            .max_encoding_message_size(bytes)
        });
        ApiServices {
            rubric,
            evaluation,
            calibration,
            dispute,
            coaching,
            assignment,
            webhook,
            analytics,
        }
    }

    /// The tasks that run beside the calls: the store watch (health follows the
    /// database) and, when this process serves analytics, the projector (it keeps the
    /// rollups fresh).
    fn start_background(&self, health: HealthReporter) -> Background {
        let (stop_store_watch, store_watch_stopped) = tokio::sync::watch::channel(false);
        let store_watch = tokio::spawn(
            StoreWatch {
                store: self.store.clone(),
                health,
                services: self.services.clone(),
                interval: self.limits.health_check_interval,
            }
            .run(store_watch_stopped),
        );
        // One signal stops both workers.
        let (stop_projector, projector_stopped) = tokio::sync::watch::channel(false);
        let autoqa_stopped = projector_stopped.clone();
        let webhooks_stopped = projector_stopped.clone();
        let pruner_stopped = projector_stopped.clone();
        let projector = self.services.contains(ServiceKind::Analytics).then(|| {
            let projector = Projector::new(self.store.clone(), self.cache.clone());
            tokio::spawn(projector.run(projector_stopped))
        });
        // The outbox's consumer keeps it bounded.
        let outbox_pruner = self.services.contains(ServiceKind::Analytics).then(|| {
            tokio::spawn(crate::outbox_pruner::run(
                self.store.clone(),
                self.outbox_retention,
                pruner_stopped,
            ))
        });
        // AutoQA's automatic mode, where evaluations are written. It reads rubric
        // versions from the store itself: it acts for no caller whose key a remote
        // rubric service could check.
        let autoqa = self.services.contains(ServiceKind::Evaluation).then(|| {
            let api = EvaluationApi::new(
                self.store.clone(),
                self.store.clone(),
                Arc::new(CachedRubricClient::new(InProcessRubricClient::new(
                    self.store.clone(),
                ))),
                self.page_tokens.clone(),
                self.scorers.clone(),
                self.projection.clone(),
            );
            let worker = AutoQaWorker {
                store: self.store.clone(),
                api: Arc::new(api),
            };
            tokio::spawn(worker.run(autoqa_stopped))
        });
        // Webhooks are delivered where evaluations are written.
        let webhooks = self.services.contains(ServiceKind::Evaluation).then(|| {
            let worker = WebhookWorker {
                store: self.store.clone(),
                renderer: Arc::new(ProtoJsonRenderer::default()),
                settings: self.webhooks.clone(),
            };
            tokio::spawn(worker.run(webhooks_stopped))
        });
        Background {
            store_watch,
            stop_store_watch,
            projector,
            stop_projector,
            autoqa,
            webhooks,
            outbox_pruner,
        }
    }
}

struct ApiServices {
    rubric: Option<RubricServiceServer<RubricApi>>,
    evaluation: Option<EvaluationServiceServer<EvaluationApi>>,
    calibration: Option<CalibrationServiceServer<CalibrationApi>>,
    dispute: Option<DisputeServiceServer<DisputeApi>>,
    coaching: Option<CoachingServiceServer<CoachingApi>>,
    assignment: Option<AssignmentServiceServer<AssignmentApi>>,
    webhook: Option<WebhookServiceServer<WebhookApi>>,
    analytics: Option<AnalyticsServiceServer<AnalyticsApi>>,
}

struct Background {
    store_watch: tokio::task::JoinHandle<()>,
    stop_store_watch: tokio::sync::watch::Sender<bool>,
    projector: Option<tokio::task::JoinHandle<()>>,
    stop_projector: tokio::sync::watch::Sender<bool>,
    autoqa: Option<tokio::task::JoinHandle<()>>,
    webhooks: Option<tokio::task::JoinHandle<()>>,
    outbox_pruner: Option<tokio::task::JoinHandle<()>>,
}

fn webhook_settings(config: &Config) -> WebhookSettings {
    WebhookSettings {
        allow_private_targets: config.webhook_allow_private_targets,
        attempt_timeout: Duration::from_millis(config.webhook_attempt_timeout_ms.max(1)),
        schedule: RetrySchedule {
            first: Duration::from_millis(config.webhook_retry_first_ms.max(1)),
            longest: Duration::from_millis(
                config
                    .webhook_retry_longest_ms
                    .max(config.webhook_retry_first_ms.max(1)),
            ),
            give_up_after: Duration::from_secs(config.webhook_give_up_after_s),
        },
        disable_after_failures: config.webhook_disable_after_failures.max(1),
        max_in_flight: config.webhook_max_in_flight.max(1),
        max_in_flight_per_webhook: config.webhook_max_in_flight_per_webhook.max(1),
        log_retention: Duration::from_secs(config.webhook_log_retention_s),
    }
}

/// CORS for the configured browser origins, so a page on one of them may call the API
/// with Connect or gRPC-Web; `None` (no CORS headers at all) when there are none.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::AllowOrigin;
    if origins.is_empty() {
        return None;
    }
    // The configuration has checked every origin.
    let allowed = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let header = HeaderName::from_static;
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::POST, Method::GET])
            .allow_headers([
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                header("connect-protocol-version"),
                header("connect-timeout-ms"),
                header("grpc-timeout"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("traceparent"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Accepted connections with Nagle's algorithm off: a response larger than one segment
/// otherwise waits for the client's delayed ACK (tens of milliseconds).
pub(crate) fn without_nagle(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY");
            }
        })
    })
}

async fn mark_not_serving(health: &HealthReporter, services: &ServiceSet) {
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for name in services.iter().flat_map(grpc_service_names) {
        health
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
