//! Disputes: the rules under which an agent contests a score and a lead decides, and the
//! summary that shows which reviewers get overturned.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::evaluation::{Evaluation, EvaluationState};
use super::scoring::Rating;

/// How long after an evaluation revision its agent may dispute it, unless the tenant
/// configures otherwise (`iqs tenant configure --dispute-window-days`).
pub const DEFAULT_WINDOW_DAYS: u32 = 14;
pub const MAX_WINDOW_DAYS: u32 = 365;
/// Disputes an evaluation may have in its life, withdrawn ones included, so that a
/// score cannot be contested without end.
pub const MAX_DISPUTES_PER_EVALUATION: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeState {
    Open,
    Resolved,
    Withdrawn,
}

impl DisputeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Resolved, Self::Withdrawn]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeOutcome {
    Accepted,
    PartiallyAccepted,
    Rejected,
}

impl DisputeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::PartiallyAccepted => "partially_accepted",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Accepted, Self::PartiallyAccepted, Self::Rejected]
            .into_iter()
            .find(|outcome| outcome.as_str() == value)
    }

    /// Whether the evaluation is revised: the reviewer is overturned, wholly or in part.
    pub fn overturns(self) -> bool {
        !matches!(self, Self::Rejected)
    }
}

/// Serialized as it was when a webhook event was written about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: Uuid,
    pub evaluation_id: Uuid,
    pub evaluation_revision: u32,
    pub agent_id: String,
    pub team_id: String,
    pub reviewer_id: String,
    pub state: DisputeState,
    pub outcome: Option<DisputeOutcome>,
    pub comment: String,
    pub proposed_ratings: Vec<Rating>,
    pub contested_criteria: Vec<String>,
    pub resolution_comment: String,
    pub resolver_id: String,
    pub resolved_revision: Option<u32>,
    pub open_time: DateTime<Utc>,
    pub resolve_time: Option<DateTime<Utc>>,
}

/// A dispute checked for content, to be opened against `evaluation_revision`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDispute {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    pub evaluation_id: Uuid,
    pub evaluation_revision: u32,
    pub comment: String,
    pub proposed_ratings: Vec<Rating>,
    pub contested_criteria: Vec<String>,
}

/// The criteria whose proposed rating differs from the evaluation's (a criterion left
/// out of the evaluation counts as N/A).
pub fn contested_criteria(current: &[Rating], proposed: &[Rating]) -> Vec<String> {
    proposed
        .iter()
        .filter(|wanted| {
            let given = current
                .iter()
                .find(|rating| rating.criterion_key == wanted.criterion_key);
            let given_value = given.and_then(|rating| rating.value);
            given_value != wanted.value
        })
        .map(|rating| rating.criterion_key.clone())
        .collect()
}

/// Why an agent may not open a dispute now: each rule has its own answer.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenRefusal {
    Deleted,
    /// The evaluation was revised after the agent read it: dispute the new revision.
    Revised {
        now: u32,
    },
    WindowOver {
        days: u32,
        closed: DateTime<Utc>,
    },
    AlreadyOpen {
        dispute: Uuid,
    },
    TooMany,
}

impl OpenRefusal {
    pub fn message(&self, evaluation: Uuid) -> String {
        match self {
            Self::Deleted => {
                format!("evaluation {evaluation} is deleted: there is nothing to dispute")
            }
            Self::Revised { now } => format!(
                "evaluation {evaluation} was revised concurrently (now at revision {now}); retry"
            ),
            Self::WindowOver { days, closed } => format!(
                "the dispute window is over: an evaluation revision may be disputed for {days} days, until {}",
                closed.to_rfc3339()
            ),
            Self::AlreadyOpen { dispute } => format!(
                "evaluation {evaluation} already has an open dispute ({dispute}): one at a time"
            ),
            Self::TooMany => format!(
                "evaluation {evaluation} has had {MAX_DISPUTES_PER_EVALUATION} disputes, the most an evaluation may have"
            ),
        }
    }
}

/// Whether a dispute may be opened on the current revision of `evaluation`, given its
/// earlier disputes and the tenant's window.
pub fn check_open(
    evaluation: &Evaluation,
    disputed_revision: u32,
    earlier: &[Dispute],
    window_days: u32,
    now: DateTime<Utc>,
) -> Result<(), OpenRefusal> {
    if evaluation.state == EvaluationState::Deleted {
        return Err(OpenRefusal::Deleted);
    }
    if evaluation.revision != disputed_revision {
        return Err(OpenRefusal::Revised {
            now: evaluation.revision,
        });
    }
    let closed = evaluation.create_time + Duration::days(i64::from(window_days));
    if now >= closed {
        return Err(OpenRefusal::WindowOver {
            days: window_days,
            closed,
        });
    }
    if let Some(open) = earlier.iter().find(|d| d.state == DisputeState::Open) {
        return Err(OpenRefusal::AlreadyOpen { dispute: open.id });
    }
    if earlier.len() >= MAX_DISPUTES_PER_EVALUATION {
        return Err(OpenRefusal::TooMany);
    }
    Ok(())
}

