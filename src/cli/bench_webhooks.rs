//! `iqs bench webhooks`: delivery lag from SubmitEvaluation to a receiver, and what a
//! dead receiver beside it changes (nothing, if the workers are bounded as they should).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bench_client::{Authed, authed, bearer, bench_rubric, import_row, open_channel};
use crate::proto::evaluation::evaluation_service_client::EvaluationServiceClient;
use crate::proto::integration::{self as wh, webhook_service_client::WebhookServiceClient};

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Address of the IQS server (run with IQS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true: the
    /// receivers listen on loopback).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin or integration).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Submissions per second, open loop.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// How long each phase submits.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    submitted: usize,
    delivered: usize,
    /// From sending SubmitEvaluation to the receiver reading the delivery.
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    submit_p50_ms: f64,
    submit_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct WebhooksReport {
    scenario: &'static str,
    rate: f64,
    /// One healthy receiver.
    healthy: Phase,
    /// The same, with a second subscription whose receiver accepts connections and never
    /// answers (every attempt waits for its timeout).
    beside_dead_receiver: Phase,
}

/// Arrival time of each delivery, by the evaluation id in its body.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A receiver that answers 204 to every delivery and notes when each arrived.
async fn healthy_receiver(arrivals: Arrivals) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| err.to_string())?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let Ok(read) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let at = Instant::now();
                    let body = &buffer[end + 4..end + 4 + length];
                    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(body)
                        && let Some(id) = event["data"]["id"].as_str()
                    {
                        arrivals
                            .lock()
                            .expect("arrivals")
                            .entry(id.to_owned())
                            .or_insert(at);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
            });
        }
    });
    Ok(format!("http://{address}/hooks"))
}

/// A receiver that accepts connections and never answers.
async fn dead_receiver() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| err.to_string())?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(format!("http://{address}/hooks"))
}

async fn subscribe(channel: &Authed, url: String) -> Result<String, String> {
    Ok(WebhookServiceClient::new(channel.clone())
        .create_webhook(wh::CreateWebhookRequest {
            request_id: String::new(),
            webhook: Some(wh::Webhook {
                url,
                event_types: vec!["evaluation.created".into()],
                description: "iqs bench webhooks".into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| format!("CreateWebhook: {status}"))?
        .into_inner()
        .id)
}

/// Submits at `rate` for `seconds`, then waits for every delivery (up to 30 s).
async fn phase(
    channel: &Authed,
    rubric_id: &str,
    prefix: &str,
    args: &WebhooksArgs,
    arrivals: &Arrivals,
) -> Result<Phase, String> {
    let total = (args.rate * args.seconds as f64).round() as usize;
    let every = Duration::from_secs_f64(1.0 / args.rate.max(1.0));
    let started = Instant::now();
    let mut pending = Vec::with_capacity(total);
    for index in 0..total {
        tokio::time::sleep_until((started + every.mul_f64(index as f64)).into()).await;
        let mut client = EvaluationServiceClient::new(channel.clone());
        let request = import_row(prefix, rubric_id, index as u64, false);
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            client
                .submit_evaluation(request)
                .await
                .map(|answer| (answer.into_inner().id, sent, sent.elapsed()))
        }));
    }
    let mut sent_at = HashMap::new();
    let mut submit_latencies = Vec::with_capacity(total);
    for task in pending {
        let (id, sent, took) = task
            .await
            .map_err(|err| err.to_string())?
            .map_err(|status| format!("SubmitEvaluation: {status}"))?;
        sent_at.insert(id, sent);
        submit_latencies.push(took);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = {
            let arrivals = arrivals.lock().expect("arrivals");
            sent_at
                .keys()
                .filter(|id| arrivals.contains_key(*id))
                .count()
        };
        if arrived == sent_at.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lags: Vec<Duration> = {
        let arrivals = arrivals.lock().expect("arrivals");
        sent_at
            .iter()
            .filter_map(|(id, sent)| arrivals.get(id).map(|at| at.duration_since(*sent)))
            .collect()
    };
    use super::bench_client::quantile_ms;
    Ok(Phase {
        submitted: sent_at.len(),
        delivered: lags.len(),
        lag_p50_ms: quantile_ms(&mut lags, 0.5),
        lag_p99_ms: quantile_ms(&mut lags, 0.99),
        submit_p50_ms: quantile_ms(&mut submit_latencies, 0.5),
        submit_p99_ms: quantile_ms(&mut submit_latencies, 0.99),
    })
}

pub async fn webhooks(args: WebhooksArgs) -> Result<(), String> {
    let channel = authed(
        open_channel(&args.target).await?,
        bearer(args.key.as_deref())?,
    );
    let rubric_id = bench_rubric(channel.clone()).await?;
    let arrivals: Arrivals = Arc::default();
    let healthy_url = healthy_receiver(arrivals.clone()).await?;
    let healthy_id = subscribe(&channel, healthy_url).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let healthy = phase(
        &channel,
        &rubric_id,
        &format!("hook-{run}-a"),
        &args,
        &arrivals,
    )
    .await?;
    let dead_id = subscribe(&channel, dead_receiver().await?).await?;
    let beside_dead_receiver = phase(
        &channel,
        &rubric_id,
        &format!("hook-{run}-b"),
        &args,
        &arrivals,
    )
    .await?;
    let mut client = WebhookServiceClient::new(channel.clone());
    for id in [healthy_id, dead_id] {
        client
            .delete_webhook(wh::DeleteWebhookRequest { id })
            .await
            .map_err(|status| format!("DeleteWebhook: {status}"))?;
    }
    let report = WebhooksReport {
        scenario: "webhooks",
        rate: args.rate,
        healthy,
        beside_dead_receiver,
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        for (name, phase) in [
            ("one healthy receiver", &report.healthy),
            ("beside a dead receiver", &report.beside_dead_receiver),
        ] {
            say!(
                "webhooks, {name}: {} of {} delivered at {:.0} submissions/s; submit → receipt p50 {:.0} ms, p99 {:.0} ms; SubmitEvaluation p50 {:.1} ms, p99 {:.1} ms",
                phase.delivered,
                phase.submitted,
                report.rate,
                phase.lag_p50_ms,
                phase.lag_p99_ms,
                phase.submit_p50_ms,
                phase.submit_p99_ms
            );
        }
    }
    Ok(())
}
