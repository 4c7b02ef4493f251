//! EvaluationStore on PostgreSQL (schema `evaluation`).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use super::{PostgresStore, classify, copy_binary::CopyRows};
use crate::domain::{
    evaluation::{Evaluation, EvaluationEvent, InteractionRef, NOT_OWN_INTERACTION, NewEvaluation},
    interaction::{Interaction, InteractionInput},
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{Dimensions, evaluation_from, signed, to_json};
use crate::store::sql::evaluation_reads::{INTERACTION_COLUMNS, InteractionRow};
use crate::store::{EvaluationStore, ImportOutcome};

const DIMENSION_COLUMNS: &str = "id, agent_id, team_id, channel, region, csat";

/// Timestamps as PostgreSQL stores them (microseconds), so what a call returns equals
/// what a later read returns.
pub(super) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Creates or updates many interactions in one statement (keys must be distinct) and
/// returns `returning` of each, in no particular order.
/// Rows are written in key order, so two writers upserting overlapping keys lock them in
/// the same order and wait for each other instead of deadlocking.
/// With `keep_agent`, an existing interaction of another agent is left as it is and
/// not returned.
pub(super) async fn upsert_interactions_in<T>(
    conn: &mut PgConnection,
    tenant: TenantId,
    inputs: &[&InteractionInput],
    keep_agent: bool,
    returning: &str,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut ids = Vec::with_capacity(inputs.len());
    let (mut sources, mut external_ids, mut channels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut agents, mut teams, mut regions) = (Vec::new(), Vec::new(), Vec::new());
    let (mut occur_times, mut csats, mut npss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut messages, mut attributes) = (Vec::new(), Vec::new());
    for input in inputs {
        ids.push(Uuid::now_v7());
        sources.push(input.source.as_str());
        external_ids.push(input.external_id.as_str());
        channels.push(input.channel.as_str());
        agents.push(input.agent_id.as_str());
        teams.push(input.team_id.as_str());
        regions.push(input.region.as_str());
        occur_times.push(input.occur_time);
        csats.push(input.csat.map(|v| v as i16));
        npss.push(input.nps.map(|v| v as i16));
        messages.push(to_json(&input.messages)?);
        attributes.push(to_json(&input.attributes)?);
    }
    sqlx::query_as(&format!(
        "INSERT INTO evaluation.interactions AS i
             (tenant_id, id, source, external_id, channel, agent_id, team_id, region,
              occur_time, csat, nps, messages, attributes)
         SELECT $1, u.id, u.source, u.external_id, u.channel, u.agent_id, u.team_id, u.region,
                u.occur_time, u.csat, u.nps, u.messages::jsonb, u.attributes::jsonb
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::timestamptz[], $10::smallint[], $11::smallint[], $12::text[],
                     $13::text[])
              AS u(id, source, external_id, channel, agent_id, team_id, region, occur_time, csat,
                   nps, messages, attributes)
         ORDER BY u.source, u.external_id
         ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET
             channel = EXCLUDED.channel, agent_id = EXCLUDED.agent_id, team_id = EXCLUDED.team_id,
             region = EXCLUDED.region, occur_time = COALESCE(EXCLUDED.occur_time, i.occur_time),
             csat = EXCLUDED.csat, nps = EXCLUDED.nps, messages = EXCLUDED.messages,
             attributes = EXCLUDED.attributes, update_time = now()
         {guard}
         RETURNING {returning}",
        guard = if keep_agent {
            "WHERE i.agent_id = EXCLUDED.agent_id"
        } else {
            ""
        }
    ))
    .bind(tenant.as_uuid())
    .bind(&ids)
    .bind(&sources)
    .bind(&external_ids)
    .bind(&channels)
    .bind(&agents)
    .bind(&teams)
    .bind(&regions)
    .bind(&occur_times)
    .bind(&csats)
    .bind(&npss)
    .bind(&messages)
    .bind(&attributes)
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)
}

async fn upsert_interaction_in(
    conn: &mut PgConnection,
    tenant: TenantId,
    input: &InteractionInput,
    keep_agent: bool,
) -> Result<Interaction> {
    let mut rows: Vec<InteractionRow> =
        upsert_interactions_in(conn, tenant, &[input], keep_agent, INTERACTION_COLUMNS).await?;
    match rows.pop() {
        Some(row) => Ok(Interaction::from(row)),
        None if keep_agent => Err(Error::PermissionDenied(NOT_OWN_INTERACTION.into())),
        None => Err(Error::Internal(
            "interaction upsert returned nothing".into(),
        )),
    }
}

