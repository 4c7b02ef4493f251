//! iqs.evaluation.v1.EvaluationService. Its contract is served in full; the behaviour of
//! each RPC answers UNIMPLEMENTED until the evaluation store lands.

use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::proto::evaluation::{self as pb, evaluation_service_server::EvaluationService};

#[derive(Debug, Default)]
pub struct EvaluationApi;

fn unimplemented<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    Err(Error::Unimplemented(rpc).into())
}

#[tonic::async_trait]
impl EvaluationService for EvaluationApi {
    async fn upsert_interaction(
        &self,
        _: Request<pb::UpsertInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        unimplemented("UpsertInteraction")
    }

    async fn get_interaction(
        &self,
        _: Request<pb::GetInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        unimplemented("GetInteraction")
    }

    async fn submit_evaluation(
        &self,
        _: Request<pb::SubmitEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        unimplemented("SubmitEvaluation")
    }

    async fn score_evaluation(
        &self,
        _: Request<pb::ScoreEvaluationRequest>,
    ) -> Result<Response<pb::ScoreResult>, Status> {
        unimplemented("ScoreEvaluation")
    }

    async fn get_evaluation(
        &self,
        _: Request<pb::GetEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        unimplemented("GetEvaluation")
    }

    async fn list_evaluations(
        &self,
        _: Request<pb::ListEvaluationsRequest>,
    ) -> Result<Response<pb::ListEvaluationsResponse>, Status> {
        unimplemented("ListEvaluations")
    }

    async fn revise_evaluation(
        &self,
        _: Request<pb::ReviseEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        unimplemented("ReviseEvaluation")
    }

    async fn delete_evaluation(
        &self,
        _: Request<pb::DeleteEvaluationRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        unimplemented("DeleteEvaluation")
    }

    async fn import_evaluations(
        &self,
        _: Request<Streaming<pb::SubmitEvaluationRequest>>,
    ) -> Result<Response<pb::ImportEvaluationsResponse>, Status> {
        unimplemented("ImportEvaluations")
    }
}
