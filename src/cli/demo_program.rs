//! What `iqs demo seed` adds around the scores: disputes of the lowest recent chat scores
//! (those of two reviewers overturned, the others rejected, one still open, one
//! withdrawn), a coaching session for the agent who improved most, and a weekly sampling
//! plan with this week's assignments. Every request carries a request id or repeats its
//! first content: seeding again changes nothing.

use chrono::{DateTime, Utc};
use tonic::transport::Channel;

use super::bench_client::{Authed, authed};
use super::demo::timestamp;
use crate::proto::analytics::{self as apb, analytics_service_client::AnalyticsServiceClient};
use crate::proto::common::TimeRange;
use crate::proto::evaluation::{
    self as epb, assignment_service_client::AssignmentServiceClient,
    coaching_service_client::CoachingServiceClient, dispute_service_client::DisputeServiceClient,
    evaluation_service_client::EvaluationServiceClient,
};
use crate::proto::rubric as rpb;

/// Reviewers whose disputed scores are overturned: the summary shows them on top.
const OVERTURNED_REVIEWERS: [&str; 2] = ["qa-alex", "qa-blair"];
const DISPUTES: usize = 12;
/// How far back disputed reviews lie: inside the default 14-day window.
const DISPUTED_DAYS: i64 = 12;
/// The coaching session lies mid-way through the six months; its impact is read over
/// this many days either side.
const COACHING_DAYS_AGO: i64 = 91;
const IMPACT_WINDOW_DAYS: u32 = 56;

pub(super) fn failed(what: &'static str) -> impl Fn(tonic::Status) -> String {
    move |status| format!("cannot {what}: {}", status.message())
}

/// The rating a disputing agent asks for: its lowest rated criterion at the top of the
/// scale.
fn proposal(evaluation: &epb::Evaluation, criteria: &[rpb::Criterion]) -> Option<epb::Rating> {
    evaluation
        .ratings
        .iter()
        .filter_map(|rating| {
            let criterion = criteria.iter().find(|c| c.key == rating.criterion_key)?;
            let value = rating.value?;
            let span = f64::from(criterion.scale_max - criterion.scale_min);
            let share = f64::from(value - criterion.scale_min) / span;
            (value < criterion.scale_max).then_some((share, criterion))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, criterion)| epb::Rating {
            criterion_key: criterion.key.clone(),
            value: Some(criterion.scale_max),
            ..Default::default()
        })
}

/// The evaluation's ratings with `changed` in place of its criterion's.
fn with_rating(evaluation: &epb::Evaluation, changed: &epb::Rating) -> Vec<epb::Rating> {
    evaluation
        .ratings
        .iter()
        .map(|rating| {
            if rating.criterion_key == changed.criterion_key {
                changed.clone()
            } else {
                rating.clone()
            }
        })
        .collect()
}

