use chrono::Utc;
use proptest::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::domain::rubric::{CriticalScope, DEFAULT_PASS_THRESHOLD};

const TOLERANCE: f64 = 1e-9;

fn criterion(key: &str, weight: u32, scale_min: i32, scale_max: i32) -> Criterion {
    Criterion {
        key: key.to_owned(),
        display_name: String::new(),
        description: String::new(),
        section: String::new(),
        weight,
        scale_min,
        scale_max,
        allow_not_applicable: false,
        critical: CriticalScope::None,
        level_labels: Vec::new(),
        root_causes: Vec::new(),
        auto: None,
    }
}

fn version(criteria: Vec<Criterion>) -> RubricVersion {
    RubricVersion {
        rubric_id: Uuid::nil(),
        version: 1,
        criteria,
        pass_threshold: DEFAULT_PASS_THRESHOLD,
        publish_time: Utc::now(),
        auto_score: false,
    }
}

fn rated(key: &str, value: i32) -> Rating {
    Rating {
        criterion_key: key.to_owned(),
        value: Some(value),
        not_applicable: false,
        comment: String::new(),
        root_causes: Vec::new(),
        explanation: String::new(),
    }
}

fn not_applicable(key: &str) -> Rating {
    Rating {
        value: None,
        not_applicable: true,
        ..rated(key, 0)
    }
}

fn score_of(version: &RubricVersion, ratings: &[Rating]) -> ScoreOutcome {
    let mut violations = Violations::new();
    let checked = check_ratings(version, ratings, "ratings", &mut violations);
    assert!(violations.is_empty(), "{violations:?}");
    score(version, &checked)
}

fn assert_close(actual: Option<f64>, expected: Option<f64>) {
    match (actual, expected) {
        (Some(a), Some(e)) => assert!((a - e).abs() < TOLERANCE, "{a} != {e}"),
        (a, e) => assert_eq!(a, e),
    }
}

#[test]
fn a_rating_scores_its_place_on_the_normalized_scale() {
    let four_point = criterion("a", 1, 1, 4);
    let expected = [0.0, 100.0 / 3.0, 200.0 / 3.0, 100.0];
    for (value, expected) in (1..=4).zip(expected) {
        assert!((criterion_score(&four_point, value) - expected).abs() < TOLERANCE);
    }
    let binary = criterion("b", 1, 0, 1);
    assert_eq!(criterion_score(&binary, 0), 0.0);
    assert_eq!(criterion_score(&binary, 1), 100.0);
}

#[test]
fn the_score_is_the_weighted_mean_of_criterion_scores() {
    let v = version(vec![criterion("a", 1, 1, 5), criterion("b", 3, 1, 5)]);
    let outcome = score_of(&v, &[rated("a", 5), rated("b", 3)]);
    assert_close(outcome.score, Some(62.5));
}

#[test]
fn not_applicable_leaves_both_sides_of_the_fraction() {
    let mut c = criterion("c", 1, 0, 3);
    c.allow_not_applicable = true;
    let v = version(vec![criterion("a", 2, 0, 1), criterion("b", 1, 1, 4), c]);
    let outcome = score_of(&v, &[rated("a", 1), rated("b", 3), not_applicable("c")]);
    assert_close(outcome.score, Some((200.0 + 200.0 / 3.0) / 3.0));
    assert_eq!(outcome.criterion_scores[2].score, None);
}

#[test]
fn a_left_out_criterion_that_allows_na_counts_as_na() {
    let mut c = criterion("c", 1, 0, 1);
    c.allow_not_applicable = true;
    let v = version(vec![criterion("a", 1, 0, 1), c]);
    assert_eq!(
        score_of(&v, &[rated("a", 1)]),
        score_of(&v, &[rated("a", 1), not_applicable("c")])
    );
}

#[test]
fn weight_zero_criteria_are_informational() {
    let v = version(vec![criterion("a", 1, 0, 1), criterion("note", 0, 0, 1)]);
    let outcome = score_of(&v, &[rated("a", 1), rated("note", 0)]);
    assert_close(outcome.score, Some(100.0));
    assert_eq!(outcome.criterion_scores[1].score, Some(0.0));
    assert!(outcome.passed);
}

