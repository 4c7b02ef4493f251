//! CoachingStore, once for both databases: sessions with their action items, and the
//! agent's scores their impact is measured on.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Link, SqlBackend, Stamp, Value, created_before, sql};
use crate::domain::coaching::{ActionItem, NewSession, ScoredEvaluation, Session};
use crate::domain::scoring::CriterionScore;
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::{CoachingListing, CoachingStore};

const SESSION_COLUMNS: &str = "id, agent_id, coach_id, criterion_keys, evaluation_ids, notes, \
     session_time, create_time";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    agent_id: String,
    coach_id: String,
    criterion_keys: Json<Vec<String>>,
    evaluation_ids: Json<Vec<Uuid>>,
    notes: String,
    session_time: Stamp,
    create_time: Stamp,
}

impl SessionRow {
    fn into_session(self, action_items: Vec<ActionItem>) -> Session {
        Session {
            id: self.id,
            agent_id: self.agent_id,
            coach_id: self.coach_id,
            criterion_keys: self.criterion_keys.0,
            evaluation_ids: self.evaluation_ids.0,
            notes: self.notes,
            session_time: self.session_time.into(),
            action_items,
            create_time: self.create_time.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    session_id: Uuid,
    id: Uuid,
    description: String,
    due_time: Option<Stamp>,
    done_time: Option<Stamp>,
}

/// The sessions of `rows` with their action items, in the rows' order.
async fn with_items(
    link: &mut Link<'_>,
    tenant: TenantId,
    rows: Vec<SessionRow>,
) -> Result<Vec<Session>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<ItemRow> = link
        .fetch_all(
            sql(
                "SELECT session_id, id, description, due_time, done_time FROM action_items
                 WHERE tenant_id = $1",
            )
            .bind(tenant)
            .push_in("session_id", rows.iter().map(|row| row.id))
            .push(" ORDER BY session_id, position"),
        )
        .await?;
    let mut by_session: HashMap<Uuid, Vec<ActionItem>> = HashMap::new();
    for item in items {
        by_session
            .entry(item.session_id)
            .or_default()
            .push(ActionItem {
                id: item.id,
                description: item.description,
                due_time: item.due_time.map(Into::into),
                done_time: item.done_time.map(Into::into),
            });
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let items = by_session.remove(&row.id).unwrap_or_default();
            row.into_session(items)
        })
        .collect())
}

