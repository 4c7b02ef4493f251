//! Persistence ports (traits) and their adapters. The services depend on the ports only.

pub(crate) mod evaluation_rows;
pub(crate) mod outbox_batch;
pub mod postgres;
pub(crate) mod score_query;
pub(crate) mod sql;
pub mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::domain::calibration::{CalibrationReview, NewSession, Session, SessionState};
use crate::domain::coaching::{self, ScoredEvaluation};
use crate::domain::dispute::{Dispute, DisputeState, NewDispute, Resolution};
use crate::domain::sampling::{self, Assignment, AssignmentState, CoverageCount};
use crate::domain::webhook;
use crate::domain::{
    access::Role,
    analytics::{Dimension, Interval, ScoreFilter, Totals},
    evaluation::{Evaluation, EvaluationEvent, EvaluationKind, NewEvaluation, NewRevision},
    interaction::{Interaction, InteractionInput},
    rubric::{DraftPatch, NewRubric, Rubric, RubricVersion},
    tenant::TenantId,
};
use crate::error::Result;

/// Which rubrics to list: keyset pagination by id (ids are UUIDv7, so creation order).
#[derive(Debug, Clone, Copy)]
pub struct RubricListing {
    pub after: Option<Uuid>,
    pub limit: u32,
    pub include_archived: bool,
}

/// Which versions to list: newest first, strictly older than `before`.
#[derive(Debug, Clone, Copy)]
pub struct VersionListing {
    pub before: Option<u32>,
    pub limit: u32,
}

/// Rubrics and their published versions. Every call is scoped by the tenant.
#[async_trait]
pub trait RubricStore: Send + Sync + 'static {
    /// Creates a rubric. With a request id, a retry with the same content returns the
    /// rubric created first, and one with other content is `AlreadyExists`.
    async fn create_rubric(
        &self,
        tenant: TenantId,
        request_id: Option<&str>,
        rubric: NewRubric,
    ) -> Result<Rubric>;

    async fn get_rubric(&self, tenant: TenantId, id: Uuid) -> Result<Rubric>;

    async fn list_rubrics(&self, tenant: TenantId, listing: RubricListing) -> Result<Vec<Rubric>>;

    /// Applies a validated patch to the draft of an active rubric.
    async fn update_draft(&self, tenant: TenantId, id: Uuid, patch: DraftPatch) -> Result<Rubric>;

    /// Freezes the draft as the next version. When the draft equals the latest version,
    /// that version is returned and nothing new is stored, so retries are safe.
    async fn publish(&self, tenant: TenantId, id: Uuid) -> Result<RubricVersion>;

    /// One published version; `None` = the latest.
    async fn get_version(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<RubricVersion>;

    async fn list_versions(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        listing: VersionListing,
    ) -> Result<Vec<RubricVersion>>;

    /// Archives a rubric; archiving an archived rubric returns it unchanged.
    async fn archive(&self, tenant: TenantId, id: Uuid) -> Result<Rubric>;
}

/// Which evaluations to list: newest first (ids are UUIDv7), strictly older than `before`.
#[derive(Debug, Clone, Default)]
pub struct EvaluationListing {
    pub before: Option<(Uuid, u32)>,
    pub limit: u32,
    pub interaction_id: Option<Uuid>,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    pub reviewer_id: Option<String>,
    pub rubric_id: Option<Uuid>,
    /// Empty = every kind.
    pub kinds: Vec<EvaluationKind>,
    /// Half-open range on the first revision's create time.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Also superseded revisions and deleted evaluations.
    pub include_inactive: bool,
    /// Only active evaluations whose current revision is not acknowledged.
    pub unacknowledged: bool,
}

/// What became of one row of an import.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    Accepted,
    /// Its request id was stored before with the same content.
    Duplicate,
    Rejected(String),
}

/// A previously stored submission or revision, found by its request id.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub evaluation: Evaluation,
    pub fingerprint: Vec<u8>,
}

/// Interactions and evaluations. Every write of an evaluation (submit, revise, delete)
/// writes its outbox event in the same transaction.
#[async_trait]
pub trait EvaluationStore: EvaluationReads + EvaluationChanges {
    /// Stores a scored evaluation, its ratings and its outbox event in one transaction.
    /// A request id stored before returns the stored evaluation when the fingerprints
    /// match, else `AlreadyExists`.
    async fn submit(&self, tenant: TenantId, evaluation: NewEvaluation) -> Result<Evaluation>;

