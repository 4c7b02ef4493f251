//! How the evaluation service reads published rubric versions: in-process when the
//! rubric service runs in the same process, over gRPC when it runs elsewhere. Published
//! versions never change, so both are cached without expiry.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use super::error_status::from_remote;
use async_trait::async_trait;
use tonic::transport::Channel;
use uuid::Uuid;

use super::convert::criteria_from_proto;
use crate::auth::Credential;
use crate::domain::{rubric::RubricVersion, tenant::TenantId, validation::Violations};
use crate::error::{Error, Result};
use crate::proto::rubric::{self as pb, rubric_service_client::RubricServiceClient};
use crate::store::RubricStore;

#[async_trait]
pub trait RubricClient: Send + Sync + 'static {
    /// A published version; `None` = the latest. `credential` is the caller's key, for
    /// a rubric service elsewhere.
    async fn version(
        &self,
        tenant: TenantId,
        credential: Option<&Credential>,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<Arc<RubricVersion>>;
}

/// Reads versions straight from the rubric store of this process.
pub struct InProcessRubricClient {
    store: Arc<dyn RubricStore>,
}

impl InProcessRubricClient {
    pub fn new(store: Arc<dyn RubricStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl RubricClient for InProcessRubricClient {
    /// The caller was authenticated by this process already: no credential to pass.
    async fn version(
        &self,
        tenant: TenantId,
        _: Option<&Credential>,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<Arc<RubricVersion>> {
        Ok(Arc::new(
            self.store.get_version(tenant, rubric_id, version).await?,
        ))
    }
}

/// How long the evaluation service waits for a rubric service elsewhere.
const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads versions from a rubric service elsewhere, over gRPC.
pub struct RemoteRubricClient {
    client: RubricServiceClient<Channel>,
}

impl RemoteRubricClient {
    /// Connects lazily: the rubric service may start after this one. An `https://`
    /// endpoint is called over TLS with `tls`.
    pub fn new(endpoint: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> Result<Self> {
        let mut channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|err| Error::Internal(format!("bad rubric endpoint {endpoint:?}: {err}")))?;
        if let Some(tls) = tls {
            channel = channel.tls_config(tls).map_err(|err| {
                Error::Internal(format!("TLS for the rubric endpoint {endpoint:?}: {err}"))
            })?;
        }
        let channel = channel.connect_lazy();
        Ok(Self {
            client: RubricServiceClient::new(channel),
        })
    }
}

#[async_trait]
impl RubricClient for RemoteRubricClient {
    async fn version(
        &self,
        _tenant: TenantId,
        credential: Option<&Credential>,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<Arc<RubricVersion>> {
        let mut request = tonic::Request::new(pb::GetRubricVersionRequest {
            rubric_id: rubric_id.to_string(),
            version: version.unwrap_or(0),
        });
        if let Some(credential) = credential
            && let Ok(value) = format!("Bearer {}", credential.0).parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request.set_timeout(REMOTE_TIMEOUT);
        crate::telemetry::inject_current_context(&mut request);
        let response = self
            .client
            .clone()
            .get_rubric_version(request)
            .await
            .map_err(|status| {
                from_remote("rubric service", &status, || {
                    Error::not_found(
                        "rubric version",
                        format!("{rubric_id}@{}", version.unwrap_or(0)),
                    )
                })
            })?
            .into_inner();
        let mut violations = Violations::new();
        let criteria = criteria_from_proto(response.criteria, "criteria", &mut violations);
        if !violations.is_empty() {
            return Err(Error::Internal(
                "rubric service sent a malformed version".into(),
            ));
        }
        let publish_time = response
            .publish_time
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .ok_or_else(|| {
                Error::Internal("rubric service sent a version without publish time".into())
            })?;
        Ok(Arc::new(RubricVersion {
            rubric_id,
            version: response.version,
            criteria,
            pass_threshold: response.pass_threshold,
            publish_time,
            auto_score: response.auto_score,
        }))
    }
}

/// Caches every version it has seen. The latest version is always asked for (a new one
/// may have been published), then cached under its number.
pub struct CachedRubricClient<C> {
    inner: C,
    versions: RwLock<HashMap<(TenantId, Uuid, u32), Arc<RubricVersion>>>,
}

impl<C: RubricClient> CachedRubricClient<C> {
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            versions: RwLock::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl<C: RubricClient> RubricClient for CachedRubricClient<C> {
    async fn version(
        &self,
        tenant: TenantId,
        credential: Option<&Credential>,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<Arc<RubricVersion>> {
        if let Some(number) = version {
            let cached = self
                .versions
                .read()
                .ok()
                .and_then(|versions| versions.get(&(tenant, rubric_id, number)).cloned());
            if let Some(cached) = cached {
                return Ok(cached);
            }
        }
        let fetched = self
            .inner
            .version(tenant, credential, rubric_id, version)
            .await?;
        if let Ok(mut versions) = self.versions.write() {
            versions.insert((tenant, rubric_id, fetched.version), fetched.clone());
        }
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(AtomicUsize);

    #[async_trait]
    impl RubricClient for Counting {
        async fn version(
            &self,
            _: TenantId,
            _: Option<&Credential>,
            rubric_id: Uuid,
            version: Option<u32>,
        ) -> Result<Arc<RubricVersion>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(RubricVersion {
                rubric_id,
                version: version.unwrap_or(3),
                criteria: Vec::new(),
                pass_threshold: 80.0,
                publish_time: chrono::Utc::now(),
                auto_score: false,
            }))
        }
    }

    #[tokio::test]
    async fn numbered_versions_are_fetched_once_and_latest_every_time() {
        let client = CachedRubricClient::new(Counting(AtomicUsize::new(0)));
        let tenant = TenantId(Uuid::nil());
        let rubric = Uuid::now_v7();
        client.version(tenant, None, rubric, Some(1)).await.unwrap();
        client.version(tenant, None, rubric, Some(1)).await.unwrap();
        assert_eq!(client.inner.0.load(Ordering::SeqCst), 1);
        client.version(tenant, None, rubric, None).await.unwrap();
        client.version(tenant, None, rubric, None).await.unwrap();
        assert_eq!(client.inner.0.load(Ordering::SeqCst), 3);
        // The latest, once seen, is cached under its number.
        client.version(tenant, None, rubric, Some(3)).await.unwrap();
        assert_eq!(client.inner.0.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn tenants_do_not_share_cached_versions() {
        let client = CachedRubricClient::new(Counting(AtomicUsize::new(0)));
        let rubric = Uuid::now_v7();
        client
            .version(TenantId(Uuid::nil()), None, rubric, Some(1))
            .await
            .unwrap();
        client
            .version(TenantId(Uuid::now_v7()), None, rubric, Some(1))
            .await
            .unwrap();
        assert_eq!(client.inner.0.load(Ordering::SeqCst), 2);
    }
}
