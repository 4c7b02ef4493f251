use std::str::FromStr;

use iqs::auth::{keys, limits::RoleRates};
use iqs::config::{AuthMode, Config, ServiceSet};
use iqs::domain::{access::Role, tenant::TenantId};
use iqs::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use iqs::proto::evaluation::{
    self as eval_pb, calibration_service_client::CalibrationServiceClient,
    evaluation_service_client::EvaluationServiceClient,
};
use iqs::proto::rubric::{self as pb, rubric_service_client::RubricServiceClient};
use iqs::server::Server;
use iqs::store::{AccessStore, Store};
use sqlx::{Connection, Executor, PgConnection, PgPool, SqlitePool};
use std::sync::Arc;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Channel;
use uuid::Uuid;

/// The server the tests create their databases on: `DATABASE_URL`, else the local one.
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty database of its own for one test.
/// A fresh PostgreSQL database with every migration applied, for tests of the schema.
pub async fn migrated_test_database() -> String {
    let url = create_test_database().await;
    iqs::store::postgres::PostgresStore::connect(&url, &Default::default())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    url
}

pub async fn create_test_database() -> String {
    let admin_url = admin_database_url();
    let name = format!("iqs_test_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "cannot reach PostgreSQL at {admin_url} ({err}); run the tests with scripts/test"
            )
        });
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    let mut url = url::Url::from_str(&admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// The store a test runs on: every store behaviour is tested on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh, empty database of its own for one test, on `backend`.
pub async fn create_database_on(backend: Backend) -> String {
    match backend {
        Backend::Postgres => create_test_database().await,
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("iqs-tests");
            std::fs::create_dir_all(&dir).expect("temporary directory");
            format!(
                "sqlite://{}",
                dir.join(format!("{}.db", Uuid::now_v7().simple()))
                    .display()
            )
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests, `<name>::on_postgres` and
/// `<name>::on_sqlite`: one conformance suite across the store adapters.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn on_postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }

                #[tokio::test]
                async fn on_sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            }
        )*
    };
}

/// Direct access to a test's database, for what the API does not show.
pub enum TestDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl TestDb {
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            TestDb::Sqlite(SqlitePool::connect(url).await.expect("test SQLite pool"))
        } else {
            TestDb::Postgres(PgPool::connect(url).await.expect("test pool"))
        }
    }

    /// The same statement for both: PostgreSQL's `schema.table` names lose their schema on
    /// SQLite, whose tables have the same names in one file.
    fn for_sqlite(sql: &str) -> String {
        ["rubric.", "evaluation.", "analytics.", "access."]
            .iter()
            .fold(sql.to_owned(), |sql, schema| sql.replace(schema, ""))
            .replace('$', "?")
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            TestDb::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
            TestDb::Sqlite(pool) => sqlx::query_scalar(&Self::for_sqlite(&sql))
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// Runs statements without parameters: `postgres` on PostgreSQL, `sqlite` on SQLite.
    pub async fn execute(&self, postgres: &str, sqlite: &str) {
        match self {
            TestDb::Postgres(pool) => {
                sqlx::raw_sql(postgres).execute(pool).await.unwrap();
            }
            TestDb::Sqlite(pool) => {
                sqlx::raw_sql(sqlite).execute(pool).await.unwrap();
            }
        }
    }

    /// Runs a statement with one UUID parameter (`$1`).
    pub async fn execute_with(&self, sql: &str, id: Uuid) -> Result<u64, sqlx::Error> {
        match self {
            TestDb::Postgres(pool) => sqlx::query(sql)
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            TestDb::Sqlite(pool) => sqlx::query(&Self::for_sqlite(sql))
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        }
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry an API key.
pub type Authed = InterceptedService<Channel, Bearer>;

pub fn with_key(channel: Channel, key: &str) -> Authed {
    let value = format!("Bearer {key}").parse().ok();
    InterceptedService::new(channel, Bearer(value))
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Calls as an admin of the app's tenant.
    pub channel: Authed,
    /// Calls without any key.
    pub raw_channel: Channel,
    pub tenant: TenantId,
    pub admin_key: String,
    pub database_url: String,
    pub db: TestDb,
    pub store: Arc<dyn Store>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub struct AppOptions {
    pub backend: Backend,
    /// An existing database (of `backend`) instead of a fresh one.
    pub database_url: Option<String>,
    /// A streaming replica of `database_url` for the score queries.
    pub database_read_url: Option<String>,
    pub auth: AuthMode,
    pub services: ServiceSet,
    pub rubric_endpoint: Option<String>,
    pub redis_url: Option<String>,
    pub cache_ttl_ms: u64,
    pub rate_limits: RoleRates,
    /// Changes to the configuration a test needs beyond the fields above.
    pub tune: fn(&mut Config),
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Postgres,
            database_url: None,
            database_read_url: None,
            auth: AuthMode::Keys,
            services: ServiceSet::all(),
            rubric_endpoint: None,
            redis_url: None,
            cache_ttl_ms: 1_000,
            rate_limits: RoleRates::default(),
            tune: |_| {},
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions {
        backend,
        ..AppOptions::default()
    })
    .await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    // Server logs show in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_test_writer()
        .try_init();
    let database_url = match options.database_url {
        Some(url) => url,
        None => create_database_on(options.backend).await,
    };
    let mut config = Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url.clone()),
        database_read_url: options.database_read_url,
        auth: options.auth,
        services: options.services,
        rubric_endpoint: options.rubric_endpoint,
        redis_url: options.redis_url,
        cache_ttl_ms: options.cache_ttl_ms,
        rate_limits: options.rate_limits,
        database_max_connections: 4,
        shutdown_grace_ms: 2_000,
        ..Config::default()
    };
    (options.tune)(&mut config);
    let (server, shutdown, handle) = serve(Server::build(&config).await.expect("server starts"));
    let addr = server.local_addr;
    let raw_channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    let db = TestDb::connect(&database_url).await;
    let store = iqs::server::open_store(&config)
        .await
        .expect("the test opens the store");
    let (tenant, admin_key) = new_tenant_with_admin(store.as_ref()).await;
    TestApp {
        addr,
        channel: with_key(raw_channel.clone(), &admin_key),
        raw_channel,
        tenant,
        admin_key,
        database_url,
        db,
        store,
        shutdown: Some(shutdown),
        server: Some(handle),
    }
}