    /// Stores a batch of scored evaluations in one transaction, reporting each row.
    async fn import(
        &self,
        tenant: TenantId,
        batch: Vec<NewEvaluation>,
    ) -> Result<Vec<ImportOutcome>>;

    /// How many import batches sharing no interaction and no request id are worth
    /// writing at the same time: 1 where writes are serialised anyway.
    fn concurrent_import_parts(&self) -> usize {
        1
    }
}

/// Reading interactions and evaluations: one implementation for both databases
/// (`store/sql/evaluation_reads.rs`); the writes, tuned per database, are the adapters'.
#[async_trait]
pub trait EvaluationReads: Send + Sync + 'static {
    async fn get_interaction(&self, tenant: TenantId, id: Uuid) -> Result<Interaction>;

    /// The submission or revision stored under a request id, if any.
    async fn find_request(
        &self,
        tenant: TenantId,
        request_id: &str,
    ) -> Result<Option<StoredRequest>>;

    /// One revision; `None` = the current one (active or deleted).
    async fn get_evaluation(
        &self,
        tenant: TenantId,
        id: Uuid,
        revision: Option<u32>,
    ) -> Result<Evaluation>;

    async fn list_evaluations(
        &self,
        tenant: TenantId,
        listing: EvaluationListing,
    ) -> Result<Vec<Evaluation>>;

    /// The active AUTOMATED evaluations of an interaction under a rubric (one per
    /// version it was scored against).
    async fn automated_evaluations(
        &self,
        tenant: TenantId,
        interaction_id: Uuid,
        rubric_id: Uuid,
    ) -> Result<Vec<Evaluation>>;
}

/// Upserting interactions, revising and deleting evaluations: one implementation for
/// both databases
/// (`store/sql/evaluation_changes.rs`).
#[async_trait]
pub trait EvaluationChanges: Send + Sync + 'static {
    /// Creates or updates the interaction keyed by (source, external_id).
    async fn upsert_interaction(
        &self,
        tenant: TenantId,
        input: InteractionInput,
    ) -> Result<Interaction>;

    /// Stores a new active revision and supersedes the current one.
    async fn revise(&self, tenant: TenantId, id: Uuid, revision: NewRevision)
    -> Result<Evaluation>;

    /// Marks the current revision read by its agent (`agent`: only if the evaluation is
    /// that agent's, else not found); acknowledging again keeps the first time.
    async fn acknowledge(
        &self,
        tenant: TenantId,
        id: Uuid,
        agent: Option<&str>,
    ) -> Result<Evaluation>;

    /// Marks the current revision deleted; deleting again returns it unchanged.
    async fn delete(&self, tenant: TenantId, id: Uuid, reason: String) -> Result<Evaluation>;
}

/// Which facts and rollups changed in an applied batch, so caches can be refreshed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppliedBatch {
    pub events: usize,
    /// (tenant, agent id) of every evaluation whose figures changed.
    pub agents: Vec<(TenantId, String)>,
    /// (tenant, team id) of every evaluation whose figures changed.
    pub teams: Vec<(TenantId, String)>,
}

