//! Tower layers in front of every service, outermost first: `call_telemetry` (a span
//! and metrics per call, with the caller's trace context), `admission` (a concurrency
//! limit that rejects quickly instead of queueing without bound) and `deadline` (the
//! caller's `grpc-timeout`, capped by the server's maximum). Authentication comes after
//! them.
//!
//! Each is an `AroundCall`: what it does around one call, given the inner service.
//! `Around` makes one a tower layer, so none repeats tower's plumbing.

pub mod admission;
pub mod body_timeout;
pub mod call_telemetry;
pub mod deadline;
pub mod early_answer;

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::{Layer, Service};

/// The future every layer here returns.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// A call as the server's layers see it.
pub type HttpRequest = http::Request<tonic::body::Body>;
pub type HttpResponse = http::Response<tonic::body::Body>;

/// What a layer does around one call: `inner` is the rest of the stack, ready to serve
/// this call.
pub trait AroundCall: Clone + Send + Sync + 'static {
    fn around<S>(&self, inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static;
}

/// An `AroundCall` as a tower layer.
#[derive(Clone)]
pub struct Around<A>(pub A);

impl<A: Clone, S> Layer<S> for Around<A> {
    type Service = Wrapped<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped {
            around: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Wrapped<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<HttpRequest> for Wrapped<A, S>
where
    A: AroundCall,
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<HttpResponse, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let inner = take_ready(&mut self.inner);
        self.around.around(inner, request)
    }
}

/// The inner service that was polled ready, leaving a fresh clone in its place for the
/// next call (tower's contract: the instance that said ready serves the call).
pub fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// Health checks and reflection are never limited: an orchestrator must see a busy
/// server as busy, not as dead.
pub fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// The gRPC status code a response's headers carry; 0 (OK) when they carry none. Calls
/// that fail before any message answer with the status in the headers ("trailers
/// only"); a success puts it in the trailers, after the headers.
pub fn status_code(response: &HttpResponse) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The method of a gRPC path `/package.Service/Method`.
pub fn method_name(path: &str) -> &str {
    service_and_method(path).1
}

/// The service and method of a gRPC path `/package.Service/Method`.
pub fn service_and_method(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_path_splits_into_service_and_method() {
        assert_eq!(
            service_and_method("/iqs.evaluation.v1.EvaluationService/SubmitEvaluation"),
            ("iqs.evaluation.v1.EvaluationService", "SubmitEvaluation")
        );
        assert_eq!(service_and_method("odd"), ("odd", ""));
    }

    #[test]
    fn health_and_reflection_are_infrastructure() {
        assert!(is_infrastructure("/grpc.health.v1.Health/Check"));
        assert!(is_infrastructure(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_infrastructure("/iqs.rubric.v1.RubricService/GetRubric"));
    }
}
