//! AssignmentStore, once for both databases. A run locks its plan's row, so concurrent
//! runs of one plan take turns and the second finds the first's `sampling_runs` row; an
//! interaction is assigned once per rubric (a unique index). That a review completes its
//! assignment is a trigger (see the assignments migrations), so the evaluation adapters
//! know nothing of assignments.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Link, SqlBackend, Stamp, Statement, Value, created_before, sql};
use crate::domain::sampling::{
    self, Assignment, AssignmentState, Candidate, CoverageCount, Filter, NewPlan, Period, Plan,
    PlanInput, Strategy,
};
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::{AssignmentListing, AssignmentStore, RunOutcome};

/// Rows per multi-row insert: 11 values each, well under both databases' limits.
const INSERT_CHUNK: usize = 500;

const PLAN_COLUMNS: &str = "id, display_name, rubric_id, filter, per_agent_count, period, \
     strategy, reviewer_ids, seed, create_time";

const ASSIGNMENT_COLUMNS: &str = "id, plan_id, interaction_id, agent_id, channel, reviewer_id, \
     rubric_id, period_start, state, evaluation_id, skip_reason, create_time, close_time";

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: Uuid,
    display_name: String,
    rubric_id: Uuid,
    filter: Json<Filter>,
    per_agent_count: i32,
    period: String,
    strategy: String,
    reviewer_ids: Json<Vec<String>>,
    seed: i64,
    create_time: Stamp,
}

impl TryFrom<PlanRow> for Plan {
    type Error = Error;

