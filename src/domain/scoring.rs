//! The one definition of a score (SCORING.md): criterion scores on normalized scales,
//! N/A removed from both sides of the fraction, weights (0 included), section scores,
//! EVALUATION- and SECTION-scope critical failures, and pass/fail.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::rubric::{Criterion, CriticalScope, RubricVersion};
use super::validation::Violations;

pub const MAX_COMMENT_CHARS: usize = 10_000;
/// A critical criterion fails when its score is below this.
pub const CRITICAL_FAIL_BELOW: f64 = 50.0;

/// A rating as submitted: a value on the criterion's scale, or not applicable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub criterion_key: String,
    pub value: Option<i32>,
    pub not_applicable: bool,
    pub comment: String,
    pub root_causes: Vec<String>,
    /// What decided an automated rating (AutoQA's rule and evidence); empty otherwise.
    /// Left out of the JSON when empty, so fingerprints of requests made before it
    /// existed stay as they were.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub explanation: String,
}

/// Ratings checked against a rubric version: one entry per criterion of the version, in
/// the version's order; `None` = not applicable (given as N/A, or left out where allowed).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRatings {
    values: Vec<Option<i32>>,
}

impl CheckedRatings {
    pub fn values(&self) -> &[Option<i32>] {
        &self.values
    }
}

/// Checks ratings against a version and names every violation at once: unknown key,
/// duplicate key, value and N/A both or neither, value outside the scale, N/A where
/// forbidden, unknown root cause, missing rating.
pub fn check_ratings(
    version: &RubricVersion,
    ratings: &[Rating],
    path: &str,
    violations: &mut Violations,
) -> CheckedRatings {
    let (values, rated) = check_each(version, ratings, path, violations);
    for (criterion, was_rated) in version.criteria.iter().zip(&rated) {
        if !was_rated && !criterion.allow_not_applicable {
            violations.add(
                path,
                format!(
                    "criterion {:?} needs a rating (it does not allow N/A)",
                    criterion.key
                ),
            );
        }
    }
    CheckedRatings { values }
}

/// Checks ratings of some criteria only (a dispute's proposal): each as `check_ratings`
/// checks it, without asking for the criteria left out.
pub fn check_rating_changes(
    version: &RubricVersion,
    ratings: &[Rating],
    path: &str,
    violations: &mut Violations,
) {
    check_each(version, ratings, path, violations);
}

/// Checks every rating on its own; returns the values and which criteria were rated,
/// both in the version's order.
fn check_each(
    version: &RubricVersion,
    ratings: &[Rating],
    path: &str,
    violations: &mut Violations,
) -> (Vec<Option<i32>>, Vec<bool>) {
    let positions: HashMap<&str, usize> = version
        .criteria
        .iter()
        .enumerate()
        .map(|(index, criterion)| (criterion.key.as_str(), index))
        .collect();
    let mut values = vec![None; version.criteria.len()];
    if ratings.len() > version.criteria.len() {
        violations.add(
            path,
            format!(
                "at most {} ratings (one per criterion of version {}), got {}",
                version.criteria.len(),
                version.version,
                ratings.len()
            ),
        );
    }
    let mut rated = vec![false; version.criteria.len()];
    for (index, rating) in ratings.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let Some(&position) = positions.get(rating.criterion_key.as_str()) else {
            violations.add(
                format!("{at}.criterion_key"),
                format!(
                    "criterion {:?} is not in version {} of the rubric",
                    rating.criterion_key, version.version
                ),
            );
            continue;
        };
        if std::mem::replace(&mut rated[position], true) {
            violations.add(
                format!("{at}.criterion_key"),
                format!(
                    "criterion {:?} is rated more than once",
                    rating.criterion_key
                ),
            );
            continue;
        }
        let criterion = &version.criteria[position];
        match (rating.value, rating.not_applicable) {
            (Some(_), true) => violations.add(
                format!("{at}.not_applicable"),
                "a rating has a value or is not applicable, not both",
            ),
            (None, false) => violations.add(
                format!("{at}.value"),
                "is required unless not_applicable is set",
            ),
            (None, true) if !criterion.allow_not_applicable => violations.add(
                format!("{at}.not_applicable"),
                format!("criterion {:?} does not allow N/A", criterion.key),
            ),
            (None, true) => {}
            (Some(value), false) if value < criterion.scale_min || value > criterion.scale_max => {
                violations.add(
                    format!("{at}.value"),
                    format!(
                        "must be {}..{} for criterion {:?}, got {value}",
                        criterion.scale_min, criterion.scale_max, criterion.key
                    ),
                )
            }
            (Some(value), false) => values[position] = Some(value),
        }
        violations.check_length(
            &format!("{at}.comment"),
            &rating.comment,
            0,
            MAX_COMMENT_CHARS,
        );
        violations.check_length(
            &format!("{at}.explanation"),
            &rating.explanation,
            0,
            MAX_COMMENT_CHARS,
        );
        let allowed: HashSet<&str> = criterion.root_causes.iter().map(String::as_str).collect();
        for (cause_index, cause) in rating.root_causes.iter().enumerate() {
            if !allowed.contains(cause.as_str()) {
                violations.add(
                    format!("{at}.root_causes[{cause_index}]"),
                    format!(
                        "{cause:?} is not a root cause of criterion {:?}",
                        criterion.key
                    ),
                );
            }
        }
    }
    (values, rated)
}

