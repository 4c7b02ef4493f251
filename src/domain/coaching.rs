//! Coaching sessions with their corrective actions, and whether coaching worked: the
//! agent's scores in the window before a session against the window after.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::interaction::check_external_id;
use super::scoring::{CriterionScore, MAX_COMMENT_CHARS, iqs};
use super::statistics::{WelchTest, welch_t_test};
use super::validation::Violations;

pub const MAX_COACHED_CRITERIA: usize = 50;
pub const MAX_LINKED_EVALUATIONS: usize = 100;
pub const MAX_ACTION_ITEMS: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 1_000;
const MAX_CRITERION_KEY_CHARS: usize = 64;
pub const DEFAULT_WINDOW_DAYS: u32 = 28;
pub const MAX_WINDOW_DAYS: u32 = 365;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionItemInput {
    pub description: String,
    pub due_time: Option<DateTime<Utc>>,
}

/// A coaching session as a lead records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInput {
    pub agent_id: String,
    pub coach_id: String,
    pub criterion_keys: Vec<String>,
    pub evaluation_ids: Vec<Uuid>,
    pub notes: String,
    pub session_time: DateTime<Utc>,
    pub action_items: Vec<ActionItemInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    pub input: SessionInput,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionItem {
    pub id: Uuid,
    pub description: String,
    pub due_time: Option<DateTime<Utc>>,
    pub done_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub agent_id: String,
    pub coach_id: String,
    pub criterion_keys: Vec<String>,
    pub evaluation_ids: Vec<Uuid>,
    pub notes: String,
    pub session_time: DateTime<Utc>,
    pub action_items: Vec<ActionItem>,
    pub create_time: DateTime<Utc>,
}

/// Checks a session's fields; which evaluations exist is the store's to say.
pub fn check_session(input: &SessionInput, path: &str, violations: &mut Violations) {
    check_external_id(&format!("{path}.agent_id"), &input.agent_id, violations);
    check_external_id(&format!("{path}.coach_id"), &input.coach_id, violations);
    if input.criterion_keys.len() > MAX_COACHED_CRITERIA {
        violations.add(
            format!("{path}.criterion_keys"),
            format!("at most {MAX_COACHED_CRITERIA} criteria"),
        );
    }
    for (index, key) in input.criterion_keys.iter().enumerate() {
        let field = format!("{path}.criterion_keys[{index}]");
        violations.check_length(&field, key, 1, MAX_CRITERION_KEY_CHARS);
        if input.criterion_keys[..index].contains(key) {
            violations.add(field, format!("criterion {key:?} is listed twice"));
        }
    }
    if input.evaluation_ids.len() > MAX_LINKED_EVALUATIONS {
        violations.add(
            format!("{path}.evaluation_ids"),
            format!("at most {MAX_LINKED_EVALUATIONS} evaluations"),
        );
    }
    violations.check_length(&format!("{path}.notes"), &input.notes, 0, MAX_COMMENT_CHARS);
    if input.action_items.len() > MAX_ACTION_ITEMS {
        violations.add(
            format!("{path}.action_items"),
            format!("at most {MAX_ACTION_ITEMS} action items"),
        );
    }
    for (index, item) in input.action_items.iter().enumerate() {
        violations.check_length(
            &format!("{path}.action_items[{index}].description"),
            &item.description,
            1,
            MAX_DESCRIPTION_CHARS,
        );
    }
}

/// One of the agent's MANUAL evaluations, as the impact report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredEvaluation {
    /// When it counts (its first revision's create time, as in every IQS figure).
    pub time: DateTime<Utc>,
    pub score: Option<f64>,
    pub criterion_scores: Vec<CriterionScore>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriterionAverage {
    pub criterion_key: String,
    pub average_score: Option<f64>,
    pub rated_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub iqs: Option<f64>,
    /// Scored evaluations.
    pub count: u64,
    pub criteria: Vec<CriterionAverage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    pub before: Window,
    pub after: Window,
    pub iqs_change: Option<f64>,
    pub test: Option<WelchTest>,
}

