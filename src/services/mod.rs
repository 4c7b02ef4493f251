//! Thin tonic adapters: principal -> validate and convert the request -> domain and
//! stores -> response.

pub mod analytics;
pub mod assignment;
mod autoqa;
pub mod calibration;
pub mod coaching;
mod convert;
pub mod dispute;
pub mod error_status;
pub mod evaluation;
pub mod import_flow;
pub mod rubric;
pub mod rubric_client;
pub mod scorers;
pub mod webhook;

use tonic::server::NamedService;

use crate::config::ServiceKind;
use crate::proto::{
    analytics::analytics_service_server::AnalyticsServiceServer,
    evaluation::{
        assignment_service_server::AssignmentServiceServer,
        calibration_service_server::CalibrationServiceServer,
        coaching_service_server::CoachingServiceServer,
        dispute_service_server::DisputeServiceServer,
        evaluation_service_server::EvaluationServiceServer,
    },
    integration::webhook_service_server::WebhookServiceServer,
    rubric::rubric_service_server::RubricServiceServer,
};

/// The gRPC names of the services a kind of process serves, as health checks and
/// reflection know them.
pub fn grpc_service_names(kind: ServiceKind) -> &'static [&'static str] {
    match kind {
        ServiceKind::Rubric => &[<RubricServiceServer<rubric::RubricApi> as NamedService>::NAME],
        ServiceKind::Evaluation => &[
            <EvaluationServiceServer<evaluation::EvaluationApi> as NamedService>::NAME,
            <CalibrationServiceServer<calibration::CalibrationApi> as NamedService>::NAME,
            <DisputeServiceServer<dispute::DisputeApi> as NamedService>::NAME,
            <CoachingServiceServer<coaching::CoachingApi> as NamedService>::NAME,
            <AssignmentServiceServer<assignment::AssignmentApi> as NamedService>::NAME,
            <WebhookServiceServer<webhook::WebhookApi> as NamedService>::NAME,
        ],
        ServiceKind::Analytics => {
            &[<AnalyticsServiceServer<analytics::AnalyticsApi> as NamedService>::NAME]
        }
    }
}
