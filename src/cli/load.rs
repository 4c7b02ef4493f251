//! Concurrent load for `iqs bench`: the echo baseline and its server, the cached
//! `GetAgentScore` read and `SubmitEvaluation`. Closed loop (each of `concurrency` workers sends its next call
//! when the last one answered) or open loop at a fixed rate, where each call is timed
//! from when it was due, so a server that falls behind shows its queueing in the
//! latencies instead of slowing the load down. Latencies go into an HDR histogram.
//! A closed-loop worker refused with RESOURCE_EXHAUSTED waits the `RetryInfo` delay
//! before its next call, as a well-behaved client does.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status, transport::Channel};

use super::bench_client::{authed, bearer, bench_rubric, import_row, open_channel};
use crate::proto::analytics::{
    self as analytics_pb, analytics_service_client::AnalyticsServiceClient,
};
use crate::proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_client::EchoServiceClient,
    echo_service_server::{EchoService, EchoServiceServer},
};
use crate::proto::evaluation::evaluation_service_client::EvaluationServiceClient;

/// Bytes of a typical `GetAgentScore` answer, so the echo baseline moves as much data.
pub const SUMMARY_BYTES: u32 = 256;

#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Address to bind; port 0 = any free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Address of the server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (ignored by the echo server).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Calls in flight at once (closed loop), or workers sharing the rate (open loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 10_000)]
    duration_ms: u64,
    /// Calls before measuring, to fill caches and open connections.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Calls per second in total (open loop); 0 = as fast as answers come (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// A call unanswered after this long counts as an error.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AgentScoreArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// The agent whose score is read.
    #[arg(long, default_value = "agent-0")]
    agent_id: String,
    /// How the calls are made: gRPC, or Connect with a JSON or binary body over
    /// HTTP/1.1 (one connection per call in flight, as HTTP/1.1 clients do).
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Grpc,
    ConnectJson,
    ConnectProto,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Prefix of request ids and interaction ids, so runs do not collide.
    #[arg(long, default_value = "submit")]
    prefix: String,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    scenario: &'static str,
    concurrency: usize,
    connections: usize,
    open_loop_rate: Option<f64>,
    requests: u64,
    errors: u64,
    /// Errors that were RESOURCE_EXHAUSTED: refused for capacity or rate.
    refused: u64,
    /// How long a refusal took to arrive, p99.
    refused_p99_ms: f64,
    seconds: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let size = request.get_ref().response_bytes.min(1 << 20) as usize;
        Ok(Response::new(EchoResponse {
            payload: vec![b'x'; size],
        }))
    }
}

/// Serves the echo baseline until SIGTERM or SIGINT.
pub async fn echo_server(args: EchoServerArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot bind {}: {err}", args.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    say!("echo server listening on {addr}");
    // Accepted like the IQS server's connections, so the baseline pays the same costs.
    tonic::transport::Server::builder()
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_incoming_shutdown(
            crate::server::without_nagle(listener),
            crate::server::shutdown_signal(),
        )
        .await
        .map_err(|err| err.to_string())
}

/// One call of a scenario on a channel; `Err` counts as an error.
type Call = Arc<
    dyn Fn(Channel) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>
        + Send
        + Sync,
>;

fn echo_call() -> Call {
    Arc::new(|channel| {
        Box::pin(async move {
            EchoServiceClient::new(channel)
                .echo(EchoRequest {
                    payload: vec![b'x'; 32],
                    response_bytes: SUMMARY_BYTES,
                })
                .await
                .map(|_| ())
        })
    })
}

