//! EvaluationReads, once for both databases, and the row reading the adapters' write
//! paths share (ratings of revisions, a stored request).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Link, SqlBackend, Stamp, sql};
use crate::domain::{
    evaluation::Evaluation,
    interaction::{Interaction, InteractionInput, Message},
    scoring::Rating,
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{EvaluationRow, signed};
use crate::store::{EvaluationListing, EvaluationReads, StoredRequest};

pub(crate) const INTERACTION_COLUMNS: &str = "id, source, external_id, channel, agent_id, \
     team_id, region, COALESCE(occur_time, create_time) AS occur_time, csat, nps, messages, \
     attributes, create_time, update_time";

pub(crate) const EVALUATION_COLUMNS: &str = "id, revision, interaction_id, agent_id, team_id, \
     channel, region, rubric_id, rubric_version, reviewer_id, kind, comment, score, \
     section_scores, criterion_scores, critical_failed, passed, state, create_time, \
     first_create_time, calibration_session_id, acknowledge_time";

/// Revisions whose ratings one statement reads: two values each, within both databases'
/// limits on bound values.
const REVISIONS_PER_STATEMENT: usize = 5_000;

#[derive(sqlx::FromRow)]
pub(crate) struct InteractionRow {
    id: Uuid,
    source: String,
    external_id: String,
    channel: String,
    agent_id: String,
    team_id: String,
    region: String,
    occur_time: Stamp,
    csat: Option<i16>,
    nps: Option<i16>,
    messages: Json<Vec<Message>>,
    attributes: Json<BTreeMap<String, String>>,
    create_time: Stamp,
    update_time: Stamp,
}

impl From<InteractionRow> for Interaction {
    fn from(row: InteractionRow) -> Self {
        Interaction {
            id: row.id,
            input: InteractionInput {
                source: row.source,
                external_id: row.external_id,
                channel: row.channel,
                agent_id: row.agent_id,
                team_id: row.team_id,
                region: row.region,
                occur_time: Some(row.occur_time.into()),
                csat: row.csat.map(i32::from),
                nps: row.nps.map(i32::from),
                messages: row.messages.0,
                attributes: row.attributes.0,
            },
            create_time: row.create_time.into(),
            update_time: row.update_time.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct RatingRow {
    evaluation_id: Uuid,
    revision: i32,
    criterion_key: String,
    value: Option<i32>,
    not_applicable: bool,
    comment: String,
    root_causes: Json<Vec<String>>,
    explanation: String,
}

/// Loads the ratings of the given revisions and assembles the evaluations, in order.
pub(crate) async fn with_ratings(
    link: &mut Link<'_>,
    tenant: TenantId,
    rows: Vec<EvaluationRow>,
) -> Result<Vec<Evaluation>> {
    let mut ratings: HashMap<(Uuid, i32), Vec<Rating>> = HashMap::new();
    for chunk in rows.chunks(REVISIONS_PER_STATEMENT) {
        let mut statement = sql(
            "SELECT evaluation_id, revision, criterion_key, value, not_applicable, comment, root_causes,
                    explanation
             FROM ratings WHERE tenant_id = $1 AND (evaluation_id, revision) IN (VALUES ",
        )
        .bind(tenant);
        for (index, row) in chunk.iter().enumerate() {
            statement = statement
                .push(if index == 0 { "(" } else { ", (" })
                .push_bind(row.id)
                .push(", ")
                .push_bind(row.revision)
                .push(")");
        }
        let rating_rows: Vec<RatingRow> = link
            .fetch_all(statement.push(") ORDER BY evaluation_id, revision, position"))
            .await?;
        for row in rating_rows {
            ratings
                .entry((row.evaluation_id, row.revision))
                .or_default()
                .push(Rating {
                    criterion_key: row.criterion_key,
                    value: row.value,
                    not_applicable: row.not_applicable,
                    comment: row.comment,
                    root_causes: row.root_causes.0,
                    explanation: row.explanation,
                });
        }
    }
    rows.into_iter()
        .map(|row| {
            let own = ratings.remove(&(row.id, row.revision)).unwrap_or_default();
            row.into_evaluation(own)
        })
        .collect()
}

/// The evaluation stored under a request id, with the fingerprint of its content.
pub(crate) async fn find_request_in(
    link: &mut Link<'_>,
    tenant: TenantId,
    request_id: &str,
) -> Result<Option<StoredRequest>> {
    #[derive(sqlx::FromRow)]
    struct Found {
        #[sqlx(flatten)]
        row: EvaluationRow,
        request_fingerprint: Option<Vec<u8>>,
    }
    let found: Option<Found> = link
        .fetch_optional(
            sql(format!(
                "SELECT {EVALUATION_COLUMNS}, request_fingerprint FROM evaluations
                 WHERE tenant_id = $1 AND request_id = $2"
            ))
            .bind(tenant)
            .bind(request_id),
        )
        .await?;
    let Some(found) = found else { return Ok(None) };
    let fingerprint = found.request_fingerprint.unwrap_or_default();
    let evaluation = with_ratings(link, tenant, vec![found.row]).await?.remove(0);
    Ok(Some(StoredRequest {
        evaluation,
        fingerprint,
    }))
}

#[async_trait]
impl<B: SqlBackend> EvaluationReads for B {
    #[tracing::instrument(name = "db.get_interaction", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_interaction(&self, tenant: TenantId, id: Uuid) -> Result<Interaction> {
        let row: Option<InteractionRow> = self
            .read()
            .await?
            .fetch_optional(
                sql(format!(
                    "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant)
                .bind(id),
            )
            .await?;
        Ok(row
            .ok_or_else(|| Error::not_found("interaction", id))?
            .into())
    }

    #[tracing::instrument(name = "db.find_request", skip_all, fields(db.system = B::SYSTEM))]
    async fn find_request(
        &self,
        tenant: TenantId,
        request_id: &str,
    ) -> Result<Option<StoredRequest>> {
        find_request_in(&mut self.read().await?.link(), tenant, request_id).await
    }

    #[tracing::instrument(name = "db.get_evaluation", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_evaluation(
        &self,
        tenant: TenantId,
        id: Uuid,
        revision: Option<u32>,
    ) -> Result<Evaluation> {
        let revision = revision.map(signed).transpose()?;
        let mut conn = self.read().await?;
        let mut link = conn.link();
        let row: Option<EvaluationRow> = link
            .fetch_optional(
                sql(format!(
                    "SELECT {EVALUATION_COLUMNS} FROM evaluations
                     WHERE tenant_id = $1 AND id = $2
                       AND (($3 IS NULL AND state <> 'superseded') OR revision = $3)"
                ))
                .bind(tenant)
                .bind(id)
                .bind(revision),
            )
            .await?;
        let row = row.ok_or_else(|| match revision {
            Some(revision) => Error::not_found("evaluation revision", format!("{id}@{revision}")),
            None => Error::not_found("evaluation", id),
        })?;
        Ok(with_ratings(&mut link, tenant, vec![row]).await?.remove(0))
    }

    #[tracing::instrument(name = "db.automated_evaluations", skip_all, fields(db.system = B::SYSTEM))]
    async fn automated_evaluations(
        &self,
        tenant: TenantId,
        interaction_id: Uuid,
        rubric_id: Uuid,
    ) -> Result<Vec<Evaluation>> {
        let mut conn = self.read().await?;
        let mut link = conn.link();
        let rows: Vec<EvaluationRow> = link
            .fetch_all(
                sql(format!(
                    "SELECT {EVALUATION_COLUMNS} FROM evaluations
                     WHERE tenant_id = $1 AND interaction_id = $2 AND rubric_id = $3
                       AND kind = 'automated' AND state = 'active'"
                ))
                .bind(tenant)
                .bind(interaction_id)
                .bind(rubric_id)
                // Found under AutoQA's load on a new database: a generic plan made while
                // the table was empty walked the tenant's primary key for every lookup,
                // 16 ms each, and the worker fell seconds behind.
                .planned_per_call(),
            )
            .await?;
        with_ratings(&mut link, tenant, rows).await
    }

    #[tracing::instrument(name = "db.list_evaluations", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_evaluations(
        &self,
        tenant: TenantId,
        listing: EvaluationListing,
    ) -> Result<Vec<Evaluation>> {
        let mut statement = sql(format!(
            "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE tenant_id = $1"
        ))
        .bind(tenant);
        if !listing.include_inactive || listing.unacknowledged {
            statement = statement.push(" AND state = 'active'");
        }
        if listing.unacknowledged {
            statement = statement.push(" AND acknowledge_time IS NULL");
        }
        if let Some((id, revision)) = listing.before {
            statement = statement
                .push(" AND (id, revision) < (")
                .push_bind(id)
                .push(", ")
                .push_bind(signed(revision)?)
                .push(")");
        }
        if let Some(interaction_id) = listing.interaction_id {
            statement = statement
                .push(" AND interaction_id = ")
                .push_bind(interaction_id);
        }
        for (column, value) in [
            ("agent_id", listing.agent_id),
            ("team_id", listing.team_id),
            ("reviewer_id", listing.reviewer_id),
        ] {
            if let Some(value) = value {
                statement = statement
                    .push(&format!(" AND {column} = "))
                    .push_bind(value);
            }
        }
        if let Some(rubric_id) = listing.rubric_id {
            statement = statement.push(" AND rubric_id = ").push_bind(rubric_id);
        }
        if !listing.kinds.is_empty() {
            statement = statement.push_in("kind", listing.kinds.iter().map(|kind| kind.as_str()));
        }
        if let Some(start) = listing.start_time {
            statement = statement
                .push(" AND first_create_time >= ")
                .push_bind(Stamp(start));
        }
        if let Some(end) = listing.end_time {
            statement = statement
                .push(" AND first_create_time < ")
                .push_bind(Stamp(end));
        }
        let statement = statement
            .push(" ORDER BY id DESC, revision DESC LIMIT ")
            .push_bind(i64::from(listing.limit))
            // Which index serves it depends on the filters and their values.
            .planned_per_call();
        let mut conn = self.read().await?;
        let mut link = conn.link();
        let rows: Vec<EvaluationRow> = link.fetch_all(statement).await?;
        with_ratings(&mut link, tenant, rows).await
    }
}
