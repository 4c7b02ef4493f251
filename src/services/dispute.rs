//! iqs.evaluation.v1.DisputeService over a DisputeStore, and GetDisputeSummary (served by
//! the analytics service).

use std::sync::Arc;

use serde::Serialize;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{
    dispute_state_from_proto, dispute_to_proto, outcome_from_proto, rating_from_proto,
    summary_dimension_from_proto, summary_row_to_proto, time_range_from_proto,
};
use super::evaluation::score_against;
use super::rubric_client::RubricClient;
use crate::auth::{Principal, credential, principal};
use crate::domain::{
    dispute::{self, DisputeOutcome, NewDispute, Resolution},
    evaluation::{Evaluation, EvaluationKind, NewRevision, fingerprint_of},
    paging::PageTokens,
    scoring::{MAX_COMMENT_CHARS, Rating, check_rating_changes},
    validation::Violations,
};
use crate::error::{Error, Result};
use crate::proto::analytics as apb;
use crate::proto::evaluation::{self as pb, dispute_service_server::DisputeService};
use crate::store::{DisputeListing, DisputeStore, EvaluationStore};

pub struct DisputeApi {
    disputes: Arc<dyn DisputeStore>,
    evaluations: Arc<dyn EvaluationStore>,
    rubrics: Arc<dyn RubricClient>,
    tokens: Arc<PageTokens>,
}

impl DisputeApi {
    pub fn new(
        disputes: Arc<dyn DisputeStore>,
        evaluations: Arc<dyn EvaluationStore>,
        rubrics: Arc<dyn RubricClient>,
        tokens: Arc<PageTokens>,
    ) -> Self {
        Self {
            disputes,
            evaluations,
            rubrics,
            tokens,
        }
    }
}

/// The content a retried OpenDispute must repeat.
#[derive(Serialize)]
struct OpenContent<'a> {
    evaluation_id: Uuid,
    comment: &'a str,
    proposed_ratings: &'a [Rating],
}

/// The content a repeated ResolveDispute must repeat to be answered as the first time.
#[derive(Serialize)]
struct ResolutionContent<'a> {
    outcome: DisputeOutcome,
    ratings: &'a [Rating],
    comment: &'a str,
}

/// Who resolved: a bound key's reviewer, else the key.
fn resolver_of(caller: &Principal) -> String {
    match (caller.own_reviewer(), caller.key_id) {
        (Some(reviewer), _) => reviewer.to_owned(),
        (None, Some(key)) => format!("key:{key}"),
        (None, None) => String::new(),
    }
}

/// Only scores that count in IQS are disputed: not an agent's self-review, nor a
/// calibration exercise.
fn check_disputable(evaluation: &Evaluation) -> Result<()> {
    match evaluation.kind {
        EvaluationKind::Manual | EvaluationKind::Automated => Ok(()),
        kind => Err(Error::FailedPrecondition(format!(
            "evaluation {} is a {} evaluation: only MANUAL and AUTOMATED evaluations are disputed",
            evaluation.id,
            kind.as_str()
        ))),
    }
}

/// Whether two rating lists say the same for every criterion.
fn same_values(a: &[Rating], b: &[Rating]) -> bool {
    dispute::contested_criteria(a, b).is_empty() && dispute::contested_criteria(b, a).is_empty()
}

impl DisputeApi {
    /// The current revision, as absent to an agent key when it is another agent's.
    async fn visible_evaluation(&self, caller: &Principal, id: Uuid) -> Result<Evaluation> {
        let evaluation = self
            .evaluations
            .get_evaluation(caller.tenant, id, None)
            .await?;
        if !caller.sees_agent(&evaluation.agent_id) {
            return Err(Error::not_found("evaluation", id));
        }
        Ok(evaluation)
    }
}

