//! DisputeStore, once for both databases. Opening checks the rules on the evaluation's
//! locked row, so that concurrent opens of one evaluation see each other; a partial
//! unique index keeps one open dispute per evaluation whatever happens. Resolving locks
//! the dispute and revises the evaluation in the same transaction.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::evaluation_changes::{current_row, revise_in};
use super::webhooks::record_dispute_event;
use super::{Link, SqlBackend, Stamp, Value, sql};
use crate::domain::dispute::{self, Dispute, DisputeOutcome, DisputeState, NewDispute, Resolution};
use crate::domain::evaluation::NewRevision;
use crate::domain::scoring::Rating;
use crate::domain::tenant::TenantId;
use crate::domain::webhook::EventType;
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{signed, unsigned};
use crate::store::{DisputeListing, DisputeStore};

const DISPUTE_COLUMNS: &str = "id, evaluation_id, evaluation_revision, agent_id, team_id, \
     reviewer_id, state, outcome, comment, proposed_ratings, contested_criteria, \
     resolution_comment, resolver_id, resolved_revision, open_time, resolve_time";

#[derive(sqlx::FromRow)]
struct DisputeRow {
    id: Uuid,
    evaluation_id: Uuid,
    evaluation_revision: i32,
    agent_id: String,
    team_id: String,
    reviewer_id: String,
    state: String,
    outcome: Option<String>,
    comment: String,
    proposed_ratings: Json<Vec<Rating>>,
    contested_criteria: Json<Vec<String>>,
    resolution_comment: String,
    resolver_id: String,
    resolved_revision: Option<i32>,
    open_time: Stamp,
    resolve_time: Option<Stamp>,
}

impl TryFrom<DisputeRow> for Dispute {
    type Error = Error;

    fn try_from(row: DisputeRow) -> Result<Self> {
        let outcome = row
            .outcome
            .map(|outcome| {
                DisputeOutcome::parse(&outcome)
                    .ok_or_else(|| Error::Internal(format!("unknown dispute outcome {outcome:?}")))
            })
            .transpose()?;
        Ok(Dispute {
            id: row.id,
            evaluation_id: row.evaluation_id,
            evaluation_revision: unsigned(row.evaluation_revision)?,
            agent_id: row.agent_id,
            team_id: row.team_id,
            reviewer_id: row.reviewer_id,
            state: DisputeState::parse(&row.state)
                .ok_or_else(|| Error::Internal(format!("unknown dispute state {:?}", row.state)))?,
            outcome,
            comment: row.comment,
            proposed_ratings: row.proposed_ratings.0,
            contested_criteria: row.contested_criteria.0,
            resolution_comment: row.resolution_comment,
            resolver_id: row.resolver_id,
            resolved_revision: row.resolved_revision.map(unsigned).transpose()?,
            open_time: row.open_time.into(),
            resolve_time: row.resolve_time.map(Into::into),
        })
    }
}

/// A dispute with the fingerprints of the requests that opened and resolved it.
#[derive(sqlx::FromRow)]
struct StoredDispute {
    #[sqlx(flatten)]
    row: DisputeRow,
    request_fingerprint: Option<Vec<u8>>,
    resolution_fingerprint: Option<Vec<u8>>,
}

