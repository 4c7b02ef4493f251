//! `iqs bench autoqa`: how fast the AutoQA engine rates transcripts on one core, beside
//! the bare JSON parse of the same transcripts (the least any scorer of them pays).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::{TimeZone, Utc};
use clap::Args;
use serde::Serialize;

use crate::domain::autoqa::{self, AutoRule, Expect, Scale, Scope};
use crate::domain::interaction::{Message, MessageRole};
use crate::domain::random::SplitMix64;

#[derive(Debug, Args)]
pub struct AutoqaArgs {
    /// Transcripts rated per repetition.
    #[arg(long, default_value_t = 10_000)]
    interactions: usize,
    /// Messages per transcript.
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct AutoqaReport {
    scenario: &'static str,
    interactions: usize,
    messages: usize,
    /// Transcripts parsed from JSON and rated by every rule, per second, on one core.
    rated_per_second: f64,
    /// Transcripts only parsed from JSON, per second.
    parsed_per_second: f64,
    /// Ratings that were N/A (a sanity check that the rules ran on real input).
    not_applicable: usize,
}

const AGENT_LINES: &[&str] = &[
    "Hello, thank you for contacting Acme support, my name is Sam.",
    "I am sorry to hear that, let me check your order right away.",
    "Could you confirm the email address on the account?",
    "I have refunded the shipping cost to your card.",
    "Is there anything else I can help you with today?",
    "Thanks for your patience, have a great day!",
    "I confirmed the card 4111 1111 1111 1111 for the refund.",
];
const CUSTOMER_LINES: &[&str] = &[
    "My order is late again and nobody answers, this is terrible!",
    "I am really frustrated, I paid for express shipping.",
    "It is jane@example.com",
    "OK, that helps.",
    "Thank you so much, you were very helpful :)",
    "Still nothing arrived, awful service.",
];

/// Deterministic transcripts of `messages` messages each, as JSON.
fn transcripts(count: usize, messages: usize) -> Vec<String> {
    let mut random = SplitMix64::new(20_261_130);
    (0..count)
        .map(|_| {
            let mut second = 0;
            let transcript: Vec<Message> = (0..messages)
                .map(|index| {
                    second += 5 + (random.next_u64() % 120) as i64;
                    let (role, lines) = if index % 2 == 0 {
                        (MessageRole::Customer, CUSTOMER_LINES)
                    } else {
                        (MessageRole::Agent, AGENT_LINES)
                    };
                    Message {
                        role,
                        author_id: String::new(),
                        text: lines[(random.next_u64() % lines.len() as u64) as usize].to_owned(),
                        send_time: Utc.timestamp_opt(1_764_000_000 + second, 0).single(),
                    }
                })
                .collect();
            serde_json::to_string(&transcript).expect("messages serialize")
        })
        .collect()
}

/// The rules of a typical chat scorecard.
fn scorecard() -> Vec<(AutoRule, Scale)> {
    let phrase = |phrases: &[&str], scope, expect| AutoRule::Phrase {
        phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
        scope,
        message_count: 1,
        expect,
    };
    vec![
        (
            phrase(
                &["thank you for contacting", "hello", "hi there"],
                Scope::FirstAgentMessages,
                Expect::Present,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            phrase(
                &["anything else", "have a great day"],
                Scope::LastAgentMessages,
                Expect::Present,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            phrase(
                &["calm down", "not my problem"],
                Scope::AllAgentMessages,
                Expect::Absent,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            AutoRule::ResponseTime {
                target_seconds: 60,
                limit_seconds: 300,
            },
            Scale { min: 1, max: 5 },
        ),
        (AutoRule::SentimentShift, Scale { min: 1, max: 5 }),
        (AutoRule::CardNumber, Scale { min: 0, max: 1 }),
    ]
}

pub fn autoqa(args: AutoqaArgs) -> Result<(), String> {
    let inputs = transcripts(args.interactions.max(1), args.messages.max(1));
    let rules = scorecard();
    let parse = |json: &str| -> Result<Vec<Message>, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    };
    // Warm the lexicon and the allocator before timing.
    for json in inputs.iter().take(100) {
        let messages = parse(json)?;
        for (rule, scale) in &rules {
            autoqa::rate(rule, *scale, &messages);
        }
    }
    let started = Instant::now();
    let mut parsed = 0usize;
    for json in &inputs {
        parsed += parse(json)?.len();
    }
    let parse_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut not_applicable = 0usize;
    for json in &inputs {
        let messages = parse(json)?;
        for (rule, scale) in &rules {
            not_applicable += usize::from(autoqa::rate(rule, *scale, &messages).value.is_none());
        }
    }
    let rate_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(parsed);
    let report = AutoqaReport {
        scenario: "autoqa",
        interactions: inputs.len(),
        messages: args.messages,
        rated_per_second: inputs.len() as f64 / rate_seconds,
        parsed_per_second: inputs.len() as f64 / parse_seconds,
        not_applicable,
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "AutoQA engine, one core: {:.0} transcripts of {} messages rated per second by {} rules \
             ({:.0}/s only parsed from JSON, {:.2}× the parse's time); {} ratings N/A",
            report.rated_per_second,
            report.messages,
            rules.len(),
            report.parsed_per_second,
            report.parsed_per_second / report.rated_per_second,
            report.not_applicable
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AutoqaLiveArgs {
    /// Address of the IQS server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// API key (admin: the scenario makes its own rubric).
    #[arg(long, env = "IQS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Upserts per second, open loop.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// How long to upsert.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct AutoqaLiveReport {
    scenario: &'static str,
    upserts: usize,
    upserts_per_second: f64,
    scored: usize,
    /// From an upsert's update time to its automated evaluation's creation (both the
    /// server's clock).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Upserts chat interactions at `rate` under a rubric with `auto_score`, then reads the
/// automated evaluations back and reports how long each took to exist.
pub async fn autoqa_live(args: AutoqaLiveArgs) -> Result<(), String> {
    use super::bench_client::{authed, bearer, open_channel};
    use crate::proto::evaluation::{
        self as epb, evaluation_service_client::EvaluationServiceClient,
    };
    use crate::proto::rubric::{self as rpb, rubric_service_client::RubricServiceClient};
    let channel = authed(
        open_channel(&args.target).await?,
        bearer(args.key.as_deref())?,
    );
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut rubrics = RubricServiceClient::new(channel.clone());
    let rule = |phrases: &[&str]| {
        Some(rpb::AutoRule {
            rule: Some(rpb::auto_rule::Rule::Phrase(rpb::PhraseRule {
                phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
                ..Default::default()
            })),
        })
    };
    let criterion = |key: &str, auto| rpb::Criterion {
        key: key.into(),
        display_name: key.into(),
        weight: 1,
        scale_min: 0,
        scale_max: 1,
        allow_not_applicable: true,
        auto,
        ..Default::default()
    };
    let rubric = rubrics
        .create_rubric(rpb::CreateRubricRequest {
            request_id: format!("bench-autoqa-live-{run}"),
            rubric: Some(rpb::Rubric {
                display_name: format!("AutoQA live {run}"),
                draft: Some(rpb::RubricDraft {
                    criteria: vec![
                        criterion("greeting", rule(&["hello", "thank you for contacting"])),
                        criterion("closing", rule(&["anything else"])),
                        criterion(
                            "pci",
                            Some(rpb::AutoRule {
                                rule: Some(rpb::auto_rule::Rule::CardNumber(
                                    rpb::CardNumberRule {},
                                )),
                            }),
                        ),
                    ],
                    pass_threshold: None,
                    auto_score: true,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| format!("CreateRubric: {status}"))?
        .into_inner();
    rubrics
        .publish_rubric(rpb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .map_err(|status| format!("PublishRubric: {status}"))?;

    let total = (args.rate * args.seconds as f64).round() as usize;
    let every = Duration::from_secs_f64(1.0 / args.rate.max(1.0));
    let started = Instant::now();
    let mut pending = Vec::with_capacity(total);
    for index in 0..total {
        tokio::time::sleep_until((started + every.mul_f64(index as f64)).into()).await;
        let mut evaluations = EvaluationServiceClient::new(channel.clone());
        let transcript = transcripts(1, 6).remove(0);
        let messages: Vec<Message> =
            serde_json::from_str(&transcript).map_err(|err| err.to_string())?;
        let messages = messages
            .into_iter()
            .map(|message| epb::Message {
                role: match message.role {
                    MessageRole::Agent => epb::MessageRole::Agent,
                    MessageRole::Customer => epb::MessageRole::Customer,
                    MessageRole::System => epb::MessageRole::System,
                } as i32,
                author_id: String::new(),
                text: message.text,
                send_time: message.send_time.map(|time| prost_types::Timestamp {
                    seconds: time.timestamp(),
                    nanos: 0,
                }),
            })
            .collect();
        let request = epb::UpsertInteractionRequest {
            interaction: Some(epb::Interaction {
                source: "bench".into(),
                external_id: format!("{run}-{index}"),
                channel: "chat".into(),
                agent_id: format!("agent-{}", index % 50),
                team_id: "bench".into(),
                region: "bench".into(),
                messages,
                ..Default::default()
            }),
        };
        pending.push(tokio::spawn(async move {
            evaluations
                .upsert_interaction(request)
                .await
                .map(|answer| answer.into_inner())
        }));
    }
    let mut upserted = HashMap::new();
    for task in pending {
        let interaction = task
            .await
            .map_err(|err| err.to_string())?
            .map_err(|status| format!("UpsertInteraction: {status}"))?;
        let update = interaction.update_time.unwrap_or_default();
        upserted.insert(
            interaction.id,
            update.seconds as f64 * 1e3 + f64::from(update.nanos) / 1e6,
        );
    }
    let upsert_seconds = started.elapsed().as_secs_f64();

    // Read the automated evaluations back, waiting until every interaction has one.
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies: Vec<Duration> = loop {
        let mut seen = HashMap::new();
        let mut token = String::new();
        loop {
            let page = evaluations
                .list_evaluations(epb::ListEvaluationsRequest {
                    rubric_id: rubric.id.clone(),
                    kinds: vec![epb::EvaluationKind::Automated as i32],
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|status| format!("ListEvaluations: {status}"))?
                .into_inner();
            for evaluation in page.evaluations {
                let created = evaluation.create_time.unwrap_or_default();
                seen.insert(
                    evaluation.interaction_id,
                    created.seconds as f64 * 1e3 + f64::from(created.nanos) / 1e6,
                );
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        if seen.len() >= upserted.len() || Instant::now() > deadline {
            break upserted
                .iter()
                .filter_map(|(id, at)| seen.get(id).map(|created| created - at))
                .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Archived, the rubric stops asking for automatic scoring: a next run measures its
    // own rubric alone.
    rubrics
        .archive_rubric(rpb::ArchiveRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .map_err(|status| format!("ArchiveRubric: {status}"))?;
    let scored = latencies.len();
    let report = AutoqaLiveReport {
        scenario: "autoqa-live",
        upserts: upserted.len(),
        upserts_per_second: upserted.len() as f64 / upsert_seconds,
        scored,
        p50_ms: super::bench_client::quantile_ms(&mut latencies, 0.5),
        p99_ms: super::bench_client::quantile_ms(&mut latencies, 0.99),
        max_ms: super::bench_client::quantile_ms(&mut latencies, 1.0),
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "AutoQA automatic mode: {} upserts at {:.0}/s, {} auto-scored; upsert → automated evaluation p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            report.upserts,
            report.upserts_per_second,
            report.scored,
            report.p50_ms,
            report.p99_ms,
            report.max_ms
        );
    }
    Ok(())
}
