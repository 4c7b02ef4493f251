//! iqs.evaluation.v1.EvaluationService over an EvaluationStore and a RubricClient.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::calibration::{Blindfold, changes_own_review, submit_as};
use super::convert::version_to_proto;
use super::convert::{
    ListingRequest, criterion_scores_to_proto, evaluation_to_proto, from_timestamp,
    interaction_from_proto, interaction_to_proto, kind_from_proto, listing_from_proto,
    rating_from_proto, rating_to_proto, section_scores_to_proto,
};
use super::import_flow::ProjectionBackpressure;
use super::rubric_client::RubricClient;
use super::scorers::ExternalScorers;
use crate::auth::{Credential, Principal, credential, principal};
use crate::domain::{
    autoqa,
    calibration::SessionState,
    evaluation::{
        EvaluationKind, InteractionRef, NewEvaluation, NewRevision, check_reason, fingerprint_of,
    },
    import_partition::independent_parts,
    interaction::{InteractionInput, check_external_id},
    paging::PageTokens,
    rubric::RubricVersion,
    scoring::{self, MAX_COMMENT_CHARS, Rating, ScoreOutcome},
    tenant::TenantId,
    validation::{Violations, cut_to_bytes},
};
use crate::error::{Error, Result};
use crate::proto::evaluation::{
    self as pb, evaluation_service_server::EvaluationService,
    submit_evaluation_request::InteractionRef as PbInteractionRef,
};
use crate::store::evaluation_rows::replay;
use crate::store::{CalibrationStore, EvaluationStore, ImportOutcome};

/// Rows written per transaction by ImportEvaluations.
pub const IMPORT_BATCH_SIZE: usize = 1_000;
/// Rejections listed in an import response; `rejected_count` counts them all.
pub const MAX_LISTED_REJECTIONS: usize = 10_000;
/// Bytes kept of one rejection's reason and request id: the most rejections listed stay
/// within the default 4 MiB answer.
pub const MAX_REJECTION_REASON_BYTES: usize = 256;
const MAX_REJECTION_REQUEST_ID_BYTES: usize = 128;

pub struct EvaluationApi {
    store: Arc<dyn EvaluationStore>,
    calibrations: Arc<dyn CalibrationStore>,
    rubrics: Arc<dyn RubricClient>,
    tokens: Arc<PageTokens>,
    scorers: Arc<ExternalScorers>,
    projection: Arc<ProjectionBackpressure>,
}

/// A call made by this service to itself, as `principal`, with the caller's metadata
/// (its credential reaches a remote rubric service the same way).
fn in_process<T>(
    metadata: &tonic::metadata::MetadataMap,
    principal: &Principal,
    message: T,
) -> Request<T> {
    let mut request = Request::from_parts(metadata.clone(), tonic::Extensions::new(), message);
    request.extensions_mut().insert(principal.clone());
    request
}

/// Whether two lists of ratings say the same: AutoQA's answer for a transcript it rated
/// before.
fn same_ratings(stored: &[pb::Rating], rated: &[pb::Rating]) -> bool {
    let said = |rating: &pb::Rating| {
        (
            rating.criterion_key.clone(),
            rating.value,
            rating.not_applicable,
            rating.explanation.clone(),
        )
    };
    stored.len() == rated.len() && stored.iter().map(said).eq(rated.iter().map(said))
}

/// What AutoQA's ratings say, for the request id of the revision that records them.
fn ratings_content(ratings: &[pb::Rating]) -> Vec<(String, Option<i32>, String)> {
    ratings
        .iter()
        .map(|rating| {
            (
                rating.criterion_key.clone(),
                rating.value,
                rating.explanation.clone(),
            )
        })
        .collect()
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The content of a submission that a retry must repeat exactly (AIP-155).
#[derive(Serialize)]
struct SubmissionContent<'a> {
    interaction: &'a InteractionRef,
    rubric_id: Uuid,
    rubric_version: u32,
    reviewer_id: &'a str,
    kind: EvaluationKind,
    ratings: &'a [Rating],
    comment: &'a str,
    // Absent from the fingerprints of undated submissions, so theirs never change.
    #[serde(skip_serializing_if = "Option::is_none")]
    review_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration_session_id: Option<Uuid>,
}

#[derive(Serialize)]
struct RevisionContent<'a> {
    evaluation_id: Uuid,
    ratings: &'a [Rating],
    comment: &'a str,
    reason: &'a str,
}