#[tonic::async_trait]
impl DisputeService for DisputeApi {
    async fn open_dispute(
        &self,
        request: Request<pb::OpenDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let caller = principal(&request)?.clone();
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let evaluation_id = violations.require_uuid("evaluation_id", &request.evaluation_id);
        violations.check_length("comment", &request.comment, 1, MAX_COMMENT_CHARS);
        let proposed: Vec<Rating> = request
            .proposed_ratings
            .into_iter()
            .map(rating_from_proto)
            .collect();
        let Some(evaluation_id) = evaluation_id else {
            return Err(violations.into());
        };
        let fingerprint = fingerprint_of(&OpenContent {
            evaluation_id,
            comment: &request.comment,
            proposed_ratings: &proposed,
        });
        let request_id = Some(request.request_id).filter(|id| !id.is_empty());
        // A retry answers as the first time, even once the evaluation has changed.
        if violations.is_empty()
            && let Some(request_id) = request_id.as_deref()
            && let Some(stored) = self
                .disputes
                .opened_by_request(caller.tenant, request_id, &fingerprint)
                .await?
        {
            if !caller.sees_agent(&stored.agent_id) {
                return Err(Error::not_found("evaluation", evaluation_id).into());
            }
            return Ok(Response::new(dispute_to_proto(stored)));
        }
        let evaluation = match self.visible_evaluation(&caller, evaluation_id).await {
            Ok(evaluation) => evaluation,
            Err(_) if !violations.is_empty() => return Err(violations.into()),
            Err(err) => return Err(err.into()),
        };
        check_disputable(&evaluation)?;
        let version = self
            .rubrics
            .version(
                caller.tenant,
                credential.as_ref(),
                evaluation.rubric_id,
                Some(evaluation.rubric_version),
            )
            .await?;
        check_rating_changes(&version, &proposed, "proposed_ratings", &mut violations);
        let contested = dispute::contested_criteria(&evaluation.ratings, &proposed);
        if !proposed.is_empty() && contested.is_empty() {
            violations.add(
                "proposed_ratings",
                "equal the evaluation's ratings: propose the ratings you ask for, or none",
            );
        }
        violations.finish(())?;
        let new = NewDispute {
            request_id,
            fingerprint,
            evaluation_id,
            evaluation_revision: evaluation.revision,
            comment: request.comment,
            proposed_ratings: proposed,
            contested_criteria: contested,
        };
        let dispute = self
            .disputes
            .open_dispute(caller.tenant, caller.own_agent(), new)
            .await?;
        Ok(Response::new(dispute_to_proto(dispute)))
    }

