//! Calls in flight per API key and per tenant. The server's concurrency limit is shared
//! by every tenant; without a share per caller, one key that opens calls and never
//! finishes them (a body that never arrives, an import that never ends) holds every
//! slot. A call beyond its key's or its tenant's share is refused at once with
//! RESOURCE_EXHAUSTED, so it gives its server slot back immediately.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use crate::domain::tenant::TenantId;

/// How many calls each key and each tenant may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    pub per_key: usize,
    pub per_tenant: usize,
}

#[derive(Debug)]
struct InFlight<K: Eq + Hash> {
    calls: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash> Default for InFlight<K> {
    fn default() -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Copy> InFlight<K> {
    /// Counts one more call of `owner` unless it has `limit` already.
    fn enter(&self, owner: K, limit: usize) -> bool {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = calls.entry(owner).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    fn leave(&self, owner: K) {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = calls.get_mut(&owner) {
            *count -= 1;
            if *count == 0 {
                calls.remove(&owner);
            }
        }
    }
}

#[derive(Debug)]
pub struct FairShare {
    shares: Shares,
    keys: InFlight<Uuid>,
    tenants: InFlight<TenantId>,
}

/// A call's place in its key's and tenant's shares, given back when dropped.
pub struct Admitted {
    fair_share: Arc<FairShare>,
    tenant: TenantId,
    key: Option<Uuid>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.fair_share.tenants.leave(self.tenant);
        if let Some(key) = self.key {
            self.fair_share.keys.leave(key);
        }
    }
}

/// The delay a refused caller is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_millis(100);

fn refusal(whose: &str, limit: usize) -> Status {
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!("{whose} has {limit} calls in flight, its limit; retry when one has finished"),
        ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
    )
}

impl FairShare {
    pub fn new(shares: Shares) -> Self {
        Self {
            shares: Shares {
                per_key: shares.per_key.max(1),
                per_tenant: shares.per_tenant.max(1),
            },
            keys: InFlight::default(),
            tenants: InFlight::default(),
        }
    }

    /// Admits one call of `key` (none when the server runs without keys) of `tenant`.
    pub fn admit(
        self: &Arc<Self>,
        tenant: TenantId,
        key: Option<Uuid>,
    ) -> Result<Admitted, Status> {
        if let Some(key) = key
            && !self.keys.enter(key, self.shares.per_key)
        {
            return Err(refusal("this API key", self.shares.per_key));
        }
        if !self.tenants.enter(tenant, self.shares.per_tenant) {
            if let Some(key) = key {
                self.keys.leave(key);
            }
            return Err(refusal("this tenant", self.shares.per_tenant));
        }
        Ok(Admitted {
            fair_share: self.clone(),
            tenant,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(per_key: usize, per_tenant: usize) -> Arc<FairShare> {
        Arc::new(FairShare::new(Shares {
            per_key,
            per_tenant,
        }))
    }

    #[test]
    fn a_key_beyond_its_share_is_refused_and_other_keys_are_not() {
        let fair = shares(2, 10);
        let tenant = TenantId(Uuid::now_v7());
        let (busy, other) = (Uuid::now_v7(), Uuid::now_v7());
        let held: Vec<_> = (0..2)
            .map(|_| fair.admit(tenant, Some(busy)).unwrap())
            .collect();
        let refused = fair.admit(tenant, Some(busy)).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.get_details_retry_info().is_some());
        fair.admit(tenant, Some(other)).unwrap();
        drop(held);
        fair.admit(tenant, Some(busy)).unwrap();
    }

    #[test]
    fn a_tenant_beyond_its_share_is_refused_whatever_key_it_uses() {
        let fair = shares(10, 3);
        let (tenant, other_tenant) = (TenantId(Uuid::now_v7()), TenantId(Uuid::now_v7()));
        let held: Vec<_> = (0..3)
            .map(|_| fair.admit(tenant, Some(Uuid::now_v7())).unwrap())
            .collect();
        let key = Uuid::now_v7();
        assert!(fair.admit(tenant, Some(key)).is_err());
        // The refused call did not keep its key's count.
        assert!(fair.keys.calls.lock().unwrap().get(&key).is_none());
        fair.admit(other_tenant, None).unwrap();
        drop(held);
        assert!(fair.tenants.calls.lock().unwrap().get(&tenant).is_none());
    }
}
