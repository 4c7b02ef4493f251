//! iqs.evaluation.v1.CalibrationService over a CalibrationStore, and the calibration
//! rules the evaluation service applies to a reviewer-bound key.

use std::{collections::HashMap, sync::Arc};

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{
    report_to_proto, session_from_proto, session_state_from_proto, session_to_proto,
};
use super::rubric_client::RubricClient;
use crate::auth::{Principal, credential, principal};
use crate::domain::{
    calibration::{self, NewSession, SessionState},
    evaluation::{Evaluation, fingerprint_of},
    paging::{PageTokens, page_size},
    tenant::TenantId,
    validation::Violations,
};
use crate::error::{Error, Result};
use crate::proto::analytics as apb;
use crate::proto::evaluation::{self as pb, calibration_service_server::CalibrationService};
use crate::store::{CalibrationStore, SessionListing};

pub struct CalibrationApi {
    store: Arc<dyn CalibrationStore>,
    rubrics: Arc<dyn RubricClient>,
    tokens: Arc<PageTokens>,
}

impl CalibrationApi {
    pub fn new(
        store: Arc<dyn CalibrationStore>,
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

/// Sessions are run by leads: a key bound to one reviewer takes part, it does not run them.
fn refuse_bound_reviewer(caller: &Principal) -> Result<(), Status> {
    match caller.own_reviewer() {
        Some(_) => Err(Status::permission_denied(
            "a key bound to a reviewer takes part in calibration sessions; an unbound qa_reviewer or admin key runs them",
        )),
        None => Ok(()),
    }
}

/// The reviewer a bound key submits as: its own, filled in when `reviewer_id` is empty.
pub(super) fn submit_as(caller: &Principal, reviewer_id: &mut String) -> Result<(), Status> {
    if let Some(own) = caller.own_reviewer() {
        if reviewer_id.is_empty() {
            own.clone_into(reviewer_id);
        } else if reviewer_id != own {
            return Err(Status::permission_denied(format!(
                "this key is bound to reviewer {own:?}: it submits only as that reviewer"
            )));
        }
    }
    Ok(())
}

/// A key bound to a reviewer revises and deletes only that reviewer's evaluations.
pub(super) fn changes_own_review(
    caller: &Principal,
    evaluation: &Evaluation,
) -> Result<(), Status> {
    match caller.own_reviewer() {
        Some(own) if evaluation.reviewer_id != own => Err(Status::permission_denied(format!(
            "this key is bound to reviewer {own:?}: it changes only that reviewer's evaluations"
        ))),
        _ => Ok(()),
    }
}

/// Hides other reviewers' calibration evaluations of open sessions from a reviewer-bound
/// key (blind calibration); everyone else sees everything.
pub(super) struct Blindfold<'a> {
    own: Option<&'a str>,
    tenant: TenantId,
    open: HashMap<Uuid, bool>,
}

impl<'a> Blindfold<'a> {
    pub fn for_caller(caller: &'a Principal) -> Self {
        Self {
            own: caller.own_reviewer(),
            tenant: caller.tenant,
            open: HashMap::new(),
        }
    }

