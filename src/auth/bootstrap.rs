//! The first run on an empty store: a tenant and an admin key, so a machine with nothing
//! installed can be called at once.

use crate::auth::keys;
use crate::domain::access::Role;
use crate::error::Result;
use crate::store::{AccessStore, KeyBinding};

/// The tenant the first admin key belongs to.
pub const FIRST_TENANT: &str = "default";

/// When the store holds no key at all, creates the `default` tenant and an admin key for
/// it and returns the key (its only copy); otherwise returns `None`.
pub async fn first_admin_key(store: &dyn AccessStore) -> Result<Option<String>> {
    if !store.list_keys().await?.is_empty() {
        return Ok(None);
    }
    let tenant = store.create_tenant(FIRST_TENANT).await?;
    let new = keys::generate(tenant.id)?;
    store
        .create_key(
            tenant.id,
            new.key_id,
            new.secret_hash,
            Role::Admin,
            KeyBinding::default(),
        )
        .await?;
    Ok(Some(new.key))
}
