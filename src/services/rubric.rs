//! iqs.rubric.v1.RubricService over a RubricStore.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{draft_from_proto, rubric_to_proto, version_to_proto};
use crate::auth::principal;
use crate::domain::{
    paging::{PageTokens, filter_fingerprint, page_size},
    rubric::{DraftPatch, NewRubric, validate_criteria, validate_pass_threshold},
    validation::{Violations, required_uuid},
};
use crate::proto::rubric::{self as pb, rubric_service_server::RubricService};
use crate::store::{RubricListing, RubricStore, VersionListing};

pub struct RubricApi {
    store: Arc<dyn RubricStore>,
    tokens: Arc<PageTokens>,
}

impl RubricApi {
    pub fn new(store: Arc<dyn RubricStore>, tokens: Arc<PageTokens>) -> Self {
        Self { store, tokens }
    }
}

/// Which parts of the draft an update mask names.
fn draft_patch(request: pb::UpdateRubricDraftRequest, violations: &mut Violations) -> DraftPatch {
    let Some(draft) = request.draft else {
        violations.add("draft", "is required");
        return DraftPatch::default();
    };
    let paths = request
        .update_mask
        .map(|mask| mask.paths)
        .unwrap_or_default();
    let mut replace_criteria = paths.is_empty();
    let mut replace_threshold = paths.is_empty();
    let mut replace_auto_score = paths.is_empty();
    for (index, path) in paths.iter().enumerate() {
        match path.strip_prefix("draft.").unwrap_or(path) {
            "criteria" => replace_criteria = true,
            "pass_threshold" => replace_threshold = true,
            "auto_score" => replace_auto_score = true,
            "*" => {
                replace_criteria = true;
                replace_threshold = true;
                replace_auto_score = true;
            }
            _ => violations.add(
                format!("update_mask.paths[{index}]"),
                format!("unknown path {path:?}; expected criteria, pass_threshold or auto_score"),
            ),
        }
    }
    let draft = draft_from_proto(draft, "draft", violations);
    let mut patch = DraftPatch::default();
    if replace_criteria {
        validate_criteria(&draft.criteria, "draft.criteria", violations);
        patch.criteria = Some(draft.criteria);
    }
    if replace_threshold {
        validate_pass_threshold(draft.pass_threshold, "draft.pass_threshold", violations);
        patch.pass_threshold = Some(draft.pass_threshold);
    }
    if replace_auto_score {
        patch.auto_score = Some(draft.auto_score);
    }
    patch
}