/// How a resolution decides a dispute.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub outcome: DisputeOutcome,
    pub comment: String,
    pub resolver_id: String,
    pub fingerprint: Vec<u8>,
}

/// What GetDisputeSummary groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryDimension {
    Reviewer,
    Agent,
    Team,
    Criterion,
}

impl SummaryDimension {
    pub fn name(self) -> &'static str {
        match self {
            Self::Reviewer => "reviewer",
            Self::Agent => "agent",
            Self::Team => "team",
            Self::Criterion => "criterion",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryRow {
    pub group: String,
    pub opened: u64,
    pub open: u64,
    pub accepted: u64,
    pub partially_accepted: u64,
    pub rejected: u64,
    pub withdrawn: u64,
    pub overturn_rate: Option<f64>,
    pub median_resolution_seconds: Option<f64>,
}

/// Counts the disputes per group: every dispute once in its reviewer's, agent's or
/// team's group, or once per contested criterion. Highest overturn rate first, then
/// most opened, then by name; groups with nothing resolved last.
pub fn summarize(disputes: &[Dispute], by: SummaryDimension) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<&str, (SummaryRow, Vec<f64>)> = BTreeMap::new();
    for dispute in disputes {
        let keys: Vec<&str> = match by {
            SummaryDimension::Reviewer => vec![dispute.reviewer_id.as_str()],
            SummaryDimension::Agent => vec![dispute.agent_id.as_str()],
            SummaryDimension::Team => vec![dispute.team_id.as_str()],
            SummaryDimension::Criterion => dispute
                .contested_criteria
                .iter()
                .map(String::as_str)
                .collect(),
        };
        for key in keys {
            let (row, durations) = groups.entry(key).or_default();
            row.opened += 1;
            match (dispute.state, dispute.outcome) {
                (DisputeState::Open, _) => row.open += 1,
                (DisputeState::Withdrawn, _) => row.withdrawn += 1,
                (DisputeState::Resolved, outcome) => {
                    match outcome {
                        Some(DisputeOutcome::Accepted) => row.accepted += 1,
                        Some(DisputeOutcome::PartiallyAccepted) => row.partially_accepted += 1,
                        Some(DisputeOutcome::Rejected) | None => row.rejected += 1,
                    }
                    if let Some(resolved) = dispute.resolve_time {
                        let seconds = (resolved - dispute.open_time).num_microseconds();
                        durations.push(seconds.unwrap_or(i64::MAX) as f64 / 1e6);
                    }
                }
            }
        }
    }
    let mut rows: Vec<SummaryRow> = groups
        .into_iter()
        .map(|(group, (mut row, mut durations))| {
            row.group = group.to_owned();
            let resolved = row.accepted + row.partially_accepted + row.rejected;
            row.overturn_rate = (resolved > 0)
                .then(|| (row.accepted + row.partially_accepted) as f64 / resolved as f64);
            row.median_resolution_seconds = median(&mut durations);
            row
        })
        .collect();
    rows.sort_by(|a, b| {
        let rate = |row: &SummaryRow| row.overturn_rate.unwrap_or(-1.0);
        rate(b)
            .total_cmp(&rate(a))
            .then(b.opened.cmp(&a.opened))
            .then(a.group.cmp(&b.group))
    });
    rows
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::evaluation::EvaluationKind;
    use crate::domain::scoring::ScoreOutcome;

    fn rating(key: &str, value: Option<i32>) -> Rating {
        Rating {
            criterion_key: key.into(),
            value,
            not_applicable: value.is_none(),
            comment: String::new(),
            root_causes: Vec::new(),
            explanation: String::new(),
        }
    }

    fn evaluation(created: DateTime<Utc>) -> Evaluation {
        Evaluation {
            id: Uuid::nil(),
            revision: 1,
            interaction_id: Uuid::nil(),
            agent_id: "a".into(),
            team_id: "t".into(),
            channel: "chat".into(),
            region: "eu".into(),
            rubric_id: Uuid::nil(),
            rubric_version: 1,
            reviewer_id: "r".into(),
            kind: EvaluationKind::Manual,
            ratings: Vec::new(),
            comment: String::new(),
            outcome: ScoreOutcome {
                score: Some(50.0),
                section_scores: Vec::new(),
                criterion_scores: Vec::new(),
                critical_failed: false,
                passed: false,
            },
            state: EvaluationState::Active,
            calibration_session_id: None,
            acknowledge_time: None,
            create_time: created,
            first_create_time: created,
        }
    }

    fn dispute(
        reviewer: &str,
        state: DisputeState,
        outcome: Option<DisputeOutcome>,
        hours: i64,
    ) -> Dispute {
        let open_time = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Dispute {
            id: Uuid::now_v7(),
            evaluation_id: Uuid::now_v7(),
            evaluation_revision: 1,
            agent_id: "agent".into(),
            team_id: "team".into(),
            reviewer_id: reviewer.into(),
            state,
            outcome,
            comment: "c".into(),
            proposed_ratings: Vec::new(),
            contested_criteria: vec!["greeting".into(), "tone".into()],
            resolution_comment: String::new(),
            resolver_id: String::new(),
            resolved_revision: None,
            open_time,
            resolve_time: (state != DisputeState::Open).then(|| open_time + Duration::hours(hours)),
        }
    }

    #[test]
    fn only_proposals_that_change_a_rating_are_contested() {
        let current = [rating("greeting", Some(2)), rating("tone", Some(3))];
        let proposed = [
            rating("greeting", Some(2)),
            rating("tone", Some(4)),
            rating("empathy", Some(1)),
        ];
        assert_eq!(contested_criteria(&current, &proposed), ["tone", "empathy"]);
    }

    #[test]
    fn a_dispute_is_refused_after_the_window_while_one_is_open_and_after_two() {
        let created = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let evaluation = evaluation(created);
        let inside = created + Duration::days(13);
        assert_eq!(check_open(&evaluation, 1, &[], 14, inside), Ok(()));
        let closed = created + Duration::days(14);
        assert_eq!(
            check_open(&evaluation, 1, &[], 14, closed),
            Err(OpenRefusal::WindowOver { days: 14, closed })
        );
        assert_eq!(
            check_open(&evaluation, 2, &[], 14, inside),
            Err(OpenRefusal::Revised { now: 1 })
        );
        let open = dispute("r", DisputeState::Open, None, 0);
        assert_eq!(
            check_open(&evaluation, 1, std::slice::from_ref(&open), 14, inside),
            Err(OpenRefusal::AlreadyOpen { dispute: open.id })
        );
        let withdrawn = dispute("r", DisputeState::Withdrawn, None, 1);
        let rejected = dispute(
            "r",
            DisputeState::Resolved,
            Some(DisputeOutcome::Rejected),
            1,
        );
        assert_eq!(
            check_open(&evaluation, 1, &[withdrawn, rejected], 14, inside),
            Err(OpenRefusal::TooMany)
        );
        let deleted = Evaluation {
            state: EvaluationState::Deleted,
            ..evaluation
        };
        assert_eq!(
            check_open(&deleted, 1, &[], 14, inside),
            Err(OpenRefusal::Deleted)
        );
    }

    #[test]
    fn the_summary_counts_outcomes_and_puts_the_most_overturned_reviewer_first() {
        use DisputeOutcome::*;
        use DisputeState::*;
        let disputes = [
            dispute("kind", Resolved, Some(Rejected), 2),
            dispute("kind", Resolved, Some(Rejected), 4),
            dispute("kind", Withdrawn, None, 1),
            dispute("harsh", Resolved, Some(Accepted), 1),
            dispute("harsh", Resolved, Some(PartiallyAccepted), 3),
            dispute("harsh", Resolved, Some(Rejected), 10),
            dispute("harsh", Open, None, 0),
        ];
        let rows = summarize(&disputes, SummaryDimension::Reviewer);
        assert_eq!(rows.len(), 2);
        let harsh = &rows[0];
        assert_eq!(harsh.group, "harsh");
        assert_eq!(
            (
                harsh.opened,
                harsh.open,
                harsh.accepted,
                harsh.partially_accepted,
                harsh.rejected
            ),
            (4, 1, 1, 1, 1)
        );
        assert!((harsh.overturn_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(harsh.median_resolution_seconds, Some(3.0 * 3600.0));
        let kind = &rows[1];
        assert_eq!((kind.withdrawn, kind.rejected), (1, 2));
        assert_eq!(kind.overturn_rate, Some(0.0));
        assert_eq!(kind.median_resolution_seconds, Some(3.0 * 3600.0));
        let by_criterion = summarize(&disputes, SummaryDimension::Criterion);
        assert_eq!(by_criterion.len(), 2);
        assert!(by_criterion.iter().all(|row| row.opened == 7));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