/// A submission whose fields are well-formed, before the rubric is consulted.
struct CheckedSubmission {
    request_id: Option<String>,
    fingerprint: Vec<u8>,
    interaction: InteractionRef,
    rubric_id: Uuid,
    requested_version: Option<u32>,
    reviewer_id: String,
    kind: EvaluationKind,
    ratings: Vec<Rating>,
    comment: String,
    review_time: Option<DateTime<Utc>>,
    calibration_session_id: Option<Uuid>,
}

/// Whether a submission may carry the time of a review made elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dating {
    /// SubmitEvaluation: dated when stored.
    Live,
    /// ImportEvaluations: history may keep its own time.
    History,
}

fn optional_request_id(request_id: String) -> Option<String> {
    Some(request_id).filter(|id| !id.is_empty())
}

/// Checks every field that does not need the rubric.
fn check_submission(
    request: pb::SubmitEvaluationRequest,
    dating: Dating,
    violations: &mut Violations,
) -> Option<CheckedSubmission> {
    violations.check_request_id("request_id", &request.request_id);
    let review_time = match (dating, request.create_time) {
        (_, None) => None,
        (Dating::Live, Some(_)) => {
            violations.add(
                "create_time",
                "is only for ImportEvaluations; a submitted review is dated when it is submitted",
            );
            None
        }
        (Dating::History, time) => {
            let time = from_timestamp(time, "create_time", violations);
            if time.is_some_and(|time| time > Utc::now()) {
                violations.add("create_time", "must not be in the future");
            }
            time
        }
    };
    let interaction = match request.interaction_ref {
        Some(PbInteractionRef::InteractionId(id)) => violations
            .require_uuid("interaction_id", &id)
            .map(InteractionRef::Id),
        Some(PbInteractionRef::Interaction(inline)) => {
            let input: InteractionInput = interaction_from_proto(inline, "interaction", violations);
            input.validate("interaction", violations);
            Some(InteractionRef::Inline(Box::new(input)))
        }
        None => {
            violations.add(
                "interaction_id",
                "interaction_id or interaction is required",
            );
            None
        }
    };
    let rubric_id = violations.require_uuid("rubric_id", &request.rubric_id);
    check_external_id("reviewer_id", &request.reviewer_id, violations);
    let kind = kind_from_proto(request.kind, "kind", violations);
    let calibration_session_id =
        violations.optional_uuid("calibration_session_id", &request.calibration_session_id);
    if calibration_session_id.is_some() {
        if kind != EvaluationKind::Calibration {
            violations.add(
                "kind",
                "must be EVALUATION_KIND_CALIBRATION when calibration_session_id is set",
            );
        }
        if dating == Dating::History {
            violations.add(
                "calibration_session_id",
                "calibration reviews are submitted one at a time with SubmitEvaluation",
            );
        }
        if matches!(interaction, Some(InteractionRef::Inline(_))) {
            violations.add(
                "interaction_id",
                "a calibration review names one of the session's interactions by id",
            );
        }
    }
    violations.check_length("comment", &request.comment, 0, MAX_COMMENT_CHARS);
    let ratings: Vec<Rating> = request.ratings.into_iter().map(rating_from_proto).collect();
    let (interaction, rubric_id) = (interaction?, rubric_id?);
    let requested_version = Some(request.rubric_version).filter(|v| *v > 0);
    let fingerprint = fingerprint_of(&SubmissionContent {
        interaction: &interaction,
        rubric_id,
        rubric_version: request.rubric_version,
        reviewer_id: &request.reviewer_id,
        kind,
        ratings: &ratings,
        comment: &request.comment,
        review_time,
        calibration_session_id,
    });
    Some(CheckedSubmission {
        request_id: optional_request_id(request.request_id),
        fingerprint,
        interaction,
        rubric_id,
        requested_version,
        reviewer_id: request.reviewer_id,
        kind,
        ratings,
        comment: request.comment,
        review_time,
        calibration_session_id,
    })
}

/// Checks the ratings against the version and scores them.
pub(super) fn score_against(
    version: &RubricVersion,
    ratings: &[Rating],
    violations: &mut Violations,
) -> ScoreOutcome {
    let checked = scoring::check_ratings(version, ratings, "ratings", violations);
    scoring::score(version, &checked)
}

/// Latest versions resolved once per import stream, so every row of one import uses the
/// same version, and the rubric is not asked again for each row.
#[derive(Default)]
struct LatestVersions(HashMap<Uuid, Arc<RubricVersion>>);