    async fn resolve_dispute(
        &self,
        request: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let caller = principal(&request)?.clone();
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.id);
        let outcome = outcome_from_proto(request.outcome, &mut violations);
        violations.check_length("comment", &request.comment, 0, MAX_COMMENT_CHARS);
        let ratings: Vec<Rating> = request.ratings.into_iter().map(rating_from_proto).collect();
        match outcome {
            Some(DisputeOutcome::Rejected) => {
                if !ratings.is_empty() {
                    violations.add(
                        "ratings",
                        "must be empty when the outcome is REJECTED: the evaluation stays as it is",
                    );
                }
                if request.comment.trim().is_empty() {
                    violations.add(
                        "comment",
                        "is required when the outcome is REJECTED: tell the agent why",
                    );
                }
            }
            Some(_) if ratings.is_empty() => violations.add(
                "ratings",
                "are required when the outcome is ACCEPTED or PARTIALLY_ACCEPTED: the evaluation's final ratings",
            ),
            _ => {}
        }
        let (Some(id), Some(outcome)) = (id, outcome) else {
            return Err(violations.into());
        };
        let dispute = match self.disputes.get_dispute(caller.tenant, id).await {
            Ok(dispute) => dispute,
            Err(_) if !violations.is_empty() => return Err(violations.into()),
            Err(err) => return Err(err.into()),
        };
        if caller.own_reviewer() == Some(dispute.reviewer_id.as_str()) {
            return Err(Status::permission_denied(
                "a reviewer does not resolve disputes of their own evaluations: another reviewer or an admin does",
            ));
        }
        let fingerprint = fingerprint_of(&ResolutionContent {
            outcome,
            ratings: &ratings,
            comment: &request.comment,
        });
        let revise = outcome.overturns() && !ratings.is_empty();
        let revision = if revise && dispute.state == dispute::DisputeState::Open {
            let current = self
                .evaluations
                .get_evaluation(caller.tenant, dispute.evaluation_id, None)
                .await?;
            let version = self
                .rubrics
                .version(
                    caller.tenant,
                    credential.as_ref(),
                    current.rubric_id,
                    Some(current.rubric_version),
                )
                .await?;
            let scored = score_against(&version, &ratings, &mut violations);
            if violations.is_empty() && same_values(&current.ratings, &ratings) {
                violations.add(
                    "ratings",
                    "equal the evaluation's current ratings: an accepted dispute changes them (or REJECT it)",
                );
            }
            violations.finish(())?;
            Some(NewRevision {
                request_id: None,
                fingerprint: fingerprint.clone(),
                supersedes: current.revision,
                ratings,
                comment: current.comment,
                reason: format!("dispute {id}"),
                outcome: scored,
            })
        } else {
            violations.finish(())?;
            None
        };
        let resolution = Resolution {
            outcome,
            comment: request.comment,
            resolver_id: resolver_of(&caller),
            fingerprint,
        };
        let dispute = self
            .disputes
            .resolve_dispute(caller.tenant, id, resolution, revision)
            .await?;
        Ok(Response::new(dispute_to_proto(dispute)))
    }

    async fn withdraw_dispute(
        &self,
        request: Request<pb::WithdrawDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let caller = principal(&request)?.clone();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let dispute = self
            .disputes
            .withdraw_dispute(caller.tenant, id, caller.own_agent())
            .await?;
        Ok(Response::new(dispute_to_proto(dispute)))
    }

    async fn get_dispute(
        &self,
        request: Request<pb::GetDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let caller = principal(&request)?.clone();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let dispute = self.disputes.get_dispute(caller.tenant, id).await?;
        if !caller.sees_agent(&dispute.agent_id) {
            return Err(Error::not_found("dispute", id).into());
        }
        Ok(Response::new(dispute_to_proto(dispute)))
    }

    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let mut request = request.into_inner();
        caller.restrict_agent_filter(&mut request.agent_id, "disputes")?;
        let mut violations = Violations::new();
        let states = request
            .states
            .iter()
            .enumerate()
            .filter_map(|(index, state)| {
                dispute_state_from_proto(*state, &format!("states[{index}]"), &mut violations)
            })
            .collect();
        let evaluation_id = violations.optional_uuid("evaluation_id", &request.evaluation_id);
        let (start_time, end_time) = time_range_from_proto(request.time_range, &mut violations);
        let filters = format!(
            "disputes;{:?};{:?};{:?};{};{:?};{:?}",
            request.states,
            request.agent_id,
            request.reviewer_id,
            request.evaluation_id,
            start_time.map(|t| t.timestamp_micros()),
            end_time.map(|t| t.timestamp_micros()),
        );
        let (limit, before) = self.tokens.id_page(
            tenant,
            request.page_size,
            &request.page_token,
            &filters,
            &mut violations,
        );
        violations.finish(())?;
        let listing = DisputeListing {
            before,
            limit: limit + 1,
            states,
            agent_id: Some(request.agent_id).filter(|id| !id.is_empty()),
            reviewer_id: Some(request.reviewer_id).filter(|id| !id.is_empty()),
            evaluation_id,
            start_time,
            end_time,
        };
        let disputes = self.disputes.list_disputes(tenant, listing).await?;
        let (disputes, next_page_token) =
            self.tokens
                .finish_page(tenant, disputes, limit, &filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListDisputesResponse {
            disputes: disputes.into_iter().map(dispute_to_proto).collect(),
            next_page_token,
        }))
    }
}

/// GetDisputeSummary: every dispute opened in the range, grouped.
pub(super) async fn dispute_summary(
    store: &dyn DisputeStore,
    request: Request<apb::GetDisputeSummaryRequest>,
) -> Result<Response<apb::GetDisputeSummaryResponse>, Status> {
    let tenant = principal(&request)?.tenant;
    let request = request.into_inner();
    let mut violations = Violations::new();
    let (start_time, end_time) = time_range_from_proto(request.time_range, &mut violations);
    let by = summary_dimension_from_proto(request.group_by, &mut violations);
    violations.finish(())?;
    let listing = DisputeListing {
        limit: u32::MAX,
        start_time,
        end_time,
        ..DisputeListing::default()
    };
    let disputes = store.list_disputes(tenant, listing).await?;
    let rows = dispute::summarize(&disputes, by)
        .into_iter()
        .map(|row| summary_row_to_proto(by, row))
        .collect();
    Ok(Response::new(apb::GetDisputeSummaryResponse { rows }))
}
