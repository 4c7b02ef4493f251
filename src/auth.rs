//! Who is calling. Every service reads the caller's `Principal` from the request
//! extensions; a tower layer puts it there before any service runs.

use std::task::{Context, Poll};

use tonic::{Request, Status};
use tower::{Layer, Service};

use crate::domain::tenant::TenantId;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
}

/// The caller's principal, put into the request by the authentication layer.
pub fn principal<T>(request: &Request<T>) -> Result<&Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}

/// Serves every request as the configured default tenant, for deployments that run a
/// single tenant without API keys.
#[derive(Debug, Clone)]
pub struct DefaultTenantLayer {
    principal: Principal,
}

impl DefaultTenantLayer {
    pub fn new(tenant: TenantId) -> Self {
        Self {
            principal: Principal { tenant },
        }
    }
}

impl<S> Layer<S> for DefaultTenantLayer {
    type Service = DefaultTenant<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DefaultTenant {
            inner,
            principal: self.principal.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DefaultTenant<S> {
    inner: S,
    principal: Principal,
}

impl<S, B> Service<http::Request<B>> for DefaultTenant<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.principal.clone());
        self.inner.call(request)
    }
}
