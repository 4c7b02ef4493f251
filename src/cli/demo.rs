//! `iqs demo seed`: realistic demo data through the public API. It starts the real server
//! in-process on a free local port (without keys, as the tenant being seeded) and calls
//! it with the tonic clients, so every row is validated, scored and projected exactly as
//! a caller's would be.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::Channel;

use super::demo_calibration::seed_calibration;
use super::demo_program::{self, seed_assignments, seed_coaching, seed_disputes};
use crate::config::{AuthMode, Config, ServiceSet};
use crate::proto::analytics::{self as apb, analytics_service_client::AnalyticsServiceClient};
use crate::proto::common::TimeRange;
use crate::proto::evaluation::{
    self as epb, evaluation_service_client::EvaluationServiceClient,
    submit_evaluation_request::InteractionRef,
};
use crate::proto::rubric::{self as rpb, rubric_service_client::RubricServiceClient};
use crate::server::{self, Server};

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many evaluations to create.
    #[arg(long, default_value_t = 20_000)]
    evaluations: u64,
    /// The same seed gives the same data; seeding again with it adds nothing.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The last day of the six months (UTC, exclusive) [default: today]. The same seed
    /// and day give the same data.
    #[arg(long, value_name = "YYYY-MM-DD")]
    until: Option<chrono::NaiveDate>,
    /// The tenant to fill (created when missing).
    #[arg(long, default_value = crate::auth::bootstrap::FIRST_TENANT)]
    tenant: String,
}

/// Rows per ImportEvaluations call: the progress bar moves once per call.
const ROWS_PER_CALL: u64 = 2_000;
pub(super) const DAYS: i64 = 182;

const TEAMS: [(&str, &str); 3] = [
    ("support-emea", "emea"),
    ("support-amer", "amer"),
    ("billing-apac", "apac"),
];
const AGENTS: [&str; 30] = [
    "amara", "bruno", "chen", "dana", "emil", "fatima", "goran", "hana", "ivan", "jade", "kofi",
    "lena", "marco", "nadia", "omar", "priya", "quinn", "rosa", "sami", "tariq", "uma", "viktor",
    "wen", "ximena", "yusuf", "zoe", "aiko", "bilal", "carmen", "diego",
];
const CHANNELS: [&str; 3] = ["chat", "email", "voice"];
const REVIEWERS: [&str; 6] = [
    "qa-alex", "qa-blair", "qa-casey", "qa-drew", "qa-eden", "qa-flynn",
];

/// SplitMix64: small, fast and the same everywhere, so a seed always gives the same data.
pub(super) struct Random(pub(super) u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Roughly normal (Irwin–Hall of four uniforms), mean 0 and deviation `sd`.
    pub(super) fn normal(&mut self, sd: f64) -> f64 {
        let sum: f64 = (0..4).map(|_| self.unit()).sum();
        (sum - 2.0) * sd * (3.0f64).sqrt()
    }
}

/// How good an agent is, and how that changes over the six months.
struct Agent {
    id: &'static str,
    team: (&'static str, &'static str),
    channel: &'static str,
    base: f64,
    /// Change of quality per month.
    drift: f64,
    /// How well the agent's customers rate it beyond what quality explains (their
    /// mix of issues, say), so CSAT follows quality only in part.
    rapport: f64,
}

impl Agent {
    fn quality_at(&self, months: f64) -> f64 {
        (self.base + self.drift * months).clamp(0.05, 0.98)
    }

    /// How much better the agent works after the demo's coaching session than before
    /// it, in the windows its impact is read over.
    fn improvement_around_coaching(&self) -> f64 {
        let (session, window) = demo_program::coaching_months();
        self.quality_at(session + window / 2.0) - self.quality_at(session - window / 2.0)
    }
}

fn agents(random: &mut Random) -> Vec<Agent> {
    AGENTS
        .iter()
        .enumerate()
        .map(|(index, id)| Agent {
            id,
            team: TEAMS[index % TEAMS.len()],
            channel: CHANNELS[(index / TEAMS.len()) % CHANNELS.len()],
            base: 0.55 + 0.4 * random.unit(),
            drift: random.normal(0.025),
            rapport: 0.3 + 0.6 * random.unit(),
        })
        .collect()
}

/// A criterion of a demo rubric, built up from the common case.
struct Item(rpb::Criterion);

