//! Evaluations (reviews of an interaction against one rubric version) and their
//! revisions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::interaction::InteractionInput;
use super::scoring::{Rating, ScoreOutcome};
use super::validation::Violations;

pub const MAX_REASON_CHARS: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationKind {
    Manual,
    #[serde(rename = "self")]
    SelfReview,
    Automated,
    Calibration,
}

impl EvaluationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::SelfReview => "self",
            Self::Automated => "automated",
            Self::Calibration => "calibration",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "manual" => Self::Manual,
            "self" => Self::SelfReview,
            "automated" => Self::Automated,
            "calibration" => Self::Calibration,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationState {
    Active,
    Superseded,
    Deleted,
}

impl EvaluationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "active" => Self::Active,
            "superseded" => Self::Superseded,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// Which interaction an evaluation reviews.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum InteractionRef {
    Id(Uuid),
    /// Upserted in the same transaction as the evaluation.
    Inline(Box<InteractionInput>),
}

/// One stored revision of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub id: Uuid,
    pub revision: u32,
    pub interaction_id: Uuid,
    pub agent_id: String,
    pub team_id: String,
    pub channel: String,
    pub region: String,
    pub rubric_id: Uuid,
    pub rubric_version: u32,
    pub reviewer_id: String,
    pub kind: EvaluationKind,
    pub ratings: Vec<Rating>,
    pub comment: String,
    pub outcome: ScoreOutcome,
    pub state: EvaluationState,
    /// The calibration session of a CALIBRATION evaluation.
    pub calibration_session_id: Option<Uuid>,
    /// When the agent acknowledged this revision.
    pub acknowledge_time: Option<DateTime<Utc>>,
    /// When this revision was created.
    pub create_time: DateTime<Utc>,
    /// When revision 1 was created: the time bucket the evaluation belongs to.
    pub first_create_time: DateTime<Utc>,
}

/// A scored submission, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvaluation {
    pub request_id: Option<String>,
    /// Identifies the submitted content for AIP-155 retries.
    pub fingerprint: Vec<u8>,
    pub interaction: InteractionRef,
    pub rubric_id: Uuid,
    pub rubric_version: u32,
    pub reviewer_id: String,
    pub kind: EvaluationKind,
    pub ratings: Vec<Rating>,
    pub comment: String,
    pub outcome: ScoreOutcome,
    /// When an imported review was made elsewhere; `None` = when it is stored.
    pub review_time: Option<DateTime<Utc>>,
    /// An inline interaction that already exists may be updated only if it keeps its
    /// agent: an agent key's submission must not take over another agent's interaction.
    pub interaction_keeps_agent: bool,
    pub calibration_session_id: Option<Uuid>,
}

/// Why an agent key's submission was refused when its inline interaction belongs to
/// another agent.
pub const NOT_OWN_INTERACTION: &str =
    "this interaction belongs to another agent: an agent key reviews only its own interactions";

/// A scored revision of an existing evaluation, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRevision {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    /// The revision this one supersedes; a concurrent revision in between is refused.
    pub supersedes: u32,
    pub ratings: Vec<Rating>,
    pub comment: String,
    pub reason: String,
    pub outcome: ScoreOutcome,
}

/// What analytics learns of a change to an evaluation (the outbox payload): the current
/// revision's figures and dimensions, as they were when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationEvent {
    pub evaluation_id: Uuid,
    pub revision: u32,
    pub state: EvaluationState,
    pub interaction_id: Uuid,
    pub agent_id: String,
    pub team_id: String,
    pub channel: String,
    pub region: String,
    pub rubric_id: Uuid,
    pub rubric_version: u32,
    pub reviewer_id: String,
    pub kind: EvaluationKind,
    pub score: Option<f64>,
    pub passed: bool,
    pub critical_failed: bool,
    pub section_scores: Vec<super::scoring::SectionScore>,
    pub criterion_scores: Vec<super::scoring::CriterionScore>,
    /// (criterion key, root cause) for every root cause tagged on a rating.
    pub root_causes: Vec<(String, String)>,
    pub csat: Option<i32>,
    pub first_create_time: DateTime<Utc>,
}

impl EvaluationEvent {
    pub fn of(evaluation: &Evaluation, csat: Option<i32>) -> Self {
        Self {
            evaluation_id: evaluation.id,
            revision: evaluation.revision,
            state: evaluation.state,
            interaction_id: evaluation.interaction_id,
            agent_id: evaluation.agent_id.clone(),
            team_id: evaluation.team_id.clone(),
            channel: evaluation.channel.clone(),
            region: evaluation.region.clone(),
            rubric_id: evaluation.rubric_id,
            rubric_version: evaluation.rubric_version,
            reviewer_id: evaluation.reviewer_id.clone(),
            kind: evaluation.kind,
            score: evaluation.outcome.score,
            passed: evaluation.outcome.passed,
            critical_failed: evaluation.outcome.critical_failed,
            section_scores: evaluation.outcome.section_scores.clone(),
            criterion_scores: evaluation.outcome.criterion_scores.clone(),
            root_causes: evaluation
                .ratings
                .iter()
                .flat_map(|rating| {
                    rating
                        .root_causes
                        .iter()
                        .map(|cause| (rating.criterion_key.clone(), cause.clone()))
                })
                .collect(),
            csat,
            first_create_time: evaluation.first_create_time,
        }
    }
}

/// A SHA-256 of a serializable request content, in a canonical form (serde_json of plain
/// structs: fields in declaration order, maps as BTreeMaps).
pub fn fingerprint_of(content: &impl Serialize) -> Vec<u8> {
    let canonical = serde_json::to_vec(content).unwrap_or_default();
    Sha256::digest(canonical).to_vec()
}

/// Checks a required reason for a revision or deletion.
pub fn check_reason(field: &str, reason: &str, violations: &mut Violations) {
    violations.check_length(field, reason.trim(), 1, MAX_REASON_CHARS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_round_trip_their_names() {
        for kind in [
            EvaluationKind::Manual,
            EvaluationKind::SelfReview,
            EvaluationKind::Automated,
            EvaluationKind::Calibration,
        ] {
            assert_eq!(EvaluationKind::parse(kind.as_str()), Some(kind));
        }
        for state in [
            EvaluationState::Active,
            EvaluationState::Superseded,
            EvaluationState::Deleted,
        ] {
            assert_eq!(EvaluationState::parse(state.as_str()), Some(state));
        }
        assert_eq!(EvaluationKind::parse("bogus"), None);
    }

    #[test]
    fn a_blank_reason_is_refused() {
        let mut violations = Violations::new();
        check_reason("reason", "   ", &mut violations);
        check_reason("reason", "recalibrated", &mut violations);
        assert_eq!(violations.as_slice().len(), 1);
    }
}
