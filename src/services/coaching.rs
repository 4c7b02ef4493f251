//! iqs.evaluation.v1.CoachingService over a CoachingStore, and GetCoachingImpact (served
//! by the analytics service).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{coaching_session_from_proto, coaching_session_to_proto, impact_to_proto};
use crate::auth::{Principal, principal};
use crate::domain::{
    coaching::{self, NewSession, Session},
    evaluation::fingerprint_of,
    paging::PageTokens,
    validation::Violations,
};
use crate::error::{Error, Result};
use crate::proto::analytics as apb;
use crate::proto::evaluation::{self as pb, coaching_service_server::CoachingService};
use crate::store::{CoachingListing, CoachingStore};

pub struct CoachingApi {
    store: Arc<dyn CoachingStore>,
    tokens: Arc<PageTokens>,
}

impl CoachingApi {
    pub fn new(store: Arc<dyn CoachingStore>, tokens: Arc<PageTokens>) -> Self {
        Self { store, tokens }
    }
}

/// A session as its caller may see it: an agent key sees only its own agent's.
async fn visible_session(
    store: &dyn CoachingStore,
    caller: &Principal,
    id: Uuid,
) -> Result<Session> {
    let session = store.get_coaching_session(caller.tenant, id).await?;
    if !caller.sees_agent(&session.agent_id) {
        return Err(Error::not_found("coaching session", id));
    }
    Ok(session)
}

#[tonic::async_trait]
impl CoachingService for CoachingApi {
    async fn create_coaching_session(
        &self,
        request: Request<pb::CreateCoachingSessionRequest>,
    ) -> Result<Response<pb::CoachingSession>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let own = caller.own_reviewer();
        let input =
            coaching_session_from_proto(request.session, own, chrono::Utc::now(), &mut violations);
        if let (Some(own), Some(input)) = (own, &input)
            && input.coach_id != own
        {
            return Err(Status::permission_denied(format!(
                "this key is bound to reviewer {own:?}: it records only its own coaching sessions"
            )));
        }
        let input = violations.finish_with(input)?;
        let foreign = self
            .store
            .evaluations_not_of_agent(caller.tenant, &input.agent_id, &input.evaluation_ids)
            .await?;
        let mut violations = Violations::new();
        for (index, id) in input.evaluation_ids.iter().enumerate() {
            if foreign.contains(id) {
                violations.add(
                    format!("session.evaluation_ids[{index}]"),
                    format!("{id} is not an evaluation of agent {:?}", input.agent_id),
                );
            }
        }
        violations.finish(())?;
        let new = NewSession {
            request_id: Some(request.request_id).filter(|id| !id.is_empty()),
            fingerprint: fingerprint_of(&input),
            input,
        };
        let session = self
            .store
            .create_coaching_session(caller.tenant, new)
            .await?;
        Ok(Response::new(coaching_session_to_proto(session)))
    }

    async fn update_action_item(
        &self,
        request: Request<pb::UpdateActionItemRequest>,
    ) -> Result<Response<pb::CoachingSession>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let session_id = violations.require_uuid("session_id", &request.session_id);
        let item_id = violations.require_uuid("action_item_id", &request.action_item_id);
        let ids = violations.finish_with(session_id.zip(item_id))?;
        let session = self
            .store
            .update_action_item(
                caller.tenant,
                ids.0,
                ids.1,
                request.done,
                caller.own_agent(),
            )
            .await?;
        Ok(Response::new(coaching_session_to_proto(session)))
    }

    async fn list_coaching_sessions(
        &self,
        request: Request<pb::ListCoachingSessionsRequest>,
    ) -> Result<Response<pb::ListCoachingSessionsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let mut request = request.into_inner();
        caller.restrict_agent_filter(&mut request.agent_id, "coaching sessions")?;
        let mut violations = Violations::new();
        let filters = format!("coaching;{:?};{:?}", request.agent_id, request.coach_id);
        let (limit, before) = self.tokens.id_page(
            tenant,
            request.page_size,
            &request.page_token,
            &filters,
            &mut violations,
        );
        violations.finish(())?;
        let listing = CoachingListing {
            before,
            limit: limit + 1,
            agent_id: Some(request.agent_id).filter(|id| !id.is_empty()),
            coach_id: Some(request.coach_id).filter(|id| !id.is_empty()),
        };
        let sessions = self.store.list_coaching_sessions(tenant, listing).await?;
        let (sessions, next_page_token) =
            self.tokens
                .finish_page(tenant, sessions, limit, &filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListCoachingSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(coaching_session_to_proto)
                .collect(),
            next_page_token,
        }))
    }

    async fn get_coaching_session(
        &self,
        request: Request<pb::GetCoachingSessionRequest>,
    ) -> Result<Response<pb::CoachingSession>, Status> {
        let caller = principal(&request)?.clone();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let session = visible_session(self.store.as_ref(), &caller, id).await?;
        Ok(Response::new(coaching_session_to_proto(session)))
    }
}

/// GetCoachingImpact: the agent's scores in the windows around the session.
pub(super) async fn coaching_impact(
    store: &dyn CoachingStore,
    request: Request<apb::GetCoachingImpactRequest>,
) -> Result<Response<apb::CoachingImpact>, Status> {
    let caller = principal(&request)?.clone();
    let request = request.into_inner();
    let mut violations = Violations::new();
    let id = violations.require_uuid("session_id", &request.session_id);
    let days = match request.window_days {
        0 => coaching::DEFAULT_WINDOW_DAYS,
        days if days > coaching::MAX_WINDOW_DAYS => {
            violations.add(
                "window_days",
                format!("must be 1..{}, got {days}", coaching::MAX_WINDOW_DAYS),
            );
            days
        }
        days => days,
    };
    let id = violations.finish_with(id)?;
    let session = visible_session(store, &caller, id).await?;
    let ((start, _), (_, end)) = coaching::windows(session.session_time, days);
    let evaluations = store
        .scored_evaluations(caller.tenant, &session.agent_id, start, end)
        .await?;
    let impact = coaching::impact(&session, days, &evaluations);
    Ok(Response::new(impact_to_proto(&session, impact)))
}