impl EvaluationApi {
    pub fn new(
        store: Arc<dyn EvaluationStore>,
        calibrations: Arc<dyn CalibrationStore>,
        rubrics: Arc<dyn RubricClient>,
        tokens: Arc<PageTokens>,
        scorers: Arc<ExternalScorers>,
        projection: Arc<ProjectionBackpressure>,
    ) -> Self {
        Self {
            store,
            calibrations,
            rubrics,
            tokens,
            scorers,
            projection,
        }
    }

    async fn version_for(
        &self,
        tenant: TenantId,
        credential: Option<&Credential>,
        rubric_id: Uuid,
        requested: Option<u32>,
        latest: Option<&mut LatestVersions>,
    ) -> Result<Arc<RubricVersion>> {
        match (requested, latest) {
            (None, Some(latest)) => {
                if let Some(version) = latest.0.get(&rubric_id) {
                    return Ok(version.clone());
                }
                let version = self
                    .rubrics
                    .version(tenant, credential, rubric_id, None)
                    .await?;
                latest.0.insert(rubric_id, version.clone());
                Ok(version)
            }
            (requested, _) => {
                self.rubrics
                    .version(tenant, credential, rubric_id, requested)
                    .await
            }
        }
    }

    /// Validates and scores a submission into what the store writes.
    async fn prepare(
        &self,
        tenant: TenantId,
        credential: Option<&Credential>,
        submission: CheckedSubmission,
        mut violations: Violations,
        latest: Option<&mut LatestVersions>,
    ) -> Result<NewEvaluation> {
        let version = self
            .version_for(
                tenant,
                credential,
                submission.rubric_id,
                submission.requested_version,
                latest,
            )
            .await;
        let version = match version {
            Ok(version) => version,
            // Name the malformed fields first; the rubric is only the next problem.
            Err(_) if !violations.is_empty() => return Err(violations.into()),
            Err(err) => return Err(err),
        };
        let outcome = score_against(&version, &submission.ratings, &mut violations);
        violations.finish(())?;
        Ok(NewEvaluation {
            request_id: submission.request_id,
            fingerprint: submission.fingerprint,
            interaction: submission.interaction,
            rubric_id: submission.rubric_id,
            rubric_version: version.version,
            reviewer_id: submission.reviewer_id,
            kind: submission.kind,
            ratings: submission.ratings,
            comment: submission.comment,
            outcome,
            review_time: submission.review_time,
            interaction_keeps_agent: false,
            calibration_session_id: submission.calibration_session_id,
        })
    }

    /// Answers a refused submission: as the first time when it retries a stored request,
    /// else with the refusal.
    async fn answer_retry(
        &self,
        tenant: TenantId,
        retry: Option<(String, Vec<u8>)>,
        refusal: Error,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let answerable = matches!(
            refusal,
            Error::InvalidArgument(_) | Error::FailedPrecondition(_) | Error::NotFound { .. }
        );
        if answerable
            && let Some((request_id, fingerprint)) = retry
            && let Some(stored) = self.store.find_request(tenant, &request_id).await?
        {
            let first = replay(Some(stored), &request_id, &fingerprint)?;
            return Ok(Response::new(evaluation_to_proto(first)));
        }
        Err(refusal.into())
    }

    /// Applies the session's rules to a calibration review and pins its rubric version.
    async fn check_calibration(
        &self,
        tenant: TenantId,
        submission: &mut CheckedSubmission,
        violations: &mut Violations,
    ) -> Result<()> {
        let Some(session_id) = submission.calibration_session_id else {
            return Ok(());
        };
        let session = self.calibrations.get_session(tenant, session_id).await?;
        if session.state == SessionState::Closed {
            return Err(Error::FailedPrecondition(format!(
                "calibration session {session_id} is closed: it takes no more reviews"
            )));
        }
        if let InteractionRef::Id(interaction_id) = submission.interaction {
            session.check_review(
                interaction_id,
                &submission.reviewer_id,
                submission.rubric_id,
                submission.requested_version,
                violations,
            );
        }
        submission.requested_version = Some(session.rubric_version);
        Ok(())
    }

