//! Webhooks against the real server and a real HTTP receiver on 127.0.0.1:0: what is
//! delivered, signed how, retried how, and what a subscription may point at.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iqs::config::Config;
use iqs::domain::access::Role;
use iqs::domain::webhook::{secret_key, signature};
use iqs::proto::evaluation::{
    self as ev, dispute_service_client::DisputeServiceClient,
    evaluation_service_client::EvaluationServiceClient,
};
use iqs::proto::integration::{self as wh, webhook_service_client::WebhookServiceClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{
    AppOptions, Authed, Backend, TestApp, published_rubric, rating, spawn_app_with, submission,
    violated_fields,
};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    After(Duration, u16),
    Redirect(String),
}

#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a webhook body is JSON")
    }
}

/// An HTTP/1.1 receiver that records every request and answers from a script, then
/// with its default.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    default: Answer,
}

impl Receiver {
    async fn start(default: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, default)
    }

    fn serve(listener: tokio::net::TcpListener, default: Answer) -> Self {
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            script: Arc::default(),
            default,
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().answer(stream));
            }
        });
        receiver
    }

    fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/iqs?from=test", self.addr)
    }

    async fn answer(self, mut stream: tokio::net::TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            let Ok(read) = stream.read(&mut chunk).await else {
                return;
            };
            if read == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut headers = HashMap::new();
        for line in head.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let Ok(read) = stream.read(&mut chunk).await else {
                return;
            };
            if read == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string();
        headers.insert(
            ":request-line".into(),
            head.lines().next().unwrap_or("").to_owned(),
        );
        self.received
            .lock()
            .unwrap()
            .push(Received { headers, body });
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.clone());
        let (status, extra) = match answer {
            Answer::Status(status) => (status, String::new()),
            Answer::After(wait, status) => {
                tokio::time::sleep(wait).await;
                (status, String::new())
            }
            Answer::Redirect(to) => (302, format!("Location: {to}\r\n")),
        };
        let response = format!(
            "HTTP/1.1 {status} Answer\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nno"
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests received once there are at least `count`, within 10 s.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} requests arrived: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Fast retries, and loopback receivers allowed.
fn for_tests(config: &mut Config) {
    config.webhook_allow_private_targets = true;
    config.webhook_retry_first_ms = 100;
    config.webhook_retry_longest_ms = 400;
}

async fn app_on(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions {
        backend,
        tune: for_tests,
        ..AppOptions::default()
    })
    .await
}

fn webhooks(channel: &Authed) -> WebhookServiceClient<Authed> {
    WebhookServiceClient::new(channel.clone())
}

