//! Calibration sessions: the same interactions scored by several reviewers, the rules a
//! calibration review follows, and the report of how much the reviewers agree
//! (docs/SCORING.md, "Calibration").

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::agreement::{self, BOOTSTRAP_RESAMPLES, Level};
use super::interaction::check_external_id;
use super::validation::Violations;

pub const MAX_SESSION_INTERACTIONS: usize = 500;
pub const MAX_SESSION_REVIEWERS: usize = 100;
const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// The seed of the bootstrap intervals: a report reads the same every time.
const BOOTSTRAP_SEED: u64 = 0x1c5_ca1b;
/// How far from the reference a reviewer's score may be and still count as calibrated.
const WITHIN_POINTS: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionState {
    Open,
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Closed]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

/// A session as a caller asks for it, before its rubric version is resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInput {
    pub display_name: String,
    pub rubric_id: Uuid,
    /// 0: the latest published version, pinned at creation.
    pub rubric_version: u32,
    pub interaction_ids: Vec<Uuid>,
    pub reviewer_ids: Vec<String>,
    pub baseline_reviewer_id: Option<String>,
    pub due_time: Option<DateTime<Utc>>,
}

/// A session ready to store: its version pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    pub input: SessionInput,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub display_name: String,
    pub rubric_id: Uuid,
    pub rubric_version: u32,
    pub interaction_ids: Vec<Uuid>,
    pub reviewer_ids: Vec<String>,
    pub baseline_reviewer_id: Option<String>,
    pub state: SessionState,
    pub due_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    pub close_time: Option<DateTime<Utc>>,
}

/// Checks what a session needs besides its rubric: a name, interactions and reviewers
/// without repeats, and a baseline that is one of the reviewers. `listed_interactions`
/// is how many the caller listed, some of which may not have parsed.
pub fn check_session(
    input: &SessionInput,
    listed_interactions: usize,
    violations: &mut Violations,
) {
    violations.check_length(
        "session.display_name",
        input.display_name.trim(),
        1,
        MAX_DISPLAY_NAME_CHARS,
    );
    let interactions = input.interaction_ids.len();
    if listed_interactions == 0 || listed_interactions > MAX_SESSION_INTERACTIONS {
        violations.add(
            "session.interaction_ids",
            format!("must list 1..{MAX_SESSION_INTERACTIONS} interactions"),
        );
    } else if input.interaction_ids.iter().collect::<BTreeSet<_>>().len() != interactions
        && interactions == listed_interactions
    {
        violations.add("session.interaction_ids", "must not repeat an interaction");
    }
    let reviewers = input.reviewer_ids.len();
    if !(2..=MAX_SESSION_REVIEWERS).contains(&reviewers) {
        violations.add(
            "session.reviewer_ids",
            format!("must list 2..{MAX_SESSION_REVIEWERS} reviewers: agreement needs two"),
        );
    } else if input.reviewer_ids.iter().collect::<BTreeSet<_>>().len() != reviewers {
        violations.add("session.reviewer_ids", "must not repeat a reviewer");
    }
    for (index, reviewer) in input.reviewer_ids.iter().enumerate() {
        check_external_id(
            &format!("session.reviewer_ids[{index}]"),
            reviewer,
            violations,
        );
    }
    if let Some(baseline) = &input.baseline_reviewer_id
        && !input.reviewer_ids.contains(baseline)
    {
        violations.add(
            "session.baseline_reviewer_id",
            "must be one of session.reviewer_ids",
        );
    }
}

impl Session {
    /// What a calibration review in this session must respect; each broken rule names
    /// its field. (One review per reviewer and interaction, and the session being open,
    /// are checked by the store, atomically with the write.)
    pub fn check_review(
        &self,
        interaction_id: Uuid,
        reviewer_id: &str,
        rubric_id: Uuid,
        rubric_version: Option<u32>,
        violations: &mut Violations,
    ) {
        if !self.interaction_ids.contains(&interaction_id) {
            violations.add(
                "interaction_id",
                format!(
                    "interaction {interaction_id} is not in calibration session {}",
                    self.id
                ),
            );
        }
        if !self.reviewer_ids.iter().any(|id| id == reviewer_id) {
            violations.add(
                "reviewer_id",
                format!(
                    "reviewer {reviewer_id:?} is not invited to calibration session {}",
                    self.id
                ),
            );
        }
        if rubric_id != self.rubric_id {
            violations.add(
                "rubric_id",
                format!(
                    "calibration session {} uses rubric {}",
                    self.id, self.rubric_id
                ),
            );
        }
        if rubric_version.is_some_and(|version| version != self.rubric_version) {
            violations.add(
                "rubric_version",
                format!(
                    "calibration session {} is pinned to version {}",
                    self.id, self.rubric_version
                ),
            );
        }
    }
}