/// A group of a `QueryScores` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTotals {
    /// One value per requested dimension, in request order.
    pub dimensions: Vec<String>,
    pub bucket_start: Option<DateTime<Utc>>,
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SectionTotals {
    pub section: String,
    pub score_sum: f64,
    pub score_count: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CriterionTotals {
    pub criterion_key: String,
    pub score_sum: f64,
    pub rated_count: i64,
    pub not_applicable_count: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RootCauseTotals {
    pub criterion_key: String,
    pub root_cause: String,
    pub count: i64,
}

/// Rollups fed by the evaluation outbox, and the queries dashboards make of them (in
/// `AnalyticsReads`).
#[async_trait]
pub trait AnalyticsStore: AnalyticsReads {
    /// Applies up to `limit` outbox events that are safe to apply (their transactions and
    /// every older one have ended), exactly once, with the cursor moved in the same
    /// transaction. Returns no events when another replica is applying.
    async fn apply_pending(&self, limit: u32) -> Result<AppliedBatch>;

    /// Whether outbox events wait to be applied.
    async fn has_pending(&self) -> Result<bool>;

    /// When the oldest unapplied event was written, or now when none waits: every
    /// evaluation committed before it is in the figures.
    async fn as_of(&self) -> Result<DateTime<Utc>>;

    /// Empties the facts and rollups and derives them again from the current revision of
    /// every evaluation, in one transaction: readers keep seeing the previous figures
    /// until it commits. Returns the evaluations applied. Needs no outbox event.
    async fn rebuild(&self) -> Result<u64>;

    /// Removes up to `limit` outbox events written before `before` that every reader of
    /// the outbox (the projector and the webhook dispatcher) has passed. Returns how many.
    async fn prune_outbox(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;

    /// Wake-ups for the projector when outbox events may have been written.
    async fn outbox_wakeups(&self) -> Result<Box<dyn OutboxWakeups>>;
}

/// The score queries: one implementation for both databases
/// (`store/sql/analytics_reads.rs`, assembled in `store/score_query.rs`).
#[async_trait]
pub trait AnalyticsReads: Send + Sync + 'static {
    async fn group_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
        group_by: &[Dimension],
        interval: Interval,
    ) -> Result<Vec<GroupTotals>>;

    async fn section_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<SectionTotals>>;

    async fn criterion_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<CriterionTotals>>;

    async fn root_cause_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<RootCauseTotals>>;

    /// Current evaluations (deleted ones too when asked) in id order after `after`.
    async fn export_page(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
        include_deleted: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<EvaluationEvent>>;
}

/// Tells the projector that outbox events may be waiting; it polls as well, so a missed
/// wake-up only delays it.
#[async_trait]
pub trait OutboxWakeups: Send {
    /// Returns when events may have been written since the last return.
    async fn wait(&mut self);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub create_time: DateTime<Utc>,
}

/// A stored API key: everything but its secret, of which only a hash is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub tenant: TenantId,
    pub tenant_name: String,
    pub key_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub role: Role,
    pub agent_id: Option<String>,
    pub reviewer_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
}

/// Who a key acts as: an `agent` key is bound to its agent; a `qa_reviewer` key may be
/// bound to one reviewer, and then submits only as that reviewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBinding {
    pub agent_id: Option<String>,
    pub reviewer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub tenant: TenantId,
    pub key_id: Option<Uuid>,
    pub role: Role,
    pub rpc: String,
    pub request_id: String,
    pub status_code: i32,
    pub time: DateTime<Utc>,
}

/// Tenants, API keys and the audit log.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Creates a tenant, or returns the one with this name.
    async fn create_tenant(&self, name: &str) -> Result<Tenant>;

    async fn find_tenant(&self, name: &str) -> Result<Option<Tenant>>;

    async fn create_key(
        &self,
        tenant: TenantId,
        key_id: Uuid,
        secret_hash: Vec<u8>,
        role: Role,
        binding: KeyBinding,
    ) -> Result<ApiKeyRecord>;

    async fn find_key(&self, tenant: TenantId, key_id: Uuid) -> Result<Option<ApiKeyRecord>>;

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key by id; false when no such key exists.
    async fn revoke_key(&self, key_id: Uuid) -> Result<bool>;

    async fn record_audit(&self, entry: AuditEntry) -> Result<()>;

    /// The newest entries first, of one tenant or all.
    async fn list_audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>>;

    /// The deployment's secret called `name`, made of [`DEPLOYMENT_SECRET_LEN`] random
    /// bytes on first use. Every replica and every restart reads the same one, and
    /// replicas starting together agree on the one stored first.
    async fn deployment_secret(&self, name: &str) -> Result<Vec<u8>>;
}

pub const DEPLOYMENT_SECRET_LEN: usize = 32;

/// A new deployment secret; stored before use, so that every replica uses the same.
pub(crate) fn new_deployment_secret() -> Result<Vec<u8>> {
    let mut secret = vec![0; DEPLOYMENT_SECRET_LEN];
    getrandom::fill(&mut secret)
        .map_err(|err| crate::error::Error::Internal(format!("no randomness: {err}")))?;
    Ok(secret)
}

/// Connections of a store's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// What operators watch about a store: whether it answers, its connections, and how far
/// the projector is behind.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// One cheap round trip; `Err` when the store cannot answer now.
    async fn ping(&self) -> Result<()>;

    fn pool_usage(&self) -> PoolUsage;

    /// Outbox events not yet applied to the rollups.
    async fn pending_events(&self) -> Result<u64>;
}

/// Which calibration sessions to list: newest first, strictly older than `before`.
#[derive(Debug, Clone, Copy)]
pub struct SessionListing {
    pub before: Option<Uuid>,
    pub limit: u32,
    pub state: Option<SessionState>,
}

