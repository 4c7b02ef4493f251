//! Many evaluations (SCORING.md): how an evaluation contributes to rollups, how events
//! replace each other, and the figures of a set (IQS, pass rate, averages).

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use super::evaluation::{EvaluationEvent, EvaluationKind, EvaluationState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Agent,
    Team,
    Channel,
    Region,
    Rubric,
    Reviewer,
}

impl Dimension {
    /// Whether the coarse rollup (summed over agents and reviewers) can answer for it.
    pub fn in_team_rollup(self) -> bool {
        !matches!(self, Self::Agent | Self::Reviewer)
    }

    /// The column holding it, in facts and rollups alike.
    pub fn column(self) -> &'static str {
        match self {
            Self::Agent => "agent_id",
            Self::Team => "team_id",
            Self::Channel => "channel",
            Self::Region => "region",
            Self::Rubric => "rubric_id",
            Self::Reviewer => "reviewer_id",
        }
    }

    /// Its key in `ScoreRow.dimensions`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Team => "team",
            Self::Channel => "channel",
            Self::Region => "region",
            Self::Rubric => "rubric",
            Self::Reviewer => "reviewer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    None,
    Day,
    Week,
    Month,
}

impl Interval {
    /// The `date_trunc` unit, if any.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Day => Some("day"),
            Self::Week => Some("week"),
            Self::Month => Some("month"),
        }
    }
}

/// Which evaluations a figure covers: the current revision of each, not deleted, whose
/// first revision was created in `[start, end)`, of the given kinds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreFilter {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub agent_ids: Vec<String>,
    pub team_ids: Vec<String>,
    pub channels: Vec<String>,
    pub regions: Vec<String>,
    pub rubric_id: Option<Uuid>,
    /// Never empty: MANUAL unless the caller names kinds.
    pub kinds: Vec<EvaluationKind>,
}

/// Sums and counts of a set of evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub evaluation_count: i64,
    pub scored_count: i64,
    pub score_sum: f64,
    pub passed_count: i64,
    pub critical_fail_count: i64,
    pub csat_sum: i64,
    pub csat_count: i64,
}

impl Totals {
    /// The mean score of the scored evaluations; absent for none.
    pub fn iqs(&self) -> Option<f64> {
        (self.scored_count > 0).then(|| self.score_sum / self.scored_count as f64)
    }

    /// passed / scored; 0 when nothing was scored.
    pub fn pass_rate(&self) -> f64 {
        if self.scored_count > 0 {
            self.passed_count as f64 / self.scored_count as f64
        } else {
            0.0
        }
    }

    pub fn avg_csat(&self) -> Option<f64> {
        (self.csat_count > 0).then(|| self.csat_sum as f64 / self.csat_count as f64)
    }

    fn add(&mut self, event: &EvaluationEvent, sign: i64) {
        self.evaluation_count += sign;
        if let Some(score) = event.score {
            self.scored_count += sign;
            self.score_sum += sign as f64 * score;
        }
        self.passed_count += sign * i64::from(event.passed);
        self.critical_fail_count += sign * i64::from(event.critical_failed);
        if let Some(csat) = event.csat {
            self.csat_sum += sign * i64::from(csat);
            self.csat_count += sign;
        }
    }
}

/// The dimensions and UTC day an evaluation is rolled up under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollupKey {
    pub tenant_id: Uuid,
    pub day: NaiveDate,
    pub agent_id: String,
    pub team_id: String,
    pub channel: String,
    pub region: String,
    pub rubric_id: Uuid,
    pub reviewer_id: String,
    pub kind: EvaluationKind,
}

impl RollupKey {
    /// The key of the coarser rollup that sums over agents and reviewers.
    pub fn without_agent_and_reviewer(&self) -> Self {
        Self {
            agent_id: String::new(),
            reviewer_id: String::new(),
            ..self.clone()
        }
    }