    /// An agent submits only SELF evaluations of its own interactions.
    async fn check_self_review(
        &self,
        tenant: TenantId,
        own: &str,
        submission: &CheckedSubmission,
    ) -> Result<(), Status> {
        if submission.kind != EvaluationKind::SelfReview {
            return Err(Status::permission_denied(
                "an agent key submits only SELF evaluations",
            ));
        }
        let reviewed = match &submission.interaction {
            InteractionRef::Inline(input) => input.agent_id.clone(),
            InteractionRef::Id(id) => {
                self.store
                    .get_interaction(tenant, *id)
                    .await?
                    .input
                    .agent_id
            }
        };
        if reviewed != own || submission.reviewer_id != own {
            return Err(Status::permission_denied(
                "an agent key reviews only its own interactions, as itself",
            ));
        }
        Ok(())
    }

    /// Stores a batch as parts that share no interaction and no request id, written at
    /// the same time (as many as the store writes at once), each deciding for its rows
    /// what the whole batch would have. The next batch starts once all are stored, so
    /// batches stay in stream order.
    async fn import_in_parts(
        &self,
        tenant: TenantId,
        batch: Vec<ImportRow>,
        response: &mut pb::ImportEvaluationsResponse,
    ) -> Result<()> {
        let parts = self.store.concurrent_import_parts();
        if parts < 2 {
            return self.import_batch(tenant, batch, response).await;
        }
        let split = {
            let rows: Vec<&NewEvaluation> = batch.iter().map(|(_, _, row)| row).collect();
            independent_parts(&rows, parts)
        };
        let mut rows: Vec<Option<ImportRow>> = batch.into_iter().map(Some).collect();
        let writes = split.into_iter().map(|positions| {
            let part: Vec<ImportRow> = positions
                .into_iter()
                .filter_map(|position| rows[position].take())
                .collect();
            async move {
                let mut written = pb::ImportEvaluationsResponse::default();
                self.import_batch(tenant, part, &mut written)
                    .await
                    .map(|()| written)
            }
        });
        for written in futures_util::future::join_all(writes).await {
            merge_import_outcomes(response, written?);
        }
        Ok(())
    }

    async fn import_batch(
        &self,
        tenant: TenantId,
        rows: Vec<ImportRow>,
        response: &mut pb::ImportEvaluationsResponse,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut pending = vec![rows];
        // A batch the store refuses as a whole is split until the refused rows are alone:
        // one bad row is that row's rejection, and the others are stored.
        while let Some(rows) = pending.pop() {
            let evaluations: Vec<NewEvaluation> =
                rows.iter().map(|(_, _, row)| row.clone()).collect();
            match self.store.import(tenant, evaluations).await {
                Ok(outcomes) => {
                    for ((index, request_id, _), outcome) in rows.into_iter().zip(outcomes) {
                        match outcome {
                            ImportOutcome::Accepted => response.accepted += 1,
                            ImportOutcome::Duplicate => response.duplicates += 1,
                            ImportOutcome::Rejected(reason) => {
                                reject(response, index, request_id, reason)
                            }
                        }
                    }
                }
                Err(err @ Error::Unavailable(_)) => return Err(err),
                Err(err) if rows.len() == 1 => {
                    let (index, request_id, _) = rows.into_iter().next().expect("one row");
                    let reason = match err {
                        Error::Internal(detail) => {
                            tracing::warn!(%detail, index, "the store refused an imported row");
                            "the store refused this row".to_owned()
                        }
                        other => other.to_string(),
                    };
                    reject(response, index, request_id, reason);
                }
                Err(_) => {
                    let mut first = rows;
                    let second = first.split_off(first.len() / 2);
                    // Popped first: the rows stay in stream order.
                    pending.push(second);
                    pending.push(first);
                }
            }
        }
        Ok(())
    }
}

fn reject(
    response: &mut pb::ImportEvaluationsResponse,
    index: u64,
    mut request_id: String,
    mut reason: String,
) {
    response.rejected_count += 1;
    if response.rejected.len() < MAX_LISTED_REJECTIONS {
        cut_to_bytes(&mut reason, MAX_REJECTION_REASON_BYTES);
        cut_to_bytes(&mut request_id, MAX_REJECTION_REQUEST_ID_BYTES);
        response.rejected.push(pb::ImportRejection {
            index,
            request_id,
            reason,
        });
    }
}

#[tonic::async_trait]
impl EvaluationService for EvaluationApi {
    async fn upsert_interaction(
        &self,
        request: Request<pb::UpsertInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        let tenant = principal(&request)?.tenant;
        let mut violations = Violations::new();
        let Some(interaction) = request.into_inner().interaction else {
            return Err(Error::invalid_field("interaction", "is required").into());
        };
        let input = interaction_from_proto(interaction, "interaction", &mut violations);
        input.validate("interaction", &mut violations);
        violations.finish(())?;
        let stored = self.store.upsert_interaction(tenant, input).await?;
        Ok(Response::new(interaction_to_proto(stored)))
    }

