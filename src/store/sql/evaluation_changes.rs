//! EvaluationChanges (revise, delete), once for both databases. Each writes its new
//! revision or state, the ratings and the outbox event in one transaction, and wakes the
//! projectors after the commit.

use async_trait::async_trait;
use uuid::Uuid;

use super::evaluation_reads::{
    EVALUATION_COLUMNS, INTERACTION_COLUMNS, InteractionRow, find_request_in, with_ratings,
};
use super::{Link, SqlBackend, Stamp, Value, sql};
use crate::domain::evaluation::{
    Evaluation, EvaluationEvent, EvaluationState, NOT_OWN_INTERACTION, NewRevision,
};
use crate::domain::interaction::{Interaction, InteractionInput};
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{EvaluationRow, replay, signed, unsigned};
use crate::store::{EvaluationChanges, EvaluationReads};

/// Creates or updates the interaction keyed by (source, external_id). With `keep_agent`,
/// an existing interaction of another agent is left as it is and the call is refused.
pub(crate) async fn upsert_interaction_in(
    link: &mut Link<'_>,
    tenant: TenantId,
    input: &InteractionInput,
    keep_agent: bool,
) -> Result<Interaction> {
    let guard = if keep_agent {
        "WHERE i.agent_id = excluded.agent_id"
    } else {
        ""
    };
    let now = Stamp::now();
    let row: Option<InteractionRow> = link
        .fetch_optional(
            sql(format!(
                "INSERT INTO interactions AS i
                     (tenant_id, id, source, external_id, channel, agent_id, team_id, region,
                      occur_time, csat, nps, messages, attributes, create_time, update_time)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
                 ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET
                     channel = excluded.channel, agent_id = excluded.agent_id,
                     team_id = excluded.team_id, region = excluded.region,
                     occur_time = COALESCE(excluded.occur_time, i.occur_time),
                     csat = excluded.csat, nps = excluded.nps, messages = excluded.messages,
                     attributes = excluded.attributes, update_time = excluded.update_time
                 {guard}
                 RETURNING {INTERACTION_COLUMNS}"
            ))
            .bind(tenant)
            .bind(Uuid::now_v7())
            .bind(input.source.as_str())
            .bind(input.external_id.as_str())
            .bind(input.channel.as_str())
            .bind(input.agent_id.as_str())
            .bind(input.team_id.as_str())
            .bind(input.region.as_str())
            .bind(input.occur_time.map(Stamp))
            .bind(small(input.csat, "csat")?)
            .bind(small(input.nps, "nps")?)
            .bind(Value::json(&input.messages)?)
            .bind(Value::json(&input.attributes)?)
            .bind(now),
        )
        .await?;
    match row {
        Some(row) => Ok(row.into()),
        None if keep_agent => Err(Error::PermissionDenied(NOT_OWN_INTERACTION.into())),
        None => Err(Error::Internal(
            "interaction upsert returned nothing".into(),
        )),
    }
}

/// A small number as stored (`smallint`); validation keeps it in range.
fn small(value: Option<i32>, field: &str) -> Result<Option<i16>> {
    value
        .map(|value| {
            i16::try_from(value)
                .map_err(|_| Error::Internal(format!("{field} {value} out of range")))
        })
        .transpose()
}

