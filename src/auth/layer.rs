//! The authentication tower layer, in front of every service.

use std::sync::Arc;

use chrono::Utc;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use tower::Service;
use tracing::Instrument;

use crate::layers::{
    AroundCall, BoxFuture, HttpRequest, HttpResponse, call_telemetry::REQUEST_ID_HEADER,
    deadline::DeadlinePassed, method_name, status_code,
};

use super::{
    Credential, Principal,
    fair_share::FairShare,
    keys::{KeyVerifier, Refusal},
    limits::RateLimiter,
};
use crate::domain::{
    access::{Role, is_open, is_write, may_call},
    tenant::TenantId,
};
use crate::store::{AccessStore, AuditEntry};

/// How callers are identified.
#[derive(Clone)]
pub enum Authentication {
    /// Every call needs `authorization: Bearer <key>`.
    Keys(Arc<KeyVerifier>, Arc<RateLimiter>),
    /// Every call is served as an admin of one tenant (single-tenant deployments
    /// behind their own gateway).
    Disabled(TenantId),
}

#[derive(Clone)]
pub struct AuthLayer {
    authentication: Authentication,
    audit: Arc<dyn AccessStore>,
    fair_share: Arc<FairShare>,
}

impl AuthLayer {
    pub fn new(
        authentication: Authentication,
        audit: Arc<dyn AccessStore>,
        fair_share: Arc<FairShare>,
    ) -> Self {
        Self {
            authentication,
            audit,
            fair_share,
        }
    }
}

fn bearer(request: &http::Request<impl Sized>) -> Option<&str> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The caller, or the status that refuses the call when its key is missing or cannot be
/// verified.
async fn identify(
    authentication: &Authentication,
    key: Option<String>,
) -> Result<Principal, Status> {
    match authentication {
        Authentication::Disabled(tenant) => Ok(Principal {
            tenant: *tenant,
            role: Role::Admin,
            agent_id: None,
            reviewer_id: None,
            key_id: None,
        }),
        Authentication::Keys(verifier, _) => {
            let key = key.ok_or_else(|| Status::unauthenticated("a valid API key is required"))?;
            verifier
                .verify(&key)
                .await
                .map_err(|refusal| match refusal {
                    Refusal::Unauthenticated => {
                        Status::unauthenticated("a valid API key is required")
                    }
                    Refusal::Unavailable => {
                        Status::unavailable("cannot verify the API key now; retrying is safe")
                    }
                })
        }
    }
}

/// The refusal of a call the caller's role may not make.
fn permission_denied(
    authentication: &Authentication,
    principal: &Principal,
    path: &str,
) -> Option<Status> {
    let Authentication::Keys(..) = authentication else {
        return None;
    };
    (!may_call(principal.role, path)).then(|| {
        Status::permission_denied(format!(
            "the {} role may not call {}",
            principal.role,
            method_name(path)
        ))
    })
}

/// The refusal of a call beyond the rate of the caller's key.
fn rate_limited(authentication: &Authentication, principal: &Principal) -> Option<Status> {
    let Authentication::Keys(_, limiter) = authentication else {
        return None;
    };
    let wait = limiter.take(principal.key_id?, principal.role).err()?;
    let details = ErrorDetails::with_retry_info(Some(wait));
    Some(Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!(
            "rate limit of the {} role exceeded; retry in {} ms",
            principal.role,
            wait.as_millis().max(1)
        ),
        details,
    ))
}

/// The audit entry of a write, before its status is known.
fn audit_entry(principal: &Principal, path: &str, request_id: &str) -> AuditEntry {
    AuditEntry {
        tenant: principal.tenant,
        key_id: principal.key_id,
        role: principal.role,
        rpc: method_name(path).to_owned(),
        request_id: request_id.to_owned(),
        status_code: 0,
        time: Utc::now(),
    }
}

/// Records a write dropped before it answers: DEADLINE_EXCEEDED when the deadline layer
/// dropped it, CANCELLED when the caller went away.
struct UnansweredWrite {
    audit: Option<(Arc<dyn AccessStore>, AuditEntry)>,
    deadline: Option<DeadlinePassed>,
}

impl Drop for UnansweredWrite {
    fn drop(&mut self) {
        let Some((audit, mut entry)) = self.audit.take() else {
            return;
        };
        let code = if self
            .deadline
            .as_ref()
            .is_some_and(DeadlinePassed::has_passed)
        {
            tonic::Code::DeadlineExceeded
        } else {
            tonic::Code::Cancelled
        };
        entry.status_code = code as i32;
        entry.time = Utc::now();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(
            async move {
                if let Err(err) = audit.record_audit(entry).await {
                    tracing::error!(%err, "cannot write the audit log");
                }
            }
            .in_current_span(),
        );
    }
}

impl AroundCall for AuthLayer {
    fn around<S>(&self, mut inner: S, mut request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let layer = self.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            if is_open(&path) {
                return inner.call(request).await;
            }
            // Chosen (the caller's, or a new one) by the rpc layer in front of this one.
            let request_id = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let key = bearer(&request).map(str::to_owned);
            let key_for_calls_onward = key.clone();
            let principal = match identify(&layer.authentication, key).await {
                Ok(principal) => principal,
                Err(status) => return Ok(status.into_http()),
            };
            // The audit entry of a write, completed with its status once it answers. A
            // write the caller's role may not make is an attempt the audit log records. A
            // rate-limited one is not: recording each call of a flood would put on the
            // database the load the limit keeps off it.
            let mut entry = is_write(&path).then(|| audit_entry(&principal, &path, &request_id));
            let response = if let Some(denied) =
                permission_denied(&layer.authentication, &principal, &path)
            {
                denied.into_http()
            } else if let Some(limited) = rate_limited(&layer.authentication, &principal) {
                return Ok(limited.into_http());
            } else {
                // Held until the handler answers; a refusal is not audited, for the
                // reason a rate-limited call is not.
                let _admitted = match layer.fair_share.admit(principal.tenant, principal.key_id) {
                    Ok(admitted) => admitted,
                    Err(refused) => return Ok(refused.into_http()),
                };
                request.extensions_mut().insert(principal.clone());
                if let Some(key) = key_for_calls_onward {
                    request.extensions_mut().insert(Credential(key.into()));
                }
                // A write stopped by its deadline is dropped here, unanswered: the
                // guard records it as DEADLINE_EXCEEDED.
                let unanswered = entry.take().map(|entry| UnansweredWrite {
                    audit: Some((layer.audit.clone(), entry)),
                    deadline: request.extensions().get::<DeadlinePassed>().cloned(),
                });
                let response = inner.call(request).await;
                if let Some(mut unanswered) = unanswered {
                    entry = unanswered.audit.take().map(|(_, entry)| entry);
                }
                response?
            };
            if let Some(mut entry) = entry {
                let status_code = status_code(&response);
                entry.status_code = status_code;
                entry.time = Utc::now();
                let audit = async move {
                    if let Err(err) = layer.audit.record_audit(entry).await {
                        tracing::error!(%err, rpc = %path, "cannot write the audit log");
                    }
                };
                if status_code == tonic::Code::Unavailable as i32 {
                    // The database is likely what failed: its audit entry must not hold
                    // the answer for another acquire timeout.
                    tokio::spawn(audit.in_current_span());
                } else {
                    audit.await;
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_required() {
        let with = |value: &str| {
            http::Request::builder()
                .header(http::header::AUTHORIZATION, value)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&http::Request::new(())), None);
    }
}