impl Item {
    fn new(key: &str, name: &str, section: &str, weight: u32, scale: (i32, i32)) -> Self {
        Self(rpb::Criterion {
            key: key.into(),
            display_name: name.into(),
            section: section.into(),
            weight,
            scale_min: scale.0,
            scale_max: scale.1,
            critical: rpb::CriticalScope::None as i32,
            ..Default::default()
        })
    }

    fn may_not_apply(mut self) -> Self {
        self.0.allow_not_applicable = true;
        self
    }

    fn critical(mut self, scope: rpb::CriticalScope) -> Self {
        self.0.critical = scope as i32;
        self
    }

    fn causes(mut self, causes: &[&str]) -> Self {
        self.0.root_causes = causes.iter().map(|cause| cause.to_string()).collect();
        self
    }
}

/// The rubrics, in the styles QA teams use: binary compliance checks with a critical
/// item, 4- and 5-point soft-skill scales, and items that may not apply.
fn rubrics() -> Vec<(&'static str, rpb::RubricDraft)> {
    use rpb::CriticalScope::{Evaluation, Section};
    let gaps = ["knowledge_gap", "process_gap", "tooling"];
    let soft = ["tone", "rushed", "lack_of_empathy"];
    vec![
        (
            "Chat quality",
            rpb::RubricDraft {
                criteria: vec![
                    Item::new(
                        "verified_identity",
                        "Verified the customer's identity",
                        "Compliance",
                        0,
                        (0, 1),
                    )
                    .critical(Evaluation)
                    .causes(&["process_gap"])
                    .0,
                    Item::new(
                        "data_protection",
                        "Shared no data it should not",
                        "Compliance",
                        10,
                        (0, 1),
                    )
                    .critical(Section)
                    .causes(&["process_gap"])
                    .0,
                    Item::new("greeting", "Greeting and name", "Soft skills", 5, (0, 1)).0,
                    Item::new("empathy", "Empathy", "Soft skills", 20, (1, 5))
                        .causes(&soft)
                        .0,
                    Item::new("tone", "Tone and clarity", "Soft skills", 15, (1, 5))
                        .causes(&soft)
                        .0,
                    Item::new(
                        "resolution",
                        "Resolved or set clear next steps",
                        "Resolution",
                        30,
                        (1, 5),
                    )
                    .causes(&gaps)
                    .0,
                    Item::new(
                        "upsell",
                        "Offered a relevant upgrade",
                        "Resolution",
                        5,
                        (0, 1),
                    )
                    .may_not_apply()
                    .0,
                ],
                pass_threshold: Some(80.0),
                auto_score: false,
            },
        ),
        (
            "Email quality",
            rpb::RubricDraft {
                criteria: vec![
                    Item::new(
                        "verified_identity",
                        "Verified the customer's identity",
                        "Compliance",
                        0,
                        (0, 1),
                    )
                    .critical(Evaluation)
                    .causes(&["process_gap"])
                    .0,
                    Item::new("accuracy", "Accurate answer", "Content", 35, (1, 4))
                        .causes(&gaps)
                        .0,
                    Item::new(
                        "completeness",
                        "Answered every question",
                        "Content",
                        25,
                        (1, 4),
                    )
                    .causes(&gaps)
                    .0,
                    Item::new("grammar", "Spelling and grammar", "Writing", 10, (1, 4)).0,
                    Item::new("tone", "Tone", "Writing", 20, (1, 4))
                        .causes(&soft)
                        .0,
                    Item::new(
                        "attachments",
                        "Right attachments and links",
                        "Content",
                        10,
                        (0, 1),
                    )
                    .may_not_apply()
                    .causes(&["tooling"])
                    .0,
                ],
                pass_threshold: Some(75.0),
                auto_score: false,
            },
        ),
        (
            "Voice call quality",
            rpb::RubricDraft {
                criteria: vec![
                    Item::new(
                        "verified_identity",
                        "Verified the caller's identity",
                        "Compliance",
                        0,
                        (0, 1),
                    )
                    .critical(Evaluation)
                    .causes(&["process_gap"])
                    .0,
                    Item::new(
                        "recording_disclosure",
                        "Disclosed the recording",
                        "Compliance",
                        10,
                        (0, 1),
                    )
                    .critical(Section)
                    .causes(&["process_gap"])
                    .0,
                    Item::new(
                        "hold_etiquette",
                        "Asked before holding",
                        "Call handling",
                        10,
                        (0, 1),
                    )
                    .may_not_apply()
                    .causes(&["process_gap"])
                    .0,
                    Item::new("empathy", "Empathy", "Call handling", 25, (1, 5))
                        .causes(&soft)
                        .0,
                    Item::new(
                        "resolution",
                        "First-contact resolution",
                        "Outcome",
                        35,
                        (1, 5),
                    )
                    .causes(&gaps)
                    .0,
                    Item::new("wrap_up", "Summary and wrap-up", "Outcome", 20, (1, 5)).0,
                ],
                pass_threshold: Some(80.0),
                auto_score: false,
            },
        ),
    ]
}