/// The current revision (active or deleted), locked where the backend locks rows.
pub(crate) async fn current_row(
    link: &mut Link<'_>,
    tenant: TenantId,
    id: Uuid,
    lock: &str,
) -> Result<EvaluationRow> {
    let row: Option<EvaluationRow> = link
        .fetch_optional(
            sql(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations
                 WHERE tenant_id = $1 AND id = $2 AND state <> 'superseded'{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    row.ok_or_else(|| Error::not_found("evaluation", id))
}

async fn csat_of(
    link: &mut Link<'_>,
    tenant: TenantId,
    interaction_id: Uuid,
) -> Result<Option<i16>> {
    let row: Option<(Option<i16>,)> = link
        .fetch_optional(
            sql("SELECT csat FROM interactions WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(interaction_id),
        )
        .await?;
    Ok(row.and_then(|(csat,)| csat))
}

/// Inserts a revision row; false when its request id was stored before.
async fn insert_revision(
    link: &mut Link<'_>,
    tenant: TenantId,
    evaluation: &Evaluation,
    reason: &str,
    revision: &NewRevision,
    event_csat: Option<i16>,
) -> Result<bool> {
    let inserted = link
        .execute(
            sql("INSERT INTO evaluations
                     (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region,
                      rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
                      criterion_scores, critical_failed, passed, state, reason, request_id,
                      request_fingerprint, create_time, first_create_time, calibration_session_id,
                      event_csat)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
                 ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING")
            .bind(tenant)
            .bind(evaluation.id)
            .bind(signed(evaluation.revision)?)
            .bind(evaluation.interaction_id)
            .bind(evaluation.agent_id.as_str())
            .bind(evaluation.team_id.as_str())
            .bind(evaluation.channel.as_str())
            .bind(evaluation.region.as_str())
            .bind(evaluation.rubric_id)
            .bind(signed(evaluation.rubric_version)?)
            .bind(evaluation.reviewer_id.as_str())
            .bind(evaluation.kind.as_str())
            .bind(evaluation.comment.as_str())
            .bind(evaluation.outcome.score)
            .bind(Value::json(&evaluation.outcome.section_scores)?)
            .bind(Value::json(&evaluation.outcome.criterion_scores)?)
            .bind(evaluation.outcome.critical_failed)
            .bind(evaluation.outcome.passed)
            .bind(evaluation.state.as_str())
            .bind(reason)
            .bind(revision.request_id.as_deref())
            .bind(revision.fingerprint.as_slice())
            .bind(Stamp(evaluation.create_time))
            .bind(Stamp(evaluation.first_create_time))
            .bind(evaluation.calibration_session_id)
            .bind(event_csat),
        )
        .await?;
    Ok(inserted == 1)
}

async fn insert_ratings(
    link: &mut Link<'_>,
    tenant: TenantId,
    evaluation: &Evaluation,
) -> Result<()> {
    for (position, rating) in evaluation.ratings.iter().enumerate() {
        let position =
            i16::try_from(position).map_err(|_| Error::Internal("too many ratings".into()))?;
        link.execute(
            sql("INSERT INTO ratings
                     (tenant_id, evaluation_id, revision, position, criterion_key, value,
                      not_applicable, comment, root_causes, explanation)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(tenant)
            .bind(evaluation.id)
            .bind(signed(evaluation.revision)?)
            .bind(position)
            .bind(rating.criterion_key.as_str())
            .bind(rating.value)
            .bind(rating.not_applicable)
            .bind(rating.comment.as_str())
            .bind(Value::json(&rating.root_causes)?)
            .bind(rating.explanation.as_str()),
        )
        .await?;
    }
    Ok(())
}

/// Writes the outbox event of a revision; `csat` is the one stored with the revision
/// (`event_csat`), so a rebuild from the evaluations derives the same event.
async fn insert_event(
    link: &mut Link<'_>,
    tenant: TenantId,
    event_type: &str,
    evaluation: &Evaluation,
    csat: Option<i16>,
) -> Result<()> {
    let event = EvaluationEvent::of(evaluation, csat.map(i32::from));
    link.execute(
        sql("INSERT INTO outbox (tenant_id, event_type, evaluation_id, revision, payload, create_time)
             VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(tenant)
        .bind(event_type)
        .bind(evaluation.id)
        .bind(signed(evaluation.revision)?)
        .bind(Value::json(&event)?)
        .bind(Stamp::now()),
    )
    .await
    .map(drop)
}

/// Supersedes the current revision of an active evaluation with `revision`, in the
/// caller's transaction: the new row, its ratings and its outbox event. `None` when the
/// revision's request id was stored before (by a concurrent call).
pub(crate) async fn revise_in(
    link: &mut Link<'_>,
    tenant: TenantId,
    id: Uuid,
    revision: &NewRevision,
    lock: &str,
) -> Result<Option<Evaluation>> {
    let current = current_row(link, tenant, id, lock).await?;
    if current.state != EvaluationState::Active.as_str() {
        return Err(Error::FailedPrecondition(format!(
            "evaluation {id} is deleted"
        )));
    }
    if unsigned(current.revision)? != revision.supersedes {
        return Err(Error::FailedPrecondition(format!(
            "evaluation {id} was revised concurrently (now at revision {}); retry",
            current.revision
        )));
    }
    link.execute(
        sql("UPDATE evaluations SET state = 'superseded'
             WHERE tenant_id = $1 AND id = $2 AND revision = $3")
        .bind(tenant)
        .bind(id)
        .bind(current.revision),
    )
    .await?;
    let previous = current.into_evaluation(Vec::new())?;
    let revised = Evaluation {
        revision: previous.revision + 1,
        ratings: revision.ratings.clone(),
        comment: revision.comment.clone(),
        outcome: revision.outcome.clone(),
        state: EvaluationState::Active,
        acknowledge_time: None,
        create_time: Stamp::now().0,
        ..previous
    };
    let csat = csat_of(link, tenant, revised.interaction_id).await?;
    if !insert_revision(link, tenant, &revised, &revision.reason, revision, csat).await? {
        return Ok(None);
    }
    insert_ratings(link, tenant, &revised).await?;
    insert_event(link, tenant, "revised", &revised, csat).await?;
    Ok(Some(revised))
}

#[async_trait]
impl<B: SqlBackend> EvaluationChanges for B {
    #[tracing::instrument(name = "db.upsert_interaction", skip_all, fields(db.system = B::SYSTEM))]
    async fn upsert_interaction(
        &self,
        tenant: TenantId,
        input: InteractionInput,
    ) -> Result<Interaction> {
        let mut tx = self.write().await?;
        let interaction = upsert_interaction_in(&mut tx.link(), tenant, &input, false).await?;
        tx.commit().await?;
        Ok(interaction)
    }

    #[tracing::instrument(name = "db.revise", skip_all, fields(db.system = B::SYSTEM))]
    async fn revise(
        &self,
        tenant: TenantId,
        id: Uuid,
        revision: NewRevision,
    ) -> Result<Evaluation> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        if let Some(request_id) = revision.request_id.as_deref() {
            let stored = find_request_in(&mut link, tenant, request_id).await?;
            if stored.is_some() {
                return replay(stored, request_id, &revision.fingerprint);
            }
        }
        let Some(revised) = revise_in(&mut link, tenant, id, &revision, B::LOCK_ROWS).await? else {
            // A concurrent call with this request id committed first: answer as a retry.
            drop(tx);
            let request_id = revision.request_id.unwrap_or_default();
            let stored = self.find_request(tenant, &request_id).await?;
            return replay(stored, &request_id, &revision.fingerprint);
        };
        tx.commit().await?;
        self.events_committed();
        Ok(revised)
    }

    #[tracing::instrument(name = "db.acknowledge", skip_all, fields(db.system = B::SYSTEM))]
    async fn acknowledge(
        &self,
        tenant: TenantId,
        id: Uuid,
        agent: Option<&str>,
    ) -> Result<Evaluation> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let current = current_row(&mut link, tenant, id, B::LOCK_ROWS).await?;
        if agent.is_some_and(|agent| agent != current.agent_id) {
            // Another agent's evaluation is as absent as one that does not exist.
            return Err(Error::not_found("evaluation", id));
        }
        if current.state != EvaluationState::Active.as_str() {
            return Err(Error::FailedPrecondition(format!(
                "evaluation {id} is deleted"
            )));
        }
        let row: EvaluationRow = link
            .fetch_one(
                sql(format!(
                    "UPDATE evaluations SET acknowledge_time = COALESCE(acknowledge_time, $4)
                     WHERE tenant_id = $1 AND id = $2 AND revision = $3
                     RETURNING {EVALUATION_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(current.revision)
                .bind(Stamp::now()),
            )
            .await?;
        let acknowledged = with_ratings(&mut link, tenant, vec![row]).await?.remove(0);
        tx.commit().await?;
        Ok(acknowledged)
    }

    #[tracing::instrument(name = "db.delete", skip_all, fields(db.system = B::SYSTEM))]
    async fn delete(&self, tenant: TenantId, id: Uuid, reason: String) -> Result<Evaluation> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let current = current_row(&mut link, tenant, id, B::LOCK_ROWS).await?;
        if current.state == EvaluationState::Deleted.as_str() {
            return Ok(with_ratings(&mut link, tenant, vec![current])
                .await?
                .remove(0));
        }
        let csat = csat_of(&mut link, tenant, current.interaction_id).await?;
        let row: EvaluationRow = link
            .fetch_one(
                sql(format!(
                    "UPDATE evaluations SET state = 'deleted', reason = $4, event_csat = $5
                     WHERE tenant_id = $1 AND id = $2 AND revision = $3
                     RETURNING {EVALUATION_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(current.revision)
                .bind(reason)
                .bind(csat),
            )
            .await?;
        let deleted = with_ratings(&mut link, tenant, vec![row]).await?.remove(0);
        insert_event(&mut link, tenant, "deleted", &deleted, csat).await?;
        tx.commit().await?;
        self.events_committed();
        Ok(deleted)
    }
}
