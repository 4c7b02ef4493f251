//! `iqs bench calibration`: the latency of GetCalibrationReport on a session of many
//! interactions and reviewers, beside the latency of reading the same session
//! (GetCalibrationSession): the ratio is what computing the statistics costs.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::bench_client::{Authed, authed, bearer, bench_rubric, open_channel, quantile_ms};
use super::demo::Random;
use super::demo_calibration::{Reviewer, seed_session};
use crate::proto::analytics::{
    GetCalibrationReportRequest, analytics_service_client::AnalyticsServiceClient,
};
use crate::proto::evaluation::{
    GetCalibrationSessionRequest, calibration_service_client::CalibrationServiceClient,
};
use crate::proto::rubric::{GetRubricVersionRequest, rubric_service_client::RubricServiceClient};

#[derive(Debug, Args)]
pub struct CalibrationArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Interactions in the session.
    #[arg(long, default_value_t = 50)]
    interactions: usize,
    /// Reviewers in the session, each reviewing every interaction.
    #[arg(long, default_value_t = 10)]
    reviewers: usize,
    /// Calls of each kind, alternating.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Keeps this run's interactions and session apart from earlier runs'.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct CalibrationReport {
    scenario: &'static str,
    interactions: usize,
    reviewers: usize,
    requests: u64,
    report_p50_ms: f64,
    report_p99_ms: f64,
    session_p50_ms: f64,
    session_p99_ms: f64,
    p50_ratio: f64,
}

pub async fn calibration(args: CalibrationArgs) -> Result<(), String> {
    let channel: Authed = authed(
        open_channel(&args.target).await?,
        bearer(args.key.as_deref())?,
    );
    let rubric_id = bench_rubric(channel.clone()).await?;
    let version = RubricServiceClient::new(channel.clone())
        .get_rubric_version(GetRubricVersionRequest {
            rubric_id: rubric_id.clone(),
            version: 0,
        })
        .await
        .map_err(|status| format!("GetRubricVersion: {status}"))?
        .into_inner();
    let reviewers: Vec<Reviewer> = (0..args.reviewers)
        .map(|r| {
            (
                format!("rev-{r}"),
                (r as f64 - args.reviewers as f64 / 2.0) * 0.2,
                0.4,
            )
        })
        .collect();
    let session = seed_session(
        channel.clone(),
        &format!("{}-{}", args.prefix, uuid::Uuid::now_v7()),
        &rubric_id,
        &version.criteria,
        args.interactions,
        &reviewers,
        &mut Random(7),
    )
    .await?;
    let mut analytics = AnalyticsServiceClient::new(channel.clone());
    let mut sessions = CalibrationServiceClient::new(channel);
    let (mut report, mut read) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        let started = Instant::now();
        analytics
            .get_calibration_report(GetCalibrationReportRequest {
                session_id: session.id.clone(),
            })
            .await
            .map_err(|status| format!("GetCalibrationReport: {status}"))?;
        report.push(started.elapsed());
        let started = Instant::now();
        sessions
            .get_calibration_session(GetCalibrationSessionRequest {
                id: session.id.clone(),
            })
            .await
            .map_err(|status| format!("GetCalibrationSession: {status}"))?;
        read.push(started.elapsed());
    }
    let (report_p50, session_p50) = (quantile_ms(&mut report, 0.5), quantile_ms(&mut read, 0.5));
    let result = CalibrationReport {
        scenario: "calibration",
        interactions: args.interactions,
        reviewers: args.reviewers,
        requests: args.requests,
        report_p50_ms: report_p50,
        report_p99_ms: quantile_ms(&mut report, 0.99),
        session_p50_ms: session_p50,
        session_p99_ms: quantile_ms(&mut read, 0.99),
        p50_ratio: report_p50 / session_p50.max(1e-9),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&result).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "calibration report of {} interactions × {} reviewers: p50 {:.2} ms, p99 {:.2} ms \
             (reading the session: p50 {:.2} ms, p99 {:.2} ms; ratio of p50s {:.1})",
            result.interactions,
            result.reviewers,
            result.report_p50_ms,
            result.report_p99_ms,
            result.session_p50_ms,
            result.session_p99_ms,
            result.p50_ratio
        );
    }
    Ok(())
}
