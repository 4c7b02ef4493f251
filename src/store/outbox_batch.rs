//! How a batch of outbox events changes the analytics facts and rollups, the same for
//! both store adapters.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::domain::analytics::{RollupDeltas, Transition, transition};
use crate::domain::evaluation::EvaluationEvent;
use crate::domain::tenant::TenantId;
use crate::store::AppliedBatch;

/// What applying a batch of outbox events changes: the facts to store, the rollup
/// deltas, and whose cached figures are stale.
pub(crate) struct BatchPlan {
    pub applied: AppliedBatch,
    pub deltas: RollupDeltas,
    /// (tenant, fact) of every evaluation whose fact changed.
    pub facts: Vec<(Uuid, EvaluationEvent)>,
}

/// Plans a batch against the stored facts of its evaluations, keyed by (tenant,
/// evaluation id). Events older than the fact they meet are skipped, so a replayed
/// event changes nothing.
pub(crate) fn plan_batch(
    mut facts: HashMap<(Uuid, Uuid), EvaluationEvent>,
    events: &[(Uuid, EvaluationEvent)],
) -> BatchPlan {
    let mut changed: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
    let mut deltas = RollupDeltas::default();
    let mut applied = AppliedBatch {
        events: events.len(),
        ..AppliedBatch::default()
    };
    for (tenant, event) in events {
        let key = (*tenant, event.evaluation_id);
        let (remove, add) = match transition(facts.get(&key), event) {
            Transition::Stale => continue,
            Transition::Apply { remove, add } => (remove.cloned(), add.is_some()),
        };
        if let Some(old) = &remove {
            deltas.add(*tenant, old, -1);
            applied
                .agents
                .push((TenantId(*tenant), old.agent_id.clone()));
            applied.teams.push((TenantId(*tenant), old.team_id.clone()));
        }
        if add {
            deltas.add(*tenant, event, 1);
        }
        applied
            .agents
            .push((TenantId(*tenant), event.agent_id.clone()));
        applied
            .teams
            .push((TenantId(*tenant), event.team_id.clone()));
        facts.insert(key, event.clone());
        changed.insert(key);
    }
    applied
        .agents
        .sort_by(|a, b| (a.0.0, &a.1).cmp(&(b.0.0, &b.1)));
    applied.agents.dedup();
    applied
        .teams
        .sort_by(|a, b| (a.0.0, &a.1).cmp(&(b.0.0, &b.1)));
    applied.teams.dedup();
    let facts = changed
        .into_iter()
        .filter_map(|key| facts.remove(&key).map(|event| (key.0, event)))
        .collect();
    BatchPlan {
        applied,
        deltas,
        facts,
    }
}
