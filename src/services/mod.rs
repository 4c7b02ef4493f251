//! Thin tonic adapters: principal -> validate and convert the request -> domain and
//! stores -> response.

pub mod analytics;
mod convert;
pub mod error_status;
pub mod evaluation;
pub mod rubric;
pub mod rubric_client;

use tonic::server::NamedService;

use crate::config::ServiceKind;
use crate::proto::{
    analytics::analytics_service_server::AnalyticsServiceServer,
    evaluation::evaluation_service_server::EvaluationServiceServer,
    rubric::rubric_service_server::RubricServiceServer,
};

/// The gRPC name of a service, as health checks and reflection know it.
pub fn grpc_service_name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Rubric => <RubricServiceServer<rubric::RubricApi> as NamedService>::NAME,
        ServiceKind::Evaluation => {
            <EvaluationServiceServer<evaluation::EvaluationApi> as NamedService>::NAME
        }
        ServiceKind::Analytics => {
            <AnalyticsServiceServer<analytics::AnalyticsApi> as NamedService>::NAME
        }
    }
}
