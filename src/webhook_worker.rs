//! Webhook delivery: a dispatcher turns outbox and dispute events into deliveries (in the
//! store, once each), and a deliverer sends the due ones, signed, each attempt bounded
//! in time, with a bounded number in flight per process and per subscription, so a slow
//! or dead receiver holds up neither submissions nor other receivers.
//!
//! Every address a host resolves to is checked on every attempt (not only when the
//! subscription was made), and the connection goes to a checked address, so a name that
//! later resolves to a private address reaches nothing. Redirects are not followed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::domain::webhook::{self, RetrySchedule};
use crate::projector::Failures;
use crate::store::{AttemptOutcome, AttemptRecord, DueDelivery, WebhookRenderer, WebhookStore};

/// Events read per dispatch pass.
const DISPATCH_BATCH: u32 = 500;
/// How often the dispatcher and the deliverer look for work when they last found none.
const POLL: Duration = Duration::from_millis(50);
/// How long a claimed delivery is held beyond its attempt's timeout: a replica that
/// dies holding it lets another try it after this.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How often deliveries past the log's retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Bytes of a receiver's answer kept in the delivery log when it is not a success.
const ERROR_BODY_BYTES: usize = 200;
/// How long an attempt whose outcome the database did not take waits to record it again.
const RECORD_RETRY: Duration = Duration::from_millis(250);

/// How deliveries are made; from the configuration.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub allow_private_targets: bool,
    pub attempt_timeout: Duration,
    pub schedule: RetrySchedule,
    /// Consecutive failed attempts after which a subscription is disabled.
    pub disable_after_failures: u32,
    /// Attempts in flight in this process.
    pub max_in_flight: usize,
    /// Attempts in flight to one subscription in this process.
    pub max_in_flight_per_webhook: usize,
    /// How long the log keeps a delivery after it ended.
    pub log_retention: Duration,
}

pub struct WebhookWorker {
    pub store: Arc<dyn WebhookStore>,
    pub renderer: Arc<dyn WebhookRenderer>,
    pub settings: WebhookSettings,
}

impl WebhookWorker {
    pub async fn run(self, stopped: watch::Receiver<bool>) {
        let dispatched = Arc::new(Notify::new());
        let sender = Arc::new(Sender::new(&self.settings));
        tokio::join!(
            dispatch(
                self.store.clone(),
                self.renderer.clone(),
                dispatched.clone(),
                stopped.clone()
            ),
            prune(
                self.store.clone(),
                self.settings.log_retention,
                stopped.clone()
            ),
            deliver(self.store, sender, self.settings, dispatched, stopped),
        );
    }
}