    async fn get_interaction(
        &self,
        request: Request<pb::GetInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        let tenant = principal(&request)?.tenant;
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let interaction = self.store.get_interaction(tenant, id).await?;
        Ok(Response::new(interaction_to_proto(interaction)))
    }

    async fn submit_evaluation(
        &self,
        request: Request<pb::SubmitEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let credential = credential(&request);
        let tenant = caller.tenant;
        let mut request = request.into_inner();
        submit_as(&caller, &mut request.reviewer_id)?;
        let mut violations = Violations::new();
        let submission = check_submission(request, Dating::Live, &mut violations);
        let Some(mut submission) = submission else {
            return Err(violations.into());
        };
        if let Some(own) = caller.own_agent() {
            self.check_self_review(tenant, own, &submission).await?;
        }
        // A retry is answered as the first time: the store replays a stored request id at
        // insert. Looking it up before scoring instead cost every first submission a
        // query; it is looked up only when scoring refuses the request's content, because
        // the rubric may have moved on since the first time (or its calibration session
        // has closed). An unavailable store is not asked twice: the call would wait out a
        // second acquire timeout.
        let retry = (submission.request_id.clone())
            .filter(|_| violations.is_empty())
            .map(|id| (id, submission.fingerprint.clone()));
        let calibration = submission
            .calibration_session_id
            .map(|session| (session, submission.reviewer_id.clone()));
        let prepared = match self
            .check_calibration(tenant, &mut submission, &mut violations)
            .await
        {
            Ok(()) => {
                self.prepare(tenant, credential.as_ref(), submission, violations, None)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        let new = match prepared {
            Ok(new) => NewEvaluation {
                interaction_keeps_agent: caller.own_agent().is_some(),
                ..new
            },
            Err(refusal) => return self.answer_retry(tenant, retry, refusal).await,
        };
        let interaction = match &new.interaction {
            InteractionRef::Id(id) => Some(*id),
            InteractionRef::Inline(_) => None,
        };
        let stored = match self.store.submit(tenant, new).await {
            Ok(stored) => stored,
            Err(Error::AlreadyExists(_)) if let Some((session, reviewer)) = calibration => {
                return Err(Error::AlreadyExists(format!(
                    "reviewer {reviewer:?} already reviewed interaction {} in calibration session {session}; change that review with ReviseEvaluation",
                    interaction.unwrap_or_default()
                ))
                .into());
            }
            // The session closed after it was read: a retry is still answered.
            Err(refusal @ Error::FailedPrecondition(_)) => {
                return self.answer_retry(tenant, retry, refusal).await;
            }
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(evaluation_to_proto(stored)))
    }

    async fn score_evaluation(
        &self,
        request: Request<pb::ScoreEvaluationRequest>,
    ) -> Result<Response<pb::ScoreResult>, Status> {
        let tenant = principal(&request)?.tenant;
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let rubric_id = violations.require_uuid("rubric_id", &request.rubric_id);
        let rubric_id = violations.finish_with(rubric_id)?;
        let requested = Some(request.rubric_version).filter(|v| *v > 0);
        let version = self
            .rubrics
            .version(tenant, credential.as_ref(), rubric_id, requested)
            .await?;
        let ratings: Vec<Rating> = request.ratings.into_iter().map(rating_from_proto).collect();
        let mut violations = Violations::new();
        let outcome = score_against(&version, &ratings, &mut violations);
        violations.finish(())?;
        Ok(Response::new(pb::ScoreResult {
            score: outcome.score,
            section_scores: section_scores_to_proto(&outcome),
            criterion_scores: criterion_scores_to_proto(&outcome),
            critical_failed: outcome.critical_failed,
            passed: outcome.passed,
            rubric_id: rubric_id.to_string(),
            rubric_version: version.version,
        }))
    }

    async fn get_evaluation(
        &self,
        request: Request<pb::GetEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let revision = Some(request.get_ref().revision).filter(|r| *r > 0);
        let evaluation = self.store.get_evaluation(tenant, id, revision).await?;
        let hidden = Blindfold::for_caller(&caller)
            .hides(self.calibrations.as_ref(), &evaluation)
            .await?;
        if hidden || !caller.sees_agent(&evaluation.agent_id) {
            // Another agent's evaluation is as absent as one that does not exist.
            return Err(Error::not_found("evaluation", id).into());
        }
        Ok(Response::new(evaluation_to_proto(evaluation)))
    }

    async fn list_evaluations(
        &self,
        request: Request<pb::ListEvaluationsRequest>,
    ) -> Result<Response<pb::ListEvaluationsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let mut request = request.into_inner();
        caller.restrict_agent_filter(&mut request.agent_id, "evaluations")?;
        let mut violations = Violations::new();
        let ListingRequest {
            mut listing,
            page_size,
            filter_fingerprint,
            page_token,
        } = listing_from_proto(request, &mut violations);
        listing.before = self.tokens.read(
            tenant,
            &page_token,
            &filter_fingerprint,
            "page_token",
            |key| {
                let (id, revision) = key.split_once(':')?;
                Some((Uuid::parse_str(id).ok()?, revision.parse::<u32>().ok()?))
            },
            &mut violations,
        );
        violations.finish(())?;
        let evaluations = self.store.list_evaluations(tenant, listing).await?;
        let (evaluations, next_page_token) = self.tokens.finish_page(
            tenant,
            evaluations,
            page_size,
            &filter_fingerprint,
            |last| format!("{}:{}", last.id, last.revision),
        );
        // Hidden after paging, so the token still follows the stored order: a page may
        // then hold fewer than page_size evaluations.
        let mut blindfold = Blindfold::for_caller(&caller);
        let mut visible = Vec::with_capacity(evaluations.len());
        for evaluation in evaluations {
            if !blindfold
                .hides(self.calibrations.as_ref(), &evaluation)
                .await?
            {
                visible.push(evaluation_to_proto(evaluation));
            }
        }
        Ok(Response::new(pb::ListEvaluationsResponse {
            evaluations: visible,
            next_page_token,
        }))
    }

    async fn revise_evaluation(
        &self,
        request: Request<pb::ReviseEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.id);
        violations.check_request_id("request_id", &request.request_id);
        violations.check_length("comment", &request.comment, 0, MAX_COMMENT_CHARS);
        check_reason("reason", &request.reason, &mut violations);
        let ratings: Vec<Rating> = request.ratings.into_iter().map(rating_from_proto).collect();
        let Some(id) = id else {
            return Err(violations.into());
        };
        let fingerprint = fingerprint_of(&RevisionContent {
            evaluation_id: id,
            ratings: &ratings,
            comment: &request.comment,
            reason: &request.reason,
        });
        let request_id = optional_request_id(request.request_id);
        if violations.is_empty()
            && let Some(request_id) = request_id.as_deref()
            && let Some(stored) = self.store.find_request(tenant, request_id).await?
        {
            return if stored.fingerprint == fingerprint {
                Ok(Response::new(evaluation_to_proto(stored.evaluation)))
            } else {
                Err(Error::AlreadyExists(format!(
                    "request_id {request_id:?} was already used with different content"
                ))
                .into())
            };
        }
        let current = match self.store.get_evaluation(tenant, id, None).await {
            Ok(current) => current,
            Err(_) if !violations.is_empty() => {
                return Err(violations.into());
            }
            Err(err) => return Err(err.into()),
        };
        changes_own_review(&caller, &current)?;
        let version = self
            .rubrics
            .version(
                tenant,
                credential.as_ref(),
                current.rubric_id,
                Some(current.rubric_version),
            )
            .await?;
        let outcome = score_against(&version, &ratings, &mut violations);
        violations.finish(())?;
        let revised = self
            .store
            .revise(
                tenant,
                id,
                NewRevision {
                    request_id,
                    fingerprint,
                    supersedes: current.revision,
                    ratings,
                    comment: request.comment,
                    reason: request.reason,
                    outcome,
                },
            )
            .await?;
        Ok(Response::new(evaluation_to_proto(revised)))
    }