    pub fn of(tenant_id: Uuid, event: &EvaluationEvent) -> Self {
        Self {
            tenant_id,
            day: event.first_create_time.date_naive(),
            agent_id: event.agent_id.clone(),
            team_id: event.team_id.clone(),
            channel: event.channel.clone(),
            region: event.region.clone(),
            rubric_id: event.rubric_id,
            reviewer_id: event.reviewer_id.clone(),
            kind: event.kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanDelta {
    pub sum: f64,
    pub count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CriterionDelta {
    pub score_sum: f64,
    pub rated_count: i64,
    pub not_applicable_count: i64,
}

/// Changes to the rollups from a batch of events, summed per rollup row.
#[derive(Debug, Default)]
pub struct RollupDeltas {
    pub scores: HashMap<RollupKey, Totals>,
    /// The same, summed over every agent and reviewer (their ids blank).
    pub team_scores: HashMap<RollupKey, Totals>,
    pub sections: HashMap<(RollupKey, String), MeanDelta>,
    pub criteria: HashMap<(RollupKey, String), CriterionDelta>,
    pub root_causes: HashMap<(RollupKey, String, String), i64>,
}

impl RollupDeltas {
    /// Adds (`sign` 1) or removes (`sign` -1) an evaluation's contribution.
    pub fn add(&mut self, tenant_id: Uuid, event: &EvaluationEvent, sign: i64) {
        let key = RollupKey::of(tenant_id, event);
        self.scores.entry(key.clone()).or_default().add(event, sign);
        self.team_scores
            .entry(key.without_agent_and_reviewer())
            .or_default()
            .add(event, sign);
        for section in &event.section_scores {
            if let Some(score) = section.score {
                let delta = self
                    .sections
                    .entry((key.clone(), section.section.clone()))
                    .or_default();
                delta.sum += sign as f64 * score;
                delta.count += sign;
            }
        }
        for criterion in &event.criterion_scores {
            let delta = self
                .criteria
                .entry((key.clone(), criterion.criterion_key.clone()))
                .or_default();
            match criterion.score {
                Some(score) => {
                    delta.score_sum += sign as f64 * score;
                    delta.rated_count += sign;
                }
                None => delta.not_applicable_count += sign,
            }
        }
        for (criterion_key, cause) in &event.root_causes {
            *self
                .root_causes
                .entry((key.clone(), criterion_key.clone(), cause.clone()))
                .or_default() += sign;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// How an event changes the stored fact of its evaluation.
#[derive(Debug, PartialEq)]
pub enum Transition<'a> {
    /// The fact already reflects this or a later change.
    Stale,
    Apply {
        /// The contribution to take out of the rollups.
        remove: Option<&'a EvaluationEvent>,
        /// The contribution to put in.
        add: Option<&'a EvaluationEvent>,
    },
}

fn order(event: &EvaluationEvent) -> (u32, u8) {
    (
        event.revision,
        u8::from(event.state == EvaluationState::Deleted),
    )
}

/// An event replaces the fact when it describes a later revision, or the deletion of
/// the same one; an active fact's contribution is removed, an active event's added.
pub fn transition<'a>(
    current: Option<&'a EvaluationEvent>,
    event: &'a EvaluationEvent,
) -> Transition<'a> {
    if let Some(current) = current
        && order(current) >= order(event)
    {
        return Transition::Stale;
    }
    let counted = |e: &'a EvaluationEvent| (e.state == EvaluationState::Active).then_some(e);
    Transition::Apply {
        remove: current.and_then(counted),
        add: counted(event),
    }
}

/// A half-open time range; an absent bound is open.
pub type TimeBounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A time range split into whole UTC days, answered from daily rollups, and the partial
/// days at its edges, answered from facts.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSplit {
    /// `[first, last)` days from the rollups (an open bound is `None`); `None` = no day.
    pub days: Option<(Option<NaiveDate>, Option<NaiveDate>)>,
    /// Half-open time ranges from the facts.
    pub edges: Vec<TimeBounds>,
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

pub fn split_time(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> TimeSplit {
    let first_day = start.map(|s| {
        let day = s.date_naive();
        if midnight(day) == s {
            day
        } else {
            day + Duration::days(1)
        }
    });
    let last_day = end.map(|e| e.date_naive());
    if let (Some(first), Some(last)) = (first_day, last_day)
        && first >= last
    {
        return TimeSplit {
            days: None,
            edges: if start < end {
                vec![(start, end)]
            } else {
                Vec::new()
            },
        };
    }
    let mut edges = Vec::new();
    if let (Some(s), Some(first)) = (start, first_day)
        && midnight(first) != s
    {
        edges.push((Some(s), Some(midnight(first))));
    }
    if let (Some(e), Some(last)) = (end, last_day)
        && midnight(last) != e
    {
        edges.push((Some(midnight(last)), Some(e)));
    }
    TimeSplit {
        days: Some((first_day, last_day)),
        edges,
    }
}

/// The period of the same length just before `[start, end)`.
pub fn previous_period(start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (start - (end - start), start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scoring::{CriterionScore, SectionScore};

    fn event(revision: u32, state: EvaluationState, score: Option<f64>) -> EvaluationEvent {
        EvaluationEvent {
            evaluation_id: Uuid::nil(),
            revision,
            state,
            interaction_id: Uuid::nil(),
            agent_id: "a".into(),
            team_id: "t".into(),
            channel: "chat".into(),
            region: "emea".into(),
            rubric_id: Uuid::nil(),
            rubric_version: 1,
            reviewer_id: "r".into(),
            kind: EvaluationKind::Manual,
            score,
            passed: score.is_some_and(|s| s >= 80.0),
            critical_failed: false,
            section_scores: vec![SectionScore {
                section: "".into(),
                score,
            }],
            criterion_scores: vec![
                CriterionScore {
                    criterion_key: "x".into(),
                    score,
                },
                CriterionScore {
                    criterion_key: "y".into(),
                    score: None,
                },
            ],
            root_causes: vec![("x".into(), "slow".into())],
            csat: Some(4),
            first_create_time: "2026-03-04T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_first_event_adds_and_a_revision_swaps_contributions() {
        let first = event(1, EvaluationState::Active, Some(60.0));
        assert_eq!(
            transition(None, &first),
            Transition::Apply {
                remove: None,
                add: Some(&first)
            }
        );
        let second = event(2, EvaluationState::Active, Some(90.0));
        assert_eq!(
            transition(Some(&first), &second),
            Transition::Apply {
                remove: Some(&first),
                add: Some(&second)
            }
        );
    }

    #[test]
    fn a_deletion_removes_and_older_or_repeated_events_are_stale() {
        let active = event(2, EvaluationState::Active, Some(90.0));
        let deleted = event(2, EvaluationState::Deleted, Some(90.0));
        assert_eq!(
            transition(Some(&active), &deleted),
            Transition::Apply {
                remove: Some(&active),
                add: None
            }
        );
        assert_eq!(transition(Some(&deleted), &active), Transition::Stale);
        assert_eq!(transition(Some(&active), &active), Transition::Stale);
        assert_eq!(
            transition(Some(&active), &event(1, EvaluationState::Active, None)),
            Transition::Stale
        );
    }

    #[test]
    fn adding_then_removing_a_contribution_leaves_zero() {
        let mut deltas = RollupDeltas::default();
        let e = event(1, EvaluationState::Active, Some(75.5));
        deltas.add(Uuid::nil(), &e, 1);
        let key = RollupKey::of(Uuid::nil(), &e);
        assert_eq!(deltas.scores[&key].scored_count, 1);
        assert_eq!(
            deltas.criteria[&(key.clone(), "y".into())].not_applicable_count,
            1
        );
        assert_eq!(
            deltas.root_causes[&(key.clone(), "x".into(), "slow".into())],
            1
        );
        assert_eq!(
            deltas.team_scores[&key.without_agent_and_reviewer()].evaluation_count,
            1
        );
        deltas.add(Uuid::nil(), &e, -1);
        assert_eq!(deltas.scores[&key], Totals::default());
        assert_eq!(
            deltas.team_scores[&key.without_agent_and_reviewer()],
            Totals::default()
        );
        assert_eq!(deltas.sections[&(key, String::new())], MeanDelta::default());
    }

    #[test]
    fn totals_give_iqs_pass_rate_and_csat() {
        let mut totals = Totals::default();
        assert_eq!(
            (totals.iqs(), totals.pass_rate(), totals.avg_csat()),
            (None, 0.0, None)
        );
        totals.add(&event(1, EvaluationState::Active, Some(100.0)), 1);
        totals.add(&event(1, EvaluationState::Active, Some(60.0)), 1);
        totals.add(&event(1, EvaluationState::Active, None), 1);
        assert_eq!(totals.iqs(), Some(80.0));
        assert_eq!(totals.pass_rate(), 0.5);
        assert_eq!(totals.evaluation_count, 3);
        assert_eq!(totals.avg_csat(), Some(4.0));
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_range_splits_into_whole_days_and_partial_edges() {
        let split = split_time(
            Some(at("2026-03-01T06:00:00Z")),
            Some(at("2026-03-05T12:00:00Z")),
        );
        assert_eq!(
            split.days,
            Some((Some(day("2026-03-02")), Some(day("2026-03-05"))))
        );
        assert_eq!(
            split.edges,
            vec![
                (
                    Some(at("2026-03-01T06:00:00Z")),
                    Some(at("2026-03-02T00:00:00Z"))
                ),
                (
                    Some(at("2026-03-05T00:00:00Z")),
                    Some(at("2026-03-05T12:00:00Z"))
                ),
            ]
        );
    }

    #[test]
    fn aligned_and_open_ranges_need_no_edges() {
        let aligned = split_time(
            Some(at("2026-03-01T00:00:00Z")),
            Some(at("2026-04-01T00:00:00Z")),
        );
        assert_eq!(
            aligned.days,
            Some((Some(day("2026-03-01")), Some(day("2026-04-01"))))
        );
        assert!(aligned.edges.is_empty());
        let open = split_time(None, None);
        assert_eq!(open.days, Some((None, None)));
        assert!(open.edges.is_empty());
    }

    #[test]
    fn a_range_inside_one_day_comes_from_facts_only() {
        let split = split_time(
            Some(at("2026-03-01T06:00:00Z")),
            Some(at("2026-03-01T08:00:00Z")),
        );
        assert_eq!(split.days, None);
        assert_eq!(split.edges.len(), 1);
        let empty = split_time(
            Some(at("2026-03-01T08:00:00Z")),
            Some(at("2026-03-01T08:00:00Z")),
        );
        assert!(empty.days.is_none() && empty.edges.is_empty());
    }

    #[test]
    fn the_previous_period_has_the_same_length() {
        let (start, end) = previous_period(at("2026-03-08T00:00:00Z"), at("2026-03-15T00:00:00Z"));
        assert_eq!(
            (start, end),
            (at("2026-03-01T00:00:00Z"), at("2026-03-08T00:00:00Z"))
        );
    }
}