/// A half-open time range [start, end).
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The windows around a session: [t − days, t) and [t, t + days).
pub fn windows(session_time: DateTime<Utc>, days: u32) -> (Span, Span) {
    let span = Duration::days(i64::from(days));
    (
        (session_time - span, session_time),
        (session_time, session_time + span),
    )
}

/// Compares the evaluations dated in the window before the session with those in the
/// window after (SCORING.md, "Coaching impact").
pub fn impact(session: &Session, days: u32, evaluations: &[ScoredEvaluation]) -> Impact {
    let (before_range, after_range) = windows(session.session_time, days);
    let window = |(start, end): Span| {
        let inside: Vec<&ScoredEvaluation> = evaluations
            .iter()
            .filter(|e| e.time >= start && e.time < end)
            .collect();
        let scores: Vec<f64> = inside.iter().filter_map(|e| e.score).collect();
        let criteria = session
            .criterion_keys
            .iter()
            .map(|key| {
                let rated: Vec<f64> = inside
                    .iter()
                    .flat_map(|e| &e.criterion_scores)
                    .filter(|c| &c.criterion_key == key)
                    .filter_map(|c| c.score)
                    .collect();
                CriterionAverage {
                    criterion_key: key.clone(),
                    average_score: iqs(rated.iter().copied().map(Some)),
                    rated_count: rated.len() as u64,
                }
            })
            .collect();
        let summary = Window {
            start_time: start,
            end_time: end,
            iqs: iqs(scores.iter().copied().map(Some)),
            count: scores.len() as u64,
            criteria,
        };
        (summary, scores)
    };
    let (before, before_scores) = window(before_range);
    let (after, after_scores) = window(after_range);
    let iqs_change = before.iqs.zip(after.iqs).map(|(b, a)| a - b);
    Impact {
        test: welch_t_test(&before_scores, &after_scores),
        before,
        after,
        iqs_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(days)
    }

    fn scored(days: i64, score: f64, greeting: Option<f64>) -> ScoredEvaluation {
        ScoredEvaluation {
            time: at(days),
            score: Some(score),
            criterion_scores: vec![CriterionScore {
                criterion_key: "greeting".into(),
                score: greeting,
            }],
        }
    }

    fn session() -> Session {
        Session {
            id: Uuid::nil(),
            agent_id: "agent".into(),
            coach_id: "lead".into(),
            criterion_keys: vec!["greeting".into()],
            evaluation_ids: Vec::new(),
            notes: String::new(),
            session_time: at(0),
            action_items: Vec::new(),
            create_time: at(0),
        }
    }

    #[test]
    fn impact_compares_the_windows_and_leaves_out_what_lies_outside_them() {
        let evaluations = [
            scored(-40, 0.0, Some(0.0)),
            scored(-10, 60.0, Some(50.0)),
            scored(-5, 70.0, None),
            scored(-1, 65.0, Some(0.0)),
            scored(0, 80.0, Some(100.0)),
            scored(3, 90.0, Some(100.0)),
            scored(27, 85.0, Some(50.0)),
            scored(28, 0.0, Some(0.0)),
        ];
        let impact = impact(&session(), 28, &evaluations);
        assert_eq!(impact.before.count, 3);
        assert_eq!(impact.before.iqs, Some(65.0));
        assert_eq!(impact.after.count, 3);
        assert_eq!(impact.after.iqs, Some(85.0));
        assert_eq!(impact.iqs_change, Some(20.0));
        assert_eq!(impact.before.criteria[0].average_score, Some(25.0));
        assert_eq!(impact.before.criteria[0].rated_count, 2);
        assert!((impact.after.criteria[0].average_score.unwrap() - 250.0 / 3.0).abs() < 1e-12);
        let test = impact.test.unwrap();
        assert!(test.t > 0.0 && test.p_value < 0.05, "{test:?}");
    }

    #[test]
    fn impact_has_no_test_with_one_evaluation_on_a_side() {
        let evaluations = [
            scored(-1, 60.0, None),
            scored(1, 80.0, None),
            scored(2, 90.0, None),
        ];
        let impact = impact(&session(), 28, &evaluations);
        assert_eq!(impact.iqs_change, Some(25.0));
        assert_eq!(impact.test, None);
    }
}
