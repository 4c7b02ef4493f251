//! Storing submissions on PostgreSQL: one alone in its transaction, or a group of
//! concurrent ones in one transaction with multi-row statements, each keeping its own
//! outcome (`group_commit` decides which).
//!
//! A group pays once what a submission alone pays every time: the round trips, the
//! statement-level integrity triggers, planning and the commit's WAL flush. What makes
//! one row of a group fail without failing the others is answered per row inside the
//! group (a missing interaction, a request id stored before); anything else that refuses
//! the group's statements rolls the group back and stores each of its submissions alone.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use sqlx::PgPool;
use uuid::Uuid;

use super::evaluation::{
    DependentColumns, EvaluationColumns, dimensions_of, now_micros, resolve_interaction,
    stage_submission, stored_fingerprints, upsert_inline_dimensions,
};
use super::{classify, notifier::OutboxNotifier};
use crate::domain::{
    evaluation::{Evaluation, InteractionRef, NewEvaluation},
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{Dimensions, evaluation_from, replay};
use crate::store::sql::{Link, evaluation_reads::find_request_in};

/// What a submission's write needs: the pool, and who to tell that events committed.
#[derive(Debug, Clone)]
pub(super) struct SubmissionWriter {
    pub(super) pool: PgPool,
    pub(super) outbox: OutboxNotifier,
}

/// Why a group was not stored as one transaction.
enum GroupRefused {
    /// Nothing was written: each submission can be stored alone.
    BeforeCommit(Error),
    /// Some callers went away before the commit: nothing was written, and the
    /// submissions of those still waiting can be stored alone.
    CallersGone,
    /// The commit's outcome is unknown: storing again could store twice.
    AtCommit(Error),
}

impl SubmissionWriter {
    /// Stores one scored evaluation, its ratings and its outbox event in one transaction,
    /// unless its caller is no longer `waiting` when the transaction is about to commit.
    pub(super) async fn submit_alone(
        &self,
        tenant: TenantId,
        new: NewEvaluation,
        waiting: impl Fn() -> bool,
    ) -> Result<Evaluation> {
        let request_id = new.request_id.clone();
        let fingerprint = new.fingerprint.clone();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let dimensions = resolve_interaction(
            &mut tx,
            tenant,
            &new.interaction,
            new.interaction_keeps_agent,
        )
        .await?;
        let evaluation = evaluation_from(new, &dimensions, Uuid::now_v7(), now_micros());
        let mut columns = EvaluationColumns::default();
        columns.push(
            &evaluation,
            "",
            request_id.clone(),
            Some(fingerprint.clone()),
            dimensions.csat,
        )?;
        let mut dependents = DependentColumns::default();
        dependents.push_ratings(&evaluation)?;
        dependents.push_event("submitted", &evaluation, dimensions.csat)?;
        if columns
            .insert_with(&dependents, &mut tx, tenant)
            .await?
            .is_empty()
        {
            // Another call with this request id committed first: undo this one (including
            // its interaction upsert) and answer as a retry.
            tx.rollback().await.map_err(classify)?;
            return self
                .replay(tenant, &request_id.unwrap_or_default(), &fingerprint)
                .await;
        }
        if !waiting() {
            tx.rollback().await.map_err(classify)?;
            return Err(caller_gone());
        }
        tx.commit().await.map_err(classify)?;
        self.outbox.committed();
        Ok(evaluation)
    }

    /// Stores submissions that arrived together, answering each as `submit_alone` would
    /// have, in the order given: a later submission repeating an earlier one's request
    /// id is answered as its retry, and a later inline interaction of the same key
    /// updates the one an earlier submission stored.
    ///
    /// `waiting(index)` says whether the caller of `submissions[index]` still waits for
    /// its answer. A caller that went away before the commit of its submission has
    /// nothing stored, as alone: its group is rolled back and the submissions of the
    /// callers still waiting are stored alone.
    pub async fn submit_group(
        &self,
        submissions: Vec<(TenantId, NewEvaluation)>,
        waiting: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Result<Evaluation>> {
        let mut outcomes: Vec<Option<Result<Evaluation>>> =
            submissions.iter().map(|_| None).collect();
        let (grouped, deferred) = split_group(&submissions);
        let mut refused = Vec::new();
        for (tenant, indexes) in grouped {
            if indexes.len() == 1 {
                // Alone it needs no check of its request id before its insert.
                refused.extend(indexes);
                continue;
            }
            let rows: Vec<&NewEvaluation> =
                indexes.iter().map(|&index| &submissions[index].1).collect();
            let all_waiting = || indexes.iter().all(|&index| waiting(index));
            match self.write_group(tenant, &rows, &all_waiting).await {
                Ok(results) => {
                    for (index, result) in indexes.into_iter().zip(results) {
                        outcomes[index] = Some(result);
                    }
                }
                Err(GroupRefused::BeforeCommit(Error::Unavailable(reason)))
                | Err(GroupRefused::AtCommit(Error::Unavailable(reason))) => {
                    for index in indexes {
                        outcomes[index] = Some(Err(Error::Unavailable(reason.clone())));
                    }
                }
                Err(GroupRefused::AtCommit(err)) => {
                    let reason = err.to_string();
                    for index in indexes {
                        outcomes[index] = Some(Err(Error::Internal(reason.clone())));
                    }
                }
                Err(GroupRefused::BeforeCommit(err)) => {
                    tracing::debug!(%err, rows = indexes.len(), "a group was refused; its submissions are stored alone");
                    refused.extend(indexes);
                }
                Err(GroupRefused::CallersGone) => {
                    tracing::debug!(
                        rows = indexes.len(),
                        "callers left a group before its commit; the others are stored alone"
                    );
                    refused.extend(indexes);
                }
            }
        }
        // The submissions deferred for repeating an earlier one come after it has been
        // stored, so that they see what it stored.
        let submissions = &submissions;
        for indexes in [refused, deferred] {
            let results = join_all(indexes.iter().map(|&index| async move {
                if !waiting(index) {
                    return Err(caller_gone());
                }
                let (tenant, submission) = &submissions[index];
                self.submit_alone(*tenant, submission.clone(), || waiting(index))
                    .await
            }))
            .await;
            for (index, result) in indexes.into_iter().zip(results) {
                outcomes[index] = Some(result);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(Error::Internal("submission not processed".into())))
            })
            .collect()
    }

    /// One tenant's submissions in one transaction. Each is answered as alone: a missing
    /// interaction fails its row, a request id stored before answers its row as a retry.
    /// Committed only if every caller is still `waiting` just before.
    async fn write_group(
        &self,
        tenant: TenantId,
        rows: &[&NewEvaluation],
        waiting: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<Result<Evaluation>>, GroupRefused> {
        let before = GroupRefused::BeforeCommit;
        let mut tx = self.pool.begin().await.map_err(classify).map_err(before)?;

        // Retries of stored requests write nothing: not even their interaction.
        let request_ids: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.request_id.as_deref())
            .collect();
        let stored = stored_fingerprints(&mut tx, tenant, &request_ids)
            .await
            .map_err(before)?;
        let is_retry = |row: &NewEvaluation| {
            row.request_id
                .as_ref()
                .is_some_and(|request_id| stored.contains_key(request_id))
        };

        let upserted = upsert_inline_dimensions(
            &mut tx,
            tenant,
            rows.iter()
                .filter(|row| !is_retry(row))
                .map(|row| &row.interaction),
        )
        .await
        .map_err(before)?;
        let by_key: HashMap<(&str, &str), &Dimensions> = upserted
            .iter()
            .map(|d| ((d.source.as_str(), d.external_id.as_str()), d))
            .collect();
        let referenced: Vec<Uuid> = rows
            .iter()
            .filter_map(|row| match &row.interaction {
                InteractionRef::Id(id) => Some(*id),
                InteractionRef::Inline(_) => None,
            })
            .collect();
        let by_id = dimensions_of(&mut tx, tenant, &referenced)
            .await
            .map_err(before)?;

        let now = now_micros();
        let mut answers: Vec<Option<Result<Evaluation>>> = rows.iter().map(|_| None).collect();
        let mut columns = EvaluationColumns::default();
        let mut dependents = DependentColumns::default();
        let mut written = 0;
        for (position, row) in rows.iter().enumerate() {
            if is_retry(row) {
                continue;
            }
            let dimensions = match &row.interaction {
                InteractionRef::Id(id) => by_id
                    .get(id)
                    .ok_or_else(|| Error::not_found("interaction", id)),
                InteractionRef::Inline(input) => by_key
                    .get(&(input.source.as_str(), input.external_id.as_str()))
                    .copied()
                    .ok_or_else(|| Error::Internal("interaction upsert returned nothing".into())),
            };
            let dimensions = match dimensions {
                Ok(dimensions) => dimensions,
                Err(err) => {
                    answers[position] = Some(Err(err));
                    continue;
                }
            };
            let evaluation = evaluation_from((*row).clone(), dimensions, Uuid::now_v7(), now);
            stage_submission(
                &mut columns,
                &mut dependents,
                &evaluation,
                row,
                dimensions.csat,
            )
            .map_err(before)?;
            answers[position] = Some(Ok(evaluation));
            written += 1;
        }
        if written > 0 {
            let inserted = columns
                .insert_with(&dependents, &mut tx, tenant)
                .await
                .map_err(before)?;
            if inserted.len() != written {
                // A concurrent call stored one of these request ids after the check:
                // alone, each answers as its retry.
                return Err(before(Error::AlreadyExists(
                    "a request id of the group was stored concurrently".into(),
                )));
            }
        }
        if !waiting() {
            // Dropping the transaction rolls it back.
            return Err(GroupRefused::CallersGone);
        }
        tx.commit()
            .await
            .map_err(classify)
            .map_err(GroupRefused::AtCommit)?;
        if written > 0 {
            self.outbox.committed();
        }

        let mut outcomes = Vec::with_capacity(rows.len());
        for (row, answer) in rows.iter().zip(answers) {
            outcomes.push(match answer {
                Some(answer) => answer,
                None => {
                    let request_id = row.request_id.clone().unwrap_or_default();
                    self.replay(tenant, &request_id, &row.fingerprint).await
                }
            });
        }
        Ok(outcomes)
    }

    /// The answer to a retried request id: the stored evaluation, or `AlreadyExists`.
    async fn replay(
        &self,
        tenant: TenantId,
        request_id: &str,
        fingerprint: &[u8],
    ) -> Result<Evaluation> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        let stored = find_request_in(&mut Link::Postgres(&mut conn), tenant, request_id).await?;
        replay(stored, request_id, fingerprint)
    }
}