async fn fetch_session(
    link: &mut Link<'_>,
    tenant: TenantId,
    id: Uuid,
    lock: &str,
) -> Result<Session> {
    let row: Option<SessionRow> = link
        .fetch_optional(
            sql(format!(
                "SELECT {SESSION_COLUMNS} FROM coaching_sessions
                 WHERE tenant_id = $1 AND id = $2{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    let row = row.ok_or_else(|| Error::not_found("coaching session", id))?;
    Ok(with_items(link, tenant, vec![row]).await?.remove(0))
}

#[derive(sqlx::FromRow)]
struct IdRow {
    id: Uuid,
}

#[derive(sqlx::FromRow)]
struct ScoredRow {
    first_create_time: Stamp,
    score: Option<f64>,
    criterion_scores: Json<Vec<CriterionScore>>,
}

#[async_trait]
impl<B: SqlBackend> CoachingStore for B {
    #[tracing::instrument(name = "db.create_coaching_session", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_coaching_session(&self, tenant: TenantId, new: NewSession) -> Result<Session> {
        let input = &new.input;
        let id = Uuid::now_v7();
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let inserted = link
            .execute(
                sql("INSERT INTO coaching_sessions
                         (tenant_id, id, agent_id, coach_id, criterion_keys, evaluation_ids, notes,
                          session_time, create_time, request_id, request_fingerprint)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING")
                .bind(tenant)
                .bind(id)
                .bind(input.agent_id.as_str())
                .bind(input.coach_id.as_str())
                .bind(Value::json(&input.criterion_keys)?)
                .bind(Value::json(&input.evaluation_ids)?)
                .bind(input.notes.as_str())
                .bind(Stamp(input.session_time))
                .bind(Stamp::now())
                .bind(new.request_id.as_deref())
                .bind(new.fingerprint.as_slice()),
            )
            .await?;
        if inserted == 0 {
            let existing: IdRow = created_before(
                &mut link,
                "SELECT id, request_fingerprint FROM coaching_sessions
                 WHERE tenant_id = $1 AND request_id = $2",
                tenant,
                new.request_id.as_deref(),
                &new.fingerprint,
                "coaching session",
            )
            .await?;
            return fetch_session(&mut link, tenant, existing.id, "").await;
        }
        for (position, item) in input.action_items.iter().enumerate() {
            let position = i16::try_from(position)
                .map_err(|_| Error::Internal("too many action items".into()))?;
            link.execute(
                sql("INSERT INTO action_items
                         (tenant_id, session_id, id, position, description, due_time)
                     VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(tenant)
                .bind(id)
                .bind(Uuid::now_v7())
                .bind(position)
                .bind(item.description.as_str())
                .bind(item.due_time.map(Stamp)),
            )
            .await?;
        }
        let session = fetch_session(&mut link, tenant, id, "").await?;
        tx.commit().await?;
        Ok(session)
    }

    #[tracing::instrument(name = "db.get_coaching_session", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_coaching_session(&self, tenant: TenantId, id: Uuid) -> Result<Session> {
        fetch_session(&mut self.read().await?.link(), tenant, id, "").await
    }

    #[tracing::instrument(name = "db.list_coaching_sessions", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_coaching_sessions(
        &self,
        tenant: TenantId,
        listing: CoachingListing,
    ) -> Result<Vec<Session>> {
        let mut statement = sql(format!(
            "SELECT {SESSION_COLUMNS} FROM coaching_sessions WHERE tenant_id = $1"
        ))
        .bind(tenant);
        if let Some(before) = listing.before {
            statement = statement.push(" AND id < ").push_bind(before);
        }
        for (column, value) in [
            ("agent_id", listing.agent_id),
            ("coach_id", listing.coach_id),
        ] {
            if let Some(value) = value {
                statement = statement
                    .push(&format!(" AND {column} = "))
                    .push_bind(value);
            }
        }
        let statement = statement
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(listing.limit));
        let mut conn = self.read().await?;
        let mut link = conn.link();
        let rows: Vec<SessionRow> = link.fetch_all(statement).await?;
        with_items(&mut link, tenant, rows).await
    }

    #[tracing::instrument(name = "db.update_action_item", skip_all, fields(db.system = B::SYSTEM))]
    async fn update_action_item(
        &self,
        tenant: TenantId,
        session_id: Uuid,
        item_id: Uuid,
        done: bool,
        agent: Option<&str>,
    ) -> Result<Session> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let session = fetch_session(&mut link, tenant, session_id, B::LOCK_ROWS).await?;
        if agent.is_some_and(|agent| agent != session.agent_id) {
            // Another agent's session is as absent as one that does not exist.
            return Err(Error::not_found("coaching session", session_id));
        }
        if !session.action_items.iter().any(|item| item.id == item_id) {
            return Err(Error::not_found("action item", item_id));
        }
        // An item already in the asked state keeps its time: a retry changes nothing.
        let statement = if done {
            sql("UPDATE action_items SET done_time = COALESCE(done_time, $4)
                 WHERE tenant_id = $1 AND session_id = $2 AND id = $3")
            .bind(tenant)
            .bind(session_id)
            .bind(item_id)
            .bind(Stamp::now())
        } else {
            sql("UPDATE action_items SET done_time = NULL
                 WHERE tenant_id = $1 AND session_id = $2 AND id = $3")
            .bind(tenant)
            .bind(session_id)
            .bind(item_id)
        };
        link.execute(statement).await?;
        let session = fetch_session(&mut link, tenant, session_id, "").await?;
        tx.commit().await?;
        Ok(session)
    }

    #[tracing::instrument(name = "db.evaluations_not_of_agent", skip_all, fields(db.system = B::SYSTEM))]
    async fn evaluations_not_of_agent(
        &self,
        tenant: TenantId,
        agent: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<(Uuid,)> = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT DISTINCT id FROM evaluations WHERE tenant_id = $1 AND agent_id = $2")
                    .bind(tenant)
                    .bind(agent)
                    .push_in("id", ids.iter().copied()),
            )
            .await?;
        let found: HashSet<Uuid> = found.into_iter().map(|(id,)| id).collect();
        Ok(ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect())
    }

    #[tracing::instrument(name = "db.scored_evaluations", skip_all, fields(db.system = B::SYSTEM))]
    async fn scored_evaluations(
        &self,
        tenant: TenantId,
        agent: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ScoredEvaluation>> {
        let rows: Vec<ScoredRow> = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT first_create_time, score, criterion_scores FROM evaluations
                     WHERE tenant_id = $1 AND agent_id = $2 AND kind = 'manual'
                       AND state = 'active' AND first_create_time >= $3
                       AND first_create_time < $4
                     ORDER BY first_create_time",
                )
                .bind(tenant)
                .bind(agent)
                .bind(Stamp(start))
                .bind(Stamp(end)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ScoredEvaluation {
                time: row.first_create_time.into(),
                score: row.score,
                criterion_scores: row.criterion_scores.0,
            })
            .collect())
    }
}