/// Calibration sessions and the evaluations submitted in them.
#[async_trait]
pub trait CalibrationStore: Send + Sync + 'static {
    /// Creates a session, or answers a retry of the same request as the first time.
    async fn create_session(&self, tenant: TenantId, new: NewSession) -> Result<Session>;

    async fn get_session(&self, tenant: TenantId, id: Uuid) -> Result<Session>;

    /// Which of `ids` name no interaction of the tenant.
    async fn unknown_interactions(&self, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<Uuid>>;

    async fn list_sessions(
        &self,
        tenant: TenantId,
        listing: SessionListing,
    ) -> Result<Vec<Session>>;

    /// Closes a session; a closed one is returned as it is. No calibration evaluation
    /// is stored in it afterwards.
    async fn close_session(&self, tenant: TenantId, id: Uuid) -> Result<Session>;

    /// The session's active calibration evaluations, with their ratings.
    async fn calibration_reviews(
        &self,
        tenant: TenantId,
        session_id: Uuid,
    ) -> Result<Vec<CalibrationReview>>;
}

/// Which disputes to list: newest first (ids are UUIDv7), strictly older than `before`.
#[derive(Debug, Clone, Default)]
pub struct DisputeListing {
    pub before: Option<Uuid>,
    pub limit: u32,
    /// Empty = every state.
    pub states: Vec<DisputeState>,
    pub agent_id: Option<String>,
    pub reviewer_id: Option<String>,
    pub evaluation_id: Option<Uuid>,
    /// Half-open range on the open time.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// Disputes of evaluations, and the tenant's dispute window. An `agent` given to a call
/// limits it to that agent's evaluations: another agent's is not found.
#[async_trait]
pub trait DisputeStore: Send + Sync + 'static {
    /// Days after an evaluation revision during which its agent may dispute it.
    async fn dispute_window_days(&self, tenant: TenantId) -> Result<u32>;

    async fn set_dispute_window_days(&self, tenant: TenantId, days: u32) -> Result<()>;

    /// Opens a dispute if the rules allow it now (`dispute::check_open`), checked in the
    /// transaction that stores it; a retry of the same request answers as the first time.
    async fn open_dispute(
        &self,
        tenant: TenantId,
        agent: Option<&str>,
        new: NewDispute,
    ) -> Result<Dispute>;

    async fn get_dispute(&self, tenant: TenantId, id: Uuid) -> Result<Dispute>;

    /// The dispute a request id opened before: `None` when it opened none, and
    /// `AlreadyExists` when it came with other content (`fingerprint`).
    async fn opened_by_request(
        &self,
        tenant: TenantId,
        request_id: &str,
        fingerprint: &[u8],
    ) -> Result<Option<Dispute>>;

    async fn list_disputes(
        &self,
        tenant: TenantId,
        listing: DisputeListing,
    ) -> Result<Vec<Dispute>>;

    /// Resolves an open dispute and, with a revision, revises its evaluation in the same
    /// transaction. A dispute that is no longer open is `FailedPrecondition`, unless the
    /// call repeats the resolution it got.
    async fn resolve_dispute(
        &self,
        tenant: TenantId,
        id: Uuid,
        resolution: Resolution,
        revision: Option<NewRevision>,
    ) -> Result<Dispute>;

    /// Withdraws an open dispute; withdrawing again returns it unchanged.
    async fn withdraw_dispute(
        &self,
        tenant: TenantId,
        id: Uuid,
        agent: Option<&str>,
    ) -> Result<Dispute>;
}

/// Which coaching sessions to list: newest first, strictly older than `before`.
#[derive(Debug, Clone, Default)]
pub struct CoachingListing {
    pub before: Option<Uuid>,
    pub limit: u32,
    pub agent_id: Option<String>,
    pub coach_id: Option<String>,
}

