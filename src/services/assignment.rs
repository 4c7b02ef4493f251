//! iqs.evaluation.v1.AssignmentService over an AssignmentStore, and GetAssignmentCoverage
//! (served by the analytics service).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{
    assignment_state_from_proto, assignment_to_proto, coverage_to_proto, from_timestamp,
    plan_from_proto, plan_to_proto, timestamp,
};
use super::rubric_client::RubricClient;
use crate::auth::{Principal, credential, principal};
use crate::domain::{
    evaluation::{check_reason, fingerprint_of},
    paging::PageTokens,
    sampling::{self, NewPlan},
    validation::Violations,
};
use crate::proto::analytics as apb;
use crate::proto::evaluation::{self as pb, assignment_service_server::AssignmentService};
use crate::store::{AssignmentListing, AssignmentStore};

pub struct AssignmentApi {
    store: Arc<dyn AssignmentStore>,
    rubrics: Arc<dyn RubricClient>,
    tokens: Arc<PageTokens>,
}

impl AssignmentApi {
    pub fn new(
        store: Arc<dyn AssignmentStore>,
        rubrics: Arc<dyn RubricClient>,
        tokens: Arc<PageTokens>,
    ) -> Self {
        Self {
            store,
            rubrics,
            tokens,
        }
    }
}

/// The reviewer a call acts for: a bound key's own (an empty `reviewer_id` is its own,
/// another is refused), else the one asked for.
fn acting_reviewer(
    caller: &Principal,
    asked: String,
    violations: &mut Violations,
) -> Result<String, Status> {
    match caller.own_reviewer() {
        Some(own) if asked.is_empty() || asked == own => Ok(own.to_owned()),
        Some(own) => Err(Status::permission_denied(format!(
            "this key is bound to reviewer {own:?}: it works only its own queue"
        ))),
        None => {
            if asked.is_empty() {
                violations.add(
                    "reviewer_id",
                    "is required (the key is bound to no reviewer)",
                );
            }
            Ok(asked)
        }
    }
}

#[tonic::async_trait]
impl AssignmentService for AssignmentApi {
    async fn create_sampling_plan(
        &self,
        request: Request<pb::CreateSamplingPlanRequest>,
    ) -> Result<Response<pb::SamplingPlan>, Status> {
        let caller = principal(&request)?.clone();
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let input = plan_from_proto(request.plan, &mut violations);
        let input = violations.finish_with(input)?;
        // The rubric must have a published version to review against.
        self.rubrics
            .version(caller.tenant, credential.as_ref(), input.rubric_id, None)
            .await?;
        let new = NewPlan {
            request_id: Some(request.request_id).filter(|id| !id.is_empty()),
            fingerprint: fingerprint_of(&input),
            input,
        };
        let plan = self.store.create_plan(caller.tenant, new).await?;
        Ok(Response::new(plan_to_proto(plan)))
    }

    async fn get_sampling_plan(
        &self,
        request: Request<pb::GetSamplingPlanRequest>,
    ) -> Result<Response<pb::SamplingPlan>, Status> {
        let tenant = principal(&request)?.tenant;
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        Ok(Response::new(plan_to_proto(
            self.store.get_plan(tenant, id).await?,
        )))
    }