    fn try_from(row: PlanRow) -> Result<Self> {
        Ok(Plan {
            id: row.id,
            input: PlanInput {
                display_name: row.display_name,
                rubric_id: row.rubric_id,
                filter: row.filter.0,
                per_agent_count: u32::try_from(row.per_agent_count)
                    .map_err(|_| Error::Internal("negative per_agent_count".into()))?,
                period: Period::parse(&row.period)
                    .ok_or_else(|| Error::Internal(format!("unknown period {:?}", row.period)))?,
                strategy: Strategy::parse(&row.strategy).ok_or_else(|| {
                    Error::Internal(format!("unknown strategy {:?}", row.strategy))
                })?,
                reviewer_ids: row.reviewer_ids.0,
                // Stored as its two's complement: SQL has no unsigned 64-bit integer.
                seed: row.seed as u64,
            },
            create_time: row.create_time.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    id: Uuid,
    plan_id: Uuid,
    interaction_id: Uuid,
    agent_id: String,
    channel: String,
    reviewer_id: String,
    rubric_id: Uuid,
    period_start: Stamp,
    state: String,
    evaluation_id: Option<Uuid>,
    skip_reason: String,
    create_time: Stamp,
    close_time: Option<Stamp>,
}

impl TryFrom<AssignmentRow> for Assignment {
    type Error = Error;

    fn try_from(row: AssignmentRow) -> Result<Self> {
        Ok(Assignment {
            id: row.id,
            plan_id: row.plan_id,
            interaction_id: row.interaction_id,
            agent_id: row.agent_id,
            channel: row.channel,
            reviewer_id: row.reviewer_id,
            rubric_id: row.rubric_id,
            period_start: row.period_start.into(),
            state: AssignmentState::parse(&row.state).ok_or_else(|| {
                Error::Internal(format!("unknown assignment state {:?}", row.state))
            })?,
            evaluation_id: row.evaluation_id,
            skip_reason: row.skip_reason,
            create_time: row.create_time.into(),
            close_time: row.close_time.map(Into::into),
        })
    }
}

#[derive(sqlx::FromRow)]
struct CandidateRow {
    id: Uuid,
    agent_id: String,
    channel: String,
    csat: Option<i16>,
    eligible: bool,
}

#[derive(sqlx::FromRow)]
struct IdRow {
    id: Uuid,
}

async fn fetch_plan(link: &mut Link<'_>, tenant: TenantId, id: Uuid, lock: &str) -> Result<Plan> {
    let row: Option<PlanRow> = link
        .fetch_optional(
            sql(format!(
                "SELECT {PLAN_COLUMNS} FROM sampling_plans WHERE tenant_id = $1 AND id = $2{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    row.ok_or_else(|| Error::not_found("sampling plan", id))?
        .try_into()
}

async fn fetch_assignment(
    link: &mut Link<'_>,
    tenant: TenantId,
    id: Uuid,
    lock: &str,
) -> Result<Assignment> {
    let row: Option<AssignmentRow> = link
        .fetch_optional(
            sql(format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE tenant_id = $1 AND id = $2{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    row.ok_or_else(|| Error::not_found("assignment", id))?
        .try_into()
}

/// The interactions of [start, end) that match the plan's filter (and `agent`, when
/// given), each flagged eligible when it is neither reviewed (an active MANUAL
/// evaluation) nor assigned under the plan's rubric.
fn candidates_query(
    tenant: TenantId,
    plan: &Plan,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    agent: Option<&str>,
) -> Statement<'static> {
    let filter = &plan.input.filter;
    // Every interaction of the period that matches, flagged: an agent with none left
    // eligible is still reported short. The rubric's reviewed and assigned interactions
    // are joined, not probed row by row in the select list.
    let mut statement = sql("SELECT i.id, i.agent_id, i.channel, i.csat,
                (r.interaction_id IS NULL AND a.interaction_id IS NULL) AS eligible
         FROM interactions i
         LEFT JOIN (SELECT DISTINCT interaction_id FROM evaluations
                     WHERE tenant_id = $1 AND rubric_id = $4 AND kind = 'manual'
                       AND state = 'active') r ON r.interaction_id = i.id
         LEFT JOIN (SELECT interaction_id FROM assignments
                     WHERE tenant_id = $1 AND rubric_id = $4) a ON a.interaction_id = i.id
         WHERE i.tenant_id = $1
           AND COALESCE(i.occur_time, i.create_time) >= $2
           AND COALESCE(i.occur_time, i.create_time) < $3")
    .bind(tenant)
    .bind(Stamp(start))
    .bind(Stamp(end))
    .bind(plan.input.rubric_id);
    for (column, values) in [
        ("i.channel", &filter.channels),
        ("i.team_id", &filter.team_ids),
        ("i.agent_id", &filter.agent_ids),
        ("i.region", &filter.regions),
    ] {
        if !values.is_empty() {
            statement = statement.push_in(column, values.iter().map(String::as_str));
        }
    }
    if let Some(min) = filter.min_csat {
        statement = statement.push(" AND i.csat >= ").push_bind(min);
    }
    if let Some(max) = filter.max_csat {
        statement = statement.push(" AND i.csat <= ").push_bind(max);
    }
    if let Some(agent) = agent {
        statement = statement
            .push(" AND i.agent_id = ")
            .push_bind(agent.to_owned());
    }
    statement
}

/// The eligible candidates, and every agent of the period that the filter matches.
async fn candidates(
    link: &mut Link<'_>,
    statement: Statement<'_>,
) -> Result<(Vec<Candidate>, BTreeSet<String>)> {
    let rows: Vec<CandidateRow> = link.fetch_all(statement).await?;
    let mut agents = BTreeSet::new();
    let mut eligible = Vec::with_capacity(rows.len());
    for row in rows {
        if !agents.contains(&row.agent_id) {
            agents.insert(row.agent_id.clone());
        }
        if row.eligible {
            eligible.push(Candidate {
                interaction_id: row.id,
                agent_id: row.agent_id,
                channel: row.channel,
                csat: row.csat.map(i32::from),
            });
        }
    }
    Ok((eligible, agents))
}

/// A new open assignment of `candidate` to `reviewer_id`.
fn assignment_of(
    plan: &Plan,
    period_start: DateTime<Utc>,
    candidate: Candidate,
    reviewer_id: String,
    now: DateTime<Utc>,
) -> Assignment {
    Assignment {
        id: Uuid::now_v7(),
        plan_id: plan.id,
        interaction_id: candidate.interaction_id,
        agent_id: candidate.agent_id,
        channel: candidate.channel,
        reviewer_id,
        rubric_id: plan.input.rubric_id,
        period_start,
        state: AssignmentState::Open,
        evaluation_id: None,
        skip_reason: String::new(),
        create_time: now,
        close_time: None,
    }
}

/// Inserts open assignments; one already holding its interaction under the rubric (a
/// concurrent run of another plan) is left out. Returns how many were stored.
async fn insert_assignments(
    link: &mut Link<'_>,
    tenant: TenantId,
    assignments: &[Assignment],
) -> Result<u64> {
    let mut stored = 0;
    for chunk in assignments.chunks(INSERT_CHUNK) {
        let mut statement = sql("INSERT INTO assignments
                 (tenant_id, id, plan_id, period_start, interaction_id, agent_id, channel,
                  reviewer_id, rubric_id, state, create_time)
             VALUES ");
        for (index, assignment) in chunk.iter().enumerate() {
            statement = statement
                .push(if index == 0 { "(" } else { ", (" })
                .push_bind(tenant)
                .push(", ")
                .push_bind(assignment.id)
                .push(", ")
                .push_bind(assignment.plan_id)
                .push(", ")
                .push_bind(Stamp(assignment.period_start))
                .push(", ")
                .push_bind(assignment.interaction_id)
                .push(", ")
                .push_bind(assignment.agent_id.clone())
                .push(", ")
                .push_bind(assignment.channel.clone())
                .push(", ")
                .push_bind(assignment.reviewer_id.clone())
                .push(", ")
                .push_bind(assignment.rubric_id)
                .push(", 'open', ")
                .push_bind(Stamp(assignment.create_time))
                .push(")");
        }
        stored += link
            .execute(statement.push(" ON CONFLICT DO NOTHING"))
            .await?;
    }
    Ok(stored)
}

async fn count_assignments(
    link: &mut Link<'_>,
    tenant: TenantId,
    plan_id: Uuid,
    period_start: DateTime<Utc>,
) -> Result<u32> {
    let (count,): (i64,) = link
        .fetch_one(
            sql("SELECT COUNT(*) FROM assignments
                 WHERE tenant_id = $1 AND plan_id = $2 AND period_start = $3")
            .bind(tenant)
            .bind(plan_id)
            .bind(Stamp(period_start)),
        )
        .await?;
    u32::try_from(count).map_err(|_| Error::Internal("too many assignments".into()))
}

#[async_trait]
impl<B: SqlBackend> AssignmentStore for B {
    #[tracing::instrument(name = "db.create_plan", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_plan(&self, tenant: TenantId, new: NewPlan) -> Result<Plan> {
        let input = &new.input;
        let mut tx = self.write().await?;
        let inserted: Option<PlanRow> = tx
            .fetch_optional(
                sql(format!(
                    "INSERT INTO sampling_plans
                         (tenant_id, id, display_name, rubric_id, filter, per_agent_count, period,
                          strategy, reviewer_ids, seed, create_time, request_id, request_fingerprint)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
                     RETURNING {PLAN_COLUMNS}"
                ))
                .bind(tenant)
                .bind(Uuid::now_v7())
                .bind(input.display_name.trim())
                .bind(input.rubric_id)
                .bind(Value::json(&input.filter)?)
                .bind(i32::try_from(input.per_agent_count).unwrap_or(i32::MAX))
                .bind(input.period.as_str())
                .bind(input.strategy.as_str())
                .bind(Value::json(&input.reviewer_ids)?)
                .bind(input.seed as i64)
                .bind(Stamp::now())
                .bind(new.request_id.as_deref())
                .bind(new.fingerprint.as_slice()),
            )
            .await?;
        if let Some(row) = inserted {
            tx.commit().await?;
            return row.try_into();
        }
        let existing: IdRow = created_before(
            &mut tx.link(),
            "SELECT id, request_fingerprint FROM sampling_plans
             WHERE tenant_id = $1 AND request_id = $2",
            tenant,
            new.request_id.as_deref(),
            &new.fingerprint,
            "sampling plan",
        )
        .await?;
        fetch_plan(&mut tx.link(), tenant, existing.id, "").await
    }

    #[tracing::instrument(name = "db.get_plan", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_plan(&self, tenant: TenantId, id: Uuid) -> Result<Plan> {
        fetch_plan(&mut self.read().await?.link(), tenant, id, "").await
    }

    #[tracing::instrument(name = "db.list_plans", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_plans(
        &self,
        tenant: TenantId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Plan>> {
        let rows: Vec<PlanRow> = self
            .read()
            .await?
            .fetch_all(
                sql(format!(
                    "SELECT {PLAN_COLUMNS} FROM sampling_plans
                     WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(tenant)
                .bind(before)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(Plan::try_from).collect()
    }

    #[tracing::instrument(name = "db.run_sampling", skip_all, fields(db.system = B::SYSTEM))]
    async fn run_sampling(
        &self,
        tenant: TenantId,
        plan_id: Uuid,
        period: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<RunOutcome> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        // Locked: a concurrent run of this plan waits here, then finds this run's row.
        let plan = fetch_plan(&mut link, tenant, plan_id, B::LOCK_ROWS).await?;
        let done: Option<(Json<Vec<(String, u32)>>,)> = link
            .fetch_optional(
                sql("SELECT short_agents FROM sampling_runs
                     WHERE tenant_id = $1 AND plan_id = $2 AND period_start = $3")
                .bind(tenant)
                .bind(plan_id)
                .bind(Stamp(period.0)),
            )
            .await?;
        if let Some((short_agents,)) = done {
            return Ok(RunOutcome {
                created: 0,
                already_assigned: count_assignments(&mut link, tenant, plan_id, period.0).await?,
                short_agents: short_agents.0,
            });
        }
        let (eligible, agents) =
            candidates(&mut link, candidates_query(tenant, &plan, period, None)).await?;
        let sample = sampling::sample(&plan, period.0, eligible, &agents);
        let now = Stamp::now().0;
        let assignments: Vec<Assignment> = sample
            .picks
            .into_iter()
            .map(|pick| assignment_of(&plan, period.0, pick.candidate, pick.reviewer_id, now))
            .collect();
        let created = insert_assignments(&mut link, tenant, &assignments).await?;
        link.execute(
            sql("INSERT INTO sampling_runs (tenant_id, plan_id, period_start, short_agents, create_time)
                 VALUES ($1, $2, $3, $4, $5)")
            .bind(tenant)
            .bind(plan_id)
            .bind(Stamp(period.0))
            .bind(Value::json(&sample.short_agents)?)
            .bind(Stamp(now)),
        )
        .await?;
        tx.commit().await?;
        Ok(RunOutcome {
            created: u32::try_from(created).unwrap_or(u32::MAX),
            already_assigned: 0,
            short_agents: sample.short_agents,
        })
    }

    #[tracing::instrument(name = "db.get_assignment", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_assignment(&self, tenant: TenantId, id: Uuid) -> Result<Assignment> {
        fetch_assignment(&mut self.read().await?.link(), tenant, id, "").await
    }

    #[tracing::instrument(name = "db.list_assignments", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_assignments(
        &self,
        tenant: TenantId,
        listing: AssignmentListing,
    ) -> Result<Vec<Assignment>> {
        let mut statement = sql(format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE tenant_id = $1"
        ))
        .bind(tenant);
        if let Some(after) = listing.after {
            statement = statement.push(" AND id > ").push_bind(after);
        }
        if let Some(plan_id) = listing.plan_id {
            statement = statement.push(" AND plan_id = ").push_bind(plan_id);
        }
        if let Some(reviewer_id) = listing.reviewer_id {
            statement = statement.push(" AND reviewer_id = ").push_bind(reviewer_id);
        }
        if !listing.states.is_empty() {
            statement = statement.push_in("state", listing.states.iter().map(|s| s.as_str()));
        }
        let statement = statement
            .push(" ORDER BY id LIMIT ")
            .push_bind(i64::from(listing.limit));
        let rows: Vec<AssignmentRow> = self.read().await?.fetch_all(statement).await?;
        rows.into_iter().map(Assignment::try_from).collect()
    }

    #[tracing::instrument(name = "db.next_assignment", skip_all, fields(db.system = B::SYSTEM))]
    async fn next_assignment(
        &self,
        tenant: TenantId,
        reviewer_id: &str,
    ) -> Result<Option<Assignment>> {
        let row: Option<AssignmentRow> = self
            .read()
            .await?
            .fetch_optional(
                sql(format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                     WHERE tenant_id = $1 AND reviewer_id = $2 AND state = 'open'
                     ORDER BY id LIMIT 1"
                ))
                .bind(tenant)
                .bind(reviewer_id),
            )
            .await?;
        row.map(Assignment::try_from).transpose()
    }

    #[tracing::instrument(name = "db.skip_assignment", skip_all, fields(db.system = B::SYSTEM))]
    async fn skip_assignment(
        &self,
        tenant: TenantId,
        id: Uuid,
        reason: &str,
    ) -> Result<(Assignment, Option<Assignment>)> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let current = fetch_assignment(&mut link, tenant, id, B::LOCK_ROWS).await?;
        if current.state != AssignmentState::Open {
            return Err(Error::FailedPrecondition(format!(
                "assignment {id} is {}: only an open assignment is skipped",
                current.state.as_str()
            )));
        }
        let now = Stamp::now();
        let row: AssignmentRow = link
            .fetch_one(
                sql(format!(
                    "UPDATE assignments SET state = 'skipped', skip_reason = $3, close_time = $4
                     WHERE tenant_id = $1 AND id = $2 AND state = 'open'
                     RETURNING {ASSIGNMENT_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(reason.trim())
                .bind(now),
            )
            .await?;
        let skipped: Assignment = row.try_into()?;
        let plan = fetch_plan(&mut link, tenant, skipped.plan_id, "").await?;
        let period = plan.input.period.containing(skipped.period_start);
        let (rest, _) = candidates(
            &mut link,
            candidates_query(tenant, &plan, period, Some(&skipped.agent_id)),
        )
        .await?;
        let replacement =
            sampling::replacement(&plan, skipped.id, &skipped.channel, rest).map(|candidate| {
                assignment_of(
                    &plan,
                    skipped.period_start,
                    candidate,
                    skipped.reviewer_id.clone(),
                    now.0,
                )
            });
        if let Some(replacement) = &replacement {
            insert_assignments(&mut link, tenant, std::slice::from_ref(replacement)).await?;
        }
        tx.commit().await?;
        Ok((skipped, replacement))
    }

    #[tracing::instrument(name = "db.coverage_counts", skip_all, fields(db.system = B::SYSTEM))]
    async fn coverage_counts(
        &self,
        tenant: TenantId,
        plan_id: Uuid,
        period_start: DateTime<Utc>,
    ) -> Result<Vec<CoverageCount>> {
        let rows: Vec<(String, String, String, i64)> = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT reviewer_id, agent_id, state, COUNT(*) FROM assignments
                     WHERE tenant_id = $1 AND plan_id = $2 AND period_start = $3
                     GROUP BY reviewer_id, agent_id, state",
                )
                .bind(tenant)
                .bind(plan_id)
                .bind(Stamp(period_start)),
            )
            .await?;
        rows.into_iter()
            .map(|(reviewer_id, agent_id, state, count)| {
                Ok(CoverageCount {
                    reviewer_id,
                    agent_id,
                    state: AssignmentState::parse(&state).ok_or_else(|| {
                        Error::Internal(format!("unknown assignment state {state:?}"))
                    })?,
                    count: u64::try_from(count).unwrap_or_default(),
                })
            })
            .collect()
    }
}
