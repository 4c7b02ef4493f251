//! AutoQA's agreement with people (AnalyticsService.GetAutoQaAgreement).

use tonic::{Request, Response, Status};

use super::convert::time_range_from_proto;
use crate::auth::principal;
use crate::domain::autoqa_agreement::{Reviewed, agreement};
use crate::domain::validation::Violations;
use crate::proto::analytics as apb;
use crate::store::AutoQaReads;

pub(super) async fn autoqa_agreement(
    store: &dyn AutoQaReads,
    request: Request<apb::GetAutoQaAgreementRequest>,
) -> Result<Response<apb::GetAutoQaAgreementResponse>, Status> {
    let tenant = principal(&request)?.tenant;
    let request = request.into_inner();
    let mut violations = Violations::new();
    let rubric_id = violations.require_uuid("rubric_id", &request.rubric_id);
    let (start, end) = time_range_from_proto(request.time_range, &mut violations);
    let rubric_id = violations.finish_with(rubric_id)?;
    let reviewed: Vec<Reviewed> = store
        .manual_and_automated(tenant, rubric_id, start, end)
        .await?
        .into_iter()
        .map(|scores| Reviewed {
            interaction_id: scores.interaction_id,
            automated: scores.automated,
            criterion_scores: scores.criterion_scores,
        })
        .collect();
    Ok(Response::new(apb::GetAutoQaAgreementResponse {
        criteria: agreement(&reviewed)
            .into_iter()
            .map(|criterion| apb::AutoQaCriterionAgreement {
                criterion_key: criterion.criterion_key,
                pairs: u32::try_from(criterion.pairs).unwrap_or(u32::MAX),
                exact_agreement: criterion.exact_agreement,
                cohen_kappa: criterion.cohen_kappa,
                alpha_interval: criterion.alpha_interval,
                mean_absolute_difference: criterion.mean_absolute_difference,
            })
            .collect(),
    }))
}
