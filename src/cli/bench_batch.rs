//! `iqs bench batch-scores`: BatchGetAgentScores of many cached agents, beside the same
//! agents read with one GetAgentScore each (one after another, and 16 at a time).

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::bench_client::{Authed, authed, bearer, open_channel, quantile_ms};
use crate::proto::analytics::{
    BatchGetAgentScoresRequest, GetAgentScoreRequest,
    analytics_service_client::AnalyticsServiceClient,
};

#[derive(Debug, Args)]
pub struct BatchScoresArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin, qa_reviewer, analyst, integration or service).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Agents per batch (`agent-0` … ).
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Batch calls measured, one after another.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Rounds of single calls (each reads every agent once).
    #[arg(long, default_value_t = 3)]
    single_rounds: usize,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct BatchReport {
    scenario: &'static str,
    agents: usize,
    requests: usize,
    /// The first call, which finds nothing cached and computes every summary.
    first_batch_ms: f64,
    batch_p50_ms: f64,
    batch_p95_ms: f64,
    batch_p99_ms: f64,
    /// Every agent once with GetAgentScore, one call after another (median round).
    singles_sequential_ms: f64,
    /// The same with 16 calls in flight.
    singles_concurrent_ms: f64,
}

const SINGLES_IN_FLIGHT: usize = 16;

pub async fn batch_scores(args: BatchScoresArgs) -> Result<(), String> {
    let channel: Authed = authed(
        open_channel(&args.target).await?,
        bearer(args.key.as_deref())?,
    );
    let client = AnalyticsServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let agent_ids: Vec<String> = (0..args.agents).map(|n| format!("agent-{n}")).collect();
    let batch = || {
        let mut client = client.clone();
        let request = BatchGetAgentScoresRequest {
            agent_ids: agent_ids.clone(),
            ..Default::default()
        };
        async move {
            client
                .batch_get_agent_scores(request)
                .await
                .map_err(|status| format!("BatchGetAgentScores: {status}"))
        }
    };
    // The first batch computes every summary and offers each to the cache in the
    // background; the next ones find them there.
    let started = Instant::now();
    batch().await?;
    let first_batch_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    batch().await?;
    let mut latencies = Vec::with_capacity(args.requests);
    for _ in 0..args.requests.max(1) {
        let started = Instant::now();
        let answer = batch().await?.into_inner();
        latencies.push(started.elapsed());
        if answer.summaries.len() != agent_ids.len() {
            return Err(format!(
                "{} summaries for {} agents",
                answer.summaries.len(),
                agent_ids.len()
            ));
        }
    }

    let single = |agent_id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_agent_score(GetAgentScoreRequest {
                    agent_id,
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(|status| format!("GetAgentScore: {status}"))
        }
    };
    let mut sequential = Vec::new();
    let mut concurrent = Vec::new();
    for _ in 0..args.single_rounds.max(1) {
        let started = Instant::now();
        for agent_id in &agent_ids {
            single(agent_id.clone()).await?;
        }
        sequential.push(started.elapsed());

        use futures_util::StreamExt as _;
        let started = Instant::now();
        let outcomes: Vec<Result<(), String>> =
            futures_util::stream::iter(agent_ids.iter().cloned().map(single))
                .buffer_unordered(SINGLES_IN_FLIGHT)
                .collect()
                .await;
        outcomes.into_iter().collect::<Result<Vec<()>, String>>()?;
        concurrent.push(started.elapsed());
    }
    let report = BatchReport {
        scenario: "batch-scores",
        agents: args.agents,
        requests: latencies.len(),
        first_batch_ms,
        batch_p50_ms: quantile_ms(&mut latencies, 0.5),
        batch_p95_ms: quantile_ms(&mut latencies, 0.95),
        batch_p99_ms: quantile_ms(&mut latencies, 0.99),
        singles_sequential_ms: quantile_ms(&mut sequential, 0.5),
        singles_concurrent_ms: quantile_ms(&mut concurrent, 0.5),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "BatchGetAgentScores of {} agents: first (uncached) {:.1} ms, then p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms over {} calls; \
             the same agents one GetAgentScore each: {:.1} ms one after another, {:.1} ms {} at a time",
            report.agents,
            report.first_batch_ms,
            report.batch_p50_ms,
            report.batch_p95_ms,
            report.batch_p99_ms,
            report.requests,
            report.singles_sequential_ms,
            report.singles_concurrent_ms,
            SINGLES_IN_FLIGHT
        );
    }
    Ok(())
}