/// Coaching sessions, their action items, and the scores their impact is measured on.
#[async_trait]
pub trait CoachingStore: Send + Sync + 'static {
    /// Creates a session, or answers a retry of the same request as the first time.
    async fn create_coaching_session(
        &self,
        tenant: TenantId,
        new: coaching::NewSession,
    ) -> Result<coaching::Session>;

    async fn get_coaching_session(&self, tenant: TenantId, id: Uuid) -> Result<coaching::Session>;

    async fn list_coaching_sessions(
        &self,
        tenant: TenantId,
        listing: CoachingListing,
    ) -> Result<Vec<coaching::Session>>;

    /// Marks an action item done now, or not done; an item already in that state keeps
    /// its time.
    async fn update_action_item(
        &self,
        tenant: TenantId,
        session_id: Uuid,
        item_id: Uuid,
        done: bool,
        agent: Option<&str>,
    ) -> Result<coaching::Session>;

    /// Which of `ids` name no evaluation of `agent`.
    async fn evaluations_not_of_agent(
        &self,
        tenant: TenantId,
        agent: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Uuid>>;

    /// The agent's active MANUAL evaluations counted in [start, end).
    async fn scored_evaluations(
        &self,
        tenant: TenantId,
        agent: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ScoredEvaluation>>;
}

/// Which assignments to list: oldest first (ids are UUIDv7), strictly newer than `after`.
#[derive(Debug, Clone, Default)]
pub struct AssignmentListing {
    pub after: Option<Uuid>,
    pub limit: u32,
    pub plan_id: Option<Uuid>,
    pub reviewer_id: Option<String>,
    /// Empty = every state.
    pub states: Vec<AssignmentState>,
}

/// What a sampling run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunOutcome {
    pub created: u32,
    /// Assignments an earlier run of the same plan and period made (this one made none).
    pub already_assigned: u32,
    pub short_agents: Vec<(String, u32)>,
}

/// Sampling plans and the assignments they make.
#[async_trait]
pub trait AssignmentStore: Send + Sync + 'static {
    /// Creates a plan, or answers a retry of the same request as the first time.
    async fn create_plan(&self, tenant: TenantId, new: sampling::NewPlan)
    -> Result<sampling::Plan>;

    async fn get_plan(&self, tenant: TenantId, id: Uuid) -> Result<sampling::Plan>;

    /// Newest first, strictly older than `before`.
    async fn list_plans(
        &self,
        tenant: TenantId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<sampling::Plan>>;

    /// Samples the period [start, end) of a plan and stores the assignments, once per
    /// (plan, period): a later or concurrent run answers with the first one's count.
    async fn run_sampling(
        &self,
        tenant: TenantId,
        plan_id: Uuid,
        period: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<RunOutcome>;

    async fn get_assignment(&self, tenant: TenantId, id: Uuid) -> Result<Assignment>;

    async fn list_assignments(
        &self,
        tenant: TenantId,
        listing: AssignmentListing,
    ) -> Result<Vec<Assignment>>;

    /// The reviewer's oldest open assignment.
    async fn next_assignment(
        &self,
        tenant: TenantId,
        reviewer_id: &str,
    ) -> Result<Option<Assignment>>;

    /// Skips an open assignment and assigns the same reviewer a replacement of the same
    /// agent and period when one is eligible.
    async fn skip_assignment(
        &self,
        tenant: TenantId,
        id: Uuid,
        reason: &str,
    ) -> Result<(Assignment, Option<Assignment>)>;

    /// A plan's assignments of the period starting at `period_start`, counted by
    /// reviewer, agent and state.
    async fn coverage_counts(
        &self,
        tenant: TenantId,
        plan_id: Uuid,
        period_start: DateTime<Utc>,
    ) -> Result<Vec<CoverageCount>>;
}

/// Every store port on one backend: what the server and the CLI open.
/// One active MANUAL or AUTOMATED evaluation's criterion scores, for comparing people
/// with AutoQA.
#[derive(Debug, Clone, PartialEq)]
pub struct KindScores {
    pub interaction_id: Uuid,
    pub automated: bool,
    pub criterion_scores: Vec<crate::domain::scoring::CriterionScore>,
}

/// Where AutoQA's automatic mode is in the interactions, in update order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoQaCursor {
    pub time: DateTime<Utc>,
    pub tenant: TenantId,
    pub interaction_id: Uuid,
}

/// What AutoQA reads: the agreement with people, and for its automatic mode the rubrics
/// that ask for it and the interactions upserted since its cursor (`store/sql/autoqa.rs`).
#[async_trait]
pub trait AutoQaReads: Send + Sync + 'static {
    /// (tenant, rubric, version) of every active rubric whose latest published version
    /// has `auto_score`.
    async fn auto_scored_rubrics(&self) -> Result<Vec<(TenantId, Uuid, u32)>>;

    /// Interactions with messages upserted after `after` and before `before`, in update
    /// order (then tenant and id), at most `limit`.
    async fn interactions_changed(
        &self,
        after: AutoQaCursor,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AutoQaCursor>>;

    async fn autoqa_cursor(&self) -> Result<AutoQaCursor>;

    async fn save_autoqa_cursor(&self, cursor: AutoQaCursor) -> Result<()>;

    /// The active MANUAL and AUTOMATED evaluations under `rubric_id` (created in
    /// `[start, end)` when given) of interactions that have an active AUTOMATED one,
    /// ordered by interaction.
    async fn manual_and_automated(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<KindScores>>;
}

/// A subscription to store, with its new signing secret.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    pub input: webhook::WebhookInput,
    pub secret: String,
}