/// One rating of a criterion by an agent of this quality.
fn rate(random: &mut Random, criterion: &rpb::Criterion, quality: f64) -> epb::Rating {
    let mut rating = epb::Rating {
        criterion_key: criterion.key.clone(),
        ..Default::default()
    };
    if criterion.allow_not_applicable && random.unit() < 0.15 {
        rating.not_applicable = true;
        return rating;
    }
    let critical = criterion.critical != rpb::CriticalScope::None as i32
        && criterion.critical != rpb::CriticalScope::Unspecified as i32;
    let (low, high) = (criterion.scale_min, criterion.scale_max);
    let value = if high - low == 1 {
        // Compliance items fail rarely, and more often for weaker agents.
        let failure = if critical { 0.12 } else { 0.5 } * (1.0 - quality);
        if random.unit() < failure { low } else { high }
    } else {
        let level = (quality + random.normal(0.15)).clamp(0.0, 1.0);
        low + (level * f64::from(high - low)).round() as i32
    };
    if value < high && !criterion.root_causes.is_empty() && random.unit() < 0.5 {
        let cause = &criterion.root_causes[random.below(criterion.root_causes.len())];
        rating.root_causes = vec![cause.clone()];
    }
    rating.value = Some(value);
    rating
}

pub(super) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

struct Generator {
    random: Random,
    agents: Vec<Agent>,
    /// (rubric id, criteria) per channel, in CHANNELS order.
    rubrics: Vec<(String, Vec<rpb::Criterion>)>,
    seed: u64,
    start: DateTime<Utc>,
    span_seconds: i64,
}

impl Generator {
    /// Evaluation `index`, dated in order across the six months.
    fn evaluation(&mut self, index: u64, total: u64) -> epb::SubmitEvaluationRequest {
        let random = &mut self.random;
        let agent = &self.agents[random.below(self.agents.len())];
        let offset = (index as f64 + random.unit()) / total.max(1) as f64;
        let reviewed =
            self.start + chrono::Duration::seconds((offset * self.span_seconds as f64) as i64);
        let quality = agent.quality_at(offset * DAYS as f64 / 30.4);
        // Most interactions come in on the agent's own channel.
        let channel_index = if random.unit() < 0.8 {
            CHANNELS
                .iter()
                .position(|c| *c == agent.channel)
                .unwrap_or(0)
        } else {
            random.below(CHANNELS.len())
        };
        let (rubric_id, criteria) = &self.rubrics[channel_index];
        let ratings = criteria
            .iter()
            .map(|criterion| rate(random, criterion, quality))
            .collect();
        let csat = (random.unit() < 0.6).then(|| {
            (1.0 + 4.0 * (0.6 * quality + 0.4 * agent.rapport) + random.normal(0.9))
                .round()
                .clamp(1.0, 5.0) as i32
        });
        let roll = random.unit();
        let (kind, reviewer) = if roll < 0.85 {
            (
                epb::EvaluationKind::Manual,
                REVIEWERS[random.below(REVIEWERS.len())].to_owned(),
            )
        } else if roll < 0.95 {
            (epb::EvaluationKind::Self_, agent.id.to_owned())
        } else {
            (
                epb::EvaluationKind::Calibration,
                REVIEWERS[random.below(REVIEWERS.len())].to_owned(),
            )
        };
        let external_id = format!("demo-{}-{index}", self.seed);
        epb::SubmitEvaluationRequest {
            calibration_session_id: String::new(),
            request_id: external_id.clone(),
            interaction_ref: Some(InteractionRef::Interaction(epb::Interaction {
                source: "demo".into(),
                external_id,
                channel: CHANNELS[channel_index].into(),
                agent_id: agent.id.into(),
                team_id: agent.team.0.into(),
                region: agent.team.1.into(),
                occur_time: Some(timestamp(reviewed - chrono::Duration::hours(6))),
                csat,
                ..Default::default()
            })),
            rubric_id: rubric_id.clone(),
            rubric_version: 0,
            reviewer_id: reviewer,
            kind: kind as i32,
            ratings,
            comment: String::new(),
            create_time: Some(timestamp(reviewed)),
        }
    }
}