/// Seeds the disputes; a line for the summary.
pub async fn seed_disputes(
    channel: Channel,
    seed: u64,
    now: DateTime<Utc>,
    rubric_id: &str,
    criteria: &[rpb::Criterion],
) -> Result<String, String> {
    let channel = authed(channel, None);
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let mut disputes = DisputeServiceClient::new(channel.clone());
    // First revisions keep the score that was disputed, so a second seeding picks the
    // same evaluations after the first one revised some.
    let mut candidates: Vec<epb::Evaluation> = evaluations
        .list_evaluations(epb::ListEvaluationsRequest {
            page_size: 1_000,
            rubric_id: rubric_id.into(),
            kinds: vec![epb::EvaluationKind::Manual as i32],
            include_inactive: true,
            time_range: Some(TimeRange {
                start_time: Some(timestamp(now - chrono::Duration::days(DISPUTED_DAYS))),
                end_time: Some(timestamp(now)),
            }),
            ..Default::default()
        })
        .await
        .map_err(failed("list recent evaluations"))?
        .into_inner()
        .evaluations
        .into_iter()
        .filter(|evaluation| evaluation.revision == 1 && evaluation.score.is_some())
        .collect();
    candidates.sort_by(|a, b| {
        a.score
            .unwrap_or_default()
            .total_cmp(&b.score.unwrap_or_default())
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut opened = 0;
    for (index, evaluation) in candidates.iter().take(DISPUTES).enumerate() {
        let Some(proposed) = proposal(evaluation, criteria) else {
            continue;
        };
        let dispute = disputes
            .open_dispute(epb::OpenDisputeRequest {
                request_id: format!("demo-{seed}-dispute-{}", evaluation.id),
                evaluation_id: evaluation.id.clone(),
                comment: format!(
                    "The customer's own words show the {} was handled; please look again.",
                    proposed.criterion_key.replace('_', " ")
                ),
                proposed_ratings: vec![proposed.clone()],
            })
            .await;
        let dispute = match dispute {
            Ok(dispute) => dispute.into_inner(),
            // Seeded for a day long past (`--until`): the window is over.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
            Err(status) => return Err(failed("open a dispute")(status)),
        };
        opened += 1;
        if dispute.state != epb::DisputeState::Open as i32 {
            continue;
        }
        let resolution = match index {
            i if i == DISPUTES - 1 => None,
            i if i == DISPUTES - 2 => {
                disputes
                    .withdraw_dispute(epb::WithdrawDisputeRequest { id: dispute.id })
                    .await
                    .map_err(failed("withdraw a dispute"))?;
                continue;
            }
            _ if OVERTURNED_REVIEWERS.contains(&evaluation.reviewer_id.as_str()) => {
                let outcome = if index % 2 == 0 {
                    epb::DisputeOutcome::Accepted
                } else {
                    epb::DisputeOutcome::PartiallyAccepted
                };
                Some((outcome, with_rating(evaluation, &proposed)))
            }
            _ => Some((epb::DisputeOutcome::Rejected, Vec::new())),
        };
        if let Some((outcome, ratings)) = resolution {
            let comment = if ratings.is_empty() {
                "The transcript supports the original rating.".to_owned()
            } else {
                "Agreed after listening to the call again.".to_owned()
            };
            disputes
                .resolve_dispute(epb::ResolveDisputeRequest {
                    id: dispute.id,
                    outcome: outcome as i32,
                    ratings,
                    comment,
                })
                .await
                .map_err(failed("resolve a dispute"))?;
        }
    }
    let summary = AnalyticsServiceClient::new(channel)
        .get_dispute_summary(apb::GetDisputeSummaryRequest {
            group_by: apb::Dimension::Reviewer as i32,
            ..Default::default()
        })
        .await
        .map_err(failed("read the dispute summary"))?
        .into_inner();
    let reviewers: Vec<String> = summary
        .rows
        .iter()
        .take(3)
        .map(|row| {
            format!(
                "{} {}",
                row.dimensions.get("reviewer").cloned().unwrap_or_default(),
                row.overturn_rate
                    .map_or("n/a".into(), |rate| format!("{:.0}%", rate * 100.0))
            )
        })
        .collect();
    Ok(format!(
        "  disputes:              {opened} of the lowest recent chat scores; most overturned: {}",
        reviewers.join(", ")
    ))
}

/// When the coaching session lies and how long its impact windows are, in months from
/// the start of the demo's six months.
pub fn coaching_months() -> (f64, f64) {
    const DAYS_PER_MONTH: f64 = 30.4;
    (
        (super::demo::DAYS - COACHING_DAYS_AGO) as f64 / DAYS_PER_MONTH,
        f64::from(IMPACT_WINDOW_DAYS) / DAYS_PER_MONTH,
    )
}

/// Seeds a coaching session for `agent_id` on two soft-skill criteria of its channel's
/// rubric; a line for the summary.
pub async fn seed_coaching(
    channel: Channel,
    seed: u64,
    now: DateTime<Utc>,
    agent_id: &str,
    criteria: &[rpb::Criterion],
) -> Result<String, String> {
    let channel: Authed = authed(channel, None);
    let mut coaching = CoachingServiceClient::new(channel.clone());
    let session_time = now - chrono::Duration::days(COACHING_DAYS_AGO);
    let session = coaching
        .create_coaching_session(epb::CreateCoachingSessionRequest {
            request_id: format!("demo-{seed}-coaching-{agent_id}"),
            session: Some(epb::CoachingSession {
                agent_id: agent_id.into(),
                coach_id: "qa-lead".into(),
                // Soft skills, not the pass/fail compliance checks.
                criterion_keys: criteria
                    .iter()
                    .filter(|c| c.scale_max - c.scale_min >= 3)
                    .take(2)
                    .map(|c| c.key.clone())
                    .collect(),
                notes: "Walked through three low-scoring chats; agreed on the opening and \
                        on confirming the resolution before closing."
                    .into(),
                session_time: Some(timestamp(session_time)),
                action_items: vec![
                    epb::ActionItem {
                        description: "Use the greeting macro on every chat".into(),
                        due_time: Some(timestamp(session_time + chrono::Duration::days(7))),
                        ..Default::default()
                    },
                    epb::ActionItem {
                        description: "Shadow a senior agent for two shifts".into(),
                        due_time: Some(timestamp(session_time + chrono::Duration::days(14))),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        })
        .await
        .map_err(failed("record a coaching session"))?
        .into_inner();
    if let Some(first) = session.action_items.first() {
        coaching
            .update_action_item(epb::UpdateActionItemRequest {
                session_id: session.id.clone(),
                action_item_id: first.id.clone(),
                done: true,
            })
            .await
            .map_err(failed("complete an action item"))?;
    }
    let impact = AnalyticsServiceClient::new(channel)
        .get_coaching_impact(apb::GetCoachingImpactRequest {
            session_id: session.id.clone(),
            window_days: IMPACT_WINDOW_DAYS,
        })
        .await
        .map_err(failed("read the coaching impact"))?
        .into_inner();
    let iqs = |window: Option<&apb::ImpactWindow>| {
        window
            .and_then(|w| w.iqs)
            .map_or("n/a".into(), |iqs| format!("{iqs:.1}"))
    };
    Ok(format!(
        "  coaching:              session {} for {agent_id}: IQS {} -> {} in the {IMPACT_WINDOW_DAYS} days either side (Welch p {})",
        session.id,
        iqs(impact.before.as_ref()),
        iqs(impact.after.as_ref()),
        impact.p_value.map_or("n/a".into(), |p| if p < 0.001 {
            "< 0.001".into()
        } else {
            format!("{p:.3}")
        }),
    ))
}

/// The demo's reviewers, who share the sampled chats.
const SAMPLING_REVIEWERS: [&str; 6] = [
    "qa-alex", "qa-blair", "qa-casey", "qa-drew", "qa-eden", "qa-flynn",
];

/// Seeds a weekly plan of the chat rubric and samples the last week of the data; a line
/// for the summary.
pub async fn seed_assignments(
    channel: Channel,
    seed: u64,
    now: DateTime<Utc>,
    rubric_id: &str,
) -> Result<String, String> {
    let mut plans = AssignmentServiceClient::new(authed(channel, None));
    let plan = plans
        .create_sampling_plan(epb::CreateSamplingPlanRequest {
            request_id: format!("demo-{seed}-weekly-plan"),
            plan: Some(epb::SamplingPlan {
                display_name: "Weekly chat sample".into(),
                rubric_id: rubric_id.into(),
                filter: Some(epb::SamplingFilter {
                    channels: vec!["chat".into()],
                    ..Default::default()
                }),
                per_agent_count: 2,
                period: epb::SamplingPeriod::Week as i32,
                strategy: epb::SamplingStrategy::LowCsatFirst as i32,
                reviewer_ids: SAMPLING_REVIEWERS.iter().map(|r| r.to_string()).collect(),
                seed,
                ..Default::default()
            }),
        })
        .await
        .map_err(failed("create a sampling plan"))?
        .into_inner();
    let run = plans
        .run_sampling(epb::RunSamplingRequest {
            plan_id: plan.id.clone(),
            period_start: Some(timestamp(now - chrono::Duration::days(1))),
        })
        .await
        .map_err(failed("run the sampling plan"))?
        .into_inner();
    Ok(format!(
        "  assignments:           plan {} (chat, 2 per agent a week, lowest CSAT first): {} in the week of {} for {} reviewers, {} agents short",
        plan.id,
        run.created + run.already_assigned,
        run.period_start
            .and_then(|start| DateTime::from_timestamp(start.seconds, 0))
            .map_or_else(String::new, |start| start.date_naive().to_string()),
        SAMPLING_REVIEWERS.len(),
        run.short_agents.len(),
    ))
}
