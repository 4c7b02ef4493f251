//! Faults, each against servers the test owns: a PostgreSQL cluster it stops and starts,
//! a server process it terminates under load, a flood beyond the concurrency limit.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use iqs::proto::analytics as analytics_pb;
use iqs::proto::evaluation::{self as eval_pb, evaluation_service_client::EvaluationServiceClient};
use iqs::proto::rubric::rubric_service_client::RubricServiceClient;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::helpers::{
    AppOptions, Authed, admin_key_in, create_test_database, published_rubric, spawn_app_with,
    submission, with_key,
};
use crate::owned_servers::{Postgres, ServerProcess};

/// One call of a load: when it started and ended, and how it ended.
#[derive(Debug, Clone)]
struct Call {
    request_id: String,
    started: Instant,
    ended: Instant,
    code: Code,
    message: String,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// `workers` tasks submitting evaluations one after another until `stop`, or until a
/// call fails when `until_failure`; each request id is new.
fn submission_load(
    client: EvaluationServiceClient<Authed>,
    prefix: &str,
    rubric_id: &str,
    workers: usize,
    stop: Arc<AtomicBool>,
    until_failure: bool,
) -> (JoinSet<()>, Calls) {
    let calls: Calls = Arc::default();
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let mut client = client.clone();
        let calls = calls.clone();
        let stop = stop.clone();
        let rubric_id = rubric_id.to_owned();
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let request_id = format!("{prefix}-{worker}-{n}");
                n += 1;
                let mut request = submission(&rubric_id, &request_id, 1, 4);
                request.request_id = request_id.clone();
                let started = Instant::now();
                let (code, message) = match tokio::time::timeout(
                    Duration::from_secs(20),
                    client.submit_evaluation(request),
                )
                .await
                {
                    Ok(Ok(_)) => (Code::Ok, String::new()),
                    Ok(Err(status)) => (status.code(), status.message().to_owned()),
                    Err(_) => (Code::DeadlineExceeded, String::new()),
                };
                calls.lock().unwrap().push(Call {
                    request_id,
                    started,
                    ended: Instant::now(),
                    code,
                    message,
                });
                if code != Code::Ok {
                    if until_failure {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    (tasks, calls)
}

async fn health_of(channel: tonic::transport::Channel, service: &str) -> Option<i32> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()
        .map(|response| response.into_inner().status)
}

const EVALUATION_SERVICE: &str = "iqs.evaluation.v1.EvaluationService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_unavailable_within_2s_turns_health_not_serving_and_loses_no_acknowledged_evaluation_or_audit_entry()
 {
    let postgres = Postgres::start();
    let app = spawn_app_with(AppOptions {
        database_url: Some(postgres.url()),
        tune: |config| config.health_check_interval_ms = 200,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (mut load, calls) = submission_load(
        app.evaluations(),
        "outage",
        &rubric.id,
        4,
        stop.clone(),
        false,
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    postgres.stop();
    let outage_began = Instant::now();
    let mut not_serving_seen = false;
    while outage_began.elapsed() < Duration::from_secs(3) {
        if health_of(app.raw_channel.clone(), EVALUATION_SERVICE).await
            == Some(ServingStatus::NotServing as i32)
        {
            not_serving_seen = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres.start_again();
    let outage_ended = Instant::now();

    // Submissions succeed again without restarting the server.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let recovered = calls
            .lock()
            .unwrap()
            .iter()
            .any(|call| call.started > outage_ended && call.code == Code::Ok);
        if recovered {
            break;
        }
        assert!(Instant::now() < deadline, "submissions did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let serving_deadline = Instant::now() + Duration::from_secs(5);
    while health_of(app.raw_channel.clone(), EVALUATION_SERVICE).await
        != Some(ServingStatus::Serving as i32)
    {
        assert!(
            Instant::now() < serving_deadline,
            "health did not return to SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_serving_seen, "health stayed SERVING during the outage");

    let calls = calls.lock().unwrap().clone();
    let failed: Vec<&Call> = calls.iter().filter(|call| call.code != Code::Ok).collect();
    assert!(!failed.is_empty(), "the outage failed no call");
    for call in &calls {
        assert!(
            call.ended - call.started < Duration::from_secs(2),
            "a call took {:?} ({:?})",
            call.ended - call.started,
            call.code
        );
    }
    for call in &failed {
        assert_eq!(call.code, Code::Unavailable, "{call:?}");
    }
    // Every acknowledged evaluation is stored (an unacknowledged one may be too: its
    // commit may have succeeded as the connection broke)...
    let acknowledged: HashSet<&str> = calls
        .iter()
        .filter(|call| call.code == Code::Ok)
        .map(|call| call.request_id.as_str())
        .collect();
    let stored = app.count("evaluation.evaluations").await as usize;
    assert!(
        stored >= acknowledged.len(),
        "{stored} stored < {} acknowledged",
        acknowledged.len()
    );
    // ...and retrying every failed call with its request id stores each exactly once.
    let mut client = app.evaluations();
    for call in &failed {
        let mut request = submission(&rubric.id, &call.request_id, 1, 4);
        request.request_id = call.request_id.clone();
        client.submit_evaluation(request).await.unwrap();
    }
    assert_eq!(
        app.count("evaluation.evaluations").await as usize,
        calls.len(),
        "one evaluation per request id"
    );
    // Each call that passed authentication has its audit entry, those of the outage
    // written once it ended. A key whose verification expired during the outage could
    // not be verified: no tenant is known for its call.
    let unverified = calls
        .iter()
        .filter(|call| call.message.contains("cannot verify the API key"))
        .count();
    let audited_calls = calls.len() - unverified + failed.len();
    let audit_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audited = app
            .count("access.audit_log WHERE rpc = 'SubmitEvaluation'")
            .await as usize;
        if audited == audited_calls {
            break;
        }
        assert!(
            Instant::now() < audit_deadline,
            "{audited} audit entries for {audited_calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_call_refuses_new_connections_and_exits_0() {
    let database_url = create_test_database().await;
    // The load must still be running when the signal comes: the admin key's rate limit
    // would stop it first (the callers stop at their first failure).
    let config = std::env::temp_dir().join(format!("iqs-sigterm-{}.toml", uuid::Uuid::now_v7()));
    std::fs::write(
        &config,
        "[rate_limits.admin]\nper_second = 1000000.0\nburst = 1000000.0\n",
    )
    .unwrap();
    let mut server = ServerProcess::spawn(&[
        ("DATABASE_URL", &database_url),
        ("IQS_SHUTDOWN_GRACE_MS", "10000"),
        ("IQS_CONFIG", config.to_str().unwrap()),
    ]);
    let key = admin_key_in(&database_url).await;
    let channel = server.channel().await;
    let (rubric, _) = published_rubric(&mut RubricServiceClient::new(with_key(
        channel.clone(),
        &key,
    )))
    .await;
    let mut loads = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Two connections, four callers on each.
    for connection in 0..2 {
        let client = EvaluationServiceClient::new(with_key(server.channel().await, &key));
        loads.push(submission_load(
            client,
            &format!("drain-{connection}"),
            &rubric.id,
            4,
            stop.clone(),
            true,
        ));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let signalled = Instant::now();
    server.terminate();
    let exit = server.exit_within(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", server.log());
    let _ = std::fs::remove_file(&config);
    assert!(
        tonic::transport::Channel::from_shared(server.endpoint())
            .unwrap()
            .connect()
            .await
            .is_err(),
        "a new connection was accepted after SIGTERM"
    );

    let mut calls = Vec::new();
    for (mut tasks, recorded) in loads {
        while tasks.join_next().await.is_some() {}
        calls.extend(recorded.lock().unwrap().iter().cloned());
    }
    let accepted: Vec<&Call> = calls
        .iter()
        .filter(|call| call.started < signalled)
        .collect();
    assert!(
        accepted.iter().any(|call| call.ended > signalled),
        "no call was in flight when the signal came"
    );
    for call in &accepted {
        assert_eq!(call.code, Code::Ok, "a call accepted before SIGTERM failed");
    }
    let acknowledged = calls.iter().filter(|call| call.code == Code::Ok).count();
    let stored = crate::helpers::TestDb::connect(&database_url)
        .await
        .count("evaluation.evaluations")
        .await as usize;
    assert_eq!(
        stored, acknowledged,
        "stored evaluations = acknowledgements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_concurrency_limit_is_rejected_fast_with_resource_exhausted() {
    let app = spawn_app_with(AppOptions {
        tune: |config| {
            config.max_concurrent_calls = 2;
            config.queue_timeout_ms = 50;
        },
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // Two imports left open hold both slots.
    let mut holders = Vec::new();
    let mut imports = JoinSet::new();
    for n in 0..2 {
        let (rows, stream) = tokio::sync::mpsc::channel::<eval_pb::SubmitEvaluationRequest>(4);
        let mut first = submission(&rubric.id, &format!("HOLD-{n}"), 1, 4);
        first.request_id = format!("hold-{n}");
        rows.send(first).await.unwrap();
        holders.push(rows);
        let mut client = app.evaluations();
        imports.spawn(async move {
            client
                .import_evaluations(tokio_stream::wrappers::ReceiverStream::new(stream))
                .await
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Each caller on a connection of its own: the limit is the server's, not a
    // connection's (one connection may not open more streams than the limit either).
    let mut flood = JoinSet::new();
    for _ in 0..50 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            iqs::proto::analytics::analytics_service_client::AnalyticsServiceClient::new(with_key(
                channel,
                &app.admin_key,
            ));
        flood.spawn(async move {
            let started = Instant::now();
            let answer = client
                .get_agent_score(analytics_pb::GetAgentScoreRequest {
                    agent_id: "agent-1".into(),
                    ..Default::default()
                })
                .await;
            (started.elapsed(), answer)
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(joined) = flood.join_next().await {
        let (took, answer) = joined.unwrap();
        let status = answer.expect_err("a call beyond the limit was served");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.get_details_retry_info().is_some(),
            "RESOURCE_EXHAUSTED carries RetryInfo"
        );
        slowest = slowest.max(took);
    }
    assert!(
        slowest < Duration::from_millis(1_000),
        "a rejection took {slowest:?}, not the 50 ms queue timeout"
    );
    // Health answers even at the limit: the server is busy, not dead. (On a connection
    // of its own, as a prober's is: the imports hold every stream of the test's.)
    let prober = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        health_of(prober, EVALUATION_SERVICE).await,
        Some(ServingStatus::Serving as i32)
    );

    drop(holders);
    while let Some(joined) = imports.join_next().await {
        assert_eq!(joined.unwrap().unwrap().into_inner().accepted, 1);
    }
    app.analytics()
        .get_agent_score(analytics_pb::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .expect("served once the slots are free");
}

/// Twelve calls at once, so that some are written alone and some in groups: none is
/// stored once its deadline has answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_server_deadline_answers_deadline_exceeded_and_writes_nothing() {
    let app = spawn_app_with(AppOptions {
        tune: |config| config.request_timeout_ms = 300,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // A transaction of the test's own blocks every insert into evaluations.
    let mut blocker = app.pg_pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE evaluation.evaluations IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let calls = (0..12).map(|n| {
        let mut client = app.evaluations();
        let request = submission(&rubric.id, &format!("BLOCKED-{n}"), 1, 4);
        async move { client.submit_evaluation(request).await }
    });
    for answer in futures_util::future::join_all(calls).await {
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    blocker.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("evaluation.evaluations").await, 0);
    assert_eq!(app.count("evaluation.outbox").await, 0);
}

#[tokio::test]
async fn every_answer_carries_the_callers_request_id_or_a_new_one() {
    let app = spawn_app_with(AppOptions::default()).await;
    let mut request = tonic::Request::new(analytics_pb::GetAgentScoreRequest {
        agent_id: "agent-1".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "caller-chosen-42".parse().unwrap());
    let answer = app.analytics().get_agent_score(request).await.unwrap();
    assert_eq!(
        answer.metadata().get("x-request-id").unwrap(),
        "caller-chosen-42"
    );

    let status = app
        .evaluations()
        .get_evaluation(eval_pb::GetEvaluationRequest {
            id: "not-a-uuid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let generated = status.metadata().get("x-request-id").unwrap();
    assert!(
        uuid::Uuid::parse_str(generated.to_str().unwrap()).is_ok(),
        "{generated:?}"
    );
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_stores_nothing() {
    let app = spawn_app_with(AppOptions {
        tune: |config| config.max_message_bytes = 16 * 1024,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut request = submission(&rubric.id, "HUGE-1", 1, 4);
    request.comment = "x".repeat(32 * 1024);
    let status = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .unwrap_err();
    // tonic's code for a message over the limit.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("16384"), "{status:?}");
    assert_eq!(app.count("evaluation.evaluations").await, 0);
    // A message under the limit still goes through.
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "SMALL-1", 1, 4))
        .await
        .unwrap();
}
