//! iqs.analytics.v1.AnalyticsService. Its contract is served in full; the behaviour of
//! each RPC answers UNIMPLEMENTED until the projector and rollups land.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::analytics::{self as pb, analytics_service_server::AnalyticsService};

#[derive(Debug, Default)]
pub struct AnalyticsApi;

fn unimplemented<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    Err(Error::Unimplemented(rpc).into())
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    type ExportEvaluationsStream =
        Pin<Box<dyn Stream<Item = Result<pb::EvaluationRow, Status>> + Send + 'static>>;

    async fn get_agent_score(
        &self,
        _: Request<pb::GetAgentScoreRequest>,
    ) -> Result<Response<pb::ScoreSummary>, Status> {
        unimplemented("GetAgentScore")
    }

    async fn get_team_score(
        &self,
        _: Request<pb::GetTeamScoreRequest>,
    ) -> Result<Response<pb::ScoreSummary>, Status> {
        unimplemented("GetTeamScore")
    }

    async fn query_scores(
        &self,
        _: Request<pb::QueryScoresRequest>,
    ) -> Result<Response<pb::QueryScoresResponse>, Status> {
        unimplemented("QueryScores")
    }

    async fn get_criterion_breakdown(
        &self,
        _: Request<pb::GetCriterionBreakdownRequest>,
    ) -> Result<Response<pb::GetCriterionBreakdownResponse>, Status> {
        unimplemented("GetCriterionBreakdown")
    }

    async fn get_csat_correlation(
        &self,
        _: Request<pb::GetCsatCorrelationRequest>,
    ) -> Result<Response<pb::GetCsatCorrelationResponse>, Status> {
        unimplemented("GetCsatCorrelation")
    }

    async fn export_evaluations(
        &self,
        _: Request<pb::ExportEvaluationsRequest>,
    ) -> Result<Response<Self::ExportEvaluationsStream>, Status> {
        unimplemented("ExportEvaluations")
    }
}