/// An admin key of a new tenant in the (migrated) database at `database_url`, for
/// servers the test runs as processes.
pub async fn admin_key_in(database_url: &str) -> String {
    let config = Config {
        database_url: Some(database_url.to_owned()),
        ..Config::default()
    };
    let store = iqs::server::open_store(&config)
        .await
        .expect("the test opens the store");
    new_tenant_with_admin(store.as_ref()).await.1
}

/// A new tenant and an admin key of it.
pub async fn new_tenant_with_admin(store: &dyn Store) -> (TenantId, String) {
    let tenant = store
        .create_tenant(&format!("tenant-{}", Uuid::now_v7().simple()))
        .await
        .expect("tenant")
        .id;
    (tenant, create_key(store, tenant, Role::Admin, None).await)
}

/// What a built server told before it started serving.
pub struct Served {
    pub local_addr: std::net::SocketAddr,
    pub health_addr: Option<std::net::SocketAddr>,
}

/// Serves `server` in a task until the sender is used or dropped.
pub fn serve(server: Server) -> (Served, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let served = Served {
        local_addr: server.local_addr(),
        health_addr: server.health_addr(),
    };
    let (shutdown, stop) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(async {
                let _ = stop.await;
            })
            .await
            .expect("server runs");
    });
    (served, shutdown, handle)
}

/// Rates no test call reaches: for tests whose subject is not the rate limit.
pub fn unlimited_rates() -> RoleRates {
    let unlimited = iqs::auth::limits::Rate {
        per_second: 1e6,
        burst: 1e6,
    };
    RoleRates {
        admin: unlimited,
        qa_reviewer: unlimited,
        agent: unlimited,
        integration: unlimited,
        analyst: unlimited,
        service: unlimited,
    }
}

/// A server on `backend` whose keys are not rate-limited: for tests that make more
/// calls than a rate allows and are not about rates.
pub async fn spawn_app_without_rate_limits(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions {
        backend,
        rate_limits: unlimited_rates(),
        ..AppOptions::default()
    })
    .await
}

/// A new API key of `tenant` with `role`, as `iqs key create` makes one.
pub async fn create_key(
    store: &dyn AccessStore,
    tenant: TenantId,
    role: Role,
    // The agent of an agent key, or the reviewer of a qa_reviewer key.
    bound_to: Option<&str>,
) -> String {
    let new = keys::generate(tenant).unwrap();
    store
        .create_key(
            tenant,
            new.key_id,
            new.secret_hash,
            role,
            iqs::store::KeyBinding {
                agent_id: bound_to.filter(|_| role == Role::Agent).map(str::to_owned),
                reviewer_id: bound_to
                    .filter(|_| role == Role::QaReviewer)
                    .map(str::to_owned),
            },
        )
        .await
        .expect("create key");
    new.key
}

