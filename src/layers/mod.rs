//! Tower layers in front of every service, outermost first: `call_telemetry` (a span and metrics per
//! call, with the caller's trace context), `admission` (a concurrency limit that rejects
//! quickly instead of queueing without bound) and `deadline` (the caller's
//! `grpc-timeout`, capped by the server's maximum). Authentication comes after them.

pub mod admission;
pub mod body_timeout;
pub mod call_telemetry;
pub mod deadline;

use std::{future::Future, pin::Pin};

/// The future every layer here returns.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

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
