//! How far AutoQA agrees with people, per criterion: over interactions that have both an
//! active MANUAL and an active AUTOMATED evaluation under a rubric, each person's
//! criterion score against the machine's (SCORING.md, "AutoQA agreement").

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::agreement::{Level, alpha};
use super::scoring::CriterionScore;

/// One active evaluation's criterion scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub interaction_id: Uuid,
    pub automated: bool,
    pub criterion_scores: Vec<CriterionScore>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriterionAgreement {
    pub criterion_key: String,
    pub pairs: usize,
    /// Share of pairs with the same criterion score.
    pub exact_agreement: Option<f64>,
    /// Cohen's kappa with criterion scores as nominal categories; absent when chance
    /// agreement is already total (a single category).
    pub cohen_kappa: Option<f64>,
    /// Krippendorff's interval alpha with the person and the machine as two coders.
    pub alpha_interval: Option<f64>,
    /// Mean |person − machine| in criterion score points (0..100).
    pub mean_absolute_difference: Option<f64>,
}

/// Scores closer than this are the same category (they come from the same formula).
const SAME: f64 = 1e-9;

/// Per criterion key (in key order): every MANUAL evaluation of an interaction paired
/// with that interaction's AUTOMATED one (the last given, when there are several), on
/// the criteria both scored. Interactions without both kinds are left out.
pub fn agreement(reviewed: &[Reviewed]) -> Vec<CriterionAgreement> {
    let mut machine: HashMap<Uuid, &Reviewed> = HashMap::new();
    for evaluation in reviewed.iter().filter(|e| e.automated) {
        machine.insert(evaluation.interaction_id, evaluation);
    }
    let mut pairs: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for person in reviewed.iter().filter(|e| !e.automated) {
        let Some(auto) = machine.get(&person.interaction_id) else {
            continue;
        };
        for scored in &person.criterion_scores {
            let auto_score = auto
                .criterion_scores
                .iter()
                .find(|other| other.criterion_key == scored.criterion_key)
                .and_then(|other| other.score);
            if let (Some(by_person), Some(by_machine)) = (scored.score, auto_score) {
                pairs
                    .entry(scored.criterion_key.as_str())
                    .or_default()
                    .push((by_person, by_machine));
            }
        }
    }
    pairs
        .into_iter()
        .map(|(key, pairs)| CriterionAgreement {
            criterion_key: key.to_owned(),
            pairs: pairs.len(),
            exact_agreement: exact(&pairs),
            cohen_kappa: cohen_kappa(&pairs),
            alpha_interval: alpha(
                &pairs.iter().map(|(a, b)| vec![*a, *b]).collect::<Vec<_>>(),
                Level::Interval,
            ),
            mean_absolute_difference: mean(pairs.iter().map(|(a, b)| (a - b).abs())),
        })
        .collect()
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> Option<f64> {
    let count = values.len();
    (count > 0).then(|| values.sum::<f64>() / count as f64)
}

fn exact(pairs: &[(f64, f64)]) -> Option<f64> {
    mean(
        pairs
            .iter()
            .map(|(a, b)| if (a - b).abs() < SAME { 1.0 } else { 0.0 }),
    )
}

/// A score as a nominal category.
fn category(score: f64) -> i64 {
    (score * 1e6).round() as i64
}

/// Cohen's kappa: (p_o − p_e) / (1 − p_e), with p_e from each coder's own category
/// shares.
pub fn cohen_kappa(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut first: HashMap<i64, f64> = HashMap::new();
    let mut second: HashMap<i64, f64> = HashMap::new();
    let mut agreeing = 0.0;
    for (a, b) in pairs {
        let (a, b) = (category(*a), category(*b));
        *first.entry(a).or_default() += 1.0;
        *second.entry(b).or_default() += 1.0;
        if a == b {
            agreeing += 1.0;
        }
    }
    let observed = agreeing / n;
    let chance: f64 = first
        .iter()
        .map(|(category, count)| count / n * second.get(category).copied().unwrap_or(0.0) / n)
        .sum();
    ((1.0 - chance).abs() > SAME).then(|| (observed - chance) / (1.0 - chance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewed(interaction: Uuid, automated: bool, scores: &[(&str, Option<f64>)]) -> Reviewed {
        Reviewed {
            interaction_id: interaction,
            automated,
            criterion_scores: scores
                .iter()
                .map(|(key, score)| CriterionScore {
                    criterion_key: (*key).to_owned(),
                    score: *score,
                })
                .collect(),
        }
    }

    #[test]
    fn cohen_kappa_is_the_textbook_value() {
        // 50 items: 20 both yes, 15 both no, 5 yes/no, 10 no/yes: p_o 0.7, p_e 0.5.
        let mut pairs = Vec::new();
        pairs.extend(std::iter::repeat_n((100.0, 100.0), 20));
        pairs.extend(std::iter::repeat_n((0.0, 0.0), 15));
        pairs.extend(std::iter::repeat_n((100.0, 0.0), 5));
        pairs.extend(std::iter::repeat_n((0.0, 100.0), 10));
        let kappa = cohen_kappa(&pairs).unwrap();
        assert!((kappa - 0.4).abs() < 1e-12, "{kappa}");
        assert_eq!(
            cohen_kappa(&[(50.0, 50.0), (50.0, 50.0)]),
            None,
            "one category"
        );
    }

    #[test]
    fn each_person_is_paired_with_the_machine_on_the_criteria_both_scored() {
        let (one, two, lone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let reviewed = [
            reviewed(one, true, &[("greeting", Some(100.0)), ("tone", None)]),
            reviewed(
                one,
                false,
                &[("greeting", Some(100.0)), ("tone", Some(50.0))],
            ),
            reviewed(one, false, &[("greeting", Some(0.0)), ("tone", Some(75.0))]),
            reviewed(two, true, &[("greeting", Some(0.0)), ("tone", Some(25.0))]),
            reviewed(two, false, &[("greeting", Some(0.0)), ("tone", Some(50.0))]),
            reviewed(lone, false, &[("greeting", Some(100.0))]),
        ];
        let agreement = agreement(&reviewed);
        let keys: Vec<&str> = agreement.iter().map(|a| a.criterion_key.as_str()).collect();
        assert_eq!(keys, ["greeting", "tone"]);
        let greeting = &agreement[0];
        assert_eq!(greeting.pairs, 3);
        assert!((greeting.exact_agreement.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((greeting.mean_absolute_difference.unwrap() - 100.0 / 3.0).abs() < 1e-12);
        let tone = &agreement[1];
        assert_eq!(
            tone.pairs, 1,
            "the machine gave tone N/A on the first interaction"
        );
        assert_eq!(tone.mean_absolute_difference, Some(25.0));
    }
}
