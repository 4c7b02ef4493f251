//! BI over SQL: `iqs bi grant` makes a PostgreSQL login that reads only its tenant's
//! `reporting` views, and nothing else; the embedded store has the same views.

use std::process::Command;

use iqs::proto::analytics as an;
use iqs::proto::evaluation::submit_evaluation_request::InteractionRef;
use sqlx::{Connection, PgConnection, Row};

use crate::helpers::{
    Backend, TestApp, new_tenant_with_admin, published_rubric, spawn_app, spawn_app_on, submission,
    wait_for_projection, with_key,
};

fn iqs_bi(app: &TestApp, verb: &str, tenant: &str) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_iqs"))
        .args(["bi", verb, "--tenant", tenant])
        .env("DATABASE_URL", &app.database_url)
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

async fn tenant_name(app: &TestApp, tenant: iqs::domain::tenant::TenantId) -> String {
    sqlx::query("SELECT name FROM access.tenants WHERE tenant_id = $1")
        .bind(tenant.0)
        .fetch_one(app.pg_pool())
        .await
        .unwrap()
        .get(0)
}

/// Submits `n` evaluations of agent `agent` through `channel`'s tenant.
async fn submit(
    evaluations: &mut iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient<
        crate::helpers::Authed,
    >,
    rubric_id: &str,
    agent: &str,
    n: usize,
) {
    for i in 0..n {
        let mut request = submission(
            rubric_id,
            &format!("{agent}-{i}"),
            (i % 2) as i32,
            1 + (i % 4) as i32,
        );
        if let Some(InteractionRef::Interaction(inline)) = request.interaction_ref.as_mut() {
            inline.agent_id = agent.into();
        }
        evaluations.submit_evaluation(request).await.unwrap();
    }
}

/// The login's password as PostgreSQL keeps it (a SCRAM verifier).
async fn stored_password(app: &TestApp, role: &str) -> Option<String> {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(app.pg_pool())
        .await
        .unwrap()
}

fn refused(err: sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().to_string(),
        other => panic!("not a database refusal: {other}"),
    }
}

