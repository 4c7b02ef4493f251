//! Sampling plans, assignments and coverage between protobuf and the domain.

use uuid::Uuid;

use super::timestamp;
use crate::domain::sampling::{
    Assignment, AssignmentState, Coverage, Filter, Period, Plan, PlanInput, Strategy, check_plan,
};
use crate::domain::validation::Violations;
use crate::proto::analytics as apb;
use crate::proto::evaluation as pb;

/// A plan as the caller asked for it; every malformed field is a violation.
pub fn plan_from_proto(
    plan: Option<pb::SamplingPlan>,
    violations: &mut Violations,
) -> Option<PlanInput> {
    let Some(plan) = plan else {
        violations.add("plan", "is required");
        return None;
    };
    let rubric_id = violations.require_uuid("plan.rubric_id", &plan.rubric_id);
    let period = match pb::SamplingPeriod::try_from(plan.period) {
        Ok(pb::SamplingPeriod::Week) => Some(Period::Week),
        Ok(pb::SamplingPeriod::Month) => Some(Period::Month),
        _ => {
            violations.add(
                "plan.period",
                "must be SAMPLING_PERIOD_WEEK or SAMPLING_PERIOD_MONTH",
            );
            None
        }
    };
    let strategy = match pb::SamplingStrategy::try_from(plan.strategy) {
        Ok(pb::SamplingStrategy::Random) => Some(Strategy::Random),
        Ok(pb::SamplingStrategy::StratifiedChannel) => Some(Strategy::StratifiedChannel),
        Ok(pb::SamplingStrategy::LowCsatFirst) => Some(Strategy::LowCsatFirst),
        _ => {
            violations.add(
                "plan.strategy",
                "must be SAMPLING_STRATEGY_RANDOM, STRATIFIED_CHANNEL or LOW_CSAT_FIRST",
            );
            None
        }
    };
    let filter = plan.filter.unwrap_or_default();
    let input = PlanInput {
        display_name: plan.display_name,
        rubric_id: rubric_id.unwrap_or_default(),
        filter: Filter {
            channels: filter.channels,
            team_ids: filter.team_ids,
            agent_ids: filter.agent_ids,
            regions: filter.regions,
            min_csat: filter.min_csat,
            max_csat: filter.max_csat,
        },
        per_agent_count: plan.per_agent_count,
        period: period.unwrap_or(Period::Week),
        strategy: strategy.unwrap_or(Strategy::Random),
        reviewer_ids: plan.reviewer_ids,
        seed: plan.seed,
    };
    check_plan(&input, violations);
    (rubric_id.is_some() && period.is_some() && strategy.is_some()).then_some(input)
}

pub fn plan_to_proto(plan: Plan) -> pb::SamplingPlan {
    let input = plan.input;
    pb::SamplingPlan {
        id: plan.id.to_string(),
        display_name: input.display_name,
        rubric_id: input.rubric_id.to_string(),
        filter: Some(pb::SamplingFilter {
            channels: input.filter.channels,
            team_ids: input.filter.team_ids,
            agent_ids: input.filter.agent_ids,
            regions: input.filter.regions,
            min_csat: input.filter.min_csat,
            max_csat: input.filter.max_csat,
        }),
        per_agent_count: input.per_agent_count,
        period: match input.period {
            Period::Week => pb::SamplingPeriod::Week,
            Period::Month => pb::SamplingPeriod::Month,
        } as i32,
        strategy: match input.strategy {
            Strategy::Random => pb::SamplingStrategy::Random,
            Strategy::StratifiedChannel => pb::SamplingStrategy::StratifiedChannel,
            Strategy::LowCsatFirst => pb::SamplingStrategy::LowCsatFirst,
        } as i32,
        reviewer_ids: input.reviewer_ids,
        seed: input.seed,
        create_time: Some(timestamp(plan.create_time)),
    }
}

pub fn assignment_to_proto(assignment: Assignment) -> pb::Assignment {
    pb::Assignment {
        id: assignment.id.to_string(),
        plan_id: assignment.plan_id.to_string(),
        interaction_id: assignment.interaction_id.to_string(),
        agent_id: assignment.agent_id,
        reviewer_id: assignment.reviewer_id,
        rubric_id: assignment.rubric_id.to_string(),
        period_start: Some(timestamp(assignment.period_start)),
        state: match assignment.state {
            AssignmentState::Open => pb::AssignmentState::Open,
            AssignmentState::Done => pb::AssignmentState::Done,
            AssignmentState::Skipped => pb::AssignmentState::Skipped,
        } as i32,
        evaluation_id: assignment.evaluation_id.as_ref().map(Uuid::to_string),
        create_time: Some(timestamp(assignment.create_time)),
        skip_reason: assignment.skip_reason,
        close_time: assignment.close_time.map(timestamp),
        channel: assignment.channel,
    }
}

pub fn assignment_state_from_proto(
    value: i32,
    field: &str,
    violations: &mut Violations,
) -> Option<AssignmentState> {
    match pb::AssignmentState::try_from(value) {
        Ok(pb::AssignmentState::Open) => Some(AssignmentState::Open),
        Ok(pb::AssignmentState::Done) => Some(AssignmentState::Done),
        Ok(pb::AssignmentState::Skipped) => Some(AssignmentState::Skipped),
        _ => {
            violations.add(field, format!("must be OPEN, DONE or SKIPPED, got {value}"));
            None
        }
    }
}

pub fn coverage_to_proto(coverage: Coverage) -> apb::CoverageRow {
    apb::CoverageRow {
        done_share: coverage.done_share(),
        id: coverage.id,
        assigned: coverage.assigned,
        done: coverage.done,
        skipped: coverage.skipped,
        open: coverage.open,
    }
}