/// The answer to a call whose caller went away before its submission was committed;
/// nothing reads it.
fn caller_gone() -> Error {
    Error::Unavailable("the call ended before its submission was committed".into())
}

/// Which submissions can share their tenant's group, and which are deferred, stored alone
/// after the groups: an agent's self-review (its interaction upsert is guarded per row), and a
/// submission repeating a request id or an inline interaction key met earlier in the
/// group (one statement cannot write one row twice, and it must see the earlier write).
fn split_group(
    submissions: &[(TenantId, NewEvaluation)],
) -> (Vec<(TenantId, Vec<usize>)>, Vec<usize>) {
    let mut grouped: Vec<(TenantId, Vec<usize>)> = Vec::new();
    let mut alone = Vec::new();
    let mut request_ids: HashSet<(TenantId, &str)> = HashSet::new();
    let mut interactions: HashSet<(TenantId, &str, &str)> = HashSet::new();
    for (index, (tenant, row)) in submissions.iter().enumerate() {
        let repeats_request = row
            .request_id
            .as_deref()
            .is_some_and(|request_id| !request_ids.insert((*tenant, request_id)));
        let repeats_interaction = match &row.interaction {
            InteractionRef::Inline(input) => {
                !interactions.insert((*tenant, input.source.as_str(), input.external_id.as_str()))
            }
            InteractionRef::Id(_) => false,
        };
        if row.interaction_keeps_agent || repeats_request || repeats_interaction {
            alone.push(index);
            continue;
        }
        match grouped
            .iter_mut()
            .find(|(group_tenant, _)| group_tenant == tenant)
        {
            Some((_, indexes)) => indexes.push(index),
            None => grouped.push((*tenant, vec![index])),
        }
    }
    (grouped, alone)
}