/// What a webhook event is about, as stored when the event is dispatched (an evaluation
/// revision) or when it happened (a dispute).
#[derive(Debug, Clone)]
pub enum WebhookSubject {
    Evaluation(Evaluation),
    Dispute(Dispute),
}

/// Renders the `data` of an event body: the resource in proto3 JSON. Supplied by the
/// services, which own the mapping to protobuf.
pub trait WebhookRenderer: Send + Sync {
    fn data(&self, subject: &WebhookSubject) -> Result<Box<serde_json::value::RawValue>>;
}

/// What one dispatch pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Events read (from the outbox and from disputes).
    pub events: usize,
    /// Deliveries enqueued for them.
    pub deliveries: usize,
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub tenant: TenantId,
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub url: String,
    pub secret: String,
    pub event_id: String,
    pub body: String,
    /// Attempts before this one.
    pub attempts: u32,
    pub create_time: DateTime<Utc>,
}

/// How an attempt ended and what follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed, and past the retry period.
    GiveUp,
    /// 410 Gone: the receiver asks for no more; the subscription is disabled.
    Gone,
}

/// One attempt of a delivery, as the worker saw it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub tenant: TenantId,
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub time: DateTime<Utc>,
    pub status: Option<u16>,
    pub latency: std::time::Duration,
    pub error: String,
    pub outcome: AttemptOutcome,
}

/// Webhook subscriptions, the events owed to them and their delivery log.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores a subscription, or answers the one stored under the same request id (an
    /// error when its content differs). Answers it with its secret.
    async fn create_webhook(
        &self,
        tenant: TenantId,
        new: NewWebhook,
    ) -> Result<(webhook::Webhook, String)>;

    /// Newest first, strictly older than `before`.
    async fn list_webhooks(
        &self,
        tenant: TenantId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<webhook::Webhook>>;

    /// Removes a subscription with its deliveries.
    async fn delete_webhook(&self, tenant: TenantId, id: Uuid) -> Result<webhook::Webhook>;

    /// A subscription's deliveries, newest first, strictly older than `before`.
    async fn list_webhook_deliveries(
        &self,
        tenant: TenantId,
        webhook_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<webhook::Delivery>>;

    /// Turns the next events (at most `limit` of each source) into deliveries for the
    /// subscriptions that want them, in one transaction with moving past them: each
    /// event is enqueued once, whichever replica dispatches.
    async fn dispatch_webhook_events(
        &self,
        limit: u32,
        renderer: &dyn WebhookRenderer,
    ) -> Result<Dispatched>;

    /// Claims up to `limit` deliveries due at `now` of active subscriptions, each the
    /// oldest pending one of its evaluation for its subscription, and at most
    /// `per_webhook` per subscription counting the `in_flight` ones, and leases them
    /// until `lease_until` (a worker that dies holding one lets it be claimed again then).
    async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        in_flight: &std::collections::HashMap<Uuid, usize>,
        per_webhook: usize,
    ) -> Result<Vec<DueDelivery>>;

    /// Removes the deliveries that ended (delivered or failed) before `before`; how many.
    async fn prune_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Records an attempt. A subscription whose attempts failed `disable_after`
    /// times in a row, or that answered 410, is disabled and its pending deliveries fail.
    async fn record_webhook_attempt(
        &self,
        attempt: AttemptRecord,
        disable_after: u32,
    ) -> Result<()>;
}

pub trait Store:
    RubricStore
    + EvaluationStore
    + AnalyticsStore
    + AccessStore
    + CalibrationStore
    + DisputeStore
    + CoachingStore
    + AssignmentStore
    + AutoQaReads
    + WebhookStore
    + StoreHealth
{
}

impl<
    T: RubricStore
        + EvaluationStore
        + AnalyticsStore
        + AccessStore
        + CalibrationStore
        + DisputeStore
        + CoachingStore
        + AssignmentStore
        + AutoQaReads
        + WebhookStore
        + StoreHealth,
> Store for T
{
}