/// The score of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreOutcome {
    /// Absent when no criterion with weight > 0 was rated (an unscored evaluation).
    pub score: Option<f64>,
    /// Every section of the rubric, in order of first appearance.
    pub section_scores: Vec<SectionScore>,
    /// Every criterion of the rubric, in order; absent = not applicable.
    pub criterion_scores: Vec<CriterionScore>,
    pub critical_failed: bool,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionScore {
    pub section: String,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionScore {
    pub criterion_key: String,
    pub score: Option<f64>,
}

/// `100 * (r - min) / (max - min)`.
pub fn criterion_score(criterion: &Criterion, value: i32) -> f64 {
    let span = f64::from(criterion.scale_max) - f64::from(criterion.scale_min);
    100.0 * (f64::from(value) - f64::from(criterion.scale_min)) / span
}

/// Weighted mean accumulator: `Σ w·s / Σ w`.
#[derive(Debug, Default, Clone, Copy)]
struct WeightedMean {
    weighted_sum: f64,
    weight: u64,
}

impl WeightedMean {
    fn add(&mut self, weight: u32, score: f64) {
        self.weighted_sum += f64::from(weight) * score;
        self.weight += u64::from(weight);
    }

    fn mean(&self) -> Option<f64> {
        (self.weight > 0).then(|| self.weighted_sum / self.weight as f64)
    }
}

/// Scores checked ratings against the version they were checked with.
pub fn score(version: &RubricVersion, ratings: &CheckedRatings) -> ScoreOutcome {
    let criteria = &version.criteria;
    let scores: Vec<Option<f64>> = criteria
        .iter()
        .zip(&ratings.values)
        .map(|(criterion, value)| value.map(|value| criterion_score(criterion, value)))
        .collect();
    let fails = |criterion: &Criterion, score: &Option<f64>, scope: CriticalScope| {
        criterion.critical == scope && score.is_some_and(|s| s < CRITICAL_FAIL_BELOW)
    };

    let mut sections: Vec<&str> = Vec::new();
    for criterion in criteria {
        if !sections.contains(&criterion.section.as_str()) {
            sections.push(&criterion.section);
        }
    }
    let failed_sections: HashSet<&str> = criteria
        .iter()
        .zip(&scores)
        .filter(|(criterion, score)| fails(criterion, score, CriticalScope::Section))
        .map(|(criterion, _)| criterion.section.as_str())
        .collect();
    let evaluation_failed = criteria
        .iter()
        .zip(&scores)
        .any(|(criterion, score)| fails(criterion, score, CriticalScope::Evaluation));

    let mut overall = WeightedMean::default();
    let section_scores = sections
        .iter()
        .map(|&section| {
            let mut mean = WeightedMean::default();
            let section_failed = failed_sections.contains(section);
            for (criterion, score) in criteria.iter().zip(&scores) {
                if criterion.section != section || criterion.weight == 0 {
                    continue;
                }
                if let Some(score) = score {
                    mean.add(criterion.weight, *score);
                    overall.add(criterion.weight, if section_failed { 0.0 } else { *score });
                }
            }
            SectionScore {
                section: section.to_owned(),
                score: if section_failed {
                    Some(0.0)
                } else {
                    mean.mean()
                },
            }
        })
        .collect();

    let critical_failed = evaluation_failed || !failed_sections.is_empty();
    let score = overall
        .mean()
        .map(|score| if evaluation_failed { 0.0 } else { score });
    let passed = !critical_failed && score.is_some_and(|s| s >= version.pass_threshold);
    ScoreOutcome {
        score,
        section_scores,
        criterion_scores: criteria
            .iter()
            .zip(scores)
            .map(|(criterion, score)| CriterionScore {
                criterion_key: criterion.key.clone(),
                score,
            })
            .collect(),
        critical_failed,
        passed,
    }
}

/// The IQS of a set of evaluation scores: the plain mean of the scored ones.
pub fn iqs(scores: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, count) = scores
        .into_iter()
        .flatten()
        .fold((0.0, 0u64), |(sum, count), score| (sum + score, count + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
#[path = "scoring_tests.rs"]
mod tests;
