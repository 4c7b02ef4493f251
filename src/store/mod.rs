//! Persistence ports (traits) and their adapters. The services depend on the ports only.

pub mod postgres;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{
    rubric::{DraftPatch, NewRubric, Rubric, RubricVersion},
    tenant::TenantId,
};
use crate::error::Result;

/// Which rubrics to list: keyset pagination by id (ids are UUIDv7, so creation order).
#[derive(Debug, Clone, Copy)]
pub struct RubricListing {
    pub after: Option<Uuid>,
    pub limit: u32,
    pub include_archived: bool,
}

/// Which versions to list: newest first, strictly older than `before`.
#[derive(Debug, Clone, Copy)]
pub struct VersionListing {
    pub before: Option<u32>,
    pub limit: u32,
}

/// Rubrics and their published versions. Every call is scoped by the tenant.
#[async_trait]
pub trait RubricStore: Send + Sync + 'static {
    /// Creates a rubric. With a request id, a retry with the same content returns the
    /// rubric created first, and one with other content is `AlreadyExists`.
    async fn create_rubric(
        &self,
        tenant: TenantId,
        request_id: Option<&str>,
        rubric: NewRubric,
    ) -> Result<Rubric>;

    async fn get_rubric(&self, tenant: TenantId, id: Uuid) -> Result<Rubric>;

    async fn list_rubrics(&self, tenant: TenantId, listing: RubricListing) -> Result<Vec<Rubric>>;

    /// Applies a validated patch to the draft of an active rubric.
    async fn update_draft(&self, tenant: TenantId, id: Uuid, patch: DraftPatch) -> Result<Rubric>;

    /// Freezes the draft as the next version. When the draft equals the latest version,
    /// that version is returned and nothing new is stored, so retries are safe.
    async fn publish(&self, tenant: TenantId, id: Uuid) -> Result<RubricVersion>;

    /// One published version; `None` = the latest.
    async fn get_version(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<RubricVersion>;

    async fn list_versions(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        listing: VersionListing,
    ) -> Result<Vec<RubricVersion>>;

    /// Archives a rubric; archiving an archived rubric returns it unchanged.
    async fn archive(&self, tenant: TenantId, id: Uuid) -> Result<Rubric>;
}
