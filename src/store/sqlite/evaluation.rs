//! EvaluationStore on SQLite. Writes run on the single writer connection, so a
//! transaction sees no concurrent writer: no row locks are needed, and a request id is
//! checked before it is inserted.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::time::{now_micros, to_micros};
use super::{SqliteStore, classify};
use crate::domain::{
    evaluation::{Evaluation, EvaluationEvent, InteractionRef, NewEvaluation},
    interaction::Interaction,
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{Dimensions, evaluation_from, replay, signed, to_json};
use crate::store::sql::{
    Link, evaluation_changes::upsert_interaction_in, evaluation_reads::find_request_in,
};
use crate::store::{EvaluationStore, ImportOutcome};

const DIMENSION_COLUMNS: &str = "id, source, external_id, agent_id, team_id, channel, region, csat";

/// Bound parameters per statement stay well under SQLite's limit (32,766).
const IDS_PER_STATEMENT: usize = 5_000;

fn dimensions_of_interaction(interaction: Interaction) -> Dimensions {
    Dimensions {
        id: interaction.id,
        source: interaction.input.source,
        external_id: interaction.input.external_id,
        agent_id: interaction.input.agent_id,
        team_id: interaction.input.team_id,
        channel: interaction.input.channel,
        region: interaction.input.region,
        csat: interaction.input.csat.map(|v| v as i16),
    }
}

async fn dimensions_of(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Dimensions>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DIMENSION_COLUMNS} FROM interactions WHERE tenant_id = "
        ));
        query.push_bind(tenant.as_uuid()).push(" AND id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        let rows: Vec<Dimensions> = query
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(classify)?;
        found.extend(rows.into_iter().map(|row| (row.id, row)));
    }
    Ok(found)
}

async fn resolve_interaction(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    reference: &InteractionRef,
    keep_agent: bool,
) -> Result<Dimensions> {
    match reference {
        InteractionRef::Id(id) => dimensions_of(conn, tenant, &[*id])
            .await?
            .remove(id)
            .ok_or_else(|| Error::not_found("interaction", id)),
        InteractionRef::Inline(input) => Ok(dimensions_of_interaction(
            upsert_interaction_in(&mut Link::Sqlite(conn), tenant, input, keep_agent).await?,
        )),
    }
}

/// Inserts one revision; false when its request id was stored before.
async fn insert_evaluation(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    evaluation: &Evaluation,
    reason: &str,
    request_id: Option<&str>,
    fingerprint: &[u8],
    event_csat: Option<i16>,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO evaluations
             (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region,
              rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
              criterion_scores, critical_failed, passed, state, reason, request_id,
              request_fingerprint, create_time, first_create_time, calibration_session_id,
              event_csat)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING",
    )
    .bind(tenant.as_uuid())
    .bind(evaluation.id)
    .bind(signed(evaluation.revision)?)
    .bind(evaluation.interaction_id)
    .bind(&evaluation.agent_id)
    .bind(&evaluation.team_id)
    .bind(&evaluation.channel)
    .bind(&evaluation.region)
    .bind(evaluation.rubric_id)
    .bind(signed(evaluation.rubric_version)?)
    .bind(&evaluation.reviewer_id)
    .bind(evaluation.kind.as_str())
    .bind(&evaluation.comment)
    .bind(evaluation.outcome.score)
    .bind(to_json(&evaluation.outcome.section_scores)?)
    .bind(to_json(&evaluation.outcome.criterion_scores)?)
    .bind(evaluation.outcome.critical_failed)
    .bind(evaluation.outcome.passed)
    .bind(evaluation.state.as_str())
    .bind(reason)
    .bind(request_id)
    .bind(fingerprint)
    .bind(to_micros(evaluation.create_time))
    .bind(to_micros(evaluation.first_create_time))
    .bind(evaluation.calibration_session_id)
    .bind(event_csat)
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(inserted.rows_affected() == 1)
}

async fn insert_ratings(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    evaluation: &Evaluation,
) -> Result<()> {
    for (position, rating) in evaluation.ratings.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ratings
                 (tenant_id, evaluation_id, revision, position, criterion_key, value,
                  not_applicable, comment, root_causes, explanation)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.as_uuid())
        .bind(evaluation.id)
        .bind(signed(evaluation.revision)?)
        .bind(position as i64)
        .bind(&rating.criterion_key)
        .bind(rating.value)
        .bind(rating.not_applicable)
        .bind(&rating.comment)
        .bind(to_json(&rating.root_causes)?)
        .bind(&rating.explanation)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

async fn insert_event(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    event_type: &str,
    evaluation: &Evaluation,
    csat: Option<i16>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (tenant_id, event_type, evaluation_id, revision, payload, create_time)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant.as_uuid())
    .bind(event_type)
    .bind(evaluation.id)
    .bind(signed(evaluation.revision)?)
    .bind(to_json(&EvaluationEvent::of(
        evaluation,
        csat.map(i32::from),
    ))?)
    .bind(to_micros(now_micros()))
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