#[tokio::test]
async fn a_bi_login_reads_only_its_tenants_reporting_views_and_can_change_nothing() {
    let app = spawn_app().await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    submit(&mut app.evaluations(), &rubric.id, "ana", 6).await;
    // Another tenant with evaluations of an agent of the same name.
    let (other, other_key) = new_tenant_with_admin(app.store.as_ref()).await;
    let other_channel = with_key(app.raw_channel.clone(), &other_key);
    let mut other_rubrics =
        iqs::proto::rubric::rubric_service_client::RubricServiceClient::new(other_channel.clone());
    let (other_rubric, _) = published_rubric(&mut other_rubrics).await;
    let mut other_evaluations =
        iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient::new(
            other_channel,
        );
    submit(&mut other_evaluations, &other_rubric.id, "ana", 4).await;
    wait_for_projection(&app).await;

    let name = tenant_name(&app, app.tenant).await;
    let (ok, stdout, stderr) = iqs_bi(&app, "grant", &name);
    assert!(ok, "{stderr}");
    let url = stdout.lines().last().unwrap().to_owned();
    assert!(url.starts_with("postgres://iqs_bi_"), "{stdout}");
    let mut bi = PgConnection::connect(&url)
        .await
        .expect("the login connects");

    let rows = sqlx::query("SELECT agent_id, tenant, score FROM reporting.evaluations")
        .fetch_all(&mut bi)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "its own tenant's evaluations only");
    assert!(
        rows.iter()
            .all(|row| row.get::<String, _>("tenant") == name)
    );
    let ratings: i64 = sqlx::query_scalar("SELECT count(*) FROM reporting.criterion_scores")
        .fetch_one(&mut bi)
        .await
        .unwrap();
    assert_eq!(ratings, 12, "two criteria of six evaluations");
    let section_and_scores: Vec<(String, Option<f64>)> = sqlx::query_as(
        "SELECT section, score FROM reporting.criterion_scores WHERE criterion_key = 'empathy'",
    )
    .fetch_all(&mut bi)
    .await
    .unwrap();
    assert!(section_and_scores.iter().all(|(_, score)| score.is_some()));

    // The rollups give the API's figures.
    let (score_sum, scored): (f64, i64) = sqlx::query_as(
        "SELECT sum(score_sum), sum(scored_count)::bigint FROM reporting.daily_scores WHERE agent_id = 'ana'",
    )
    .fetch_one(&mut bi)
    .await
    .unwrap();
    let summary = app
        .analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "ana".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scored as u64, summary.scored_count);
    assert!((score_sum / scored as f64 - summary.iqs.unwrap()).abs() < 1e-9);

    // Nothing else: base tables, other schemas, writes, new objects.
    for query in [
        "SELECT count(*) FROM evaluation.evaluations",
        "SELECT count(*) FROM analytics.daily_scores",
        "SELECT count(*) FROM access.api_keys",
        "SELECT count(*) FROM access.bi_logins",
    ] {
        let err = sqlx::query(query).fetch_one(&mut bi).await.unwrap_err();
        assert_eq!(refused(err), "42501", "{query}");
    }
    for statement in [
        // reporting.daily_scores reads one table: PostgreSQL could write through it.
        "DELETE FROM reporting.daily_scores",
        "UPDATE reporting.daily_scores SET score_sum = 0",
        "CREATE TABLE reporting.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ] {
        let err = sqlx::query(statement).execute(&mut bi).await.unwrap_err();
        // 25006: a read-only transaction; 42501: no privilege.
        let code = refused(err);
        assert!(
            ["25006", "42501"].contains(&code.as_str()),
            "{statement}: {code}"
        );
    }
    // Asking for the other tenant's rows by name finds none.
    let other_name = tenant_name(&app, other).await;
    let other_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reporting.evaluations WHERE tenant = $1")
            .bind(&other_name)
            .fetch_one(&mut bi)
            .await
            .unwrap();
    assert_eq!(other_rows, 0, "another tenant's rows");

    // A second grant rotates the password.
    bi.close().await.unwrap();
    let role = url
        .trim_start_matches("postgres://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let before = stored_password(&app, &role).await;
    assert!(
        before
            .as_deref()
            .is_some_and(|v| v.starts_with("SCRAM-SHA-256$")),
        "{before:?}"
    );
    let (ok, stdout, stderr) = iqs_bi(&app, "grant", &name);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("new password"), "{stdout}");
    let rotated = stdout.lines().last().unwrap().to_owned();
    assert_ne!(
        stored_password(&app, &role).await,
        before,
        "the stored password changed"
    );
    // Where the server checks passwords (not under `trust`), the old one is refused.
    let wrong = rotated.replacen(&format!("{role}:"), &format!("{role}:wrong"), 1);
    if PgConnection::connect(&wrong).await.is_err() {
        assert!(
            PgConnection::connect(&url).await.is_err(),
            "the old password"
        );
    }
    let mut bi = PgConnection::connect(&rotated)
        .await
        .expect("the new password");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM evaluations")
        .fetch_one(&mut bi)
        .await
        .unwrap();
    assert_eq!(count, 6, "reporting is the login's search path");
    bi.close().await.unwrap();

    let (ok, stdout, stderr) = iqs_bi(&app, "revoke", &name);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("dropped"), "{stdout}");
    assert!(
        PgConnection::connect(&rotated).await.is_err(),
        "a revoked login"
    );
    let (ok, stdout, _) = iqs_bi(&app, "revoke", &name);
    assert!(ok && stdout.contains("had no BI login"), "{stdout}");
    let (ok, _, stderr) = iqs_bi(&app, "grant", "no-such-tenant");
    assert!(!ok && stderr.contains("no-such-tenant"), "{stderr}");
}

#[tokio::test]
async fn the_embedded_store_has_the_reporting_views_in_its_file() {
    let app = spawn_app_on(Backend::Sqlite).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    submit(&mut app.evaluations(), &rubric.id, "ana", 4).await;
    wait_for_projection(&app).await;
    let path = app.database_url.trim_start_matches("sqlite:").to_owned();
    let mut file = sqlx::SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .unwrap();
    let evaluations: i64 = sqlx::query_scalar("SELECT count(*) FROM reporting_evaluations")
        .fetch_one(&mut file)
        .await
        .unwrap();
    assert_eq!(evaluations, 4);
    let (id, created): (String, String) =
        sqlx::query_as("SELECT id, create_time FROM reporting_evaluations LIMIT 1")
            .fetch_one(&mut file)
            .await
            .unwrap();
    assert_eq!(id.len(), 36, "UUID text: {id}");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let ratings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reporting_criterion_scores WHERE score IS NOT NULL",
    )
    .fetch_one(&mut file)
    .await
    .unwrap();
    assert_eq!(ratings, 8);
    let (score_sum, scored): (f64, i64) = sqlx::query_as(
        "SELECT sum(score_sum), sum(scored_count) FROM reporting_daily_scores WHERE agent_id = 'ana'",
    )
    .fetch_one(&mut file)
    .await
    .unwrap();
    let summary = app
        .analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "ana".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!((score_sum / scored as f64 - summary.iqs.unwrap()).abs() < 1e-9);
}