    async fn delete_evaluation(
        &self,
        request: Request<pb::DeleteEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.id);
        check_reason("reason", &request.reason, &mut violations);
        let id = violations.finish_with(id)?;
        if caller.own_reviewer().is_some() {
            changes_own_review(&caller, &self.store.get_evaluation(tenant, id, None).await?)?;
        }
        let deleted = self.store.delete(tenant, id, request.reason).await?;
        Ok(Response::new(evaluation_to_proto(deleted)))
    }

    async fn auto_score_interaction(
        &self,
        request: Request<pb::AutoScoreInteractionRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let credential = credential(&request);
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let interaction_id = violations.require_uuid("interaction_id", &request.interaction_id);
        let rubric_id = violations.require_uuid("rubric_id", &request.rubric_id);
        let (Some(interaction_id), Some(rubric_id)) = (interaction_id, rubric_id) else {
            return Err(violations.into());
        };
        let interaction = self.store.get_interaction(tenant, interaction_id).await?;
        let requested = Some(request.rubric_version).filter(|v| *v > 0);
        let version = self
            .rubrics
            .version(tenant, credential.as_ref(), rubric_id, requested)
            .await?;
        let asks_a_scorer = version
            .criteria
            .iter()
            .any(|criterion| matches!(criterion.auto, Some(autoqa::AutoRule::External { .. })));
        let external = if asks_a_scorer {
            self.scorers
                .rate(
                    &interaction_to_proto(interaction.clone()),
                    &version,
                    &version_to_proto(version.as_ref().clone()),
                )
                .await
        } else {
            HashMap::new()
        };
        let ratings: Vec<pb::Rating> =
            autoqa::rate_version(&version, &interaction.input.messages, &external)
                .map_err(|unratable| {
                    Error::FailedPrecondition(format!(
                        "criteria {unratable:?} of rubric version {} have no AutoQA rule and do \
                         not allow N/A: AutoQA cannot rate them",
                        version.version
                    ))
                })?
                .into_iter()
                .map(rating_to_proto)
                .collect();
        // The evaluation is AutoQA's, whichever reviewer the caller's key is bound to; it
        // goes through SubmitEvaluation and ReviseEvaluation like any other.
        let as_autoqa = Principal {
            reviewer_id: None,
            agent_id: None,
            ..caller
        };
        // AutoQA's own: a person's AUTOMATED evaluation (reviewer other than "autoqa")
        // is left alone.
        let existing = self
            .store
            .automated_evaluations(tenant, interaction_id, rubric_id)
            .await?
            .into_iter()
            .find(|evaluation| {
                evaluation.rubric_version == version.version
                    && evaluation.reviewer_id == autoqa::AUTOQA_REVIEWER
            })
            .map(evaluation_to_proto);
        match existing {
            Some(evaluation) if same_ratings(&evaluation.ratings, &ratings) => {
                Ok(Response::new(evaluation))
            }
            Some(evaluation) => {
                let request_id = format!(
                    "autoqa-{}-{}",
                    evaluation.id,
                    hex_prefix(&fingerprint_of(&ratings_content(&ratings)))
                );
                self.revise_evaluation(in_process(
                    &metadata,
                    &as_autoqa,
                    pb::ReviseEvaluationRequest {
                        id: evaluation.id,
                        request_id,
                        ratings,
                        comment: String::new(),
                        reason: "AutoQA: the transcript changed".to_owned(),
                    },
                ))
                .await
            }
            None => {
                self.submit_evaluation(in_process(
                    &metadata,
                    &as_autoqa,
                    pb::SubmitEvaluationRequest {
                        request_id: format!(
                            "autoqa-{interaction_id}-{rubric_id}-{}",
                            version.version
                        ),
                        interaction_ref: Some(PbInteractionRef::InteractionId(
                            interaction_id.to_string(),
                        )),
                        rubric_id: rubric_id.to_string(),
                        rubric_version: version.version,
                        reviewer_id: autoqa::AUTOQA_REVIEWER.to_owned(),
                        kind: pb::EvaluationKind::Automated as i32,
                        ratings,
                        ..Default::default()
                    },
                ))
                .await
            }
        }
    }

    async fn acknowledge_evaluation(
        &self,
        request: Request<pb::AcknowledgeEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let caller = principal(&request)?.clone();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let acknowledged = self
            .store
            .acknowledge(caller.tenant, id, caller.own_agent())
            .await?;
        Ok(Response::new(evaluation_to_proto(acknowledged)))
    }

    async fn import_evaluations(
        &self,
        request: Request<Streaming<pb::SubmitEvaluationRequest>>,
    ) -> Result<Response<pb::ImportEvaluationsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let credential = credential(&request);
        let mut stream = request.into_inner();
        // Rows are read, checked and scored while the batch before them is being stored:
        // the store's writes stay in stream order, one batch at a time.
        let (queue, mut queued) = tokio::sync::mpsc::channel::<Vec<ImportRow>>(1);
        let read = async move {
            let mut response = pb::ImportEvaluationsResponse::default();
            let mut latest = LatestVersions::default();
            let mut batch = Vec::with_capacity(IMPORT_BATCH_SIZE);
            let mut index = 0u64;
            while let Some(mut row) = stream.message().await? {
                let request_id = row.request_id.clone();
                if let Err(refusal) = submit_as(&caller, &mut row.reviewer_id) {
                    reject(
                        &mut response,
                        index,
                        request_id,
                        refusal.message().to_owned(),
                    );
                    index += 1;
                    continue;
                }
                let mut violations = Violations::new();
                let prepared = match check_submission(row, Dating::History, &mut violations) {
                    Some(submission) => {
                        self.prepare(
                            tenant,
                            credential.as_ref(),
                            submission,
                            violations,
                            Some(&mut latest),
                        )
                        .await
                    }
                    None => Err(Error::from(violations)),
                };
                match prepared {
                    Ok(new) => batch.push((index, request_id, new)),
                    Err(err @ (Error::Unavailable(_) | Error::Internal(_))) => {
                        return Err(Status::from(err));
                    }
                    Err(err) => reject(&mut response, index, request_id, err.to_string()),
                }
                if batch.len() >= IMPORT_BATCH_SIZE
                    && queue.send(std::mem::take(&mut batch)).await.is_err()
                {
                    // The writer stopped on an error, which is the call's answer.
                    return Ok(response);
                }
                index += 1;
            }
            if !batch.is_empty() {
                let _ = queue.send(batch).await;
            }
            Ok(response)
        };
        // Moved in, so that a writer that stops on an error drops its end of the queue
        // and the reader stops too.
        let write = async move {
            let mut written = pb::ImportEvaluationsResponse::default();
            while let Some(batch) = queued.recv().await {
                self.projection.wait_for_projector().await;
                self.import_in_parts(tenant, batch, &mut written).await?;
            }
            Ok::<_, Error>(written)
        };
        let (read, written) = tokio::join!(read, write);
        let mut response = read?;
        merge_import_outcomes(&mut response, written?);
        Ok(Response::new(response))
    }
}