    pub async fn hides(
        &mut self,
        store: &dyn CalibrationStore,
        evaluation: &Evaluation,
    ) -> Result<bool> {
        let (Some(own), Some(session)) = (self.own, evaluation.calibration_session_id) else {
            return Ok(false);
        };
        if evaluation.reviewer_id == own {
            return Ok(false);
        }
        if let Some(open) = self.open.get(&session) {
            return Ok(*open);
        }
        let open = match store.get_session(self.tenant, session).await {
            Ok(session) => session.state == SessionState::Open,
            Err(Error::NotFound { .. }) => false,
            Err(err) => return Err(err),
        };
        self.open.insert(session, open);
        Ok(open)
    }
}

#[tonic::async_trait]
impl CalibrationService for CalibrationApi {
    async fn create_calibration_session(
        &self,
        request: Request<pb::CreateCalibrationSessionRequest>,
    ) -> Result<Response<pb::CalibrationSession>, Status> {
        let caller = principal(&request)?.clone();
        refuse_bound_reviewer(&caller)?;
        let credential = credential(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let input = session_from_proto(request.session, &mut violations);
        let input = violations.finish_with(input)?;
        let unknown = self
            .store
            .unknown_interactions(caller.tenant, &input.interaction_ids)
            .await?;
        // As everywhere, an id of another tenant is as absent as one that never existed.
        if !unknown.is_empty() {
            let ids: Vec<String> = unknown.iter().map(Uuid::to_string).collect();
            return Err(Error::not_found("interaction", ids.join(", ")).into());
        }
        let requested = Some(input.rubric_version).filter(|v| *v > 0);
        let version = self
            .rubrics
            .version(
                caller.tenant,
                credential.as_ref(),
                input.rubric_id,
                requested,
            )
            .await?;
        let fingerprint = fingerprint_of(&input);
        let new = NewSession {
            request_id: Some(request.request_id).filter(|id| !id.is_empty()),
            fingerprint,
            input: crate::domain::calibration::SessionInput {
                rubric_version: version.version,
                ..input
            },
        };
        let session = self.store.create_session(caller.tenant, new).await?;
        Ok(Response::new(session_to_proto(session)))
    }

    async fn get_calibration_session(
        &self,
        request: Request<pb::GetCalibrationSessionRequest>,
    ) -> Result<Response<pb::CalibrationSession>, Status> {
        let tenant = principal(&request)?.tenant;
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let session = self.store.get_session(tenant, id).await?;
        Ok(Response::new(session_to_proto(session)))
    }

    async fn list_calibration_sessions(
        &self,
        request: Request<pb::ListCalibrationSessionsRequest>,
    ) -> Result<Response<pb::ListCalibrationSessionsResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let limit = page_size(request.page_size).unwrap_or_else(|reason| {
            violations.add("page_size", reason);
            0
        });
        let state = session_state_from_proto(request.state, "state", &mut violations);
        let filters = format!("calibration_sessions;{}", request.state);
        let before = self.tokens.read(
            tenant,
            &request.page_token,
            &filters,
            "page_token",
            |key| Uuid::parse_str(key).ok(),
            &mut violations,
        );
        violations.finish(())?;
        let listing = SessionListing {
            before,
            limit: limit + 1,
            state,
        };
        let sessions = self.store.list_sessions(tenant, listing).await?;
        let (sessions, next_page_token) =
            self.tokens
                .finish_page(tenant, sessions, limit, &filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListCalibrationSessionsResponse {
            sessions: sessions.into_iter().map(session_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn close_calibration_session(
        &self,
        request: Request<pb::CloseCalibrationSessionRequest>,
    ) -> Result<Response<pb::CalibrationSession>, Status> {
        let caller = principal(&request)?.clone();
        refuse_bound_reviewer(&caller)?;
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let session = self.store.close_session(caller.tenant, id).await?;
        Ok(Response::new(session_to_proto(session)))
    }
}

/// GetCalibrationReport (served by the analytics service): the agreement statistics of a
/// session. A reviewer-bound key sees it once the session is closed.
pub(super) async fn calibration_report(
    store: &dyn CalibrationStore,
    request: Request<apb::GetCalibrationReportRequest>,
) -> Result<Response<apb::CalibrationReport>, Status> {
    let caller = principal(&request)?.clone();
    let mut violations = Violations::new();
    let id = violations.require_uuid("session_id", &request.get_ref().session_id);
    let id = violations.finish_with(id)?;
    let session = store.get_session(caller.tenant, id).await?;
    if session.state == SessionState::Open && caller.own_reviewer().is_some() {
        return Err(Status::permission_denied(
            "calibration is blind while the session is open: a reviewer-bound key sees the report once it is closed",
        ));
    }
    let reviews = store.calibration_reviews(caller.tenant, id).await?;
    let report = calibration::report(session.baseline_reviewer_id.as_deref(), &reviews);
    Ok(Response::new(report_to_proto(&session, report)))
}
