//! `iqs bench`: load generation against a running IQS, for capacity planning and for
//! the ratios in BENCHMARKS.md.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;
use tonic::transport::Channel;

use crate::proto::{
    evaluation::{
        self as eval_pb, evaluation_service_client::EvaluationServiceClient,
        submit_evaluation_request::InteractionRef,
    },
    rubric::{self as rubric_pb, rubric_service_client::RubricServiceClient},
};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Streams generated evaluations through ImportEvaluations and reports rows per second.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
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
    }
}

async fn connect(target: &str) -> Result<Channel, String> {
    Channel::from_shared(target.to_owned())
        .map_err(|err| format!("bad target {target:?}: {err}"))?
        .connect()
        .await
        .map_err(|err| format!("cannot connect to {target}: {err}"))
}

/// A rubric shaped like a real chat scorecard: a critical compliance check, binary
/// checks and 4-point soft-skill criteria, one of them N/A-able.
async fn bench_rubric(channel: Channel) -> Result<String, String> {
    let mut client = RubricServiceClient::new(channel);
    let criterion = |key: &str, section: &str, weight, min, max| rubric_pb::Criterion {
        key: key.into(),
        display_name: key.replace('_', " "),
        section: section.into(),
        weight,
        scale_min: min,
        scale_max: max,
        ..Default::default()
    };
    let mut verify = criterion("verify_identity", "Compliance", 0, 0, 1);
    verify.critical = rubric_pb::CriticalScope::Evaluation as i32;
    let mut resolution = criterion("resolution", "Solution", 3, 1, 4);
    resolution.allow_not_applicable = true;
    resolution.root_causes = vec!["knowledge_gap".into(), "process".into()];
    let rubric = client
        .create_rubric(rubric_pb::CreateRubricRequest {
            request_id: String::new(),
            rubric: Some(rubric_pb::Rubric {
                display_name: "Benchmark chat rubric".into(),
                draft: Some(rubric_pb::RubricDraft {
                    criteria: vec![
                        verify,
                        criterion("greeting", "Soft skills", 1, 0, 1),
                        criterion("empathy", "Soft skills", 2, 1, 4),
                        criterion("tone", "Soft skills", 1, 1, 4),
                        resolution,
                        criterion("closing", "Soft skills", 1, 0, 1),
                    ],
                    pass_threshold: None,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| format!("CreateRubric: {status}"))?
        .into_inner();
    client
        .publish_rubric(rubric_pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .map_err(|status| format!("PublishRubric: {status}"))?;
    Ok(rubric.id)
}

/// Row `i` of a generated import: deterministic, varied, valid unless `bad`.
pub fn import_row(
    prefix: &str,
    rubric_id: &str,
    i: u64,
    bad: bool,
) -> eval_pb::SubmitEvaluationRequest {
    let pick = |n: u64| (i.wrapping_mul(2654435761) >> (n * 3)) % 4;
    let rating = |key: &str, value: i32| eval_pb::Rating {
        criterion_key: key.into(),
        value: Some(value),
        ..Default::default()
    };
    let mut resolution = rating("resolution", 1 + pick(3) as i32);
    if pick(4) == 0 {
        resolution.root_causes = vec!["knowledge_gap".into()];
    }
    let ratings = vec![
        rating("verify_identity", i32::from(!i.is_multiple_of(50))),
        rating("greeting", (pick(1) % 2) as i32),
        rating("empathy", if bad { 9 } else { 1 + pick(2) as i32 }),
        rating("tone", 1 + pick(5) as i32),
        resolution,
        rating("closing", (pick(6) % 2) as i32),
    ];
    eval_pb::SubmitEvaluationRequest {
        request_id: format!("{prefix}-{i}"),
        interaction_ref: Some(InteractionRef::Interaction(eval_pb::Interaction {
            source: "zendesk".into(),
            external_id: format!("{prefix}-{i}"),
            channel: ["chat", "email", "voice"][(i % 3) as usize].into(),
            agent_id: format!("agent-{}", i % 30),
            team_id: format!("team-{}", i % 3),
            region: ["emea", "amer", "apac"][(i % 3) as usize].into(),
            csat: Some(1 + (pick(7) as i32 + i32::from(i.is_multiple_of(2))).min(4)),
            messages: vec![
                eval_pb::Message {
                    role: eval_pb::MessageRole::Customer as i32,
                    author_id: format!("customer-{i}"),
                    text: "Hello, my order has not arrived yet.".into(),
                    send_time: None,
                },
                eval_pb::Message {
                    role: eval_pb::MessageRole::Agent as i32,
                    author_id: format!("agent-{}", i % 30),
                    text: "Sorry to hear that, let me check the tracking for you.".into(),
                    send_time: None,
                },
            ],
            ..Default::default()
        })),
        rubric_id: rubric_id.into(),
        rubric_version: 0,
        reviewer_id: format!("reviewer-{}", i % 5),
        kind: eval_pb::EvaluationKind::Manual as i32,
        ratings,
        comment: String::new(),
    }
}

async fn import(args: ImportArgs) -> Result<(), String> {
    let channel = connect(&args.target).await?;
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
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        println!(
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