/// One row of an import on its way to the store: its index in the stream, its request id
/// and the scored submission.
type ImportRow = (u64, String, NewEvaluation);

/// Adds what the store reported to what was refused before it, rejections in stream
/// order within the listing limit.
fn merge_import_outcomes(
    response: &mut pb::ImportEvaluationsResponse,
    written: pb::ImportEvaluationsResponse,
) {
    response.accepted += written.accepted;
    response.duplicates += written.duplicates;
    response.rejected_count += written.rejected_count;
    response.rejected.extend(written.rejected);
    response.rejected.sort_by_key(|rejection| rejection.index);
    response.rejected.truncate(MAX_LISTED_REJECTIONS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_import_outcomes_list_the_first_rejections_in_stream_order_within_the_limit() {
        let mut read = pb::ImportEvaluationsResponse::default();
        let mut written = pb::ImportEvaluationsResponse {
            accepted: 5,
            duplicates: 1,
            ..Default::default()
        };
        for index in (0..2 * MAX_LISTED_REJECTIONS as u64).step_by(2) {
            reject(&mut read, index, String::new(), "checks".into());
            reject(&mut written, index + 1, String::new(), "store".into());
        }
        merge_import_outcomes(&mut read, written);
        assert_eq!(read.rejected_count, 2 * MAX_LISTED_REJECTIONS as u64);
        assert_eq!((read.accepted, read.duplicates), (5, 1));
        assert_eq!(read.rejected.len(), MAX_LISTED_REJECTIONS);
        assert!(
            read.rejected
                .iter()
                .enumerate()
                .all(|(position, rejection)| rejection.index == position as u64)
        );
    }

    #[test]
    fn a_rejection_reason_is_cut_to_its_byte_limit_on_a_character_boundary() {
        let mut response = pb::ImportEvaluationsResponse::default();
        reject(&mut response, 7, "é".repeat(200), "ü".repeat(5_000));
        let rejection = &response.rejected[0];
        assert!(rejection.reason.len() <= MAX_REJECTION_REASON_BYTES);
        assert!(rejection.reason.ends_with('…'));
        assert!(rejection.request_id.len() <= 128);
        reject(&mut response, 8, "short".into(), "kept whole".into());
        assert_eq!(response.rejected[1].reason, "kept whole");
        assert_eq!(response.rejected_count, 2);
    }
}
