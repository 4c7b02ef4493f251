//! Interaction and evaluation messages <-> domain.

use super::{from_timestamp, timestamp};
use crate::domain::{
    evaluation::{Evaluation, EvaluationKind, EvaluationState},
    interaction::{Interaction, InteractionInput, Message, MessageRole, check_optional_id},
    paging::{filter_fingerprint, page_size},
    scoring::{Rating, ScoreOutcome},
    validation::Violations,
};
use crate::proto::{common, evaluation as pb};
use crate::store::EvaluationListing;

/// A ListEvaluations request, checked: the listing (all but where the page starts), the
/// page size, and what its page token must have been issued for.
pub struct ListingRequest {
    pub listing: EvaluationListing,
    pub page_size: u32,
    pub filter_fingerprint: String,
    pub page_token: String,
}

/// Checks every field of a ListEvaluations request but its page token.
pub fn listing_from_proto(
    request: pb::ListEvaluationsRequest,
    violations: &mut Violations,
) -> ListingRequest {
    let limit = page_size(request.page_size).unwrap_or_else(|reason| {
        violations.add("page_size", reason);
        0
    });
    for (field, value) in [
        ("agent_id", &request.agent_id),
        ("team_id", &request.team_id),
        ("reviewer_id", &request.reviewer_id),
    ] {
        check_optional_id(field, value, violations);
    }
    let interaction_id = violations.optional_uuid("interaction_id", &request.interaction_id);
    let rubric_id = violations.optional_uuid("rubric_id", &request.rubric_id);
    let kinds: Vec<EvaluationKind> = request
        .kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| kind_from_proto(*kind, &format!("kinds[{index}]"), violations))
        .collect();
    let (start_time, end_time) = super::time_range_from_proto(request.time_range, violations);
    let mut filters = format!(
        "evaluations;{};{:?};{:?};{:?};{};{:?};{:?};{:?};{}",
        request.interaction_id,
        request.agent_id,
        request.team_id,
        request.reviewer_id,
        request.rubric_id,
        kinds,
        start_time,
        end_time,
        request.include_inactive
    );
    // Appended only when asked, so tokens of listings without it stay valid.
    if request.unacknowledged {
        filters.push_str(";unacknowledged");
    }
    let non_empty = |value: String| Some(value).filter(|v| !v.is_empty());
    ListingRequest {
        listing: EvaluationListing {
            before: None,
            limit: limit + 1,
            interaction_id,
            agent_id: non_empty(request.agent_id),
            team_id: non_empty(request.team_id),
            reviewer_id: non_empty(request.reviewer_id),
            rubric_id,
            kinds,
            start_time,
            end_time,
            include_inactive: request.include_inactive,
            unacknowledged: request.unacknowledged,
        },
        page_size: limit,
        filter_fingerprint: filter_fingerprint(&filters),
        page_token: request.page_token,
    }
}

pub fn interaction_from_proto(
    interaction: pb::Interaction,
    path: &str,
    violations: &mut Violations,
) -> InteractionInput {
    let messages = interaction
        .messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            let at = format!("{path}.messages[{index}]");
            let role = match pb::MessageRole::try_from(message.role) {
                Ok(pb::MessageRole::Agent) => MessageRole::Agent,
                Ok(pb::MessageRole::Customer) => MessageRole::Customer,
                Ok(pb::MessageRole::System) => MessageRole::System,
                _ => {
                    violations.add(format!("{at}.role"), "must be AGENT, CUSTOMER or SYSTEM");
                    MessageRole::System
                }
            };
            Message {
                role,
                author_id: message.author_id,
                text: message.text,
                send_time: from_timestamp(
                    message.send_time,
                    &format!("{at}.send_time"),
                    violations,
                ),
            }
        })
        .collect();
    InteractionInput {
        source: interaction.source,
        external_id: interaction.external_id,
        channel: interaction.channel,
        agent_id: interaction.agent_id,
        team_id: interaction.team_id,
        region: interaction.region,
        occur_time: from_timestamp(
            interaction.occur_time,
            &format!("{path}.occur_time"),
            violations,
        ),
        csat: interaction.csat,
        nps: interaction.nps,
        messages,
        attributes: interaction.attributes.into_iter().collect(),
    }
}