/// Waits until the projector has applied every outbox event.
pub async fn wait_for_projection(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pending = app.store.has_pending().await.unwrap();
        if !pending {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projector did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The PostgreSQL pool of a test that only PostgreSQL has (its transaction ids, say).
    pub fn pg_pool(&self) -> &PgPool {
        match &self.db {
            TestDb::Postgres(pool) => pool,
            TestDb::Sqlite(_) => panic!("a PostgreSQL-only test ran on SQLite"),
        }
    }

    /// A channel calling with a new key of this app's tenant.
    pub async fn channel_as(&self, role: Role, agent_id: Option<&str>) -> Authed {
        let key = create_key(self.store.as_ref(), self.tenant, role, agent_id).await;
        with_key(self.raw_channel.clone(), &key)
    }

    pub fn analytics(&self) -> AnalyticsServiceClient<Authed> {
        AnalyticsServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub fn rubrics(&self) -> RubricServiceClient<Authed> {
        RubricServiceClient::new(self.channel.clone())
    }

    pub fn calibrations(&self) -> CalibrationServiceClient<Authed> {
        CalibrationServiceClient::new(self.channel.clone())
    }

    pub fn evaluations(&self) -> EvaluationServiceClient<Authed> {
        EvaluationServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.db.count(table).await
    }

    /// Signals shutdown and waits until the server has stopped.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

pub fn criterion(key: &str, weight: u32, scale_min: i32, scale_max: i32) -> pb::Criterion {
    pb::Criterion {
        key: key.to_owned(),
        display_name: key.replace('_', " "),
        weight,
        scale_min,
        scale_max,
        ..Default::default()
    }
}

pub fn draft(criteria: Vec<pb::Criterion>) -> pb::RubricDraft {
    pb::RubricDraft {
        criteria,
        pass_threshold: None,
        auto_score: false,
    }
}

pub fn new_rubric(name: &str, draft: pb::RubricDraft) -> pb::CreateRubricRequest {
    pb::CreateRubricRequest {
        request_id: String::new(),
        rubric: Some(pb::Rubric {
            display_name: name.to_owned(),
            description: format!("{name} scorecard"),
            draft: Some(draft),
            ..Default::default()
        }),
    }
}

/// A rubric with two weighted criteria, created and published once.
pub async fn published_rubric(
    client: &mut RubricServiceClient<Authed>,
) -> (pb::Rubric, pb::RubricVersion) {
    let rubric = client
        .create_rubric(new_rubric(
            "Chat support",
            draft(vec![
                criterion("greeting", 1, 0, 1),
                criterion("empathy", 2, 1, 4),
            ]),
        ))
        .await
        .expect("create")
        .into_inner();
    let version = client
        .publish_rubric(pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .expect("publish")
        .into_inner();
    (rubric, version)
}

/// The fields named in the BadRequest details of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

pub fn interaction(external_id: &str, agent_id: &str) -> eval_pb::Interaction {
    eval_pb::Interaction {
        source: "zendesk".into(),
        external_id: external_id.into(),
        channel: "chat".into(),
        agent_id: agent_id.into(),
        team_id: "tier1".into(),
        region: "eu-west".into(),
        csat: Some(4),
        ..Default::default()
    }
}

pub fn rating(key: &str, value: i32) -> eval_pb::Rating {
    eval_pb::Rating {
        criterion_key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// A submission of the rubric of `published_rubric` (greeting 0..1, empathy 1..4).
pub fn submission(
    rubric_id: &str,
    external_id: &str,
    greeting: i32,
    empathy: i32,
) -> eval_pb::SubmitEvaluationRequest {
    eval_pb::SubmitEvaluationRequest {
        request_id: Uuid::now_v7().to_string(),
        interaction_ref: Some(
            eval_pb::submit_evaluation_request::InteractionRef::Interaction(interaction(
                external_id,
                "agent-1",
            )),
        ),
        rubric_id: rubric_id.into(),
        rubric_version: 0,
        reviewer_id: "qa-lead".into(),
        kind: eval_pb::EvaluationKind::Manual as i32,
        ratings: vec![rating("greeting", greeting), rating("empathy", empathy)],
        comment: String::new(),
        create_time: None,
        calibration_session_id: String::new(),
    }
}