#[test]
fn only_weight_zero_or_na_ratings_leave_the_evaluation_unscored() {
    let mut b = criterion("b", 1, 0, 1);
    b.allow_not_applicable = true;
    let v = version(vec![criterion("note", 0, 0, 1), b]);
    let outcome = score_of(&v, &[rated("note", 1), not_applicable("b")]);
    assert_eq!(outcome.score, None);
    assert!(!outcome.passed);
    assert!(!outcome.critical_failed);
}

#[test]
fn an_evaluation_scope_failure_zeroes_the_score_but_not_the_sections() {
    let mut verify = criterion("verify_identity", 0, 0, 1);
    verify.critical = CriticalScope::Evaluation;
    let v = version(vec![criterion("a", 3, 0, 4), verify]);
    let outcome = score_of(&v, &[rated("a", 4), rated("verify_identity", 0)]);
    assert_eq!(outcome.score, Some(0.0));
    assert_eq!(outcome.section_scores[0].score, Some(100.0));
    assert!(outcome.critical_failed && !outcome.passed);
}

#[test]
fn a_section_scope_failure_zeroes_its_section_in_the_score() {
    let mut disclosure = criterion("disclosure", 1, 0, 1);
    disclosure.section = "Compliance".into();
    disclosure.critical = CriticalScope::Section;
    let mut policy = criterion("policy", 1, 0, 1);
    policy.section = "Compliance".into();
    let mut empathy = criterion("empathy", 2, 0, 4);
    empathy.section = "Soft skills".into();
    let v = version(vec![disclosure, policy, empathy]);
    let outcome = score_of(
        &v,
        &[
            rated("disclosure", 0),
            rated("policy", 1),
            rated("empathy", 4),
        ],
    );
    assert_close(outcome.score, Some(50.0));
    assert_eq!(
        outcome.section_scores[0],
        SectionScore {
            section: "Compliance".into(),
            score: Some(0.0)
        }
    );
    assert_eq!(outcome.section_scores[1].score, Some(100.0));
    assert!(outcome.critical_failed && !outcome.passed);
}

#[test]
fn a_critical_criterion_fails_below_50_and_passes_at_50() {
    let mut c = criterion("c", 1, 0, 2);
    c.critical = CriticalScope::Evaluation;
    let v = version(vec![c]);
    assert!(score_of(&v, &[rated("c", 0)]).critical_failed);
    assert!(!score_of(&v, &[rated("c", 1)]).critical_failed);
}

#[test]
fn a_critical_criterion_rated_na_does_not_fail() {
    let mut c = criterion("c", 1, 0, 1);
    c.critical = CriticalScope::Evaluation;
    c.allow_not_applicable = true;
    let v = version(vec![criterion("a", 1, 0, 1), c]);
    let outcome = score_of(&v, &[rated("a", 1), not_applicable("c")]);
    assert!(!outcome.critical_failed && outcome.passed);
}

#[test]
fn passing_needs_the_threshold_reached_exactly_or_above() {
    let mut v = version(vec![criterion("a", 1, 0, 4)]);
    v.pass_threshold = 75.0;
    assert!(score_of(&v, &[rated("a", 3)]).passed);
    v.pass_threshold = 75.000001;
    assert!(!score_of(&v, &[rated("a", 3)]).passed);
}