/// Creates (or, seeding again, finds) the rubrics and publishes them.
async fn publish_rubrics(
    channel: Channel,
    seed: u64,
) -> Result<Vec<(String, Vec<rpb::Criterion>)>, String> {
    let mut client = RubricServiceClient::new(channel);
    let mut published = Vec::new();
    for (name, draft) in rubrics() {
        let rubric = client
            .create_rubric(rpb::CreateRubricRequest {
                request_id: format!("demo-{seed}-{}", name.to_lowercase().replace(' ', "-")),
                rubric: Some(rpb::Rubric {
                    display_name: name.into(),
                    description: "Demo rubric made by `iqs demo seed`".into(),
                    draft: Some(draft.clone()),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|status| format!("cannot create rubric {name:?}: {}", status.message()))?
            .into_inner();
        let version = client
            .publish_rubric(rpb::PublishRubricRequest {
                id: rubric.id.clone(),
            })
            .await
            .map_err(|status| format!("cannot publish rubric {name:?}: {}", status.message()))?
            .into_inner();
        published.push((version.rubric_id, version.criteria));
    }
    Ok(published)
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<11} [{bar:40}] {human_pos}/{human_len} evaluations ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub async fn seed(config: &Config, args: SeedArgs) -> Result<(), String> {
    let started = Instant::now();
    let store = server::open_store(config)
        .await
        .map_err(|err| err.to_string())?;
    let tenant = store
        .create_tenant(&args.tenant)
        .await
        .map_err(|err| err.to_string())?;
    let mut served = config.clone();
    served.listen_addr = "127.0.0.1:0".parse().map_err(|_| "bad address")?;
    served.auth = AuthMode::Disabled;
    served.default_tenant = tenant.id.as_uuid();
    served.services = ServiceSet::all();
    let server = Server::build(&served)
        .await
        .map_err(|err| err.to_string())?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|err| err.to_string())?
        .connect()
        .await
        .map_err(|err| format!("cannot reach the in-process server: {err}"))?;

    let mut random = Random(args.seed);
    let now = args
        .until
        .unwrap_or_else(|| Utc::now().date_naive())
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let mut generator = Generator {
        agents: agents(&mut random),
        random,
        rubrics: publish_rubrics(channel.clone(), args.seed).await?,
        seed: args.seed,
        start: now - chrono::Duration::days(DAYS),
        span_seconds: chrono::Duration::days(DAYS).num_seconds() - 3_600,
    };
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let bar = progress_bar(args.evaluations);
    bar.set_message("importing");
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    let mut first_rejection = None;
    let mut index = 0;
    while index < args.evaluations {
        let end = (index + ROWS_PER_CALL).min(args.evaluations);
        let rows: Vec<_> = (index..end)
            .map(|i| generator.evaluation(i, args.evaluations))
            .collect();
        let response = evaluations
            .import_evaluations(tokio_stream::iter(rows))
            .await
            .map_err(|status| format!("import failed: {}", status.message()))?
            .into_inner();
        accepted += response.accepted;
        duplicates += response.duplicates;
        rejected += response.rejected_count;
        if first_rejection.is_none() {
            first_rejection = response.rejected.first().map(|r| r.reason.clone());
        }
        bar.inc(end - index);
        index = end;
    }
    bar.set_message("projecting");
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.has_pending().await.map_err(|err| err.to_string())? {
        if Instant::now() > deadline {
            return Err("the projector did not catch up within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_with_message("done");

    let (chat_rubric, chat_criteria) = &generator.rubrics[0];
    let calibration =
        seed_calibration(channel.clone(), args.seed, chat_rubric, chat_criteria).await?;
    let disputes =
        seed_disputes(channel.clone(), args.seed, now, chat_rubric, chat_criteria).await?;
    let improved = generator
        .agents
        .iter()
        .max_by(|a, b| {
            a.improvement_around_coaching()
                .total_cmp(&b.improvement_around_coaching())
        })
        .ok_or("the demo has no agents")?;
    let own_rubric = CHANNELS
        .iter()
        .position(|channel| *channel == improved.channel)
        .unwrap_or(0);
    let coaching = seed_coaching(
        channel.clone(),
        args.seed,
        now,
        improved.id,
        &generator.rubrics[own_rubric].1,
    )
    .await?;
    let assignments = seed_assignments(channel.clone(), args.seed, now, chat_rubric).await?;
    let autoqa = super::demo_autoqa::seed_autoqa(channel.clone(), args.seed, now).await?;
    let summary = summarize(channel, now).await?;
    let _ = stop.send(());
    let _ = serving.await;
    say!(
        "\nSeeded tenant {:?} in {:.1} s: {accepted} evaluations added, {duplicates} already there, \
         {rejected} refused{}.",
        args.tenant,
        started.elapsed().as_secs_f64(),
        first_rejection
            .map(|reason| format!(" (first: {reason})"))
            .unwrap_or_default()
    );
    say!("{summary}");
    say!("{calibration}");
    say!("{disputes}");
    say!("{coaching}");
    say!("{assignments}");
    say!("{autoqa}");
    Ok(())
}

/// The figures a first look at the data shows: best and weakest agents, the weakest
/// criteria, and how IQS and CSAT go together.
async fn summarize(channel: Channel, now: DateTime<Utc>) -> Result<String, String> {
    let mut analytics = AnalyticsServiceClient::new(channel);
    let filter = apb::ScoreFilter {
        time_range: Some(TimeRange {
            start_time: Some(timestamp(now - chrono::Duration::days(DAYS))),
            end_time: Some(timestamp(now)),
        }),
        ..Default::default()
    };
    let failed = |status: tonic::Status| format!("analytics failed: {}", status.message());
    let mut agents = analytics
        .query_scores(apb::QueryScoresRequest {
            filter: Some(filter.clone()),
            group_by: vec![apb::Dimension::Agent as i32],
            interval: apb::Interval::None as i32,
        })
        .await
        .map_err(failed)?
        .into_inner()
        .rows;
    agents.sort_by(|a, b| {
        b.iqs
            .partial_cmp(&a.iqs)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let name = |row: &apb::ScoreRow| row.dimensions.get("agent").cloned().unwrap_or_default();
    let line = |row: &apb::ScoreRow| format!("{} {:.1}", name(row), row.iqs.unwrap_or(f64::NAN));
    let best: Vec<String> = agents.iter().take(3).map(line).collect();
    let weakest: Vec<String> = agents.iter().rev().take(3).map(line).collect();
    let breakdown = analytics
        .get_criterion_breakdown(apb::GetCriterionBreakdownRequest {
            filter: Some(filter.clone()),
            root_cause_limit: 3,
        })
        .await
        .map_err(failed)?
        .into_inner();
    let weakest_criteria: Vec<String> = breakdown
        .criteria
        .iter()
        .take(3)
        .map(|c| {
            format!(
                "{} {:.1}",
                c.criterion_key,
                c.average_score.unwrap_or(f64::NAN)
            )
        })
        .collect();
    let correlation = analytics
        .get_csat_correlation(apb::GetCsatCorrelationRequest {
            filter: Some(filter),
            group_by: apb::Dimension::Agent as i32,
        })
        .await
        .map_err(failed)?
        .into_inner();
    Ok(format!(
        "  best agents (IQS):     {}\n  weakest agents (IQS):  {}\n  weakest criteria:      {}\n  IQS vs CSAT by agent:  Pearson r {}, Spearman rho {} over {} agents",
        best.join(", "),
        weakest.join(", "),
        weakest_criteria.join(", "),
        correlation
            .pearson_r
            .map_or("n/a".into(), |r| format!("{r:.2}")),
        correlation
            .spearman_rho
            .map_or("n/a".into(), |r| format!("{r:.2}")),
        correlation.pairs,
    ))
}
