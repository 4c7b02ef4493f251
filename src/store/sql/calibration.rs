//! CalibrationStore, once for both databases. That a session is open when a review
//! lands, and that a reviewer reviews an interaction once per session, are kept by the
//! database itself (a trigger and a unique index: see the calibration migrations), so
//! the evaluation adapters need no calibration logic.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Link, SqlBackend, Stamp, Value, created_before, sql};
use crate::domain::calibration::{CalibrationReview, NewSession, Session, SessionState};
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{rubric_version, unsigned};
use crate::store::{CalibrationStore, SessionListing};

const SESSION_COLUMNS: &str = "id, display_name, rubric_id, rubric_version, interaction_ids, \
     reviewer_ids, baseline_reviewer_id, state, due_time, create_time, close_time";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    display_name: String,
    rubric_id: Uuid,
    rubric_version: i32,
    interaction_ids: Json<Vec<Uuid>>,
    reviewer_ids: Json<Vec<String>>,
    baseline_reviewer_id: Option<String>,
    state: String,
    due_time: Option<Stamp>,
    create_time: Stamp,
    close_time: Option<Stamp>,
}

impl TryFrom<SessionRow> for Session {
    type Error = Error;

    fn try_from(row: SessionRow) -> Result<Self> {
        Ok(Session {
            id: row.id,
            display_name: row.display_name,
            rubric_id: row.rubric_id,
            rubric_version: unsigned(row.rubric_version)?,
            interaction_ids: row.interaction_ids.0,
            reviewer_ids: row.reviewer_ids.0,
            baseline_reviewer_id: row.baseline_reviewer_id,
            state: SessionState::parse(&row.state).ok_or_else(|| {
                Error::Internal(format!("unknown calibration session state {:?}", row.state))
            })?,
            due_time: row.due_time.map(Into::into),
            create_time: row.create_time.into(),
            close_time: row.close_time.map(Into::into),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReviewRow {
    id: Uuid,
    interaction_id: Uuid,
    reviewer_id: String,
    score: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct RatingRow {
    evaluation_id: Uuid,
    criterion_key: String,
    value: Option<i32>,
    not_applicable: bool,
}

/// Selects the active calibration evaluations `e` of a session (`$1` tenant, `$2` session).
const ACTIVE_REVIEWS: &str =
    "e.tenant_id = $1 AND e.calibration_session_id = $2 AND e.state = 'active'";

async fn fetch_session(link: &mut Link<'_>, tenant: TenantId, id: Uuid) -> Result<Session> {
    let row: Option<SessionRow> = link
        .fetch_optional(
            sql(format!(
                "SELECT {SESSION_COLUMNS} FROM calibration_sessions WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    row.ok_or_else(|| Error::not_found("calibration session", id))?
        .try_into()
}

#[async_trait]
impl<B: SqlBackend> CalibrationStore for B {
    #[tracing::instrument(name = "db.create_session", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_session(&self, tenant: TenantId, new: NewSession) -> Result<Session> {
        let input = &new.input;
        let mut tx = self.write().await?;
        let inserted: Option<SessionRow> = tx
            .fetch_optional(
                sql(format!(
                    "INSERT INTO calibration_sessions
                         (tenant_id, id, display_name, rubric_id, rubric_version, interaction_ids,
                          reviewer_ids, baseline_reviewer_id, state, due_time, create_time,
                          request_id, request_fingerprint)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10, $11, $12)
                     ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
                     RETURNING {SESSION_COLUMNS}"
                ))
                .bind(tenant)
                .bind(Uuid::now_v7())
                .bind(input.display_name.trim())
                .bind(input.rubric_id)
                .bind(rubric_version(input.rubric_version)?)
                .bind(Value::json(&input.interaction_ids)?)
                .bind(Value::json(&input.reviewer_ids)?)
                .bind(input.baseline_reviewer_id.as_deref())
                .bind(input.due_time.map(Stamp))
                .bind(Stamp::now())
                .bind(new.request_id.as_deref())
                .bind(new.fingerprint.as_slice()),
            )
            .await?;
        if let Some(row) = inserted {
            tx.commit().await?;
            return row.try_into();
        }
        let existing: SessionRow = created_before(
            &mut tx.link(),
            &format!(
                "SELECT {SESSION_COLUMNS}, request_fingerprint FROM calibration_sessions
                 WHERE tenant_id = $1 AND request_id = $2"
            ),
            tenant,
            new.request_id.as_deref(),
            &new.fingerprint,
            "calibration session",
        )
        .await?;
        existing.try_into()
    }

    #[tracing::instrument(name = "db.get_session", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_session(&self, tenant: TenantId, id: Uuid) -> Result<Session> {
        fetch_session(&mut self.read().await?.link(), tenant, id).await
    }

    #[tracing::instrument(name = "db.unknown_interactions", skip_all, fields(db.system = B::SYSTEM))]
    async fn unknown_interactions(&self, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|n| format!("${n}")).collect();
        let text = format!(
            "SELECT id FROM interactions WHERE tenant_id = $1 AND id IN ({})",
            placeholders.join(", ")
        );
        let statement = ids
            .iter()
            .fold(sql(&text).bind(tenant), |statement, id| statement.bind(*id));
        let found: Vec<(Uuid,)> = self.read().await?.fetch_all(statement).await?;
        let found: std::collections::HashSet<Uuid> = found.into_iter().map(|(id,)| id).collect();
        Ok(ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect())
    }

    #[tracing::instrument(name = "db.list_sessions", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_sessions(
        &self,
        tenant: TenantId,
        listing: SessionListing,
    ) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = self
            .read()
            .await?
            .fetch_all(
                sql(format!(
                    "SELECT {SESSION_COLUMNS} FROM calibration_sessions
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id < $2)
                       AND ($3 IS NULL OR state = $3)
                     ORDER BY id DESC
                     LIMIT $4"
                ))
                .bind(tenant)
                .bind(listing.before)
                .bind(listing.state.map(SessionState::as_str))
                .bind(i64::from(listing.limit)),
            )
            .await?;
        rows.into_iter().map(Session::try_from).collect()
    }

    #[tracing::instrument(name = "db.close_session", skip_all, fields(db.system = B::SYSTEM))]
    async fn close_session(&self, tenant: TenantId, id: Uuid) -> Result<Session> {
        let mut tx = self.write().await?;
        // Waits for the reviews in flight: each holds the session's row in share mode.
        tx.execute(
            sql(
                "UPDATE calibration_sessions SET state = 'closed', close_time = $3
                 WHERE tenant_id = $1 AND id = $2 AND state = 'open'",
            )
            .bind(tenant)
            .bind(id)
            .bind(Stamp::now()),
        )
        .await?;
        let session = fetch_session(&mut tx.link(), tenant, id).await?;
        tx.commit().await?;
        Ok(session)
    }

    #[tracing::instrument(name = "db.calibration_reviews", skip_all, fields(db.system = B::SYSTEM))]
    async fn calibration_reviews(
        &self,
        tenant: TenantId,
        session_id: Uuid,
    ) -> Result<Vec<CalibrationReview>> {
        let mut conn = self.read().await?;
        let reviews: Vec<ReviewRow> = conn
            .fetch_all(
                sql(format!(
                    "SELECT e.id, e.interaction_id, e.reviewer_id, e.score FROM evaluations e
                     WHERE {ACTIVE_REVIEWS}
                     ORDER BY e.interaction_id, e.reviewer_id"
                ))
                .bind(tenant)
                .bind(session_id),
            )
            .await?;
        let ratings: Vec<RatingRow> = conn
            .fetch_all(
                sql(format!(
                    "SELECT r.evaluation_id, r.criterion_key, r.value, r.not_applicable
                     FROM evaluations e
                     JOIN ratings r ON r.tenant_id = e.tenant_id AND r.evaluation_id = e.id
                                   AND r.revision = e.revision
                     WHERE {ACTIVE_REVIEWS}
                     ORDER BY r.evaluation_id, r.position"
                ))
                .bind(tenant)
                .bind(session_id),
            )
            .await?;
        let mut by_evaluation: HashMap<Uuid, Vec<(String, Option<i32>)>> = HashMap::new();
        for rating in ratings {
            let value = rating.value.filter(|_| !rating.not_applicable);
            by_evaluation
                .entry(rating.evaluation_id)
                .or_default()
                .push((rating.criterion_key, value));
        }
        Ok(reviews
            .into_iter()
            .map(|review| CalibrationReview {
                interaction_id: review.interaction_id,
                reviewer_id: review.reviewer_id,
                score: review.score,
                ratings: by_evaluation.remove(&review.id).unwrap_or_default(),
            })
            .collect())
    }
}
