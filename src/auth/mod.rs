//! Who is calling. A tower layer authenticates every call (but health checks and
//! reflection) by its API key, checks the role × RPC matrix and the key's rate limit,
//! records writes in the audit log, and puts the caller's `Principal` into the request
//! extensions, where the services read it.

pub mod bootstrap;
pub mod fair_share;
pub mod keys;
pub mod layer;
pub mod limits;

use std::sync::Arc;

use tonic::{Request, Status};
use uuid::Uuid;

use crate::domain::{access::Role, tenant::TenantId};

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    /// The agent an `agent` key is bound to.
    pub agent_id: Option<String>,
    /// The reviewer a `qa_reviewer` key is bound to, if any.
    pub reviewer_id: Option<String>,
    /// `None` when the server runs without keys.
    pub key_id: Option<Uuid>,
}

impl Principal {
    /// The agent whose data alone this caller may see, if it is bound to one.
    pub fn own_agent(&self) -> Option<&str> {
        match self.role {
            Role::Agent => self.agent_id.as_deref(),
            _ => None,
        }
    }

    /// Whether this caller may see what belongs to `agent_id`: an agent key sees only its
    /// own agent's (the rest is answered as absent).
    pub fn sees_agent(&self, agent_id: &str) -> bool {
        self.own_agent().is_none_or(|own| own == agent_id)
    }

    /// Limits a listing's agent filter to this caller's own agent: an agent key's empty
    /// filter becomes its own agent, another agent is `PERMISSION_DENIED`.
    pub fn restrict_agent_filter(&self, agent_id: &mut String, what: &str) -> Result<(), Status> {
        let Some(own) = self.own_agent() else {
            return Ok(());
        };
        if !agent_id.is_empty() && agent_id != own {
            return Err(Status::permission_denied(format!(
                "an agent key lists only its own {what}"
            )));
        }
        own.clone_into(agent_id);
        Ok(())
    }

    /// The reviewer this caller submits as, if its key is bound to one.
    pub fn own_reviewer(&self) -> Option<&str> {
        match self.role {
            Role::QaReviewer => self.reviewer_id.as_deref(),
            _ => None,
        }
    }
}

/// The API key a call came with, kept to pass on to services this one calls on the
/// caller's behalf (the rubric service, when it runs elsewhere). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub Arc<str>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// The caller's key, when it came with one.
pub fn credential<T>(request: &Request<T>) -> Option<Credential> {
    request.extensions().get::<Credential>().cloned()
}

/// The caller's principal, put into the request by the authentication layer.
pub fn principal<T>(request: &Request<T>) -> Result<&Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}