#[async_trait]
impl EvaluationStore for SqliteStore {
    #[tracing::instrument(name = "db.submit", skip_all, fields(db.system = "sqlite"))]
    async fn submit(&self, tenant: TenantId, new: NewEvaluation) -> Result<Evaluation> {
        let request_id = new.request_id.clone();
        let fingerprint = new.fingerprint.clone();
        let mut tx = self.begin_write().await?;
        if let Some(request_id) = request_id.as_deref() {
            let stored = find_request_in(&mut Link::Sqlite(&mut tx), tenant, request_id).await?;
            if stored.is_some() {
                return replay(stored, request_id, &fingerprint);
            }
        }
        let dimensions = resolve_interaction(
            &mut tx,
            tenant,
            &new.interaction,
            new.interaction_keeps_agent,
        )
        .await?;
        let evaluation = evaluation_from(new, &dimensions, Uuid::now_v7(), now_micros());
        if !insert_evaluation(
            &mut tx,
            tenant,
            &evaluation,
            "",
            request_id.as_deref(),
            &fingerprint,
            dimensions.csat,
        )
        .await?
        {
            return Err(Error::Internal(
                "request id conflicted inside its own transaction".into(),
            ));
        }
        insert_ratings(&mut tx, tenant, &evaluation).await?;
        insert_event(&mut tx, tenant, "submitted", &evaluation, dimensions.csat).await?;
        tx.commit().await.map_err(classify)?;
        self.outbox_written();
        Ok(evaluation)
    }

    #[tracing::instrument(name = "db.import", skip_all, fields(db.system = "sqlite"))]
    async fn import(
        &self,
        tenant: TenantId,
        batch: Vec<NewEvaluation>,
    ) -> Result<Vec<ImportOutcome>> {
        let mut tx = self.begin_write().await?;
        // Inline interactions: the last of a key wins, as in one multi-row upsert.
        let mut inline_last: HashMap<(&str, &str), usize> = HashMap::new();
        let mut referenced = Vec::new();
        for (index, row) in batch.iter().enumerate() {
            match &row.interaction {
                InteractionRef::Inline(input) => {
                    inline_last.insert((input.source.as_str(), input.external_id.as_str()), index);
                }
                InteractionRef::Id(id) => referenced.push(*id),
            }
        }
        let mut by_key: HashMap<(String, String), Dimensions> = HashMap::new();
        for index in inline_last.into_values() {
            if let InteractionRef::Inline(input) = &batch[index].interaction {
                let dimensions = dimensions_of_interaction(
                    upsert_interaction_in(&mut Link::Sqlite(&mut tx), tenant, input, false).await?,
                );
                by_key.insert(
                    (dimensions.source.clone(), dimensions.external_id.clone()),
                    dimensions,
                );
            }
        }
        let by_id = dimensions_of(&mut tx, tenant, &referenced).await?;

        let now = now_micros();
        let mut accepted: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for row in &batch {
            let dimensions = match &row.interaction {
                InteractionRef::Id(id) => by_id.get(id),
                InteractionRef::Inline(input) => {
                    by_key.get(&(input.source.clone(), input.external_id.clone()))
                }
            };
            let Some(dimensions) = dimensions else {
                outcomes.push(ImportOutcome::Rejected("interaction not found".into()));
                continue;
            };
            if let Some(request_id) = row.request_id.as_deref() {
                // Earlier in this batch or stored before: either way it is in the store now.
                if let Some(stored) =
                    find_request_in(&mut Link::Sqlite(&mut tx), tenant, request_id).await?
                {
                    let in_batch = accepted.contains(request_id);
                    outcomes.push(if stored.fingerprint == row.fingerprint {
                        ImportOutcome::Duplicate
                    } else if in_batch {
                        ImportOutcome::Rejected("request_id repeated with different content".into())
                    } else {
                        ImportOutcome::Rejected(
                            "request_id was already used with different content".into(),
                        )
                    });
                    continue;
                }
                accepted.insert(request_id);
            }
            let evaluation = evaluation_from(row.clone(), dimensions, Uuid::now_v7(), now);
            insert_evaluation(
                &mut tx,
                tenant,
                &evaluation,
                "",
                row.request_id.as_deref(),
                &row.fingerprint,
                dimensions.csat,
            )
            .await?;
            insert_ratings(&mut tx, tenant, &evaluation).await?;
            insert_event(&mut tx, tenant, "submitted", &evaluation, dimensions.csat).await?;
            outcomes.push(ImportOutcome::Accepted);
        }
        tx.commit().await.map_err(classify)?;
        self.outbox_written();
        Ok(outcomes)
    }
}