/// Upserts the inline interactions among `references` (their keys distinct) and returns
/// the dimensions of each, with its key.
pub(super) async fn upsert_inline_dimensions<'r>(
    conn: &mut PgConnection,
    tenant: TenantId,
    references: impl Iterator<Item = &'r InteractionRef>,
) -> Result<Vec<Dimensions>> {
    let inline: Vec<&InteractionInput> = references
        .filter_map(|reference| match reference {
            InteractionRef::Inline(input) => Some(input.as_ref()),
            InteractionRef::Id(_) => None,
        })
        .collect();
    if inline.is_empty() {
        return Ok(Vec::new());
    }
    upsert_interactions_in(
        conn,
        tenant,
        &inline,
        false,
        &format!("{DIMENSION_COLUMNS}, source, external_id"),
    )
    .await
}

pub(super) async fn dimensions_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Dimensions>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    // One key lookup per id: `id = ANY($2)` let the planner read every interaction of
    // the tenant when the table's statistics were stale (see `stored_fingerprints`).
    let rows: Vec<Dimensions> = sqlx::query_as(&format!(
        "SELECT i.* FROM unnest($2::uuid[]) AS w(id)
         CROSS JOIN LATERAL (SELECT {DIMENSION_COLUMNS} FROM evaluation.interactions
                              WHERE tenant_id = $1 AND id = w.id) i"
    ))
    .bind(tenant.as_uuid())
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

pub(super) async fn resolve_interaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    reference: &InteractionRef,
    keep_agent: bool,
) -> Result<Dimensions> {
    match reference {
        InteractionRef::Id(id) => dimensions_of(conn, tenant, &[*id])
            .await?
            .remove(id)
            .ok_or_else(|| Error::not_found("interaction", id)),
        InteractionRef::Inline(input) => {
            let interaction = upsert_interaction_in(conn, tenant, input, keep_agent).await?;
            Ok(Dimensions {
                id: interaction.id,
                source: String::new(),
                external_id: String::new(),
                agent_id: interaction.input.agent_id,
                team_id: interaction.input.team_id,
                channel: interaction.input.channel,
                region: interaction.input.region,
                csat: interaction.input.csat.map(|v| v as i16),
            })
        }
    }
}

/// Column arrays of many evaluation revisions, for one multi-row `INSERT … UNNEST`.
#[derive(Default)]
pub(super) struct EvaluationColumns {
    ids: Vec<Uuid>,
    revisions: Vec<i32>,
    interaction_ids: Vec<Uuid>,
    agent_ids: Vec<String>,
    team_ids: Vec<String>,
    channels: Vec<String>,
    regions: Vec<String>,
    rubric_ids: Vec<Uuid>,
    rubric_versions: Vec<i32>,
    reviewer_ids: Vec<String>,
    kinds: Vec<&'static str>,
    comments: Vec<String>,
    scores: Vec<Option<f64>>,
    section_scores: Vec<String>,
    criterion_scores: Vec<String>,
    critical_failed: Vec<bool>,
    passed: Vec<bool>,
    states: Vec<&'static str>,
    reasons: Vec<String>,
    request_ids: Vec<Option<String>>,
    fingerprints: Vec<Option<Vec<u8>>>,
    create_times: Vec<DateTime<Utc>>,
    first_create_times: Vec<DateTime<Utc>>,
    calibration_session_ids: Vec<Option<Uuid>>,
    event_csats: Vec<Option<i16>>,
}

impl EvaluationColumns {
    pub(super) fn push(
        &mut self,
        evaluation: &Evaluation,
        reason: &str,
        request_id: Option<String>,
        fingerprint: Option<Vec<u8>>,
        event_csat: Option<i16>,
    ) -> Result<()> {
        self.ids.push(evaluation.id);
        self.revisions.push(signed(evaluation.revision)?);
        self.interaction_ids.push(evaluation.interaction_id);
        self.agent_ids.push(evaluation.agent_id.clone());
        self.team_ids.push(evaluation.team_id.clone());
        self.channels.push(evaluation.channel.clone());
        self.regions.push(evaluation.region.clone());
        self.rubric_ids.push(evaluation.rubric_id);
        self.rubric_versions
            .push(signed(evaluation.rubric_version)?);
        self.reviewer_ids.push(evaluation.reviewer_id.clone());
        self.kinds.push(evaluation.kind.as_str());
        self.comments.push(evaluation.comment.clone());
        self.scores.push(evaluation.outcome.score);
        self.section_scores
            .push(to_json(&evaluation.outcome.section_scores)?);
        self.criterion_scores
            .push(to_json(&evaluation.outcome.criterion_scores)?);
        self.critical_failed
            .push(evaluation.outcome.critical_failed);
        self.passed.push(evaluation.outcome.passed);
        self.states.push(evaluation.state.as_str());
        self.reasons.push(reason.to_owned());
        self.request_ids.push(request_id);
        self.fingerprints.push(fingerprint);
        self.create_times.push(evaluation.create_time);
        self.first_create_times.push(evaluation.first_create_time);
        self.calibration_session_ids
            .push(evaluation.calibration_session_id);
        self.event_csats.push(event_csat);
        Ok(())
    }

