//! What both store adapters compute the same way about an evaluation's rows: the
//! dimensions it copies from its interaction, how a retried request is answered, and
//! number and JSON conversions.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use sqlx::types::Json;

use crate::domain::evaluation::{Evaluation, EvaluationKind, EvaluationState, NewEvaluation};
use crate::domain::scoring::{CriterionScore, Rating, ScoreOutcome, SectionScore};
use crate::error::{Error, Result};
use crate::store::StoredRequest;
use crate::store::sql::Stamp;

/// The dimensions an evaluation copies from its interaction at submit time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Dimensions {
    pub id: Uuid,
    #[sqlx(default)]
    pub source: String,
    #[sqlx(default)]
    pub external_id: String,
    pub agent_id: String,
    pub team_id: String,
    pub channel: String,
    pub region: String,
    pub csat: Option<i16>,
}

/// The first revision of a new evaluation of the interaction described by `dimensions`,
/// dated `now` unless it is history from elsewhere.
pub(crate) fn evaluation_from(
    new: NewEvaluation,
    dimensions: &Dimensions,
    id: Uuid,
    now: DateTime<Utc>,
) -> Evaluation {
    Evaluation {
        id,
        revision: 1,
        interaction_id: dimensions.id,
        agent_id: dimensions.agent_id.clone(),
        team_id: dimensions.team_id.clone(),
        channel: dimensions.channel.clone(),
        region: dimensions.region.clone(),
        rubric_id: new.rubric_id,
        rubric_version: new.rubric_version,
        reviewer_id: new.reviewer_id,
        kind: new.kind,
        ratings: new.ratings,
        comment: new.comment,
        outcome: new.outcome,
        state: EvaluationState::Active,
        calibration_session_id: new.calibration_session_id,
        acknowledge_time: None,
        create_time: new.review_time.unwrap_or(now),
        first_create_time: new.review_time.unwrap_or(now),
    }
}

/// The stored evaluation for a retried request id, or `AlreadyExists` when the
/// content differs.
pub(crate) fn replay(
    stored: Option<StoredRequest>,
    request_id: &str,
    fingerprint: &[u8],
) -> Result<Evaluation> {
    match stored {
        Some(stored) if stored.fingerprint == fingerprint => Ok(stored.evaluation),
        Some(_) => Err(Error::AlreadyExists(format!(
            "request_id {request_id:?} was already used with different content"
        ))),
        None => Err(Error::Internal(format!(
            "request {request_id:?} conflicted but is not stored"
        ))),
    }
}

pub(crate) fn unsigned(value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Internal(format!("negative number {value} in storage")))
}

/// A rubric version as stored; one beyond the stored range names no version.
pub(crate) fn rubric_version(version: u32) -> Result<i32> {
    i32::try_from(version).map_err(|_| Error::not_found("rubric version", version))
}

pub(crate) fn signed(value: u32) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::not_found("evaluation revision", value))
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|err| Error::Internal(format!("cannot encode JSON: {err}")))
}

/// An evaluation revision as both adapters read it (`EVALUATION_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct EvaluationRow {
    pub id: Uuid,
    pub revision: i32,
    pub interaction_id: Uuid,
    pub agent_id: String,
    pub team_id: String,
    pub channel: String,
    pub region: String,
    pub rubric_id: Uuid,
    pub rubric_version: i32,
    pub reviewer_id: String,
    pub kind: String,
    pub comment: String,
    pub score: Option<f64>,
    pub section_scores: Json<Vec<SectionScore>>,
    pub criterion_scores: Json<Vec<CriterionScore>>,
    pub critical_failed: bool,
    pub passed: bool,
    pub state: String,
    pub create_time: Stamp,
    pub first_create_time: Stamp,
    pub calibration_session_id: Option<Uuid>,
    pub acknowledge_time: Option<Stamp>,
}

impl EvaluationRow {
    pub fn into_evaluation(self, ratings: Vec<Rating>) -> Result<Evaluation> {
        let kind = EvaluationKind::parse(&self.kind)
            .ok_or_else(|| Error::Internal(format!("unknown evaluation kind {:?}", self.kind)))?;
        let state = EvaluationState::parse(&self.state)
            .ok_or_else(|| Error::Internal(format!("unknown evaluation state {:?}", self.state)))?;
        Ok(Evaluation {
            id: self.id,
            revision: unsigned(self.revision)?,
            interaction_id: self.interaction_id,
            agent_id: self.agent_id,
            team_id: self.team_id,
            channel: self.channel,
            region: self.region,
            rubric_id: self.rubric_id,
            rubric_version: unsigned(self.rubric_version)?,
            reviewer_id: self.reviewer_id,
            kind,
            ratings,
            comment: self.comment,
            outcome: ScoreOutcome {
                score: self.score,
                section_scores: self.section_scores.0,
                criterion_scores: self.criterion_scores.0,
                critical_failed: self.critical_failed,
                passed: self.passed,
            },
            state,
            calibration_session_id: self.calibration_session_id,
            acknowledge_time: self.acknowledge_time.map(Into::into),
            create_time: self.create_time.into(),
            first_create_time: self.first_create_time.into(),
        })
    }
}