async fn fetch_dispute(
    link: &mut Link<'_>,
    tenant: TenantId,
    id: Uuid,
    lock: &str,
) -> Result<(Dispute, Option<Vec<u8>>)> {
    let row: Option<StoredDispute> = link
        .fetch_optional(
            sql(format!(
                "SELECT {DISPUTE_COLUMNS}, request_fingerprint, resolution_fingerprint
                 FROM disputes WHERE tenant_id = $1 AND id = $2{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    let row = row.ok_or_else(|| Error::not_found("dispute", id))?;
    Ok((row.row.try_into()?, row.resolution_fingerprint))
}

/// A dispute that cannot change any more, said with the rule that refuses the change.
fn not_open(dispute: &Dispute, change: &str) -> Error {
    let state = match dispute.outcome {
        Some(outcome) => format!("resolved ({})", outcome.as_str()),
        None => dispute.state.as_str().to_owned(),
    };
    Error::FailedPrecondition(format!(
        "dispute {} is {state}: only an open dispute is {change}",
        dispute.id
    ))
}

async fn window_days(link: &mut Link<'_>, tenant: TenantId) -> Result<u32> {
    let row: Option<(i32,)> = link
        .fetch_optional(
            sql("SELECT dispute_window_days FROM tenants WHERE tenant_id = $1").bind(tenant),
        )
        .await?;
    row.map_or(Ok(dispute::DEFAULT_WINDOW_DAYS), |(days,)| unsigned(days))
}

/// A request id stored before: the same content answers with its dispute.
async fn replay(
    link: &mut Link<'_>,
    tenant: TenantId,
    request_id: Option<&str>,
    fingerprint: &[u8],
) -> Result<Option<Dispute>> {
    let Some(request_id) = request_id else {
        return Ok(None);
    };
    let stored: Option<StoredDispute> = link
        .fetch_optional(
            sql(format!(
                "SELECT {DISPUTE_COLUMNS}, request_fingerprint, resolution_fingerprint
                 FROM disputes WHERE tenant_id = $1 AND request_id = $2"
            ))
            .bind(tenant)
            .bind(request_id),
        )
        .await?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    if stored.request_fingerprint.as_deref() != Some(fingerprint) {
        return Err(Error::AlreadyExists(format!(
            "request_id {request_id:?} was already used for a different dispute"
        )));
    }
    Ok(Some(stored.row.try_into()?))
}

#[async_trait]
impl<B: SqlBackend> DisputeStore for B {
    #[tracing::instrument(name = "db.dispute_window_days", skip_all, fields(db.system = B::SYSTEM))]
    async fn dispute_window_days(&self, tenant: TenantId) -> Result<u32> {
        window_days(&mut self.read().await?.link(), tenant).await
    }

    #[tracing::instrument(name = "db.set_dispute_window_days", skip_all, fields(db.system = B::SYSTEM))]
    async fn set_dispute_window_days(&self, tenant: TenantId, days: u32) -> Result<()> {
        let mut tx = self.write().await?;
        let changed = tx
            .execute(
                sql("UPDATE tenants SET dispute_window_days = $2 WHERE tenant_id = $1")
                    .bind(tenant)
                    .bind(signed(days)?),
            )
            .await?;
        if changed == 0 {
            return Err(Error::not_found("tenant", tenant));
        }
        tx.commit().await
    }

    #[tracing::instrument(name = "db.open_dispute", skip_all, fields(db.system = B::SYSTEM))]
    async fn open_dispute(
        &self,
        tenant: TenantId,
        agent: Option<&str>,
        new: NewDispute,
    ) -> Result<Dispute> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        // Locked: concurrent opens of one evaluation take turns and see each other.
        let current = current_row(&mut link, tenant, new.evaluation_id, B::LOCK_ROWS).await?;
        let evaluation = current.into_evaluation(Vec::new())?;
        if agent.is_some_and(|agent| agent != evaluation.agent_id) {
            // Another agent's evaluation is as absent as one that does not exist.
            return Err(Error::not_found("evaluation", new.evaluation_id));
        }
        // After the lock, so that a retry racing its first attempt finds what it stored
        // instead of the one-open rule.
        if let Some(stored) = replay(
            &mut link,
            tenant,
            new.request_id.as_deref(),
            &new.fingerprint,
        )
        .await?
        {
            return Ok(stored);
        }
        let earlier = earlier_disputes(&mut link, tenant, new.evaluation_id).await?;
        let window = window_days(&mut link, tenant).await?;
        dispute::check_open(
            &evaluation,
            new.evaluation_revision,
            &earlier,
            window,
            Stamp::now().0,
        )
        .map_err(|refusal| Error::FailedPrecondition(refusal.message(new.evaluation_id)))?;
        let row: Option<DisputeRow> = link
            .fetch_optional(
                sql(format!(
                    "INSERT INTO disputes
                         (tenant_id, id, evaluation_id, evaluation_revision, agent_id, team_id,
                          reviewer_id, state, comment, proposed_ratings, contested_criteria,
                          open_time, request_id, request_fingerprint)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11, $12, $13)
                     ON CONFLICT DO NOTHING
                     RETURNING {DISPUTE_COLUMNS}"
                ))
                .bind(tenant)
                .bind(Uuid::now_v7())
                .bind(new.evaluation_id)
                .bind(signed(new.evaluation_revision)?)
                .bind(evaluation.agent_id.as_str())
                .bind(evaluation.team_id.as_str())
                .bind(evaluation.reviewer_id.as_str())
                .bind(new.comment.as_str())
                .bind(Value::json(&new.proposed_ratings)?)
                .bind(Value::json(&new.contested_criteria)?)
                .bind(Stamp::now())
                .bind(new.request_id.as_deref())
                .bind(new.fingerprint.as_slice()),
            )
            .await?;
        let Some(row) = row else {
            // A concurrent open won: of this request (a retry), or of another.
            drop(tx);
            let mut conn = self.read().await?;
            let mut link = conn.link();
            if let Some(stored) = replay(
                &mut link,
                tenant,
                new.request_id.as_deref(),
                &new.fingerprint,
            )
            .await?
            {
                return Ok(stored);
            }
            return Err(Error::FailedPrecondition(format!(
                "evaluation {} already has an open dispute: one at a time",
                new.evaluation_id
            )));
        };
        let dispute = row.try_into()?;
        record_dispute_event(&mut link, tenant, EventType::DisputeOpened, &dispute).await?;
        tx.commit().await?;
        Ok(dispute)
    }

    #[tracing::instrument(name = "db.get_dispute", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_dispute(&self, tenant: TenantId, id: Uuid) -> Result<Dispute> {
        Ok(
            fetch_dispute(&mut self.read().await?.link(), tenant, id, "")
                .await?
                .0,
        )
    }

    #[tracing::instrument(name = "db.opened_by_request", skip_all, fields(db.system = B::SYSTEM))]
    async fn opened_by_request(
        &self,
        tenant: TenantId,
        request_id: &str,
        fingerprint: &[u8],
    ) -> Result<Option<Dispute>> {
        replay(
            &mut self.read().await?.link(),
            tenant,
            Some(request_id),
            fingerprint,
        )
        .await
    }

    #[tracing::instrument(name = "db.list_disputes", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_disputes(
        &self,
        tenant: TenantId,
        listing: DisputeListing,
    ) -> Result<Vec<Dispute>> {
        let mut statement = sql(format!(
            "SELECT {DISPUTE_COLUMNS} FROM disputes WHERE tenant_id = $1"
        ))
        .bind(tenant);
        if let Some(before) = listing.before {
            statement = statement.push(" AND id < ").push_bind(before);
        }
        if !listing.states.is_empty() {
            statement = statement.push_in("state", listing.states.iter().map(|s| s.as_str()));
        }
        for (column, value) in [
            ("agent_id", listing.agent_id),
            ("reviewer_id", listing.reviewer_id),
        ] {
            if let Some(value) = value {
                statement = statement
                    .push(&format!(" AND {column} = "))
                    .push_bind(value);
            }
        }
        if let Some(evaluation_id) = listing.evaluation_id {
            statement = statement
                .push(" AND evaluation_id = ")
                .push_bind(evaluation_id);
        }
        if let Some(start) = listing.start_time {
            statement = statement.push(" AND open_time >= ").push_bind(Stamp(start));
        }
        if let Some(end) = listing.end_time {
            statement = statement.push(" AND open_time < ").push_bind(Stamp(end));
        }
        let statement = statement
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(listing.limit));
        let rows: Vec<DisputeRow> = self.read().await?.fetch_all(statement).await?;
        rows.into_iter().map(Dispute::try_from).collect()
    }

    #[tracing::instrument(name = "db.resolve_dispute", skip_all, fields(db.system = B::SYSTEM))]
    async fn resolve_dispute(
        &self,
        tenant: TenantId,
        id: Uuid,
        resolution: Resolution,
        revision: Option<NewRevision>,
    ) -> Result<Dispute> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        // Locked: of two concurrent resolutions, the second sees the first's outcome.
        let (dispute, resolved_with) = fetch_dispute(&mut link, tenant, id, B::LOCK_ROWS).await?;
        if dispute.state != DisputeState::Open {
            if resolved_with.as_deref() == Some(resolution.fingerprint.as_slice()) {
                return Ok(dispute);
            }
            return Err(not_open(&dispute, "resolved"));
        }
        let revised = match &revision {
            Some(revision) => {
                let revised = revise_in(
                    &mut link,
                    tenant,
                    dispute.evaluation_id,
                    revision,
                    B::LOCK_ROWS,
                )
                .await?
                .ok_or_else(|| Error::Internal("a dispute's revision has no request id".into()))?;
                Some(signed(revised.revision)?)
            }
            None => None,
        };
        let row: DisputeRow = link
            .fetch_one(
                sql(format!(
                    "UPDATE disputes SET state = 'resolved', outcome = $3, resolution_comment = $4,
                         resolver_id = $5, resolved_revision = $6, resolve_time = $7,
                         resolution_fingerprint = $8
                     WHERE tenant_id = $1 AND id = $2 AND state = 'open'
                     RETURNING {DISPUTE_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(resolution.outcome.as_str())
                .bind(resolution.comment.as_str())
                .bind(resolution.resolver_id.as_str())
                .bind(revised)
                .bind(Stamp::now())
                .bind(resolution.fingerprint.as_slice()),
            )
            .await?;
        let dispute = row.try_into()?;
        record_dispute_event(&mut link, tenant, EventType::DisputeResolved, &dispute).await?;
        tx.commit().await?;
        if revised.is_some() {
            self.events_committed();
        }
        Ok(dispute)
    }

    #[tracing::instrument(name = "db.withdraw_dispute", skip_all, fields(db.system = B::SYSTEM))]
    async fn withdraw_dispute(
        &self,
        tenant: TenantId,
        id: Uuid,
        agent: Option<&str>,
    ) -> Result<Dispute> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let (dispute, _) = fetch_dispute(&mut link, tenant, id, B::LOCK_ROWS).await?;
        if agent.is_some_and(|agent| agent != dispute.agent_id) {
            return Err(Error::not_found("dispute", id));
        }
        match dispute.state {
            DisputeState::Open => {}
            DisputeState::Withdrawn => return Ok(dispute),
            DisputeState::Resolved => return Err(not_open(&dispute, "withdrawn")),
        }
        let row: DisputeRow = link
            .fetch_one(
                sql(format!(
                    "UPDATE disputes SET state = 'withdrawn', resolve_time = $3
                     WHERE tenant_id = $1 AND id = $2 AND state = 'open'
                     RETURNING {DISPUTE_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(Stamp::now()),
            )
            .await?;
        let dispute = row.try_into()?;
        tx.commit().await?;
        Ok(dispute)
    }
}

/// Every dispute an evaluation has had, oldest first.
async fn earlier_disputes(
    link: &mut Link<'_>,
    tenant: TenantId,
    evaluation_id: Uuid,
) -> Result<Vec<Dispute>> {
    let rows: Vec<DisputeRow> = link
        .fetch_all(
            sql(format!(
                "SELECT {DISPUTE_COLUMNS} FROM disputes
                 WHERE tenant_id = $1 AND evaluation_id = $2 ORDER BY id"
            ))
            .bind(tenant)
            .bind(evaluation_id),
        )
        .await?;
    rows.into_iter().map(Dispute::try_from).collect()
}