/// One active calibration evaluation, as the report reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReview {
    pub interaction_id: Uuid,
    pub reviewer_id: String,
    pub score: Option<f64>,
    /// Criterion key and raw value, in the rubric's order; `None` = N/A.
    pub ratings: Vec<(String, Option<i32>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alpha {
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriterionAgreement {
    pub criterion_key: String,
    pub pairable_count: u32,
    pub alpha_nominal: Option<f64>,
    pub alpha_ordinal: Option<f64>,
    pub alpha_interval: Alpha,
    pub exact_agreement: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewerDeviation {
    pub reviewer_id: String,
    pub evaluation_count: u32,
    pub mean_score: Option<f64>,
    pub mean_deviation_from_group: Option<f64>,
    pub mean_deviation_from_baseline: Option<f64>,
    pub within_10_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReport {
    pub unit_count: u32,
    pub reviewer_count: u32,
    pub score_alpha_interval: Alpha,
    pub criteria: Vec<CriterionAgreement>,
    pub reviewers: Vec<ReviewerDeviation>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(sum, n), value| (sum + value, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn interval_alpha(units: &[Vec<f64>]) -> Alpha {
    let value = agreement::alpha(units, Level::Interval);
    let (low, high) = value
        .and_then(|_| {
            agreement::bootstrap_interval(
                units,
                Level::Interval,
                BOOTSTRAP_RESAMPLES,
                BOOTSTRAP_SEED,
            )
        })
        .unzip();
    Alpha { value, low, high }
}

/// The report of a session from its active calibration evaluations.
pub fn report(baseline: Option<&str>, reviews: &[CalibrationReview]) -> CalibrationReport {
    // Units in a fixed order (by interaction id), so the bootstrap reads the same data
    // the same way every time.
    let mut scores: BTreeMap<Uuid, Vec<(&str, f64)>> = BTreeMap::new();
    let mut criterion_order: Vec<&str> = Vec::new();
    let mut ratings: HashMap<&str, BTreeMap<Uuid, Vec<f64>>> = HashMap::new();
    let mut units = BTreeSet::new();
    let mut coders: BTreeMap<&str, u32> = BTreeMap::new();
    for review in reviews {
        units.insert(review.interaction_id);
        *coders.entry(review.reviewer_id.as_str()).or_default() += 1;
        if let Some(score) = review.score {
            scores
                .entry(review.interaction_id)
                .or_default()
                .push((&review.reviewer_id, score));
        }
        for (key, value) in &review.ratings {
            if !ratings.contains_key(key.as_str()) {
                criterion_order.push(key);
            }
            let unit = ratings
                .entry(key.as_str())
                .or_default()
                .entry(review.interaction_id)
                .or_default();
            if let Some(value) = value {
                unit.push(f64::from(*value));
            }
        }
    }
    let score_units: Vec<Vec<f64>> = scores
        .values()
        .map(|unit| unit.iter().map(|(_, score)| *score).collect())
        .collect();
    let criteria = criterion_order
        .into_iter()
        .map(|key| {
            let units: Vec<Vec<f64>> = ratings[key].values().cloned().collect();
            let pairable = units
                .iter()
                .filter(|unit| unit.len() >= 2)
                .map(Vec::len)
                .sum();
            CriterionAgreement {
                criterion_key: key.to_owned(),
                pairable_count: count(pairable),
                alpha_nominal: agreement::alpha(&units, Level::Nominal),
                alpha_ordinal: agreement::alpha(&units, Level::Ordinal),
                alpha_interval: interval_alpha(&units),
                exact_agreement: agreement::exact_agreement(&units),
            }
        })
        .collect();
    let reviewers = coders
        .iter()
        .map(|(reviewer, evaluations)| deviation(reviewer, *evaluations, baseline, &scores))
        .collect();
    CalibrationReport {
        unit_count: count(units.len()),
        reviewer_count: count(coders.len()),
        score_alpha_interval: interval_alpha(&score_units),
        criteria,
        reviewers,
    }
}

fn deviation(
    reviewer: &str,
    evaluation_count: u32,
    baseline: Option<&str>,
    scores: &BTreeMap<Uuid, Vec<(&str, f64)>>,
) -> ReviewerDeviation {
    let mut own = Vec::new();
    let mut from_group = Vec::new();
    let mut from_baseline = Vec::new();
    let mut within = Vec::new();
    for unit in scores.values() {
        let Some(&(_, score)) = unit.iter().find(|(who, _)| *who == reviewer) else {
            continue;
        };
        own.push(score);
        let group = mean(
            unit.iter()
                .filter(|(who, _)| *who != reviewer)
                .map(|(_, score)| *score),
        );
        if let Some(group) = group {
            from_group.push(score - group);
        }
        let reference = match baseline.filter(|baseline| *baseline != reviewer) {
            Some(baseline) => {
                let baseline_score = unit.iter().find(|(who, _)| *who == baseline);
                if let Some(&(_, baseline_score)) = baseline_score {
                    from_baseline.push(score - baseline_score);
                }
                baseline_score.map(|(_, score)| *score)
            }
            None => group,
        };
        if let Some(reference) = reference {
            within.push(if (score - reference).abs() <= WITHIN_POINTS {
                1.0
            } else {
                0.0
            });
        }
    }
    ReviewerDeviation {
        reviewer_id: reviewer.to_owned(),
        evaluation_count,
        mean_score: mean(own),
        mean_deviation_from_group: mean(from_group),
        mean_deviation_from_baseline: mean(from_baseline),
        within_10_share: mean(within),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(unit: u128, reviewer: &str, score: f64) -> CalibrationReview {
        CalibrationReview {
            interaction_id: Uuid::from_u128(unit),
            reviewer_id: reviewer.into(),
            score: Some(score),
            ratings: Vec::new(),
        }
    }

    #[test]
    fn a_lenient_reviewer_deviates_upward_from_the_baseline_and_a_strict_one_downward() {
        let reviews = [
            review(1, "base", 60.0),
            review(1, "lenient", 80.0),
            review(1, "strict", 55.0),
            review(2, "base", 70.0),
            review(2, "lenient", 90.0),
            review(2, "strict", 50.0),
        ];
        let report = report(Some("base"), &reviews);
        let by = |id: &str| {
            report
                .reviewers
                .iter()
                .find(|r| r.reviewer_id == id)
                .unwrap()
        };
        assert_eq!(by("lenient").mean_deviation_from_baseline, Some(20.0));
        assert_eq!(by("strict").mean_deviation_from_baseline, Some(-12.5));
        assert_eq!(by("strict").within_10_share, Some(0.5));
        assert_eq!(by("base").mean_deviation_from_baseline, None);
        // The baseline is measured against the others: (60 − 67.5 + 70 − 70) / 2.
        assert_eq!(by("base").mean_deviation_from_group, Some(-3.75));
        assert_eq!(by("lenient").mean_score, Some(85.0));
    }

    #[test]
    fn without_a_baseline_the_share_within_10_points_is_measured_against_the_group() {
        let reviews = [
            review(1, "a", 50.0),
            review(1, "b", 58.0),
            review(1, "c", 75.0),
        ];
        let report = report(None, &reviews);
        let a = &report.reviewers[0];
        assert_eq!(a.mean_deviation_from_baseline, None);
        // The others' mean is 66.5: 16.5 points away.
        assert_eq!(a.within_10_share, Some(0.0));
        assert_eq!(report.reviewers[1].within_10_share, Some(1.0));
    }

    #[test]
    fn a_session_refuses_a_baseline_outside_its_reviewers_and_repeated_interactions() {
        let id = Uuid::from_u128(7);
        let input = SessionInput {
            display_name: "Week 1".into(),
            rubric_id: Uuid::from_u128(1),
            rubric_version: 0,
            interaction_ids: vec![id, id],
            reviewer_ids: vec!["a".into(), "b".into()],
            baseline_reviewer_id: Some("z".into()),
            due_time: None,
        };
        let mut violations = Violations::new();
        check_session(&input, 2, &mut violations);
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["session.interaction_ids", "session.baseline_reviewer_id"]
        );
    }
}
