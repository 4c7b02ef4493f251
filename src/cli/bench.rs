//! `iqs bench`: load generation against a running IQS, for capacity planning and for
//! the ratios in BENCHMARKS.md.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::bench_client::{Authed, authed, bearer, bench_rubric, import_row, open_channel};
use crate::proto::evaluation::{
    evaluation_service_client::EvaluationServiceClient, submit_evaluation_request::InteractionRef,
};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Streams generated evaluations through ImportEvaluations and reports rows per second.
    Import(ImportArgs),
    /// Submits evaluations one by one and measures how long each takes to show in
    /// GetAgentScore.
    Freshness(FreshnessArgs),
    /// Calls QueryScores (team × week over a time range) repeatedly and reports latency.
    Query(QueryArgs),
    /// Streams ExportEvaluations and reports rows per second.
    Export(ExportArgs),
    /// Serves the echo baseline: a gRPC service that only answers.
    EchoServer(super::load::EchoServerArgs),
    /// Calls the echo server under load: the baseline of the other scenarios.
    Echo(super::load::LoadArgs),
    /// Reads one agent's score (the cached helpdesk path) under load.
    AgentScore(super::load::AgentScoreArgs),
    /// Submits new evaluations under load.
    Submit(super::load::SubmitArgs),
    /// Times GetCalibrationReport on a large session beside reading the session.
    Calibration(super::bench_calibration::CalibrationArgs),
    /// Rates generated transcripts with the AutoQA engine on one core, beside parsing them.
    Autoqa(super::bench_autoqa::AutoqaArgs),
    /// Upserts interactions at a rate under a rubric with automatic AutoQA and reports
    /// how long each took to be auto-scored.
    AutoqaLive(super::bench_autoqa::AutoqaLiveArgs),
    /// Submits at a rate with a receiver subscribed and reports the delivery lag, then
    /// again beside a receiver that never answers.
    Webhooks(super::bench_webhooks::WebhooksArgs),
    /// Times BatchGetAgentScores of many cached agents beside one GetAgentScore per agent.
    BatchScores(super::bench_batch::BatchScoresArgs),
    /// Times RunSampling over a month of interactions, then NextAssignment beside reading
    /// the plan.
    Sampling(super::bench_sampling::SamplingArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin, qa_reviewer or analyst).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Stop after this many rows (0 = the whole export).
    #[arg(long, default_value_t = 0)]
    rows: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ExportReport {
    scenario: &'static str,
    rows: u64,
    seconds: f64,
    rows_per_second: f64,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin, qa_reviewer or analyst).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Start of the range, RFC 3339.
    #[arg(long)]
    start: chrono::DateTime<chrono::Utc>,
    /// End of the range (exclusive), RFC 3339.
    #[arg(long)]
    end: chrono::DateTime<chrono::Utc>,
    /// Calls to make, one after another.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct LatencyReport {
    scenario: &'static str,
    requests: u64,
    rows: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Args)]
pub struct FreshnessArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin or qa_reviewer).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Submissions to measure.
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// Prefix of request ids and interaction ids, so runs do not collide.
    #[arg(long, default_value = "fresh")]
    prefix: String,
    /// Submissions per second of other agents, paced, while the measured ones run
    /// (0 = none).
    #[arg(long, default_value_t = 0.0)]
    load_rate: f64,
    /// How often GetAgentScore is polled while an evaluation is not counted yet.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// API key of the background load (default: `--key`); a key of its own keeps its
    /// calls in flight apart from the measured ones' per-key limit.
    #[arg(long, hide_env_values = true)]
    load_key: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct FreshnessReport {
    scenario: &'static str,
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Background submissions per second achieved while measuring (0 without load).
    load_rate: f64,
    /// Background submissions that failed.
    load_errors: u64,
    /// Measured calls the server shed (RESOURCE_EXHAUSTED) and that were sent again.
    measured_calls_shed: u64,
}

/// Background submissions made while the measured ones run: how many succeeded and
/// failed, and for how long.
#[derive(Default)]
struct LoadTally {
    done: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// Submits evaluations of other agents at `rate` per second until `stop` is set.
async fn background_load(
    channel: Authed,
    rubric_id: String,
    prefix: String,
    rate: f64,
    tally: std::sync::Arc<LoadTally>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until((started + every.mul_f64(index as f64)).into()).await;
        let mut client = EvaluationServiceClient::new(channel.clone());
        let request = import_row(&format!("{prefix}-load"), &rubric_id, index, false);
        let tally = tally.clone();
        in_flight.spawn(async move {
            match client.submit_evaluation(request).await {
                Ok(_) => tally.done.fetch_add(1, Ordering::Relaxed),
                Err(status) => {
                    if tally.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("a background submission failed: {status}");
                    }
                    0
                }
            };
        });
        while in_flight.try_join_next().is_some() {}
        index += 1;
    }
    while in_flight.join_next().await.is_some() {}
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin, qa_reviewer or integration).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Rows to import.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Every how many rows one is malformed (0 = none).
    #[arg(long, default_value_t = 0)]
    bad_every: u64,
    /// Prefix of request ids and interaction ids, so runs do not collide.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ImportReport {
    scenario: &'static str,
    rows: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    seconds: f64,
    rows_per_second: f64,
}

pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Import(args) => import(args).await,
        BenchCommand::Freshness(args) => freshness(args).await,
        BenchCommand::Query(args) => query(args).await,
        BenchCommand::Export(args) => export(args).await,
        BenchCommand::EchoServer(args) => super::load::echo_server(args).await,
        BenchCommand::Echo(args) => super::load::echo(args).await,
        BenchCommand::AgentScore(args) => super::load::agent_score(args).await,
        BenchCommand::Submit(args) => super::load::submit(args).await,
        BenchCommand::Calibration(args) => super::bench_calibration::calibration(args).await,
        BenchCommand::Sampling(args) => super::bench_sampling::sampling(args).await,
        BenchCommand::BatchScores(args) => super::bench_batch::batch_scores(args).await,
        BenchCommand::Autoqa(args) => super::bench_autoqa::autoqa(args),
        BenchCommand::AutoqaLive(args) => super::bench_autoqa::autoqa_live(args).await,
        BenchCommand::Webhooks(args) => super::bench_webhooks::webhooks(args).await,
    }
}

async fn connect(target: &str, key: Option<&str>) -> Result<Authed, String> {
    Ok(authed(open_channel(target).await?, bearer(key)?))
}

async fn import(args: ImportArgs) -> Result<(), String> {
    let channel = connect(&args.target, args.key.as_deref()).await?;
    let rubric_id = bench_rubric(channel.clone()).await?;
    let mut client =
        EvaluationServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let (prefix, rows, bad_every) = (args.prefix.clone(), args.rows, args.bad_every);
    let stream = tokio_stream::iter((0..rows).map(move |i| {
        import_row(
            &prefix,
            &rubric_id,
            i,
            bad_every > 0 && i % bad_every == bad_every - 1,
        )
    }));
    let started = Instant::now();
    let response = client
        .import_evaluations(stream)
        .await
        .map_err(|status| format!("ImportEvaluations: {status}"))?
        .into_inner();
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    let report = ImportReport {
        scenario: "import",
        rows: args.rows,
        accepted: response.accepted,
        duplicates: response.duplicates,
        rejected: response.rejected_count,
        seconds: elapsed.as_secs_f64(),
        rows_per_second: response.accepted as f64 / elapsed.as_secs_f64(),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "import: {} rows in {:.2} s = {:.0} rows/s (accepted {}, duplicates {}, rejected {})",
            report.rows,
            report.seconds,
            report.rows_per_second,
            report.accepted,
            report.duplicates,
            report.rejected
        );
    }
    Ok(())
}