#[test]
fn every_rating_violation_is_named_at_once() {
    let mut na_forbidden = criterion("no_na", 1, 0, 1);
    na_forbidden.root_causes = vec!["slow".into()];
    let v = version(vec![
        criterion("a", 1, 0, 4),
        na_forbidden,
        criterion("both", 1, 0, 1),
        criterion("neither", 1, 0, 1),
        criterion("missing", 1, 0, 1),
    ]);
    let mut both = rated("both", 1);
    both.not_applicable = true;
    let neither = Rating {
        value: None,
        ..rated("neither", 0)
    };
    let mut with_cause = not_applicable("no_na");
    with_cause.root_causes = vec!["slow".into(), "rude".into()];
    let ratings = [
        rated("a", 5),
        rated("a", 1),
        rated("ghost", 1),
        with_cause,
        both,
        neither,
    ];
    let mut violations = Violations::new();
    check_ratings(&v, &ratings, "ratings", &mut violations);
    let fields: Vec<_> = violations.into_vec().into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            "ratings",
            "ratings[0].value",
            "ratings[1].criterion_key",
            "ratings[2].criterion_key",
            "ratings[3].not_applicable",
            "ratings[3].root_causes[1]",
            "ratings[4].not_applicable",
            "ratings[5].value",
            "ratings",
        ]
    );
}

#[test]
fn iqs_is_the_plain_mean_of_scored_evaluations() {
    let scores = [
        Some(100.0),
        Some(9.91),
        Some(63.96),
        Some(90.99),
        Some(0.0),
        None,
    ];
    assert_close(iqs(scores), Some(52.972));
    assert_eq!(iqs([None, None]), None);
    assert_eq!(iqs(Vec::new()), None);
}

fn case_criterion(value: &Value) -> Criterion {
    let mut c = criterion(
        value["key"].as_str().unwrap(),
        value["weight"].as_u64().unwrap() as u32,
        value["scale_min"].as_i64().unwrap() as i32,
        value["scale_max"].as_i64().unwrap() as i32,
    );
    c.section = value["section"].as_str().unwrap_or_default().to_owned();
    c.allow_not_applicable = value["allow_not_applicable"].as_bool().unwrap_or(false);
    c.critical = match value["critical"].as_str().unwrap_or("NONE") {
        "EVALUATION" => CriticalScope::Evaluation,
        "SECTION" => CriticalScope::Section,
        _ => CriticalScope::None,
    };
    c
}