fn agent_score_call(
    key: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    agent_id: String,
) -> Call {
    Arc::new(move |channel| {
        let (key, agent_id) = (key.clone(), agent_id.clone());
        Box::pin(async move {
            AnalyticsServiceClient::new(authed(channel, key))
                .get_agent_score(analytics_pb::GetAgentScoreRequest {
                    agent_id,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        })
    })
}

/// Each call submits a new evaluation (its own request id, an inline interaction and
/// six ratings), as a helpdesk does when a reviewer saves.
fn submit_call(
    key: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    prefix: String,
    rubric_id: String,
) -> Call {
    let next = Arc::new(AtomicU64::new(0));
    Arc::new(move |channel| {
        let row = import_row(
            &prefix,
            &rubric_id,
            next.fetch_add(1, Ordering::Relaxed),
            false,
        );
        let key = key.clone();
        Box::pin(async move {
            EvaluationServiceClient::new(authed(channel, key))
                .submit_evaluation(row)
                .await
                .map(|_| ())
        })
    })
}

pub async fn echo(args: LoadArgs) -> Result<(), String> {
    let report = run("echo", &args, echo_call()).await?;
    print_report(&report, args.json)
}

pub async fn agent_score(args: AgentScoreArgs) -> Result<(), String> {
    let (scenario, call) = match args.protocol {
        Protocol::Grpc => (
            "agent-score",
            agent_score_call(bearer(args.load.key.as_deref())?, args.agent_id),
        ),
        Protocol::ConnectJson | Protocol::ConnectProto => (
            if args.protocol == Protocol::ConnectJson {
                "agent-score-connect-json"
            } else {
                "agent-score-connect-proto"
            },
            connect_agent_score_call(&args)?,
        ),
    };
    let report = run(scenario, &args.load, call).await?;
    print_report(&report, args.load.json)
}

/// GetAgentScore as a Connect client sends it: a POST with a JSON (or binary) body over
/// HTTP/1.1, the answer decoded as such a client would.
fn connect_agent_score_call(args: &AgentScoreArgs) -> Result<Call, String> {
    use http_body_util::{BodyExt, Full};
    use prost::Message;
    let url = format!(
        "{}/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        args.load.target.trim_end_matches('/')
    );
    let json = args.protocol == Protocol::ConnectJson;
    let body = if json {
        serde_json::to_vec(&serde_json::json!({ "agentId": args.agent_id }))
            .map_err(|err| err.to_string())?
    } else {
        analytics_pb::GetAgentScoreRequest {
            agent_id: args.agent_id.clone(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let body = bytes::Bytes::from(body);
    let authorization = args.load.key.as_ref().map(|key| format!("Bearer {key}"));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(args.load.concurrency.max(1))
        .build_http::<Full<bytes::Bytes>>();
    Ok(Arc::new(move |_channel| {
        let mut request = http::Request::post(url.as_str()).header(
            http::header::CONTENT_TYPE,
            if json {
                "application/json"
            } else {
                "application/proto"
            },
        );
        if let Some(authorization) = &authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.as_str());
        }
        let request = request.body(Full::new(body.clone()));
        let client = client.clone();
        Box::pin(async move {
            let request = request.map_err(|err| Status::internal(err.to_string()))?;
            let response = client
                .request(request)
                .await
                .map_err(|err| Status::unavailable(err.to_string()))?;
            let status = response.status();
            let answer = response
                .into_body()
                .collect()
                .await
                .map_err(|err| Status::unavailable(err.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(Status::unknown(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&answer)
                )));
            }
            if json {
                serde_json::from_slice::<serde_json::Value>(&answer)
                    .map_err(|err| Status::internal(err.to_string()))?;
            } else {
                analytics_pb::ScoreSummary::decode(answer)
                    .map_err(|err| Status::internal(err.to_string()))?;
            }
            Ok(())
        })
    }))
}

pub async fn submit(args: SubmitArgs) -> Result<(), String> {
    let key = bearer(args.load.key.as_deref())?;
    let rubric_id =
        bench_rubric(authed(open_channel(&args.load.target).await?, key.clone())).await?;
    let report = run(
        "submit",
        &args.load,
        submit_call(key, args.prefix, rubric_id),
    )
    .await?;
    print_report(&report, args.load.json)
}

fn print_report(report: &LoadReport, json: bool) -> Result<(), String> {
    if json {
        say!(
            "{}",
            serde_json::to_string(report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "{}: {} calls in {:.1} s = {:.0}/s ({} errors, {} refused), concurrency {}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            report.scenario,
            report.requests,
            report.seconds,
            report.requests_per_second,
            report.errors,
            report.refused,
            report.concurrency,
            report.p50_ms,
            report.p99_ms,
            report.p999_ms,
            report.max_ms
        );
    }
    Ok(())
}

struct Tally {
    latencies: Histogram<u64>,
    refusals: Histogram<u64>,
    errors: u64,
}

/// Runs the warm-up, then `concurrency` workers for the duration.
async fn run(scenario: &'static str, args: &LoadArgs, call: Call) -> Result<LoadReport, String> {
    let concurrency = args.concurrency.max(1);
    let timeout = Duration::from_millis(args.timeout_ms);
    let call: Call = Arc::new(move |channel| {
        let pending = call(channel);
        Box::pin(async move {
            tokio::time::timeout(timeout, pending)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
        })
    });
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(open_channel(&args.target).await?);
    }
    for index in 0..args.warmup {
        let channel = channels[index as usize % channels.len()].clone();
        call(channel)
            .await
            .map_err(|status| format!("{scenario} failed during the warm-up: {status}"))?;
    }
    let tally = Arc::new(Mutex::new(Tally {
        latencies: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|err| err.to_string())?,
        refusals: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|err| err.to_string())?,
        errors: 0,
    }));
    let duration = Duration::from_millis(args.duration_ms);
    let bar = ProgressBar::new(args.duration_ms);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {elapsed}/{duration}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(scenario);
    let started = Instant::now();
    // Open loop: worker w sends calls w, w + n, w + 2n, … at their due times.
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(concurrency as f64 / args.rate));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (call, tally) = (call.clone(), tally.clone());
        let channel = channels[worker % channels.len()].clone();
        let offset = interval.map(|every| every.mul_f64(worker as f64 / concurrency as f64));
        workers.push(tokio::spawn(async move {
            let mut due = started + offset.unwrap_or_default();
            while due.duration_since(started) < duration && started.elapsed() < duration {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = if interval.is_some() {
                    due
                } else {
                    Instant::now()
                };
                let outcome = call(channel.clone()).await;
                let micros = sent.elapsed().as_micros().max(1) as u64;
                let pushback = outcome
                    .as_ref()
                    .err()
                    .filter(|status| status.code() == tonic::Code::ResourceExhausted)
                    .and_then(|status| {
                        use tonic_types::StatusExt;
                        status.get_details_retry_info()
                    })
                    .and_then(|retry| retry.retry_delay);
                let mut tally = tally.lock().await;
                match outcome {
                    Ok(()) => {
                        let _ = tally.latencies.record(micros.min(60_000_000));
                    }
                    Err(status) => {
                        tally.errors += 1;
                        if status.code() == tonic::Code::ResourceExhausted {
                            let _ = tally.refusals.record(micros.min(60_000_000));
                        }
                    }
                }
                drop(tally);
                due = match interval {
                    Some(every) => due + every,
                    None => {
                        if let Some(delay) = pushback {
                            tokio::time::sleep(delay).await;
                        }
                        Instant::now()
                    }
                };
            }
        }));
    }
    while started.elapsed() < duration {
        bar.set_position(started.elapsed().as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in workers {
        worker.await.map_err(|err| err.to_string())?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let tally = tally.lock().await;
    let ms = |micros: u64| micros as f64 / 1_000.0;
    let requests = tally.latencies.len();
    Ok(LoadReport {
        scenario,
        concurrency,
        connections: channels.len(),
        open_loop_rate: (args.rate > 0.0).then_some(args.rate),
        requests,
        errors: tally.errors,
        refused: tally.refusals.len(),
        refused_p99_ms: ms(tally.refusals.value_at_quantile(0.99)),
        seconds,
        requests_per_second: requests as f64 / seconds,
        p50_ms: ms(tally.latencies.value_at_quantile(0.5)),
        p99_ms: ms(tally.latencies.value_at_quantile(0.99)),
        p999_ms: ms(tally.latencies.value_at_quantile(0.999)),
        max_ms: ms(tally.latencies.max()),
    })
}