#[tonic::async_trait]
impl RubricService for RubricApi {
    async fn create_rubric(
        &self,
        request: Request<pb::CreateRubricRequest>,
    ) -> Result<Response<pb::Rubric>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let Some(rubric) = request.rubric else {
            violations.add("rubric", "is required");
            return Err(violations.into());
        };
        let new_rubric = NewRubric {
            display_name: rubric.display_name,
            description: rubric.description,
            draft: draft_from_proto(
                rubric.draft.unwrap_or_default(),
                "rubric.draft",
                &mut violations,
            ),
        };
        new_rubric.validate("rubric", &mut violations);
        violations.finish(())?;
        let request_id = Some(request.request_id.as_str()).filter(|id| !id.is_empty());
        let created = self
            .store
            .create_rubric(tenant, request_id, new_rubric)
            .await?;
        Ok(Response::new(rubric_to_proto(created)))
    }

    async fn get_rubric(
        &self,
        request: Request<pb::GetRubricRequest>,
    ) -> Result<Response<pb::Rubric>, Status> {
        let tenant = principal(&request)?.tenant;
        let id = required_uuid("id", &request.get_ref().id)?;
        let rubric = self.store.get_rubric(tenant, id).await?;
        Ok(Response::new(rubric_to_proto(rubric)))
    }

    async fn list_rubrics(
        &self,
        request: Request<pb::ListRubricsRequest>,
    ) -> Result<Response<pb::ListRubricsResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let fingerprint = filter_fingerprint(&format!(
            "rubrics;include_archived={}",
            request.include_archived
        ));
        let limit = page_size(request.page_size).unwrap_or_else(|reason| {
            violations.add("page_size", reason);
            0
        });
        let after = self.tokens.read(
            tenant,
            &request.page_token,
            &fingerprint,
            "page_token",
            |key| Uuid::parse_str(key).ok(),
            &mut violations,
        );
        violations.finish(())?;
        let rubrics = self
            .store
            .list_rubrics(
                tenant,
                RubricListing {
                    after,
                    limit: limit + 1,
                    include_archived: request.include_archived,
                },
            )
            .await?;
        let (rubrics, next_page_token) =
            self.tokens
                .finish_page(tenant, rubrics, limit, &fingerprint, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListRubricsResponse {
            rubrics: rubrics.into_iter().map(rubric_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_rubric_draft(
        &self,
        request: Request<pb::UpdateRubricDraftRequest>,
    ) -> Result<Response<pb::Rubric>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.id);
        let patch = draft_patch(request, &mut violations);
        let id = violations.finish_with(id)?;
        let rubric = self.store.update_draft(tenant, id, patch).await?;
        Ok(Response::new(rubric_to_proto(rubric)))
    }

    async fn publish_rubric(
        &self,
        request: Request<pb::PublishRubricRequest>,
    ) -> Result<Response<pb::RubricVersion>, Status> {
        let tenant = principal(&request)?.tenant;
        let id = required_uuid("id", &request.get_ref().id)?;
        let version = self.store.publish(tenant, id).await?;
        Ok(Response::new(version_to_proto(version)))
    }

    async fn get_rubric_version(
        &self,
        request: Request<pb::GetRubricVersionRequest>,
    ) -> Result<Response<pb::RubricVersion>, Status> {
        let tenant = principal(&request)?.tenant;
        let rubric_id = required_uuid("rubric_id", &request.get_ref().rubric_id)?;
        let version = Some(request.get_ref().version).filter(|v| *v > 0);
        let version = self.store.get_version(tenant, rubric_id, version).await?;
        Ok(Response::new(version_to_proto(version)))
    }

    async fn list_rubric_versions(
        &self,
        request: Request<pb::ListRubricVersionsRequest>,
    ) -> Result<Response<pb::ListRubricVersionsResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let rubric_id = violations.require_uuid("rubric_id", &request.rubric_id);
        let fingerprint = filter_fingerprint(&format!("versions;rubric={}", request.rubric_id));
        let limit = page_size(request.page_size).unwrap_or_else(|reason| {
            violations.add("page_size", reason);
            0
        });
        let before = self.tokens.read(
            tenant,
            &request.page_token,
            &fingerprint,
            "page_token",
            |key| key.parse::<u32>().ok(),
            &mut violations,
        );
        let rubric_id = violations.finish_with(rubric_id)?;
        let versions = self
            .store
            .list_versions(
                tenant,
                rubric_id,
                VersionListing {
                    before,
                    limit: limit + 1,
                },
            )
            .await?;
        let (versions, next_page_token) =
            self.tokens
                .finish_page(tenant, versions, limit, &fingerprint, |last| {
                    last.version.to_string()
                });
        Ok(Response::new(pb::ListRubricVersionsResponse {
            rubric_versions: versions.into_iter().map(version_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn archive_rubric(
        &self,
        request: Request<pb::ArchiveRubricRequest>,
    ) -> Result<Response<pb::Rubric>, Status> {
        let tenant = principal(&request)?.tenant;
        let id = required_uuid("id", &request.get_ref().id)?;
        let rubric = self.store.archive(tenant, id).await?;
        Ok(Response::new(rubric_to_proto(rubric)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    }

    #[test]
    fn empty_update_mask_replaces_the_whole_draft() {
        let mut violations = Violations::new();
        let patch = draft_patch(
            pb::UpdateRubricDraftRequest {
                draft: Some(pb::RubricDraft::default()),
                ..Default::default()
            },
            &mut violations,
        );
        assert!(violations.is_empty());
        assert_eq!(patch.criteria, Some(Vec::new()));
        assert_eq!(patch.pass_threshold, Some(80.0));
    }

    #[test]
    fn update_mask_with_pass_threshold_keeps_criteria() {
        let mut violations = Violations::new();
        let patch = draft_patch(
            pb::UpdateRubricDraftRequest {
                draft: Some(pb::RubricDraft {
                    criteria: Vec::new(),
                    pass_threshold: Some(70.0),
                    auto_score: false,
                }),
                update_mask: mask(&["draft.pass_threshold"]),
                ..Default::default()
            },
            &mut violations,
        );
        assert!(violations.is_empty());
        assert_eq!(patch.criteria, None);
        assert_eq!(patch.pass_threshold, Some(70.0));
    }

    #[test]
    fn unknown_update_mask_path_is_named() {
        let mut violations = Violations::new();
        draft_patch(
            pb::UpdateRubricDraftRequest {
                draft: Some(pb::RubricDraft::default()),
                update_mask: mask(&["criteria", "display_name"]),
                ..Default::default()
            },
            &mut violations,
        );
        assert_eq!(violations.as_slice()[0].field, "update_mask.paths[1]");
    }
}