#[test]
fn every_shared_scoring_case_scores_as_expected() {
    let text = include_str!("../../tests/data/scoring-cases.json");
    let cases: Value = serde_json::from_str(text).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let mut v = version(
            case["rubric"]["criteria"]
                .as_array()
                .unwrap()
                .iter()
                .map(case_criterion)
                .collect(),
        );
        v.pass_threshold = case["rubric"]["pass_threshold"]
            .as_f64()
            .unwrap_or(DEFAULT_PASS_THRESHOLD);
        let ratings: Vec<Rating> = case["ratings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Rating {
                criterion_key: r["criterion_key"].as_str().unwrap().to_owned(),
                value: r["value"].as_i64().map(|v| v as i32),
                not_applicable: r["not_applicable"].as_bool().unwrap_or(false),
                comment: String::new(),
                root_causes: Vec::new(),
                explanation: String::new(),
            })
            .collect();
        let outcome = score_of(&v, &ratings);
        let expect = &case["expect"];
        assert_close(outcome.score, expect["score"].as_f64());
        assert_eq!(
            outcome.critical_failed,
            expect["critical_failed"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
        assert_eq!(
            outcome.passed,
            expect["passed"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
        let sections = expect["section_scores"].as_object().unwrap();
        assert_eq!(
            outcome.section_scores.len(),
            sections.len(),
            "{}",
            case["name"]
        );
        for section in &outcome.section_scores {
            assert_close(section.score, sections[&section.section].as_f64());
        }
    }
}

/// A rubric of 1..8 criteria, with ratings that are valid for it.
fn rubric_and_ratings() -> impl Strategy<Value = (Vec<Criterion>, Vec<Rating>)> {
    let one = (
        0u32..=100,
        -5i32..=5,
        1i32..=10,
        any::<bool>(),
        0u8..3,
        0usize..3,
        any::<prop::sample::Index>(),
        any::<bool>(),
    );
    prop::collection::vec(one, 1..8).prop_map(|specs| {
        let mut criteria = Vec::new();
        let mut ratings = Vec::new();
        for (i, (weight, min, span, allow_na, critical, section, pick, rate_na)) in
            specs.into_iter().enumerate()
        {
            let key = format!("c{i}");
            let mut c = criterion(&key, weight, min, min + span);
            c.allow_not_applicable = allow_na;
            c.critical = [
                CriticalScope::None,
                CriticalScope::Evaluation,
                CriticalScope::Section,
            ][critical as usize];
            c.section = ["", "Compliance", "Soft skills"][section].to_owned();
            let value = min + pick.index(span as usize + 1) as i32;
            ratings.push(if allow_na && rate_na {
                not_applicable(&key)
            } else {
                rated(&key, value)
            });
            criteria.push(c);
        }
        (criteria, ratings)
    })
}

proptest! {
    #[test]
    fn score_is_always_within_0_and_100((criteria, ratings) in rubric_and_ratings()) {
        let outcome = score_of(&version(criteria), &ratings);
        if let Some(score) = outcome.score {
            prop_assert!((0.0..=100.0).contains(&score));
        }
        for section in outcome.section_scores {
            if let Some(score) = section.score {
                prop_assert!((0.0..=100.0).contains(&score));
            }
        }
        prop_assert!(!(outcome.passed && outcome.critical_failed));
    }

    #[test]
    fn scaling_every_weight_by_a_constant_changes_nothing(
        (criteria, ratings) in rubric_and_ratings(),
        factor in 2u32..=10,
    ) {
        let scaled: Vec<_> = criteria
            .iter()
            .cloned()
            .map(|mut c| { c.weight *= factor; c })
            .collect();
        let a = score_of(&version(criteria), &ratings);
        let b = score_of(&version(scaled), &ratings);
        prop_assert_eq!(a.score.is_some(), b.score.is_some());
        if let (Some(x), Some(y)) = (a.score, b.score) {
            prop_assert!((x - y).abs() < TOLERANCE);
        }
        prop_assert_eq!(a.passed, b.passed);
        prop_assert_eq!(a.critical_failed, b.critical_failed);
    }

    #[test]
    fn the_order_of_criteria_and_ratings_changes_nothing(
        (criteria, ratings) in rubric_and_ratings(),
        seed in any::<u64>(),
    ) {
        let mut reversed_criteria = criteria.clone();
        reversed_criteria.reverse();
        let mut shuffled_ratings = ratings.clone();
        let len = shuffled_ratings.len();
        shuffled_ratings.rotate_left((seed as usize) % len);
        let a = score_of(&version(criteria), &ratings);
        let b = score_of(&version(reversed_criteria), &shuffled_ratings);
        match (a.score, b.score) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() < TOLERANCE),
            (x, y) => prop_assert_eq!(x, y),
        }
        prop_assert_eq!(a.passed, b.passed);
        prop_assert_eq!(a.critical_failed, b.critical_failed);
        for section in &a.section_scores {
            let other = b.section_scores.iter().find(|s| s.section == section.section).unwrap();
            match (section.score, other.score) {
                (Some(x), Some(y)) => prop_assert!((x - y).abs() < TOLERANCE),
                (x, y) => prop_assert_eq!(x, y),
            }
        }
    }

    #[test]
    fn marking_a_criterion_na_equals_removing_it_from_the_rubric(
        (criteria, ratings) in rubric_and_ratings(),
        pick in any::<prop::sample::Index>(),
    ) {
        let removed = pick.index(criteria.len());
        let mut with_na = criteria.clone();
        with_na[removed].allow_not_applicable = true;
        let mut na_ratings = ratings.clone();
        na_ratings[removed] = not_applicable(&criteria[removed].key);
        let mut without = criteria.clone();
        let gone = without.remove(removed);
        let without_ratings: Vec<_> = ratings.iter().filter(|r| r.criterion_key != gone.key).cloned().collect();
        let a = score_of(&version(with_na), &na_ratings);
        let b = score_of(&version(without), &without_ratings);
        match (a.score, b.score) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() < TOLERANCE),
            (x, y) => prop_assert_eq!(x, y),
        }
        prop_assert_eq!(a.passed, b.passed);
        prop_assert_eq!(a.critical_failed, b.critical_failed);
    }
}