async fn subscribe(app: &TestApp, url: &str, types: &[&str]) -> wh::Webhook {
    webhooks(&app.channel)
        .create_webhook(wh::CreateWebhookRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            webhook: Some(wh::Webhook {
                url: url.into(),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                description: "helpdesk".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn deliveries(app: &TestApp, webhook: &wh::Webhook) -> Vec<wh::WebhookDelivery> {
    try_deliveries(app, webhook).await.unwrap()
}

async fn try_deliveries(
    app: &TestApp,
    webhook: &wh::Webhook,
) -> Result<Vec<wh::WebhookDelivery>, tonic::Status> {
    Ok(webhooks(&app.channel)
        .list_webhook_deliveries(wh::ListWebhookDeliveriesRequest {
            webhook_id: webhook.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .deliveries)
}

/// The subscription's deliveries once `done` holds for them, within 10 s. A listing the
/// server answers UNAVAILABLE (its database just restarted) is asked again.
async fn deliveries_when(
    app: &TestApp,
    webhook: &wh::Webhook,
    done: impl Fn(&[wh::WebhookDelivery]) -> bool,
) -> Vec<wh::WebhookDelivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = match try_deliveries(app, webhook).await {
            Ok(listed) => listed,
            Err(status) if status.code() == Code::Unavailable => Vec::new(),
            Err(status) => panic!("listing deliveries: {status:?}"),
        };
        if done(&listed) {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never settled: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn webhook_state(app: &TestApp, id: &str) -> wh::Webhook {
    webhooks(&app.channel)
        .list_webhooks(wh::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .webhooks
        .into_iter()
        .find(|webhook| webhook.id == id)
        .expect("the webhook is listed")
}

/// A loopback address nothing listens on (until a receiver is started on it).
fn free_address() -> SocketAddr {
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    parked.local_addr().unwrap()
}

/// An evaluation submitted under a new published rubric, then revised once.
async fn submitted_and_revised(
    app: &TestApp,
    external_id: &str,
) -> (EvaluationServiceClient<Authed>, ev::Evaluation) {
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations = app.evaluations();
    let submitted = evaluations
        .submit_evaluation(submission(&rubric.id, external_id, 1, 4))
        .await
        .unwrap()
        .into_inner();
    evaluations
        .revise_evaluation(ev::ReviseEvaluationRequest {
            id: submitted.id.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            ratings: vec![rating("greeting", 0), rating("empathy", 2)],
            comment: String::new(),
            reason: "recheck".into(),
        })
        .await
        .unwrap();
    (evaluations, submitted)
}

/// One evaluation submitted to a subscription whose receiver always answers `status`;
/// the delivery log once that delivery has FAILED.
/// A receiver answering `answer`, subscribed to new evaluations, and one submission.
async fn one_submission_to(app: &TestApp, answer: Answer) -> (Receiver, wh::Webhook) {
    let receiver = Receiver::start(answer).await;
    let webhook = subscribe(app, &receiver.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "one-1", 1, 4))
        .await
        .unwrap();
    (receiver, webhook)
}

async fn one_submission_until_it_fails(
    app: &TestApp,
    status: u16,
) -> (Receiver, wh::Webhook, Vec<wh::WebhookDelivery>) {
    let (receiver, webhook) = one_submission_to(app, Answer::Status(status)).await;
    let log = deliveries_when(app, &webhook, |listed| {
        listed
            .first()
            .is_some_and(|d| d.state == wh::WebhookDeliveryState::Failed as i32)
    })
    .await;
    (receiver, webhook, log)
}

fn verify(received: &Received, secret: &str) {
    let key = secret_key(secret).expect("the secret decodes");
    let timestamp: i64 = received.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert_eq!(
        received.header("webhook-signature"),
        signature(
            &key,
            received.header("webhook-id"),
            timestamp,
            received.body.as_bytes()
        )
    );
}

crate::on_every_store!(
    submissions_revisions_and_deletions_reach_the_receiver_signed_and_in_order,
    only_the_subscribed_event_types_are_delivered_and_the_secret_is_shown_once,
    a_failing_receiver_is_retried_with_the_same_webhook_id_while_later_events_wait,
    a_410_gone_disables_the_subscription_and_fails_what_was_pending,
    consecutive_failures_disable_the_subscription,
    disputes_opened_and_resolved_are_delivered,
);

async fn submissions_revisions_and_deletions_reach_the_receiver_signed_and_in_order(
    backend: Backend,
) {
    let app = app_on(backend).await;
    let receiver = Receiver::start(Answer::Status(204)).await;
    let webhook = subscribe(
        &app,
        &receiver.url(),
        &[
            "evaluation.created",
            "evaluation.revised",
            "evaluation.deleted",
        ],
    )
    .await;
    assert!(webhook.secret.starts_with("whsec_"));
    assert_eq!(webhook.state, wh::WebhookState::Active as i32);
    let (mut evaluations, submitted) = submitted_and_revised(&app, "W-1").await;
    evaluations
        .delete_evaluation(ev::DeleteEvaluationRequest {
            id: submitted.id.clone(),
            reason: "duplicate".into(),
        })
        .await
        .unwrap();
    let received = receiver.wait_for(3).await;
    let types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "evaluation.created",
            "evaluation.revised",
            "evaluation.deleted"
        ]
    );
    for (request, revision) in received.iter().zip([1, 2, 2]) {
        verify(request, &webhook.secret);
        let body = request.json();
        assert_eq!(body["id"], request.header("webhook-id"));
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["data"]["id"], submitted.id);
        assert_eq!(body["data"]["revision"], revision);
        assert_eq!(request.header("content-type"), "application/json");
        assert!(
            request
                .header(":request-line")
                .starts_with("POST /hooks/iqs?from=test ")
        );
    }
    // Proto3 JSON of the evaluation, every field present.
    let created = received[0].json();
    assert_eq!(created["data"]["ratings"][1]["criterionKey"], "empathy");
    assert_eq!(created["data"]["passed"], true);
    assert_eq!(
        received[2].json()["data"]["state"],
        "EVALUATION_STATE_DELETED"
    );
    let log = deliveries_when(&app, &webhook, |listed| {
        listed.len() == 3
            && listed
                .iter()
                .all(|d| d.state == wh::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    for delivery in &log {
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.last_status_code, 204);
        assert!(delivery.last_latency_ms > 0.0);
        assert!(delivery.finish_time.is_some());
    }
    // Newest first.
    assert_eq!(log[0].event_type, "evaluation.deleted");
}

async fn only_the_subscribed_event_types_are_delivered_and_the_secret_is_shown_once(
    backend: Backend,
) {
    let app = app_on(backend).await;
    let deletions = Receiver::start(Answer::Status(200)).await;
    let creations = Receiver::start(Answer::Status(200)).await;
    let for_deletions = subscribe(&app, &deletions.url(), &["evaluation.deleted"]).await;
    subscribe(&app, &creations.url(), &["evaluation.created"]).await;
    let listed = webhooks(&app.channel)
        .list_webhooks(wh::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.webhooks.len(), 2);
    assert!(listed.webhooks.iter().all(|w| w.secret.is_empty()));
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations = app.evaluations();
    for n in 0..3 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("T-{n}"), 1, 4))
            .await
            .unwrap();
    }
    assert_eq!(creations.wait_for(3).await.len(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(deletions.received().is_empty());
    assert!(deliveries(&app, &for_deletions).await.is_empty());
    // Deleting a subscription stops its deliveries and answers it without the secret.
    let deleted = webhooks(&app.channel)
        .delete_webhook(wh::DeleteWebhookRequest {
            id: for_deletions.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.secret.is_empty());
    let again = webhooks(&app.channel)
        .list_webhook_deliveries(wh::ListWebhookDeliveriesRequest {
            webhook_id: for_deletions.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

async fn a_failing_receiver_is_retried_with_the_same_webhook_id_while_later_events_wait(
    backend: Backend,
) {
    let app = app_on(backend).await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    receiver.then([Answer::Status(500), Answer::Status(503)]);
    let webhook = subscribe(
        &app,
        &receiver.url(),
        &["evaluation.created", "evaluation.revised"],
    )
    .await;
    submitted_and_revised(&app, "R-1").await;
    let received = receiver.wait_for(4).await;
    let types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    // The revision waits until the creation is delivered.
    assert_eq!(
        types,
        [
            "evaluation.created",
            "evaluation.created",
            "evaluation.created",
            "evaluation.revised"
        ]
    );
    let first_id = received[0].header("webhook-id");
    assert!(
        received[..3]
            .iter()
            .all(|r| r.header("webhook-id") == first_id)
    );
    assert!(received[..3].iter().all(|r| r.body == received[0].body));
    for request in &received {
        verify(request, &webhook.secret);
    }
    let log = deliveries_when(&app, &webhook, |listed| {
        listed
            .iter()
            .all(|d| d.state == wh::WebhookDeliveryState::Delivered as i32)
            && listed.len() == 2
    })
    .await;
    let created = log
        .iter()
        .find(|d| d.event_type == "evaluation.created")
        .unwrap();
    assert_eq!(created.attempts, 3);
    assert_eq!(created.last_status_code, 200);
    assert_eq!(
        webhook_state(&app, &webhook.id).await.state,
        wh::WebhookState::Active as i32
    );
}

async fn a_410_gone_disables_the_subscription_and_fails_what_was_pending(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start(Answer::Status(410)).await;
    let webhook = subscribe(&app, &receiver.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations = app.evaluations();
    for n in 0..3 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("G-{n}"), 1, 4))
            .await
            .unwrap();
    }
    // Events after the 410 find the subscription disabled and are not enqueued at all.
    let log = deliveries_when(&app, &webhook, |listed| {
        !listed.is_empty()
            && listed
                .iter()
                .all(|d| d.state == wh::WebhookDeliveryState::Failed as i32)
    })
    .await;
    let disabled = webhook_state(&app, &webhook.id).await;
    assert_eq!(disabled.state, wh::WebhookState::Disabled as i32);
    assert!(disabled.disabled_reason.contains("410"), "{disabled:?}");
    // Gone means gone: nothing more is sent, not even the other events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = receiver.received().len();
    assert!(sent <= 3, "{sent} requests after 410");
    assert!(log.iter().any(|d| d.last_status_code == 410));
}

async fn consecutive_failures_disable_the_subscription(backend: Backend) {
    let app = spawn_app_with(AppOptions {
        backend,
        tune: |config| {
            for_tests(config);
            config.webhook_disable_after_failures = 3;
        },
        ..AppOptions::default()
    })
    .await;
    let (receiver, webhook, log) = one_submission_until_it_fails(&app, 500).await;
    assert_eq!(log[0].attempts, 3);
    assert_eq!(log[0].last_status_code, 500);
    assert!(log[0].last_error.contains("HTTP 500"), "{:?}", log[0]);
    let disabled = webhook_state(&app, &webhook.id).await;
    assert_eq!(disabled.state, wh::WebhookState::Disabled as i32);
    assert!(
        disabled.disabled_reason.contains("3 consecutive"),
        "{disabled:?}"
    );
    assert_eq!(receiver.received().len(), 3);
}

async fn disputes_opened_and_resolved_are_delivered(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    let webhook = subscribe(
        &app,
        &receiver.url(),
        &["dispute.opened", "dispute.resolved"],
    )
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let submitted = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "D-1", 1, 2))
        .await
        .unwrap()
        .into_inner();
    let agent = app.channel_as(Role::Agent, Some("agent-1")).await;
    let opened = DisputeServiceClient::new(agent)
        .open_dispute(ev::OpenDisputeRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            evaluation_id: submitted.id.clone(),
            comment: "I was empathetic".into(),
            proposed_ratings: vec![rating("empathy", 4)],
        })
        .await
        .unwrap()
        .into_inner();
    DisputeServiceClient::new(app.channel.clone())
        .resolve_dispute(ev::ResolveDisputeRequest {
            id: opened.id.clone(),
            outcome: ev::DisputeOutcome::Rejected as i32,
            comment: "the score stands".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let received = receiver.wait_for(2).await;
    let opened_event = received[0].json();
    assert_eq!(opened_event["type"], "dispute.opened");
    assert_eq!(opened_event["data"]["id"], opened.id);
    assert_eq!(opened_event["data"]["state"], "DISPUTE_STATE_OPEN");
    let resolved_event = received[1].json();
    assert_eq!(resolved_event["type"], "dispute.resolved");
    assert_eq!(resolved_event["data"]["state"], "DISPUTE_STATE_RESOLVED");
    assert_eq!(
        resolved_event["data"]["outcome"],
        "DISPUTE_OUTCOME_REJECTED"
    );
    for request in &received {
        verify(request, &webhook.secret);
    }
}

#[tokio::test]
async fn urls_to_private_addresses_plain_http_and_unknown_event_types_are_refused_by_field() {
    // The default configuration: https only, public addresses only.
    let app = spawn_app_with(AppOptions::default()).await;
    let mut client = webhooks(&app.channel);
    for (url, types, fields) in [
        (
            "http://hooks.example.com/iqs",
            vec!["evaluation.created"],
            vec!["webhook.url"],
        ),
        (
            "https://127.0.0.1/iqs",
            vec!["evaluation.created"],
            vec!["webhook.url"],
        ),
        (
            "https://169.254.169.254/latest/meta-data",
            vec!["evaluation.created"],
            vec!["webhook.url"],
        ),
        (
            "https://[fd00:ec2::254]/",
            vec!["evaluation.created"],
            vec!["webhook.url"],
        ),
        (
            "https://localhost:8443/iqs",
            vec!["evaluation.created"],
            vec!["webhook.url"],
        ),
        (
            "https://10.0.0.7/iqs",
            vec!["evaluation.created", "evaluation.exploded"],
            vec!["webhook.url", "webhook.event_types[1]"],
        ),
        (
            "https://hooks.example.com/iqs",
            vec![],
            vec!["webhook.event_types"],
        ),
    ] {
        let refused = client
            .create_webhook(wh::CreateWebhookRequest {
                request_id: String::new(),
                webhook: Some(wh::Webhook {
                    url: url.into(),
                    event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}");
        assert_eq!(violated_fields(&refused), fields, "{url}");
    }
    assert!(
        client
            .list_webhooks(wh::ListWebhooksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .webhooks
            .is_empty()
    );
}

#[tokio::test]
async fn create_webhook_is_idempotent_by_request_id_and_answers_the_same_secret() {
    let app = app_on(Backend::Postgres).await;
    let request = wh::CreateWebhookRequest {
        request_id: "create-hook-1".into(),
        webhook: Some(wh::Webhook {
            url: "https://hooks.example.com/iqs".into(),
            event_types: vec!["evaluation.created".into()],
            ..Default::default()
        }),
    };
    let mut client = webhooks(&app.channel);
    let first = client
        .create_webhook(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_webhook(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let mut other = request;
    other.webhook.as_mut().unwrap().description = "another".into();
    assert_eq!(
        client.create_webhook(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = app_on(Backend::Postgres).await;
    let elsewhere = Receiver::start(Answer::Status(200)).await;
    let receiver = Receiver::start(Answer::Redirect(elsewhere.url())).await;
    let webhook = subscribe(&app, &receiver.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "X-1", 1, 4))
        .await
        .unwrap();
    let log = deliveries_when(&app, &webhook, |listed| {
        listed.first().is_some_and(|d| d.attempts >= 2)
    })
    .await;
    assert_eq!(log[0].last_status_code, 302);
    assert!(log[0].last_error.contains("redirects are not followed"));
    assert!(elsewhere.received().is_empty());
}

#[tokio::test]
async fn a_host_that_resolves_to_a_private_address_is_not_delivered_to() {
    // A subscription made where private targets were allowed, delivered by a server
    // where they are not: the addresses are checked on every attempt.
    let app = spawn_app_with(AppOptions::default()).await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost.localdomain".into());
    let resolves = tokio::net::lookup_host((host.as_str(), 443)).await.is_ok();
    let (webhook, _) = app
        .store
        .create_webhook(
            app.tenant,
            iqs::store::NewWebhook {
                request_id: None,
                fingerprint: Vec::new(),
                input: iqs::domain::webhook::WebhookInput {
                    // The machine's own name: it resolves to this machine (loopback
                    // or a private address), though the name is not one IQS refuses.
                    url: format!("https://{host}:{}/", receiver.addr.port()),
                    event_types: vec![iqs::domain::webhook::EventType::EvaluationCreated],
                    description: String::new(),
                },
                secret: iqs::domain::webhook::secret_of(&[1; 32]),
            },
        )
        .await
        .unwrap();
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "P-1", 1, 4))
        .await
        .unwrap();
    let proto = wh::Webhook {
        id: webhook.id.to_string(),
        ..Default::default()
    };
    let log = deliveries_when(&app, &proto, |listed| {
        listed.first().is_some_and(|d| d.attempts >= 1)
    })
    .await;
    if resolves {
        assert!(
            log[0].last_error.contains(&format!("{host} resolves to")),
            "{:?}",
            log[0]
        );
    } else {
        assert!(log[0].last_error.contains("cannot resolve"), "{:?}", log[0]);
    }
    assert_eq!(log[0].last_status_code, 0);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_are_delivered_once_the_receiver_is_back() {
    let mut app = app_on(Backend::Postgres).await;
    // A port with nothing listening, then a receiver on it.
    let addr = free_address();
    let webhook = subscribe(
        &app,
        &format!("http://{addr}/hooks"),
        &["evaluation.created"],
    )
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let submitted = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "S-1", 1, 4))
        .await
        .unwrap()
        .into_inner();
    deliveries_when(&app, &webhook, |listed| {
        listed.first().is_some_and(|d| d.attempts >= 1)
    })
    .await;
    app.stop().await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::serve(listener, Answer::Status(200));
    let restarted = spawn_app_with(AppOptions {
        database_url: Some(app.database_url.clone()),
        tune: for_tests,
        ..AppOptions::default()
    })
    .await;
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].json()["data"]["id"], submitted.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "delivered once");
    drop(restarted);
}

#[tokio::test]
async fn a_slow_receiver_holds_up_neither_submissions_nor_another_receiver() {
    let app = spawn_app_with(AppOptions {
        tune: |config| {
            for_tests(config);
            config.webhook_max_in_flight_per_webhook = 2;
            config.webhook_attempt_timeout_ms = 5_000;
        },
        ..AppOptions::default()
    })
    .await;
    let slow = Receiver::start(Answer::After(Duration::from_secs(3), 200)).await;
    let quick = Receiver::start(Answer::Status(200)).await;
    subscribe(&app, &slow.url(), &["evaluation.created"]).await;
    subscribe(&app, &quick.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations: EvaluationServiceClient<Authed> = app.evaluations();
    let started = Instant::now();
    for n in 0..10 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("Q-{n}"), 1, 4))
            .await
            .unwrap();
    }
    let submitting = started.elapsed();
    quick.wait_for(10).await;
    let quick_done = started.elapsed();
    // The slow receiver has had at most two requests in flight, and will take 15 s for
    // all ten; the quick one had them all within the first of those three seconds.
    assert!(quick_done < Duration::from_secs(3), "{quick_done:?}");
    assert!(slow.received().len() <= 2, "{}", slow.received().len());
    assert!(submitting < Duration::from_secs(3), "{submitting:?}");
}

#[tokio::test]
async fn two_replicas_on_one_database_deliver_each_event_once_between_them() {
    let first = app_on(Backend::Postgres).await;
    let second = spawn_app_with(AppOptions {
        database_url: Some(first.database_url.clone()),
        tune: for_tests,
        ..AppOptions::default()
    })
    .await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    subscribe(&first, &receiver.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut first.rubrics()).await;
    let on_first = first.evaluations();
    let mut submitted = Vec::new();
    for n in 0..40 {
        // Alternately through each replica.
        let mut client = if n % 2 == 0 {
            on_first.clone()
        } else {
            EvaluationServiceClient::new(crate::helpers::with_key(
                second.raw_channel.clone(),
                &first.admin_key,
            ))
        };
        submitted.push(
            client
                .submit_evaluation(submission(&rubric.id, &format!("two-{n}"), 1, 4))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    receiver.wait_for(40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 40, "each event once");
    ids.sort();
    submitted.sort();
    assert_eq!(ids, submitted);
}

#[tokio::test]
async fn deliveries_pending_through_a_database_outage_are_delivered_once_it_ends() {
    let postgres = crate::owned_servers::Postgres::start();
    let app = spawn_app_with(AppOptions {
        database_url: Some(postgres.url()),
        tune: for_tests,
        ..AppOptions::default()
    })
    .await;
    let addr = free_address();
    let webhook = subscribe(
        &app,
        &format!("http://{addr}/hooks"),
        &["evaluation.created"],
    )
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations = app.evaluations();
    for n in 0..5 {
        evaluations
            .submit_evaluation(submission(&rubric.id, &format!("O-{n}"), 1, 4))
            .await
            .unwrap();
    }
    deliveries_when(&app, &webhook, |listed| {
        listed.len() == 5 && listed.iter().all(|d| d.attempts >= 1)
    })
    .await;
    postgres.stop();
    // The receiver comes back while the database is away.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::serve(listener, Answer::Status(200));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    postgres.start_again();
    receiver.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 5, "each delivered once");
    deliveries_when(&app, &webhook, |listed| {
        listed
            .iter()
            .all(|d| d.state == wh::WebhookDeliveryState::Delivered as i32)
    })
    .await;
}

/// An attempt under way when the database goes away is recorded once it is back: the
/// receiver answered 200 while the database was stopped, and the delivery turns
/// delivered within moments of the restart, sent once. Before, the unrecorded attempt
/// kept its lease (the attempt's timeout and 30 s), then was sent a second time.
#[tokio::test]
async fn an_attempt_answered_while_the_database_is_away_is_recorded_once_it_is_back() {
    let postgres = crate::owned_servers::Postgres::start();
    let app = spawn_app_with(AppOptions {
        database_url: Some(postgres.url()),
        tune: for_tests,
        ..AppOptions::default()
    })
    .await;
    let (receiver, webhook) =
        one_submission_to(&app, Answer::After(Duration::from_millis(1_500), 200)).await;
    // The receiver holds the request while the database stops, then answers 200.
    receiver.wait_for(1).await;
    postgres.stop();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    postgres.start_again();
    let listed = deliveries_when(&app, &webhook, |listed| {
        listed.len() == 1 && listed[0].state == wh::WebhookDeliveryState::Delivered as i32
    })
    .await;
    assert_eq!(listed[0].attempts, 1, "{listed:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "sent once");
}

/// Recording an attempt again (its first record committed, but the answer was lost)
/// counts it once: neither the delivery's attempts nor the subscription's consecutive
/// failures move. A new attempt is still counted.
#[tokio::test]
async fn an_attempt_recorded_twice_is_counted_once() {
    use iqs::store::{AttemptOutcome, AttemptRecord, WebhookStore};

    let app = spawn_app_with(AppOptions {
        tune: |config| {
            for_tests(config);
            // One attempt only during the test.
            config.webhook_retry_first_ms = 600_000;
            config.webhook_retry_longest_ms = 600_000;
        },
        ..AppOptions::default()
    })
    .await;
    let (_receiver, webhook) = one_submission_to(&app, Answer::Status(503)).await;
    deliveries_when(&app, &webhook, |listed| {
        listed.len() == 1 && listed[0].attempts == 1
    })
    .await;
    let counts = || async {
        sqlx::query_as::<_, (i32, i32)>(
            "SELECT d.attempts, w.consecutive_failures
             FROM evaluation.webhook_deliveries d
             JOIN evaluation.webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id",
        )
        .fetch_one(app.pg_pool())
        .await
        .unwrap()
    };
    let (tenant, delivery_id, webhook_id, time): (
        uuid::Uuid,
        uuid::Uuid,
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT tenant_id, id, webhook_id, last_attempt_time FROM evaluation.webhook_deliveries",
    )
    .fetch_one(app.pg_pool())
    .await
    .unwrap();
    assert_eq!(counts().await, (1, 1));
    let store = iqs::store::postgres::PostgresStore::connect(
        &app.database_url,
        &iqs::store::postgres::PoolSettings::default(),
    )
    .await
    .unwrap();
    let record = |time| AttemptRecord {
        tenant: iqs::domain::tenant::TenantId(tenant),
        delivery_id,
        webhook_id,
        time,
        status: Some(503),
        latency: Duration::from_millis(1),
        error: "HTTP 503".into(),
        outcome: AttemptOutcome::RetryAt(chrono::Utc::now() + chrono::Duration::minutes(10)),
    };
    store
        .record_webhook_attempt(record(time), 100)
        .await
        .unwrap();
    assert_eq!(counts().await, (1, 1), "the same attempt again");
    store
        .record_webhook_attempt(record(time + chrono::Duration::seconds(1)), 100)
        .await
        .unwrap();
    assert_eq!(counts().await, (2, 2), "a new attempt");
}

#[tokio::test]
async fn a_delivery_still_failing_after_the_retry_period_is_given_up_and_the_subscription_stays() {
    let app = spawn_app_with(AppOptions {
        tune: |config| {
            for_tests(config);
            config.webhook_give_up_after_s = 1;
        },
        ..AppOptions::default()
    })
    .await;
    let (receiver, webhook, log) = one_submission_until_it_fails(&app, 503).await;
    assert!(log[0].attempts >= 2, "{:?}", log[0]);
    assert_eq!(log[0].last_status_code, 503);
    assert!(log[0].next_attempt_time.is_none());
    let attempts = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received().len(),
        attempts,
        "no attempt after giving up"
    );
    assert_eq!(
        webhook_state(&app, &webhook.id).await.state,
        wh::WebhookState::Active as i32
    );
}

#[tokio::test]
async fn the_delivery_log_keeps_ended_deliveries_only_for_its_retention() {
    let app = spawn_app_with(AppOptions {
        tune: |config| {
            for_tests(config);
            config.webhook_log_retention_s = 1;
        },
        ..AppOptions::default()
    })
    .await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    let webhook = subscribe(&app, &receiver.url(), &["evaluation.created"]).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "L-1", 1, 4))
        .await
        .unwrap();
    receiver.wait_for(1).await;
    deliveries_when(&app, &webhook, |listed| {
        listed
            .first()
            .is_some_and(|d| d.state == wh::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    // Gone once a second has passed since it was delivered (pruned every second here).
    deliveries_when(&app, &webhook, |listed| listed.is_empty()).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn hostile_webhook_requests_get_clear_codes_and_store_nothing() {
    let app = app_on(Backend::Postgres).await;
    let mut client = webhooks(&app.channel);
    let create = |url: &str, types: Vec<String>, description: &str| wh::CreateWebhookRequest {
        request_id: String::new(),
        webhook: Some(wh::Webhook {
            url: url.into(),
            event_types: types,
            description: description.into(),
            ..Default::default()
        }),
    };
    let created = ["evaluation.created".to_owned()];
    for (request, field) in [
        (
            create("http://127.0.0.1/\0hook", created.to_vec(), ""),
            "webhook.url",
        ),
        (
            create("http://127.0.0.1/hook", created.to_vec(), "a\0b"),
            "webhook.description",
        ),
        (
            create(
                "http://127.0.0.1/hook",
                vec!["evaluation.created".into(); 1_001],
                "",
            ),
            "webhook.event_types",
        ),
        (
            create(
                &format!("http://127.0.0.1/{}", "x".repeat(3_000)),
                created.to_vec(),
                "",
            ),
            "webhook.url",
        ),
    ] {
        let refused = client.create_webhook(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            violated_fields(&refused)
                .iter()
                .any(|violated| violated.starts_with(field)),
            "{field}: {refused:?}"
        );
    }
    assert_eq!(app.count("evaluation.webhooks").await, 0);
    // Another tenant's subscription is as absent as one that does not exist.
    let receiver = Receiver::start(Answer::Status(200)).await;
    let theirs = subscribe(&app, &receiver.url(), &["evaluation.created"]).await;
    let other = spawn_app_with(AppOptions {
        database_url: Some(app.database_url.clone()),
        tune: for_tests,
        ..AppOptions::default()
    })
    .await;
    let mut intruder = webhooks(&other.channel);
    let deleting = intruder
        .delete_webhook(wh::DeleteWebhookRequest {
            id: theirs.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(deleting.code(), Code::NotFound);
    let reading = intruder
        .list_webhook_deliveries(wh::ListWebhookDeliveriesRequest {
            webhook_id: theirs.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reading.code(), Code::NotFound);
    let listed = intruder
        .list_webhooks(wh::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.webhooks.is_empty());
    assert_eq!(
        webhook_state(&app, &theirs.id).await.state,
        wh::WebhookState::Active as i32
    );
}