    /// Inserts the rows with their ratings and events (`dependents`) in one statement; a
    /// request id stored before skips its row, and the row's dependents with it. Returns
    /// the ids inserted. One statement instead of three saves two round trips per write.
    pub(super) async fn insert_with(
        &self,
        dependents: &DependentColumns,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<Vec<Uuid>> {
        sqlx::query_scalar(
            "WITH e AS (
             INSERT INTO evaluation.evaluations
                 (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region,
                  rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
                  criterion_scores, critical_failed, passed, state, reason, request_id,
                  request_fingerprint, create_time, first_create_time, calibration_session_id,
                  event_csat)
             SELECT $1, u.id, u.revision, u.interaction_id, u.agent_id, u.team_id, u.channel, u.region,
                    u.rubric_id, u.rubric_version, u.reviewer_id, u.kind, u.comment, u.score,
                    u.section_scores::jsonb, u.criterion_scores::jsonb, u.critical_failed, u.passed,
                    u.state, u.reason, u.request_id, u.fingerprint, u.create_time, u.first_create_time,
                    u.calibration_session_id, u.event_csat
             FROM UNNEST($2::uuid[], $3::integer[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::uuid[], $10::integer[], $11::text[], $12::text[], $13::text[],
                         $14::float8[], $15::text[], $16::text[], $17::boolean[], $18::boolean[],
                         $19::text[], $20::text[], $21::text[], $22::bytea[], $23::timestamptz[],
                         $24::timestamptz[], $37::uuid[], $39::smallint[])
                  AS u(id, revision, interaction_id, agent_id, team_id, channel, region, rubric_id,
                       rubric_version, reviewer_id, kind, comment, score, section_scores,
                       criterion_scores, critical_failed, passed, state, reason, request_id,
                       fingerprint, create_time, first_create_time, calibration_session_id,
                       event_csat)
             ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
             RETURNING id, revision
             ), rated AS (
             INSERT INTO evaluation.ratings
                 (tenant_id, evaluation_id, revision, position, criterion_key, value,
                  not_applicable, comment, root_causes, explanation)
             SELECT $1, u.id, u.revision, u.position, u.key, u.value, u.na, u.comment, u.causes::jsonb,
                    u.explanation
             FROM UNNEST($25::uuid[], $26::integer[], $27::smallint[], $28::text[], $29::integer[],
                         $30::boolean[], $31::text[], $32::text[], $38::text[])
                  AS u(id, revision, position, key, value, na, comment, causes, explanation)
             JOIN e USING (id, revision)
             ), announced AS (
             INSERT INTO evaluation.outbox (tenant_id, event_type, evaluation_id, revision, payload)
             SELECT $1, u.event_type, u.id, u.revision, u.payload::jsonb
             FROM UNNEST($33::text[], $34::uuid[], $35::integer[], $36::text[]) WITH ORDINALITY
                  AS u(event_type, id, revision, payload, n)
             JOIN e USING (id, revision)
             ORDER BY u.n
             )
             SELECT id FROM e",
        )
        .bind(tenant.as_uuid())
        .bind(&self.ids)
        .bind(&self.revisions)
        .bind(&self.interaction_ids)
        .bind(&self.agent_ids)
        .bind(&self.team_ids)
        .bind(&self.channels)
        .bind(&self.regions)
        .bind(&self.rubric_ids)
        .bind(&self.rubric_versions)
        .bind(&self.reviewer_ids)
        .bind(&self.kinds)
        .bind(&self.comments)
        .bind(&self.scores)
        .bind(&self.section_scores)
        .bind(&self.criterion_scores)
        .bind(&self.critical_failed)
        .bind(&self.passed)
        .bind(&self.states)
        .bind(&self.reasons)
        .bind(&self.request_ids)
        .bind(&self.fingerprints)
        .bind(&self.create_times)
        .bind(&self.first_create_times)
        .bind(&dependents.rating_ids)
        .bind(&dependents.rating_revisions)
        .bind(&dependents.positions)
        .bind(&dependents.keys)
        .bind(&dependents.values)
        .bind(&dependents.not_applicable)
        .bind(&dependents.comments)
        .bind(&dependents.root_causes)
        .bind(&dependents.event_types)
        .bind(&dependents.event_ids)
        .bind(&dependents.event_revisions)
        .bind(&dependents.payloads)
        .bind(&self.calibration_session_ids)
        .bind(&dependents.explanations)
        .bind(&self.event_csats)
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)
    }
}