    async fn list_sampling_plans(
        &self,
        request: Request<pb::ListSamplingPlansRequest>,
    ) -> Result<Response<pb::ListSamplingPlansResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filters = "sampling_plans";
        let (limit, before) = self.tokens.id_page(
            tenant,
            request.page_size,
            &request.page_token,
            filters,
            &mut violations,
        );
        violations.finish(())?;
        let plans = self.store.list_plans(tenant, before, limit + 1).await?;
        let (plans, next_page_token) =
            self.tokens
                .finish_page(tenant, plans, limit, filters, |last| last.id.to_string());
        Ok(Response::new(pb::ListSamplingPlansResponse {
            plans: plans.into_iter().map(plan_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn run_sampling(
        &self,
        request: Request<pb::RunSamplingRequest>,
    ) -> Result<Response<pb::RunSamplingResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let plan_id = violations.require_uuid("plan_id", &request.plan_id);
        let time = from_timestamp(request.period_start, "period_start", &mut violations);
        let plan_id = violations.finish_with(plan_id)?;
        let plan = self.store.get_plan(tenant, plan_id).await?;
        let period = plan
            .input
            .period
            .containing(time.unwrap_or_else(chrono::Utc::now));
        let outcome = self.store.run_sampling(tenant, plan_id, period).await?;
        Ok(Response::new(pb::RunSamplingResponse {
            created: outcome.created,
            already_assigned: outcome.already_assigned,
            short_agents: outcome
                .short_agents
                .into_iter()
                .map(|(agent_id, eligible)| pb::ShortAgent { agent_id, eligible })
                .collect(),
            period_start: Some(timestamp(period.0)),
            period_end: Some(timestamp(period.1)),
        }))
    }

    async fn list_assignments(
        &self,
        request: Request<pb::ListAssignmentsRequest>,
    ) -> Result<Response<pb::ListAssignmentsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let reviewer_id = match caller.own_reviewer() {
            Some(_) => acting_reviewer(&caller, request.reviewer_id, &mut violations)?,
            None => request.reviewer_id,
        };
        let plan_id = violations.optional_uuid("plan_id", &request.plan_id);
        let states = request
            .states
            .iter()
            .enumerate()
            .filter_map(|(index, state)| {
                assignment_state_from_proto(*state, &format!("states[{index}]"), &mut violations)
            })
            .collect();
        let filters = format!(
            "assignments;{};{:?};{:?}",
            request.plan_id, reviewer_id, request.states
        );
        let (limit, after) = self.tokens.id_page(
            tenant,
            request.page_size,
            &request.page_token,
            &filters,
            &mut violations,
        );
        violations.finish(())?;
        let listing = AssignmentListing {
            after,
            limit: limit + 1,
            plan_id,
            reviewer_id: Some(reviewer_id).filter(|id| !id.is_empty()),
            states,
        };
        let assignments = self.store.list_assignments(tenant, listing).await?;
        let (assignments, next_page_token) =
            self.tokens
                .finish_page(tenant, assignments, limit, &filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListAssignmentsResponse {
            assignments: assignments.into_iter().map(assignment_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn next_assignment(
        &self,
        request: Request<pb::NextAssignmentRequest>,
    ) -> Result<Response<pb::Assignment>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let reviewer = acting_reviewer(&caller, request.reviewer_id, &mut violations)?;
        violations.finish(())?;
        let next = self
            .store
            .next_assignment(caller.tenant, &reviewer)
            .await?
            .ok_or_else(|| {
                Status::not_found(format!("reviewer {reviewer:?} has no open assignment"))
            })?;
        Ok(Response::new(assignment_to_proto(next)))
    }

    async fn skip_assignment(
        &self,
        request: Request<pb::SkipAssignmentRequest>,
    ) -> Result<Response<pb::SkipAssignmentResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.id);
        check_reason("reason", &request.reason, &mut violations);
        let id = violations.finish_with(id)?;
        if let Some(own) = caller.own_reviewer() {
            let assignment = self.store.get_assignment(caller.tenant, id).await?;
            if assignment.reviewer_id != own {
                return Err(Status::permission_denied(format!(
                    "this key is bound to reviewer {own:?}: it skips only its own assignments"
                )));
            }
        }
        let (skipped, replacement) = self
            .store
            .skip_assignment(caller.tenant, id, &request.reason)
            .await?;
        Ok(Response::new(pb::SkipAssignmentResponse {
            skipped: Some(assignment_to_proto(skipped)),
            replacement: replacement.map(assignment_to_proto),
        }))
    }
}

/// GetAssignmentCoverage: a plan's assignments of one period, per reviewer and agent.
pub(super) async fn assignment_coverage(
    store: &dyn AssignmentStore,
    request: Request<apb::GetAssignmentCoverageRequest>,
) -> Result<Response<apb::AssignmentCoverage>, Status> {
    let tenant = principal(&request)?.tenant;
    let request = request.into_inner();
    let mut violations = Violations::new();
    let plan_id = violations.require_uuid("plan_id", &request.plan_id);
    let time = from_timestamp(request.period_start, "period_start", &mut violations);
    let plan_id = violations.finish_with(plan_id)?;
    let plan = store.get_plan(tenant, plan_id).await?;
    let period = plan
        .input
        .period
        .containing(time.unwrap_or_else(chrono::Utc::now));
    let counts = store.coverage_counts(tenant, plan_id, period.0).await?;
    let (total, reviewers, agents) = sampling::coverage(&counts);
    Ok(Response::new(apb::AssignmentCoverage {
        plan_id: plan_id.to_string(),
        period_start: Some(timestamp(period.0)),
        period_end: Some(timestamp(period.1)),
        total: Some(coverage_to_proto(total)),
        reviewers: reviewers.into_iter().map(coverage_to_proto).collect(),
        agents: agents.into_iter().map(coverage_to_proto).collect(),
    }))
}
