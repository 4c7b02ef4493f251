//! `iqs bench sampling`: how long RunSampling takes over a period's interactions (made
//! beforehand, e.g. by `scripts/bench_sampling.sql`), and the latency of NextAssignment
//! beside reading the plan by id (GetSamplingPlan), the cheapest call of the service.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::bench_client::{Authed, authed, bearer, bench_rubric, open_channel, quantile_ms};
use crate::proto::evaluation::{self as epb, assignment_service_client::AssignmentServiceClient};

#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Any time in the month to sample (RFC 3339).
    #[arg(long)]
    period: chrono::DateTime<chrono::Utc>,
    /// Interactions per agent per month.
    #[arg(long, default_value_t = 10)]
    per_agent: u32,
    /// Reviewers the plan hands out to.
    #[arg(long, default_value_t = 20)]
    reviewers: usize,
    /// NextAssignment and GetSamplingPlan calls, alternating.
    #[arg(long, default_value_t = 1_000)]
    requests: u64,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct SamplingReport {
    scenario: &'static str,
    run_ms: f64,
    created: u32,
    short_agents: usize,
    requests: u64,
    next_p50_ms: f64,
    next_p99_ms: f64,
    plan_p50_ms: f64,
    plan_p99_ms: f64,
}

pub async fn sampling(args: SamplingArgs) -> Result<(), String> {
    let channel: Authed = authed(
        open_channel(&args.target).await?,
        bearer(args.key.as_deref())?,
    );
    // A rubric of its own: nothing is reviewed or assigned under it yet, so every run
    // does the same work.
    let rubric_id = bench_rubric(channel.clone()).await?;
    let mut plans = AssignmentServiceClient::new(channel);
    let reviewer_ids: Vec<String> = (0..args.reviewers).map(|r| format!("rev-{r}")).collect();
    let plan = plans
        .create_sampling_plan(epb::CreateSamplingPlanRequest {
            request_id: String::new(),
            plan: Some(epb::SamplingPlan {
                display_name: "Benchmark monthly sample".into(),
                rubric_id,
                per_agent_count: args.per_agent,
                period: epb::SamplingPeriod::Month as i32,
                strategy: epb::SamplingStrategy::StratifiedChannel as i32,
                reviewer_ids: reviewer_ids.clone(),
                seed: 1,
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| format!("CreateSamplingPlan: {status}"))?
        .into_inner();
    let started = Instant::now();
    let outcome = plans
        .run_sampling(epb::RunSamplingRequest {
            plan_id: plan.id.clone(),
            period_start: Some(prost_types::Timestamp {
                seconds: args.period.timestamp(),
                nanos: 0,
            }),
        })
        .await
        .map_err(|status| format!("RunSampling: {status}"))?
        .into_inner();
    let run = started.elapsed();
    let (mut next, mut read) = (Vec::new(), Vec::new());
    for call in 0..args.requests {
        let reviewer = reviewer_ids[call as usize % reviewer_ids.len()].clone();
        let started = Instant::now();
        plans
            .next_assignment(epb::NextAssignmentRequest {
                reviewer_id: reviewer,
            })
            .await
            .map_err(|status| format!("NextAssignment: {status}"))?;
        next.push(started.elapsed());
        let started = Instant::now();
        plans
            .get_sampling_plan(epb::GetSamplingPlanRequest {
                id: plan.id.clone(),
            })
            .await
            .map_err(|status| format!("GetSamplingPlan: {status}"))?;
        read.push(started.elapsed());
    }
    let result = SamplingReport {
        scenario: "sampling",
        run_ms: run.as_secs_f64() * 1000.0,
        created: outcome.created,
        short_agents: outcome.short_agents.len(),
        requests: args.requests,
        next_p50_ms: quantile_ms(&mut next, 0.5),
        next_p99_ms: quantile_ms(&mut next, 0.99),
        plan_p50_ms: quantile_ms(&mut read, 0.5),
        plan_p99_ms: quantile_ms(&mut read, 0.99),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&result).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "RunSampling: {:.0} ms, {} assignments, {} agents short; NextAssignment p50 {:.2} ms, \
             p99 {:.2} ms (GetSamplingPlan p50 {:.2} ms, p99 {:.2} ms)",
            result.run_ms,
            result.created,
            result.short_agents,
            result.next_p50_ms,
            result.next_p99_ms,
            result.plan_p50_ms,
            result.plan_p99_ms
        );
    }
    Ok(())
}