impl EvaluationColumns {
    /// Stores the rows with their ratings and events by binary COPY: for rows whose
    /// request ids are known not to be stored. A request id stored meanwhile fails the
    /// COPY with `AlreadyExists` (the transaction must then be rolled back).
    pub(super) async fn copy_with(
        &self,
        dependents: &DependentColumns,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let tenant = tenant.as_uuid();
        let mut evaluations = CopyRows::new();
        for row in 0..self.ids.len() {
            evaluations
                .row(26)
                .uuid(tenant)
                .uuid(self.ids[row])
                .int4(self.revisions[row])
                .uuid(self.interaction_ids[row])
                .text(&self.agent_ids[row])
                .text(&self.team_ids[row])
                .text(&self.channels[row])
                .text(&self.regions[row])
                .uuid(self.rubric_ids[row])
                .int4(self.rubric_versions[row])
                .text(&self.reviewer_ids[row])
                .text(self.kinds[row])
                .text(&self.comments[row])
                .float8_or_null(self.scores[row])
                .jsonb(&self.section_scores[row])
                .jsonb(&self.criterion_scores[row])
                .bool(self.critical_failed[row])
                .bool(self.passed[row])
                .text(self.states[row])
                .text(&self.reasons[row])
                .text_or_null(self.request_ids[row].as_deref())
                .bytea_or_null(self.fingerprints[row].as_deref())
                .timestamptz(self.create_times[row])
                .timestamptz(self.first_create_times[row])
                .uuid_or_null(self.calibration_session_ids[row])
                .int2_or_null(self.event_csats[row]);
        }
        let mut ratings = CopyRows::new();
        for row in 0..dependents.rating_ids.len() {
            ratings
                .row(10)
                .uuid(tenant)
                .uuid(dependents.rating_ids[row])
                .int4(dependents.rating_revisions[row])
                .int2(dependents.positions[row])
                .text(&dependents.keys[row])
                .int4_or_null(dependents.values[row])
                .bool(dependents.not_applicable[row])
                .text(&dependents.comments[row])
                .jsonb(&dependents.root_causes[row])
                .text(&dependents.explanations[row]);
        }
        let mut events = CopyRows::new();
        for row in 0..dependents.event_ids.len() {
            events
                .row(5)
                .uuid(tenant)
                .text(dependents.event_types[row])
                .uuid(dependents.event_ids[row])
                .int4(dependents.event_revisions[row])
                .jsonb(&dependents.payloads[row]);
        }
        for (statement, rows) in [
            (
                "COPY evaluation.evaluations
                     (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region,
                      rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
                      criterion_scores, critical_failed, passed, state, reason, request_id,
                      request_fingerprint, create_time, first_create_time, calibration_session_id,
                      event_csat)
                 FROM STDIN (FORMAT binary)",
                evaluations,
            ),
            (
                "COPY evaluation.ratings
                     (tenant_id, evaluation_id, revision, position, criterion_key, value,
                      not_applicable, comment, root_causes, explanation)
                 FROM STDIN (FORMAT binary)",
                ratings,
            ),
            (
                "COPY evaluation.outbox (tenant_id, event_type, evaluation_id, revision, payload)
                 FROM STDIN (FORMAT binary)",
                events,
            ),
        ] {
            let mut copy = conn.copy_in_raw(statement).await.map_err(classify)?;
            copy.send(rows.finish()).await.map_err(classify)?;
            copy.finish().await.map_err(classify)?;
        }
        Ok(())
    }
}

