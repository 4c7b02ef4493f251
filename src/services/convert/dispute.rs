//! Disputes and their summary between protobuf and the domain.

use super::{rating_to_proto, timestamp};
use crate::domain::dispute::{Dispute, DisputeOutcome, DisputeState, SummaryDimension, SummaryRow};
use crate::domain::validation::Violations;
use crate::proto::analytics as apb;
use crate::proto::evaluation as pb;

pub fn dispute_to_proto(dispute: Dispute) -> pb::Dispute {
    pb::Dispute {
        id: dispute.id.to_string(),
        evaluation_id: dispute.evaluation_id.to_string(),
        evaluation_revision: dispute.evaluation_revision,
        agent_id: dispute.agent_id,
        reviewer_id: dispute.reviewer_id,
        state: dispute_state_to_proto(dispute.state) as i32,
        outcome: dispute
            .outcome
            .map_or(pb::DisputeOutcome::Unspecified, outcome_to_proto) as i32,
        comment: dispute.comment,
        proposed_ratings: dispute
            .proposed_ratings
            .into_iter()
            .map(rating_to_proto)
            .collect(),
        resolution_comment: dispute.resolution_comment,
        resolved_revision: dispute.resolved_revision,
        open_time: Some(timestamp(dispute.open_time)),
        resolve_time: dispute.resolve_time.map(timestamp),
        team_id: dispute.team_id,
        resolver_id: dispute.resolver_id,
    }
}

fn dispute_state_to_proto(state: DisputeState) -> pb::DisputeState {
    match state {
        DisputeState::Open => pb::DisputeState::Open,
        DisputeState::Resolved => pb::DisputeState::Resolved,
        DisputeState::Withdrawn => pb::DisputeState::Withdrawn,
    }
}

fn outcome_to_proto(outcome: DisputeOutcome) -> pb::DisputeOutcome {
    match outcome {
        DisputeOutcome::Accepted => pb::DisputeOutcome::Accepted,
        DisputeOutcome::PartiallyAccepted => pb::DisputeOutcome::PartiallyAccepted,
        DisputeOutcome::Rejected => pb::DisputeOutcome::Rejected,
    }
}

pub fn dispute_state_from_proto(
    value: i32,
    field: &str,
    violations: &mut Violations,
) -> Option<DisputeState> {
    match pb::DisputeState::try_from(value) {
        Ok(pb::DisputeState::Open) => Some(DisputeState::Open),
        Ok(pb::DisputeState::Resolved) => Some(DisputeState::Resolved),
        Ok(pb::DisputeState::Withdrawn) => Some(DisputeState::Withdrawn),
        _ => {
            violations.add(
                field,
                format!("must be OPEN, RESOLVED or WITHDRAWN, got {value}"),
            );
            None
        }
    }
}

pub fn outcome_from_proto(value: i32, violations: &mut Violations) -> Option<DisputeOutcome> {
    match pb::DisputeOutcome::try_from(value) {
        Ok(pb::DisputeOutcome::Accepted) => Some(DisputeOutcome::Accepted),
        Ok(pb::DisputeOutcome::PartiallyAccepted) => Some(DisputeOutcome::PartiallyAccepted),
        Ok(pb::DisputeOutcome::Rejected) => Some(DisputeOutcome::Rejected),
        Ok(pb::DisputeOutcome::Unspecified) => {
            violations.add(
                "outcome",
                "is required: ACCEPTED, PARTIALLY_ACCEPTED or REJECTED",
            );
            None
        }
        Err(_) => {
            violations.add("outcome", format!("unknown outcome {value}"));
            None
        }
    }
}

/// What a dispute summary groups by: reviewer unless asked otherwise.
pub fn summary_dimension_from_proto(value: i32, violations: &mut Violations) -> SummaryDimension {
    match apb::Dimension::try_from(value) {
        Ok(apb::Dimension::Unspecified | apb::Dimension::Reviewer) => SummaryDimension::Reviewer,
        Ok(apb::Dimension::Agent) => SummaryDimension::Agent,
        Ok(apb::Dimension::Team) => SummaryDimension::Team,
        Ok(apb::Dimension::Criterion) => SummaryDimension::Criterion,
        _ => {
            violations.add(
                "group_by",
                format!("disputes are grouped by REVIEWER, AGENT, TEAM or CRITERION, got {value}"),
            );
            SummaryDimension::Reviewer
        }
    }
}

pub fn summary_row_to_proto(by: SummaryDimension, row: SummaryRow) -> apb::DisputeSummaryRow {
    apb::DisputeSummaryRow {
        dimensions: [(by.name().to_owned(), row.group)].into_iter().collect(),
        opened: row.opened,
        accepted: row.accepted,
        partially_accepted: row.partially_accepted,
        rejected: row.rejected,
        withdrawn: row.withdrawn,
        overturn_rate: row.overturn_rate,
        median_resolution_seconds: row.median_resolution_seconds,
        open: row.open,
    }
}
