//! Calibration sessions and reports between protobuf and the domain.

use uuid::Uuid;

use super::{from_timestamp, timestamp};
use crate::domain::calibration::{
    Alpha, CalibrationReport, Session, SessionInput, SessionState, check_session,
};
use crate::domain::validation::Violations;
use crate::proto::analytics as apb;
use crate::proto::evaluation as pb;

/// A session as the caller asked for it; every malformed field is a violation.
pub fn session_from_proto(
    session: Option<pb::CalibrationSession>,
    violations: &mut Violations,
) -> Option<SessionInput> {
    let Some(session) = session else {
        violations.add("session", "is required");
        return None;
    };
    let rubric_id = violations.require_uuid("session.rubric_id", &session.rubric_id);
    let interaction_ids: Vec<Option<Uuid>> = session
        .interaction_ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            violations.require_uuid(&format!("session.interaction_ids[{index}]"), id)
        })
        .collect();
    let due_time = from_timestamp(session.due_time, "session.due_time", violations);
    let baseline = Some(session.baseline_reviewer_id).filter(|id| !id.is_empty());
    let input = SessionInput {
        display_name: session.display_name,
        rubric_id: rubric_id.unwrap_or_default(),
        rubric_version: session.rubric_version,
        interaction_ids: interaction_ids.iter().flatten().copied().collect(),
        reviewer_ids: session.reviewer_ids,
        baseline_reviewer_id: baseline,
        due_time,
    };
    check_session(&input, interaction_ids.len(), violations);
    (rubric_id.is_some() && interaction_ids.iter().all(Option::is_some)).then_some(input)
}

pub fn session_state_to_proto(state: SessionState) -> pb::CalibrationSessionState {
    match state {
        SessionState::Open => pb::CalibrationSessionState::Open,
        SessionState::Closed => pb::CalibrationSessionState::Closed,
    }
}

/// The state a listing asks for: `None` = every state.
pub fn session_state_from_proto(
    value: i32,
    field: &str,
    violations: &mut Violations,
) -> Option<SessionState> {
    match pb::CalibrationSessionState::try_from(value) {
        Ok(pb::CalibrationSessionState::Unspecified) => None,
        Ok(pb::CalibrationSessionState::Open) => Some(SessionState::Open),
        Ok(pb::CalibrationSessionState::Closed) => Some(SessionState::Closed),
        Err(_) => {
            violations.add(field, format!("unknown calibration session state {value}"));
            None
        }
    }
}

pub fn session_to_proto(session: Session) -> pb::CalibrationSession {
    pb::CalibrationSession {
        id: session.id.to_string(),
        display_name: session.display_name,
        rubric_id: session.rubric_id.to_string(),
        rubric_version: session.rubric_version,
        interaction_ids: session
            .interaction_ids
            .iter()
            .map(Uuid::to_string)
            .collect(),
        reviewer_ids: session.reviewer_ids,
        baseline_reviewer_id: session.baseline_reviewer_id.unwrap_or_default(),
        state: session_state_to_proto(session.state) as i32,
        due_time: session.due_time.map(timestamp),
        create_time: Some(timestamp(session.create_time)),
        close_time: session.close_time.map(timestamp),
    }
}

pub fn report_to_proto(session: &Session, report: CalibrationReport) -> apb::CalibrationReport {
    let Alpha { value, low, high } = report.score_alpha_interval;
    apb::CalibrationReport {
        session_id: session.id.to_string(),
        state: session_state_to_proto(session.state) as i32,
        unit_count: report.unit_count,
        reviewer_count: report.reviewer_count,
        score_alpha_interval: value,
        score_alpha_interval_low: low,
        score_alpha_interval_high: high,
        criteria: report
            .criteria
            .into_iter()
            .map(|criterion| apb::CriterionAgreement {
                criterion_key: criterion.criterion_key,
                pairable_count: criterion.pairable_count,
                alpha_nominal: criterion.alpha_nominal,
                alpha_ordinal: criterion.alpha_ordinal,
                alpha_interval: criterion.alpha_interval.value,
                alpha_interval_low: criterion.alpha_interval.low,
                alpha_interval_high: criterion.alpha_interval.high,
                exact_agreement: criterion.exact_agreement,
            })
            .collect(),
        reviewers: report
            .reviewers
            .into_iter()
            .map(|reviewer| apb::ReviewerDeviation {
                reviewer_id: reviewer.reviewer_id,
                evaluation_count: reviewer.evaluation_count,
                mean_score: reviewer.mean_score,
                mean_deviation_from_group: reviewer.mean_deviation_from_group,
                mean_deviation_from_baseline: reviewer.mean_deviation_from_baseline,
                within_10_share: reviewer.within_10_share,
            })
            .collect(),
    }
}