async fn dispatch(
    store: Arc<dyn WebhookStore>,
    renderer: Arc<dyn WebhookRenderer>,
    dispatched: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures = Failures::default();
    loop {
        if *stopped.borrow() {
            return;
        }
        match store
            .dispatch_webhook_events(DISPATCH_BATCH, renderer.as_ref())
            .await
        {
            Ok(done) => {
                failures.ended("webhook events are dispatched again");
                if done.deliveries > 0 {
                    dispatched.notify_one();
                }
                // A full batch: more are waiting. Otherwise the next pass waits, so that
                // a steady stream of submissions is dispatched in batches, not in a
                // transaction per event beside every submission's own.
                if done.events >= DISPATCH_BATCH as usize {
                    continue;
                }
            }
            Err(err) => failures.failed(&err, "cannot dispatch webhook events; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Keeps the delivery log to its retention: what ended longer ago is removed, now and
/// then every `PRUNE_EVERY` (each replica does it; removing twice removes nothing more).
async fn prune(
    store: Arc<dyn WebhookStore>,
    retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures = Failures::default();
    loop {
        if *stopped.borrow() {
            return;
        }
        let before =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match store.prune_webhook_deliveries(before).await {
            Ok(pruned) => {
                failures.ended("the webhook delivery log is pruned again");
                if pruned > 0 {
                    tracing::debug!(pruned, "webhook deliveries past their retention removed");
                }
            }
            Err(err) => failures.failed(&err, "cannot prune the webhook delivery log; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY.min(retention.max(Duration::from_millis(100)))) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Attempts in flight per subscription, shared with the attempts themselves.
type InFlight = Arc<Mutex<HashMap<Uuid, usize>>>;

async fn deliver(
    store: Arc<dyn WebhookStore>,
    sender: Arc<Sender>,
    settings: WebhookSettings,
    dispatched: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures = Failures::default();
    let mut attempts = JoinSet::new();
    let in_flight: InFlight = Arc::default();
    loop {
        if *stopped.borrow() {
            // What is in flight is abandoned: its lease ends and it is tried again.
            attempts.abort_all();
            return;
        }
        let free = settings.max_in_flight.saturating_sub(attempts.len());
        let mut full = false;
        if free > 0 {
            let counts = in_flight.lock().expect("in-flight counts").clone();
            let now = Utc::now();
            let leased_until = Instant::now() + settings.attempt_timeout + LEASE_MARGIN;
            let lease = chrono::Duration::from_std(settings.attempt_timeout + LEASE_MARGIN)
                .unwrap_or_else(|_| chrono::Duration::seconds(60));
            match store
                .claim_webhook_deliveries(
                    now,
                    now + lease,
                    free as u32,
                    &counts,
                    settings.max_in_flight_per_webhook,
                )
                .await
            {
                Ok(claimed) => {
                    failures.ended("webhook deliveries are claimed again");
                    full = claimed.len() == free;
                    for delivery in claimed {
                        *in_flight
                            .lock()
                            .expect("in-flight counts")
                            .entry(delivery.webhook_id)
                            .or_default() += 1;
                        attempts.spawn(attempt(
                            store.clone(),
                            sender.clone(),
                            settings.clone(),
                            in_flight.clone(),
                            delivery,
                            leased_until,
                        ));
                    }
                }
                Err(err) => failures.failed(&err, "cannot claim webhook deliveries; retrying"),
            }
        }
        if full && attempts.len() < settings.max_in_flight {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = dispatched.notified() => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            _ = stopped.changed() => {}
        }
    }
}

/// One attempt of one delivery, recorded with what follows from it.
async fn attempt(
    store: Arc<dyn WebhookStore>,
    sender: Arc<Sender>,
    settings: WebhookSettings,
    in_flight: InFlight,
    delivery: DueDelivery,
    leased_until: Instant,
) {
    let time = Utc::now();
    let started = Instant::now();
    let answer = sender.send(&delivery).await;
    let latency = started.elapsed();
    let (status, error) = match &answer {
        Ok((status, _)) if (200..300).contains(status) => (Some(*status), String::new()),
        Ok((status, body)) => (Some(*status), answer_error(*status, body)),
        Err(error) => (None, error.clone()),
    };
    let outcome = match status {
        Some(status) if (200..300).contains(&status) => AttemptOutcome::Delivered,
        Some(410) => AttemptOutcome::Gone,
        _ => {
            let mut jitter = [0u8; 8];
            let jitter = match getrandom::fill(&mut jitter) {
                Ok(()) => u64::from_le_bytes(jitter) as f64 / u64::MAX as f64,
                Err(_) => 0.5,
            };
            match settings.schedule.next_attempt(
                delivery.attempts + 1,
                delivery.create_time,
                Utc::now(),
                jitter,
            ) {
                Some(next) => AttemptOutcome::RetryAt(next),
                None => AttemptOutcome::GiveUp,
            }
        }
    };
    tracing::debug!(
        delivery = %delivery.id,
        webhook = %delivery.webhook_id,
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        %error,
        "webhook attempt"
    );
    let record = AttemptRecord {
        tenant: delivery.tenant,
        delivery_id: delivery.id,
        webhook_id: delivery.webhook_id,
        time,
        status,
        latency,
        error,
        outcome,
    };
    record_attempt(
        store.as_ref(),
        record,
        settings.disable_after_failures,
        leased_until,
    )
    .await;
    let mut counts = in_flight.lock().expect("in-flight counts");
    if let Some(count) = counts.get_mut(&delivery.webhook_id) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&delivery.webhook_id);
        }
    }
}

/// Records an attempt, trying again while the database does not answer, until the
/// delivery's lease ends. An attempt made as the database went away is then recorded
/// once it is back: delivered once, or retried on its schedule, instead of waiting out
/// the lease (the attempt's timeout and `LEASE_MARGIN`) to be sent again. Past the lease
/// the delivery may have been claimed again, and is left to that claim: at least once.
async fn record_attempt(
    store: &dyn WebhookStore,
    record: AttemptRecord,
    disable_after_failures: u32,
    leased_until: Instant,
) {
    let delivery = record.delivery_id;
    let mut warned = false;
    loop {
        let err = match store
            .record_webhook_attempt(record.clone(), disable_after_failures)
            .await
        {
            Ok(()) => {
                if warned {
                    tracing::info!(%delivery, "webhook attempt recorded after all");
                }
                return;
            }
            Err(err) => err,
        };
        if Instant::now() + RECORD_RETRY >= leased_until {
            tracing::warn!(%err, %delivery, "cannot record a webhook attempt; it is tried again when its lease ends");
            return;
        }
        if !warned {
            tracing::warn!(%err, %delivery, "cannot record a webhook attempt yet; trying again");
            warned = true;
        }
        tokio::time::sleep(RECORD_RETRY).await;
    }
}

fn answer_error(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]);
    let text = text.trim();
    let redirect = if (300..400).contains(&status) {
        " (redirects are not followed)"
    } else {
        ""
    };
    if text.is_empty() {
        format!("HTTP {status}{redirect}")
    } else {
        format!("HTTP {status}{redirect}: {text}")
    }
}

/// Sends signed deliveries over HTTP/1.1, one connection per attempt.
pub struct Sender {
    allow_private_targets: bool,
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

impl Sender {
    pub fn new(settings: &WebhookSettings) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system CA certificate could not be loaded");
        }
        roots.add_parsable_certificates(native.certs);
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            allow_private_targets: settings.allow_private_targets,
            timeout: settings.attempt_timeout,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// The receiver's status and the start of its answer, or why there was none.
    pub async fn send(&self, delivery: &DueDelivery) -> Result<(u16, Vec<u8>), String> {
        match tokio::time::timeout(self.timeout, self.send_unbounded(delivery)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn send_unbounded(&self, delivery: &DueDelivery) -> Result<(u16, Vec<u8>), String> {
        let url = webhook::check_url(&delivery.url, self.allow_private_targets)?;
        let host = url.host_str().ok_or("the URL names no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("the URL names no port")?;
        let addresses = self.resolve(&host, port).await?;
        let mut last_error = String::new();
        let mut stream = None;
        for address in addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(err) => last_error = format!("cannot connect to {address}: {err}"),
            }
        }
        let stream = stream.ok_or(last_error)?;
        let _ = stream.set_nodelay(true);
        let request = self.request(delivery, &url, &host)?;
        if url.scheme() == "https" {
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .map_err(|err| format!("{host} is not a TLS server name: {err}"))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|err| format!("TLS with {host} failed: {err}"))?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(stream), request).await
        }
    }

    /// Every address `host` resolves to, each checked: one forbidden address refuses
    /// them all, so that a name cannot mix a private address among public ones.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_matches(['[', ']']);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| format!("cannot resolve {host}: {err}"))?
            .collect();
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        for address in &addresses {
            webhook::check_address(address.ip(), self.allow_private_targets)
                .map_err(|reason| format!("{host} resolves to {reason}"))?;
        }
        Ok(addresses)
    }

    fn request(
        &self,
        delivery: &DueDelivery,
        url: &url::Url,
        host: &str,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let key = webhook::secret_key(&delivery.secret)
            .ok_or("the subscription's secret does not decode")?;
        let timestamp = Utc::now().timestamp();
        let signature = webhook::signature(
            &key,
            &delivery.event_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        http::Request::post(target)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("IQS-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", delivery.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .map_err(|err| format!("cannot build the request: {err}"))
    }
}

async fn exchange<I>(
    io: TokioIo<I>,
    request: http::Request<Full<Bytes>>,
) -> Result<(u16, Vec<u8>), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| format!("HTTP handshake failed: {err}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("no answer: {err}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    // Only the start of an answer is kept, and only until the answer ends or the limit.
    while kept.len() < ERROR_BODY_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    kept.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    Ok((status, kept))
}
