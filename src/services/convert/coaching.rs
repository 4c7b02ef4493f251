//! Coaching sessions and their impact between protobuf and the domain.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{from_timestamp, timestamp};
use crate::domain::coaching::{
    ActionItemInput, Impact, Session, SessionInput, Window, check_session,
};
use crate::domain::validation::Violations;
use crate::proto::analytics as apb;
use crate::proto::evaluation as pb;

/// A session as the caller records it; every malformed field is a violation. `coach_id`
/// falls back to `default_coach` (a reviewer-bound key's own reviewer).
pub fn coaching_session_from_proto(
    session: Option<pb::CoachingSession>,
    default_coach: Option<&str>,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Option<SessionInput> {
    let Some(session) = session else {
        violations.add("session", "is required");
        return None;
    };
    let evaluation_ids: Vec<Option<Uuid>> = session
        .evaluation_ids
        .iter()
        .enumerate()
        .map(|(index, id)| violations.require_uuid(&format!("session.evaluation_ids[{index}]"), id))
        .collect();
    let session_time = from_timestamp(session.session_time, "session.session_time", violations);
    let action_items = session
        .action_items
        .into_iter()
        .enumerate()
        .map(|(index, item)| ActionItemInput {
            description: item.description,
            due_time: from_timestamp(
                item.due_time,
                &format!("session.action_items[{index}].due_time"),
                violations,
            ),
        })
        .collect();
    let coach_id = match (session.coach_id.is_empty(), default_coach) {
        (true, Some(own)) => own.to_owned(),
        _ => session.coach_id,
    };
    let input = SessionInput {
        agent_id: session.agent_id,
        coach_id,
        criterion_keys: session.criterion_keys,
        evaluation_ids: evaluation_ids.iter().flatten().copied().collect(),
        notes: session.notes,
        session_time: session_time.unwrap_or(now),
        action_items,
    };
    check_session(&input, "session", violations);
    evaluation_ids.iter().all(Option::is_some).then_some(input)
}

pub fn coaching_session_to_proto(session: Session) -> pb::CoachingSession {
    pb::CoachingSession {
        id: session.id.to_string(),
        agent_id: session.agent_id,
        coach_id: session.coach_id,
        criterion_keys: session.criterion_keys,
        evaluation_ids: session.evaluation_ids.iter().map(Uuid::to_string).collect(),
        notes: session.notes,
        session_time: Some(timestamp(session.session_time)),
        action_items: session
            .action_items
            .into_iter()
            .map(|item| pb::ActionItem {
                id: item.id.to_string(),
                description: item.description,
                due_time: item.due_time.map(timestamp),
                done: item.done_time.is_some(),
                done_time: item.done_time.map(timestamp),
            })
            .collect(),
        create_time: Some(timestamp(session.create_time)),
    }
}

fn window_to_proto(window: Window) -> apb::ImpactWindow {
    apb::ImpactWindow {
        start_time: Some(timestamp(window.start_time)),
        end_time: Some(timestamp(window.end_time)),
        iqs: window.iqs,
        count: window.count,
        criteria: window
            .criteria
            .into_iter()
            .map(|criterion| apb::CoachedCriterion {
                criterion_key: criterion.criterion_key,
                average_score: criterion.average_score,
                rated_count: criterion.rated_count,
            })
            .collect(),
    }
}

pub fn impact_to_proto(session: &Session, impact: Impact) -> apb::CoachingImpact {
    apb::CoachingImpact {
        session_id: session.id.to_string(),
        agent_id: session.agent_id.clone(),
        before: Some(window_to_proto(impact.before)),
        after: Some(window_to_proto(impact.after)),
        iqs_change: impact.iqs_change,
        p_value: impact.test.map(|test| test.p_value),
        t_statistic: impact.test.map(|test| test.t),
        degrees_of_freedom: impact.test.map(|test| test.degrees_of_freedom),
    }
}