/// Adds a submission's first revision, its ratings and its `submitted` event to the rows
/// of one write.
pub(super) fn stage_submission(
    columns: &mut EvaluationColumns,
    dependents: &mut DependentColumns,
    evaluation: &Evaluation,
    submitted: &NewEvaluation,
    csat: Option<i16>,
) -> Result<()> {
    columns.push(
        evaluation,
        "",
        submitted.request_id.clone(),
        Some(submitted.fingerprint.clone()),
        csat,
    )?;
    dependents.push_ratings(evaluation)?;
    dependents.push_event("submitted", evaluation, csat)
}

/// Column arrays of the ratings and outbox events of many revisions.
#[derive(Default)]
pub(super) struct DependentColumns {
    rating_ids: Vec<Uuid>,
    rating_revisions: Vec<i32>,
    positions: Vec<i16>,
    keys: Vec<String>,
    values: Vec<Option<i32>>,
    not_applicable: Vec<bool>,
    comments: Vec<String>,
    root_causes: Vec<String>,
    explanations: Vec<String>,
    event_types: Vec<&'static str>,
    event_ids: Vec<Uuid>,
    event_revisions: Vec<i32>,
    payloads: Vec<String>,
}

impl DependentColumns {
    pub(super) fn push_ratings(&mut self, evaluation: &Evaluation) -> Result<()> {
        for (position, rating) in evaluation.ratings.iter().enumerate() {
            self.rating_ids.push(evaluation.id);
            self.rating_revisions.push(signed(evaluation.revision)?);
            self.positions.push(
                i16::try_from(position).map_err(|_| Error::Internal("too many ratings".into()))?,
            );
            self.keys.push(rating.criterion_key.clone());
            self.values.push(rating.value);
            self.not_applicable.push(rating.not_applicable);
            self.comments.push(rating.comment.clone());
            self.root_causes.push(to_json(&rating.root_causes)?);
            self.explanations.push(rating.explanation.clone());
        }
        Ok(())
    }

    pub(super) fn push_event(
        &mut self,
        event_type: &'static str,
        evaluation: &Evaluation,
        csat: Option<i16>,
    ) -> Result<()> {
        self.event_types.push(event_type);
        self.event_ids.push(evaluation.id);
        self.event_revisions.push(signed(evaluation.revision)?);
        self.payloads.push(to_json(&EvaluationEvent::of(
            evaluation,
            csat.map(i32::from),
        ))?);
        Ok(())
    }
}

#[async_trait]
impl EvaluationStore for PostgresStore {
    /// Concurrent submissions share a transaction (`group_commit`).
    #[tracing::instrument(name = "db.submit", skip_all, fields(db.system = "postgresql"))]
    async fn submit(&self, tenant: TenantId, new: NewEvaluation) -> Result<Evaluation> {
        self.submissions.submit(tenant, new).await
    }

    /// Two: the batch's single writing backend is PostgreSQL's bottleneck during an
    /// import (BENCHMARKS.md "Bulk import"), and a second one uses another core.
    fn concurrent_import_parts(&self) -> usize {
        2
    }