pub fn interaction_to_proto(interaction: Interaction) -> pb::Interaction {
    let input = interaction.input;
    pb::Interaction {
        id: interaction.id.to_string(),
        source: input.source,
        external_id: input.external_id,
        channel: input.channel,
        agent_id: input.agent_id,
        team_id: input.team_id,
        region: input.region,
        occur_time: input.occur_time.map(timestamp),
        csat: input.csat,
        nps: input.nps,
        messages: input
            .messages
            .into_iter()
            .map(|message| pb::Message {
                role: match message.role {
                    MessageRole::Agent => pb::MessageRole::Agent,
                    MessageRole::Customer => pb::MessageRole::Customer,
                    MessageRole::System => pb::MessageRole::System,
                } as i32,
                author_id: message.author_id,
                text: message.text,
                send_time: message.send_time.map(timestamp),
            })
            .collect(),
        attributes: input.attributes.into_iter().collect(),
        create_time: Some(timestamp(interaction.create_time)),
        update_time: Some(timestamp(interaction.update_time)),
    }
}

pub fn rating_from_proto(rating: pb::Rating) -> Rating {
    Rating {
        criterion_key: rating.criterion_key,
        value: rating.value,
        not_applicable: rating.not_applicable,
        comment: rating.comment,
        root_causes: rating.root_causes,
        explanation: rating.explanation,
    }
}

pub fn rating_to_proto(rating: Rating) -> pb::Rating {
    pb::Rating {
        criterion_key: rating.criterion_key,
        value: rating.value,
        not_applicable: rating.not_applicable,
        comment: rating.comment,
        root_causes: rating.root_causes,
        explanation: rating.explanation,
    }
}

pub fn kind_from_proto(kind: i32, field: &str, violations: &mut Violations) -> EvaluationKind {
    match pb::EvaluationKind::try_from(kind) {
        Ok(pb::EvaluationKind::Unspecified | pb::EvaluationKind::Manual) => EvaluationKind::Manual,
        Ok(pb::EvaluationKind::Self_) => EvaluationKind::SelfReview,
        Ok(pb::EvaluationKind::Automated) => EvaluationKind::Automated,
        Ok(pb::EvaluationKind::Calibration) => EvaluationKind::Calibration,
        Err(_) => {
            violations.add(field, format!("unknown evaluation kind {kind}"));
            EvaluationKind::Manual
        }
    }
}

pub fn kind_to_proto(kind: EvaluationKind) -> pb::EvaluationKind {
    match kind {
        EvaluationKind::Manual => pb::EvaluationKind::Manual,
        EvaluationKind::SelfReview => pb::EvaluationKind::Self_,
        EvaluationKind::Automated => pb::EvaluationKind::Automated,
        EvaluationKind::Calibration => pb::EvaluationKind::Calibration,
    }
}

pub fn state_to_proto(state: EvaluationState) -> pb::EvaluationState {
    match state {
        EvaluationState::Active => pb::EvaluationState::Active,
        EvaluationState::Superseded => pb::EvaluationState::Superseded,
        EvaluationState::Deleted => pb::EvaluationState::Deleted,
    }
}

pub fn section_scores_to_proto(outcome: &ScoreOutcome) -> Vec<common::SectionScore> {
    outcome
        .section_scores
        .iter()
        .map(|section| common::SectionScore {
            section: section.section.clone(),
            score: section.score,
        })
        .collect()
}

pub fn criterion_scores_to_proto(outcome: &ScoreOutcome) -> Vec<common::CriterionScore> {
    outcome
        .criterion_scores
        .iter()
        .map(|criterion| common::CriterionScore {
            criterion_key: criterion.criterion_key.clone(),
            score: criterion.score,
        })
        .collect()
}

pub fn evaluation_to_proto(evaluation: Evaluation) -> pb::Evaluation {
    pb::Evaluation {
        id: evaluation.id.to_string(),
        revision: evaluation.revision,
        interaction_id: evaluation.interaction_id.to_string(),
        agent_id: evaluation.agent_id,
        team_id: evaluation.team_id,
        channel: evaluation.channel,
        region: evaluation.region,
        rubric_id: evaluation.rubric_id.to_string(),
        rubric_version: evaluation.rubric_version,
        reviewer_id: evaluation.reviewer_id,
        kind: kind_to_proto(evaluation.kind) as i32,
        score: evaluation.outcome.score,
        section_scores: section_scores_to_proto(&evaluation.outcome),
        criterion_scores: criterion_scores_to_proto(&evaluation.outcome),
        critical_failed: evaluation.outcome.critical_failed,
        passed: evaluation.outcome.passed,
        ratings: evaluation
            .ratings
            .into_iter()
            .map(rating_to_proto)
            .collect(),
        comment: evaluation.comment,
        state: state_to_proto(evaluation.state) as i32,
        acknowledge_time: evaluation.acknowledge_time.map(timestamp),
        calibration_session_id: evaluation
            .calibration_session_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        create_time: Some(timestamp(evaluation.create_time)),
    }
}
