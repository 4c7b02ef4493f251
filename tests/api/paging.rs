//! Page tokens are signed: one edited, truncated, forged, or replayed by another tenant is
//! refused naming its field, and the secret they are signed with is the deployment's, kept
//! in the store across replicas and restarts.

use std::time::{Duration, Instant};

use iqs::config::Config;
use iqs::proto::analytics::{
    self as analytics_pb, analytics_service_client::AnalyticsServiceClient,
};
use iqs::proto::evaluation::{self as eval_pb, evaluation_service_client::EvaluationServiceClient};
use iqs::proto::rubric::{self as pb, rubric_service_client::RubricServiceClient};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::{
    AppOptions, Backend, TestApp, create_database_on, draft, new_rubric, new_tenant_with_admin,
    published_rubric, spawn_app_on, spawn_app_with, submission, with_key,
};

const NOT_OURS: &str = "is not a page token returned by this API";

/// The (field, description) pairs of an INVALID_ARGUMENT status.
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|violation| (violation.field, violation.description))
        .collect()
}

fn refused_as_not_ours(status: &tonic::Status, field: &str) {
    assert_eq!(
        violations(status),
        [(field.to_owned(), NOT_OURS.to_owned())],
        "{status:?}"
    );
}

/// `token` with the character at `at` replaced by another of the base64url alphabet.
fn with_one_character_changed(token: &str, at: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Every token made from `token` by changing one character or cutting it short.
fn tampered(token: &str) -> Vec<String> {
    (0..token.len())
        .map(|at| with_one_character_changed(token, at))
        .chain((1..token.len()).map(|cut| token[..cut].to_owned()))
        .collect()
}

async fn three_rubrics(client: &mut RubricServiceClient<crate::helpers::Authed>) {
    for n in 0..3 {
        client
            .create_rubric(new_rubric(&format!("R{n}"), draft(vec![])))
            .await
            .unwrap();
    }
}

async fn first_rubric_page(
    client: &mut RubricServiceClient<crate::helpers::Authed>,
) -> pb::ListRubricsResponse {
    client
        .list_rubrics(pb::ListRubricsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn rubric_page(
    client: &mut RubricServiceClient<crate::helpers::Authed>,
    page_token: &str,
) -> Result<pb::ListRubricsResponse, tonic::Status> {
    client
        .list_rubrics(pb::ListRubricsRequest {
            page_size: 1,
            page_token: page_token.to_owned(),
            include_archived: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until the projector has applied every outbox event, so exports see them all.
async fn wait_for_projection(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.store.has_pending().await.unwrap() {
        assert!(Instant::now() < deadline, "projector did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_deployment_secret_is_created_once_and_kept(backend: Backend) {
    let config = Config {
        database_url: Some(create_database_on(backend).await),
        ..Config::default()
    };
    let one = iqs::server::open_store(&config).await.unwrap();
    let other = iqs::server::open_store(&config).await.unwrap();
    // Replicas starting together: whichever insert wins, every caller reads its secret.
    let (a, b, c, d) = tokio::join!(
        one.deployment_secret("page_tokens"),
        other.deployment_secret("page_tokens"),
        one.deployment_secret("page_tokens"),
        other.deployment_secret("page_tokens"),
    );
    let secret = a.unwrap();
    assert_eq!(secret.len(), 32);
    assert_ne!(secret, vec![0; 32]);
    for same in [b, c, d] {
        assert_eq!(same.unwrap(), secret);
    }
    // A restart, a new store on the same database, reads the same one.
    drop((one, other));
    let restarted = iqs::server::open_store(&config).await.unwrap();
    assert_eq!(
        restarted.deployment_secret("page_tokens").await.unwrap(),
        secret
    );
    let another = restarted.deployment_secret("another").await.unwrap();
    assert_eq!(another.len(), 32);
    assert_ne!(another, secret);
}

async fn a_page_token_returned_by_the_api_reads_the_next_page(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    three_rubrics(&mut client).await;
    let first = first_rubric_page(&mut client).await;
    let second = rubric_page(&mut client, &first.next_page_token)
        .await
        .unwrap();
    assert_eq!(second.rubrics.len(), 1);
    assert_ne!(second.rubrics[0].id, first.rubrics[0].id);
    assert!(!second.next_page_token.is_empty());
}

async fn a_page_token_changed_or_cut_short_is_invalid_argument_naming_page_token(backend: Backend) {
    // One call per tampered token: more than the admin rate allows.
    let app = crate::helpers::spawn_app_without_rate_limits(backend).await;
    let mut rubrics = app.rubrics();
    three_rubrics(&mut rubrics).await;
    let token = first_rubric_page(&mut rubrics).await.next_page_token;
    for bad in tampered(&token) {
        let status = rubric_page(&mut rubrics, &bad).await.unwrap_err();
        refused_as_not_ours(&status, "page_token");
    }

    // Evaluations' keys (id and revision) are signed the same way.
    let (rubric, _) = published_rubric(&mut rubrics).await;
    let mut evaluations: EvaluationServiceClient<_> = app.evaluations();
    for n in 0..2 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("T-{n}"), 1, 3))
            .await
            .unwrap();
    }
    let list = |page_token: String| eval_pb::ListEvaluationsRequest {
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let token = evaluations
        .list_evaluations(list(String::new()))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let next = evaluations
        .list_evaluations(list(token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.evaluations.len(), 1);
    for bad in tampered(&token) {
        let status = evaluations.list_evaluations(list(bad)).await.unwrap_err();
        refused_as_not_ours(&status, "page_token");
    }
}

async fn a_page_token_of_another_tenant_is_invalid_argument(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut ours = app.rubrics();
    three_rubrics(&mut ours).await;
    let token = first_rubric_page(&mut ours).await.next_page_token;

    let (_, other_key) = new_tenant_with_admin(app.store.as_ref()).await;
    let mut theirs = RubricServiceClient::new(with_key(app.raw_channel.clone(), &other_key));
    three_rubrics(&mut theirs).await;
    let status = rubric_page(&mut theirs, &token).await.unwrap_err();
    refused_as_not_ours(&status, "page_token");
    // Their own tokens still work for them, and ours for us.
    let their_token = first_rubric_page(&mut theirs).await.next_page_token;
    rubric_page(&mut theirs, &their_token).await.unwrap();
    rubric_page(&mut ours, &token).await.unwrap();
}

async fn an_export_cursor_changed_or_cut_short_is_invalid_argument_naming_cursor(backend: Backend) {
    // One call per tampered cursor: more than the admin rate allows.
    let app = crate::helpers::spawn_app_without_rate_limits(backend).await;
    let mut rubrics = app.rubrics();
    let (rubric, _) = published_rubric(&mut rubrics).await;
    let mut evaluations = app.evaluations();
    for n in 0..3 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("T-{n}"), 1, 3))
            .await
            .unwrap();
    }
    wait_for_projection(&app).await;
    let mut client: AnalyticsServiceClient<_> = app.analytics();
    let export = |cursor: String| analytics_pb::ExportEvaluationsRequest {
        filter: None,
        cursor,
        include_deleted: false,
    };
    let rows: Vec<analytics_pb::EvaluationRow> = client
        .export_evaluations(export(String::new()))
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let cursor = rows[0].cursor.clone();
    let resumed: Vec<analytics_pb::EvaluationRow> = client
        .export_evaluations(export(cursor.clone()))
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(resumed, rows[1..].to_vec());
    for bad in tampered(&cursor) {
        let status = client.export_evaluations(export(bad)).await.unwrap_err();
        refused_as_not_ours(&status, "cursor");
    }
}

async fn a_page_token_still_works_after_the_server_restarts(backend: Backend) {
    let mut app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    three_rubrics(&mut client).await;
    let first = first_rubric_page(&mut client).await;
    app.stop().await;

    let restarted = spawn_app_with(AppOptions {
        backend,
        database_url: Some(app.database_url.clone()),
        ..AppOptions::default()
    })
    .await;
    let mut client =
        RubricServiceClient::new(with_key(restarted.raw_channel.clone(), &app.admin_key));
    let second = rubric_page(&mut client, &first.next_page_token)
        .await
        .unwrap();
    assert_eq!(second.rubrics.len(), 1);
    assert_ne!(second.rubrics[0].id, first.rubrics[0].id);
}

crate::on_every_store! {
    the_deployment_secret_is_created_once_and_kept,
    a_page_token_returned_by_the_api_reads_the_next_page,
    a_page_token_changed_or_cut_short_is_invalid_argument_naming_page_token,
    a_page_token_of_another_tenant_is_invalid_argument,
    an_export_cursor_changed_or_cut_short_is_invalid_argument_naming_cursor,
    a_page_token_still_works_after_the_server_restarts,
}