    #[tracing::instrument(name = "db.import", skip_all, fields(db.system = "postgresql"))]
    async fn import(
        &self,
        tenant: TenantId,
        batch: Vec<NewEvaluation>,
    ) -> Result<Vec<ImportOutcome>> {
        let mut outcomes: Vec<Option<ImportOutcome>> = vec![None; batch.len()];
        let mut tx = self.pool.begin().await.map_err(classify)?;

        // Interactions: upsert the inline ones (the last of a key wins), look up the rest.
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
        let upserted = upsert_inline_dimensions(
            &mut tx,
            tenant,
            inline_last
                .into_values()
                .map(|index| &batch[index].interaction),
        )
        .await?;
        let by_key: HashMap<(String, String), Dimensions> = upserted
            .into_iter()
            .map(|d| ((d.source.clone(), d.external_id.clone()), d))
            .collect();
        let by_id = dimensions_of(&mut tx, tenant, &referenced).await?;

        // Request ids stored before: each such row is a duplicate or a changed row.
        let request_ids: Vec<&str> = batch
            .iter()
            .filter_map(|row| row.request_id.as_deref())
            .collect();
        let mut stored = stored_fingerprints(&mut tx, tenant, &request_ids).await?;

        // Request ids repeated inside the batch: the first occurrence is stored.
        let mut first_with_request: HashMap<&str, usize> = HashMap::new();
        let now = now_micros();
        let mut columns = EvaluationColumns::default();
        let mut dependents = DependentColumns::default();
        let mut pending: Vec<(usize, Uuid)> = Vec::new();
        for (index, row) in batch.iter().enumerate() {
            let dimensions = match &row.interaction {
                InteractionRef::Id(id) => by_id.get(id),
                InteractionRef::Inline(input) => {
                    by_key.get(&(input.source.clone(), input.external_id.clone()))
                }
            };
            let Some(dimensions) = dimensions else {
                outcomes[index] = Some(ImportOutcome::Rejected("interaction not found".into()));
                continue;
            };
            if let Some(request_id) = row.request_id.as_deref() {
                if let Some(&first) = first_with_request.get(request_id) {
                    outcomes[index] = Some(if batch[first].fingerprint == row.fingerprint {
                        ImportOutcome::Duplicate
                    } else {
                        ImportOutcome::Rejected("request_id repeated with different content".into())
                    });
                    continue;
                }
                first_with_request.insert(request_id, index);
                if let Some(fingerprint) = stored.get(request_id) {
                    outcomes[index] = Some(retry_outcome(fingerprint.as_deref(), row));
                    continue;
                }
            }
            let evaluation = evaluation_from(row.clone(), dimensions, Uuid::now_v7(), now);
            stage_submission(
                &mut columns,
                &mut dependents,
                &evaluation,
                row,
                dimensions.csat,
            )?;
            pending.push((index, evaluation.id));
        }

        // COPY, unless a concurrent call stored one of these request ids meanwhile: then
        // the statements that skip a stored request id say which.
        let mut copying = tx.begin().await.map_err(classify)?;
        let inserted: std::collections::HashSet<Uuid> = match columns
            .copy_with(&dependents, &mut copying, tenant)
            .await
        {
            Ok(()) => {
                copying.commit().await.map_err(classify)?;
                pending.iter().map(|&(_, id)| id).collect()
            }
            Err(Error::AlreadyExists(reason)) => {
                tracing::debug!(%reason, "an imported request id was stored meanwhile; the batch is inserted row by row");
                copying.rollback().await.map_err(classify)?;
                columns
                    .insert_with(&dependents, &mut tx, tenant)
                    .await?
                    .into_iter()
                    .collect()
            }
            Err(err) => return Err(err),
        };
        let mut conflicts = Vec::new();
        for (index, id) in pending {
            if inserted.contains(&id) {
                outcomes[index] = Some(ImportOutcome::Accepted);
            } else {
                conflicts.push(index);
            }
        }
        if !conflicts.is_empty() {
            let request_ids: Vec<&str> = conflicts
                .iter()
                .filter_map(|&index| batch[index].request_id.as_deref())
                .collect();
            stored = stored_fingerprints(&mut tx, tenant, &request_ids).await?;
            for index in conflicts {
                let request_id = batch[index].request_id.as_deref().unwrap_or_default();
                outcomes[index] = Some(retry_outcome(
                    stored.get(request_id).and_then(|f| f.as_deref()),
                    &batch[index],
                ));
            }
        }
        self.commit_with_events(tx).await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| ImportOutcome::Rejected("not processed".into()))
            })
            .collect())
    }
}

/// The fingerprints stored under these request ids, one key lookup per id. Written as
/// `request_id = ANY($2)`, the planner could read the request-id index entries of every
/// evaluation of the tenant and filter them: it did when the table's statistics were
/// stale, as during a bulk import (57 ms for 500 ids among 100,000 evaluations, growing
/// with the table).
pub(super) async fn stored_fingerprints(
    conn: &mut PgConnection,
    tenant: TenantId,
    request_ids: &[&str],
) -> Result<HashMap<String, Option<Vec<u8>>>> {
    if request_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stored: Vec<(String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT e.request_id, e.request_fingerprint FROM unnest($2::text[]) AS w(request_id)
         CROSS JOIN LATERAL (SELECT request_id, request_fingerprint FROM evaluation.evaluations
                              WHERE tenant_id = $1 AND request_id = w.request_id
                                AND request_id IS NOT NULL) e",
    )
    .bind(tenant.as_uuid())
    .bind(request_ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(stored.into_iter().collect())
}

/// What an imported row whose request id is stored is: a duplicate when its content is
/// the stored one's.
fn retry_outcome(stored: Option<&[u8]>, row: &NewEvaluation) -> ImportOutcome {
    match stored {
        Some(fingerprint) if fingerprint == row.fingerprint => ImportOutcome::Duplicate,
        _ => ImportOutcome::Rejected("request_id was already used with different content".into()),
    }
}