/// The value at quantile `q` (0..=1) of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn freshness(args: FreshnessArgs) -> Result<(), String> {
    use crate::proto::analytics::{
        GetAgentScoreRequest, analytics_service_client::AnalyticsServiceClient,
    };
    let channel = connect(&args.target, args.key.as_deref()).await?;
    let rubric_id = bench_rubric(channel.clone()).await?;
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let mut analytics = AnalyticsServiceClient::new(channel.clone());
    let agent_id = format!("agent-{}", args.prefix);
    let score = |analytics: &mut AnalyticsServiceClient<Authed>| {
        let mut analytics = analytics.clone();
        let agent_id = agent_id.clone();
        async move {
            analytics
                .get_agent_score(GetAgentScoreRequest {
                    agent_id,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().evaluation_count)
        }
    };
    let mut seen = score(&mut analytics)
        .await
        .map_err(|status| format!("GetAgentScore: {status}"))?;
    let load_channel = match &args.load_key {
        Some(key) => connect(&args.target, Some(key)).await?,
        None => channel.clone(),
    };
    let tally = std::sync::Arc::new(LoadTally::default());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = (args.load_rate > 0.0).then(|| {
        tokio::spawn(background_load(
            load_channel,
            rubric_id.clone(),
            args.prefix.clone(),
            args.load_rate,
            tally.clone(),
            stop.clone(),
        ))
    });
    // The load reaches its pace before the first measured submission.
    if load.is_some() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let load_started = Instant::now();
    let load_before = tally.done.load(std::sync::atomic::Ordering::Relaxed);
    let mut samples = Vec::with_capacity(args.count as usize);
    let mut shed = 0u64;
    for i in 0..args.count {
        let mut row = import_row(&args.prefix, &rubric_id, i, false);
        if let Some(InteractionRef::Interaction(inline)) = row.interaction_ref.as_mut() {
            inline.agent_id = agent_id.clone();
        }
        // A call the server sheds under load is sent again (the same request id, so it
        // counts once); how often is reported.
        loop {
            match evaluations.submit_evaluation(row.clone()).await {
                Ok(_) => break,
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    shed += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(status) => return Err(format!("SubmitEvaluation: {status}")),
            }
        }
        let submitted = Instant::now();
        loop {
            let count = match score(&mut analytics).await {
                Ok(count) => count,
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    shed += 1;
                    seen
                }
                Err(status) => return Err(format!("GetAgentScore: {status}")),
            };
            if count > seen {
                seen = count;
                break;
            }
            if submitted.elapsed() > Duration::from_secs(30) {
                return Err("an evaluation did not show within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms.max(1))).await;
        }
        samples.push(submitted.elapsed());
    }
    let load_rate = (tally.done.load(std::sync::atomic::Ordering::Relaxed) - load_before) as f64
        / load_started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(load) = load {
        load.await.map_err(|err| err.to_string())?;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let report = FreshnessReport {
        scenario: "freshness",
        count: args.count,
        p50_ms: ms(quantile(&samples, 0.5)),
        p99_ms: ms(quantile(&samples, 0.99)),
        max_ms: ms(samples.last().copied().unwrap_or_default()),
        load_rate: if args.load_rate > 0.0 { load_rate } else { 0.0 },
        load_errors: tally.failed.load(std::sync::atomic::Ordering::Relaxed),
        measured_calls_shed: shed,
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "freshness over {} submissions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             (beside {:.0} other submissions/s, {} failed)",
            report.count,
            report.p50_ms,
            report.p99_ms,
            report.max_ms,
            report.load_rate,
            report.load_errors
        );
    }
    Ok(())
}

async fn export(args: ExportArgs) -> Result<(), String> {
    use crate::proto::analytics::{
        ExportEvaluationsRequest, analytics_service_client::AnalyticsServiceClient,
    };
    let channel = connect(&args.target, args.key.as_deref()).await?;
    let mut analytics =
        AnalyticsServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let started = Instant::now();
    let mut stream = analytics
        .export_evaluations(ExportEvaluationsRequest::default())
        .await
        .map_err(|status| format!("ExportEvaluations: {status}"))?
        .into_inner();
    let mut rows = 0u64;
    while let Some(row) = stream
        .message()
        .await
        .map_err(|status| format!("ExportEvaluations: {status}"))?
    {
        std::hint::black_box(&row);
        rows += 1;
        if args.rows > 0 && rows >= args.rows {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = ExportReport {
        scenario: "export",
        rows,
        seconds,
        rows_per_second: rows as f64 / seconds.max(1e-6),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "export: {} rows in {:.1} s = {:.0} rows/s",
            report.rows,
            report.seconds,
            report.rows_per_second
        );
    }
    Ok(())
}

async fn query(args: QueryArgs) -> Result<(), String> {
    use crate::proto::{
        analytics::{
            Dimension, Interval, QueryScoresRequest, ScoreFilter,
            analytics_service_client::AnalyticsServiceClient,
        },
        common::TimeRange,
    };
    let channel = connect(&args.target, args.key.as_deref()).await?;
    let mut analytics = AnalyticsServiceClient::new(channel);
    let ts = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    let request = QueryScoresRequest {
        filter: Some(ScoreFilter {
            time_range: Some(TimeRange {
                start_time: Some(ts(args.start)),
                end_time: Some(ts(args.end)),
            }),
            ..Default::default()
        }),
        group_by: vec![Dimension::Team as i32],
        interval: Interval::Week as i32,
    };
    let mut samples = Vec::with_capacity(args.requests as usize);
    let mut rows = 0;
    for _ in 0..args.requests {
        let started = Instant::now();
        let response = analytics
            .query_scores(request.clone())
            .await
            .map_err(|status| format!("QueryScores: {status}"))?;
        samples.push(started.elapsed());
        rows = response.into_inner().rows.len();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let report = LatencyReport {
        scenario: "query",
        requests: args.requests,
        rows,
        p50_ms: ms(quantile(&samples, 0.5)),
        p95_ms: ms(quantile(&samples, 0.95)),
        p99_ms: ms(quantile(&samples, 0.99)),
        max_ms: ms(samples.last().copied().unwrap_or_default()),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "QueryScores team x week: {} calls, {} rows each: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            report.requests,
            report.rows,
            report.p50_ms,
            report.p95_ms,
            report.p99_ms,
            report.max_ms
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn generated_rows_are_deterministic_and_bad_rows_break_the_scale() {
        assert_eq!(
            import_row("p", "r", 7, false),
            import_row("p", "r", 7, false)
        );
        let bad = import_row("p", "r", 7, true);
        assert!(bad.ratings.iter().any(|r| r.value == Some(9)));
    }
}
