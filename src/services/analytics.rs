//! iqs.analytics.v1.AnalyticsService over an AnalyticsStore: figures from daily rollups
//! (partial days from facts), never from the evaluations table.

use std::{pin::Pin, sync::Arc};

use prost::Message;

use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::assignment::assignment_coverage;
use super::calibration::calibration_report;
use super::coaching::coaching_impact;
use super::convert::{
    kind_from_proto, kind_to_proto, state_to_proto, time_range_from_proto, timestamp,
};
use super::dispute::dispute_summary;
use crate::auth::principal;
use crate::cache::{CacheEntity, Lookup, SummaryCache};
use crate::domain::{
    analytics::{Dimension, Interval, ScoreFilter, Totals, previous_period},
    evaluation::{EvaluationEvent, EvaluationKind},
    interaction::{check_external_id, check_optional_id},
    paging::{PageTokens, filter_fingerprint},
    statistics::{pearson, spearman},
    tenant::TenantId,
    validation::Violations,
};
use crate::error::Result;
use crate::proto::{
    analytics::{self as pb, analytics_service_server::AnalyticsService},
    common,
};
use crate::store::{
    AnalyticsStore, AssignmentStore, AutoQaReads, CalibrationStore, CoachingStore, DisputeStore,
};

/// Rows read per page while exporting.
pub const EXPORT_PAGE: u32 = 1_000;
const DEFAULT_ROOT_CAUSES: usize = 10;

/// The most agents one BatchGetAgentScores call may ask for.
pub const MAX_BATCH_AGENTS: usize = 1_000;
/// Summaries of one batch computed at once when the cache lacks them: enough to overlap
/// database round trips, few enough to leave the pool to other calls.
const BATCH_COMPUTE_CONCURRENCY: usize = 4;

pub struct AnalyticsApi {
    store: Arc<dyn AnalyticsStore>,
    program: ProgramStores,
    cache: Option<Arc<dyn SummaryCache>>,
    tokens: Arc<PageTokens>,
}

/// The stores of the QA program around a review, whose reports the analytics service
/// serves.
pub struct ProgramStores {
    pub calibrations: Arc<dyn CalibrationStore>,
    pub disputes: Arc<dyn DisputeStore>,
    pub coaching: Arc<dyn CoachingStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    pub autoqa: Arc<dyn AutoQaReads>,
}

impl AnalyticsApi {
    pub fn new(
        store: Arc<dyn AnalyticsStore>,
        program: ProgramStores,
        cache: Option<Arc<dyn SummaryCache>>,
        tokens: Arc<PageTokens>,
    ) -> Self {
        Self {
            store,
            program,
            cache,
            tokens,
        }
    }

    /// The summary of one agent or team: from the cache when it holds a current one,
    /// else computed and offered to the cache.
    async fn cached_summary(
        &self,
        tenant: TenantId,
        entity: CacheEntity,
        filter: ScoreFilter,
    ) -> Result<pb::ScoreSummary> {
        let Some(cache) = self.cache.clone() else {
            return self.summary(tenant, filter).await;
        };
        let request_key = filter_fingerprint(&format!("{filter:?}"));
        let lookup = cache.get(&entity, &request_key).await;
        self.settle(tenant, lookup, (entity, request_key), filter)
            .await
    }

    /// The summary a cache lookup found, or else computed (and offered to the cache
    /// when the lookup gave a version to store it under).
    async fn settle(
        &self,
        tenant: TenantId,
        lookup: Lookup,
        (entity, request_key): (CacheEntity, String),
        filter: ScoreFilter,
    ) -> Result<pb::ScoreSummary> {
        let version = match lookup {
            Lookup::Hit(bytes) => match pb::ScoreSummary::decode(bytes.as_slice()) {
                Ok(summary) => return Ok(summary),
                Err(_) => None,
            },
            Lookup::Miss { version } => Some(version),
            Lookup::Unavailable => None,
        };
        let summary = self.summary(tenant, filter).await?;
        if let (Some(version), Some(cache)) = (version, self.cache.clone()) {
            let value = summary.encode_to_vec();
            tokio::spawn(async move { cache.put(&entity, &request_key, &version, value).await });
        }
        Ok(summary)
    }

    /// The summaries of several agents, in order: the cache is asked for all of them at
    /// once, and those it lacks are computed a few at a time.
    async fn agent_summaries(
        &self,
        tenant: TenantId,
        agent_ids: &[String],
        filter: &ScoreFilter,
    ) -> Result<Vec<pb::ScoreSummary>> {
        use futures_util::StreamExt as _;
        let filters: Vec<ScoreFilter> = agent_ids
            .iter()
            .map(|id| ScoreFilter {
                agent_ids: vec![id.clone()],
                ..filter.clone()
            })
            .collect();
        let keys: Vec<(CacheEntity, String)> = agent_ids
            .iter()
            .zip(&filters)
            .map(|(id, filter)| {
                (
                    CacheEntity::Agent(tenant, id.clone()),
                    filter_fingerprint(&format!("{filter:?}")),
                )
            })
            .collect();
        let lookups = match &self.cache {
            Some(cache) => cache.get_many(&keys).await,
            None => vec![Lookup::Unavailable; keys.len()],
        };
        let summaries: Vec<Result<pb::ScoreSummary>> = futures_util::stream::iter(
            lookups
                .into_iter()
                .zip(keys)
                .zip(filters)
                .map(|((lookup, key), filter)| self.settle(tenant, lookup, key, filter)),
        )
        .buffered(BATCH_COMPUTE_CONCURRENCY)
        .collect()
        .await;
        summaries.into_iter().collect()
    }

    async fn summary(&self, tenant: TenantId, filter: ScoreFilter) -> Result<pb::ScoreSummary> {
        let as_of = self.store.as_of().await?;
        let totals = self.totals(tenant, &filter).await?;
        let sections = self.store.section_totals(tenant, &filter).await?;
        let previous_iqs = match (filter.start, filter.end) {
            (Some(start), Some(end)) => {
                let (start, end) = previous_period(start, end);
                let previous = ScoreFilter {
                    start: Some(start),
                    end: Some(end),
                    ..filter.clone()
                };
                self.totals(tenant, &previous).await?.iqs()
            }
            _ => None,
        };
        Ok(pb::ScoreSummary {
            iqs: totals.iqs(),
            evaluation_count: totals.evaluation_count.max(0) as u64,
            scored_count: totals.scored_count.max(0) as u64,
            pass_rate: totals.pass_rate(),
            critical_fail_count: totals.critical_fail_count.max(0) as u64,
            section_scores: sections
                .into_iter()
                .map(|s| common::SectionScore {
                    section: s.section,
                    score: (s.score_count > 0).then(|| s.score_sum / s.score_count as f64),
                })
                .collect(),
            previous_iqs,
            as_of: Some(timestamp(as_of)),
        })
    }

    /// The summary of one agent (`field` "agent_id") or team ("team_id").
    async fn entity_summary(
        &self,
        tenant: TenantId,
        request: EntityRequest<'_>,
    ) -> Result<pb::ScoreSummary> {
        let mut violations = Violations::new();
        let id = require_id(request.field, request.id, &mut violations);
        let mut filter = score_filter(
            request.time_range,
            request.rubric_id,
            request.kinds,
            &mut violations,
        );
        violations.finish(())?;
        let entity = if request.field == "agent_id" {
            filter.agent_ids = vec![id.clone()];
            CacheEntity::Agent(tenant, id)
        } else {
            filter.team_ids = vec![id.clone()];
            CacheEntity::Team(tenant, id)
        };
        self.cached_summary(tenant, entity, filter).await
    }

    async fn totals(&self, tenant: TenantId, filter: &ScoreFilter) -> Result<Totals> {
        Ok(self
            .store
            .group_totals(tenant, filter, &[], Interval::None)
            .await?
            .into_iter()
            .next()
            .map(|group| group.totals)
            .unwrap_or_default())
    }
}

/// The fields of GetAgentScore and GetTeamScore.
struct EntityRequest<'a> {
    field: &'static str,
    id: &'a str,
    time_range: Option<common::TimeRange>,
    rubric_id: &'a str,
    kinds: &'a [i32],
}

/// The common filter of every analytics request; kinds default to MANUAL.
fn score_filter(
    time_range: Option<common::TimeRange>,
    rubric_id: &str,
    kinds: &[i32],
    violations: &mut Violations,
) -> ScoreFilter {
    let (start, end) = time_range_from_proto(time_range, violations);
    let rubric_id = if rubric_id.is_empty() {
        None
    } else {
        violations.require_uuid("rubric_id", rubric_id)
    };
    let mut kinds: Vec<EvaluationKind> = kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| kind_from_proto(*kind, &format!("kinds[{index}]"), violations))
        .collect();
    if kinds.is_empty() {
        kinds.push(EvaluationKind::Manual);
    }
    kinds.sort_by_key(|kind| kind.as_str());
    kinds.dedup();
    ScoreFilter {
        start,
        end,
        rubric_id,
        kinds,
        ..ScoreFilter::default()
    }
}

fn require_id(field: &str, value: &str, violations: &mut Violations) -> String {
    check_external_id(field, value, violations);
    value.to_owned()
}

fn filter_from_proto(filter: Option<pb::ScoreFilter>, violations: &mut Violations) -> ScoreFilter {
    let filter = filter.unwrap_or_default();
    let mut prefixed = Violations::new();
    let mut score_filter = score_filter(
        filter.time_range,
        &filter.rubric_id,
        &filter.kinds,
        &mut prefixed,
    );
    for violation in prefixed.into_vec() {
        violations.add(format!("filter.{}", violation.field), violation.description);
    }
    for (name, values) in [
        ("agent_ids", &filter.agent_ids),
        ("team_ids", &filter.team_ids),
        ("channels", &filter.channels),
        ("regions", &filter.regions),
    ] {
        for (index, value) in values.iter().enumerate() {
            check_optional_id(&format!("filter.{name}[{index}]"), value, violations);
        }
    }
    score_filter.agent_ids = filter.agent_ids;
    score_filter.team_ids = filter.team_ids;
    score_filter.channels = filter.channels;
    score_filter.regions = filter.regions;
    score_filter
}

fn dimension_from_proto(value: i32, field: &str, violations: &mut Violations) -> Option<Dimension> {
    match pb::Dimension::try_from(value) {
        Ok(pb::Dimension::Agent) => Some(Dimension::Agent),
        Ok(pb::Dimension::Team) => Some(Dimension::Team),
        Ok(pb::Dimension::Channel) => Some(Dimension::Channel),
        Ok(pb::Dimension::Region) => Some(Dimension::Region),
        Ok(pb::Dimension::Rubric) => Some(Dimension::Rubric),
        Ok(pb::Dimension::Reviewer) => Some(Dimension::Reviewer),
        Ok(pb::Dimension::Criterion) => {
            violations.add(field, "DIMENSION_CRITERION groups only GetDisputeSummary");
            None
        }
        _ => {
            violations.add(field, format!("unknown dimension {value}"));
            None
        }
    }
}

fn interval_from_proto(value: i32, violations: &mut Violations) -> Interval {
    match pb::Interval::try_from(value) {
        Ok(pb::Interval::Unspecified | pb::Interval::None) => Interval::None,
        Ok(pb::Interval::Day) => Interval::Day,
        Ok(pb::Interval::Week) => Interval::Week,
        Ok(pb::Interval::Month) => Interval::Month,
        Err(_) => {
            violations.add("interval", format!("unknown interval {value}"));
            Interval::None
        }
    }
}

fn export_row(event: EvaluationEvent, cursor: String) -> pb::EvaluationRow {
    pb::EvaluationRow {
        evaluation_id: event.evaluation_id.to_string(),
        revision: event.revision,
        interaction_id: event.interaction_id.to_string(),
        agent_id: event.agent_id,
        team_id: event.team_id,
        channel: event.channel,
        region: event.region,
        rubric_id: event.rubric_id.to_string(),
        rubric_version: event.rubric_version,
        reviewer_id: event.reviewer_id,
        kind: kind_to_proto(event.kind) as i32,
        state: state_to_proto(event.state) as i32,
        score: event.score,
        passed: event.passed,
        critical_failed: event.critical_failed,
        csat: event.csat,
        create_time: Some(timestamp(event.first_create_time)),
        criterion_scores: event
            .criterion_scores
            .into_iter()
            .map(|c| common::CriterionScore {
                criterion_key: c.criterion_key,
                score: c.score,
            })
            .collect(),
        section_scores: event
            .section_scores
            .into_iter()
            .map(|s| common::SectionScore {
                section: s.section,
                score: s.score,
            })
            .collect(),
        cursor,
    }
}

/// Weakest first; absent averages last.
fn weakest_first(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    type ExportEvaluationsStream =
        Pin<Box<dyn Stream<Item = Result<pb::EvaluationRow, Status>> + Send + 'static>>;

    async fn get_calibration_report(
        &self,
        request: Request<pb::GetCalibrationReportRequest>,
    ) -> Result<Response<pb::CalibrationReport>, Status> {
        calibration_report(self.program.calibrations.as_ref(), request).await
    }

    async fn get_dispute_summary(
        &self,
        request: Request<pb::GetDisputeSummaryRequest>,
    ) -> Result<Response<pb::GetDisputeSummaryResponse>, Status> {
        dispute_summary(self.program.disputes.as_ref(), request).await
    }

    async fn get_coaching_impact(
        &self,
        request: Request<pb::GetCoachingImpactRequest>,
    ) -> Result<Response<pb::CoachingImpact>, Status> {
        coaching_impact(self.program.coaching.as_ref(), request).await
    }

    async fn get_auto_qa_agreement(
        &self,
        request: Request<pb::GetAutoQaAgreementRequest>,
    ) -> Result<Response<pb::GetAutoQaAgreementResponse>, Status> {
        super::autoqa::autoqa_agreement(self.program.autoqa.as_ref(), request).await
    }

    async fn get_assignment_coverage(
        &self,
        request: Request<pb::GetAssignmentCoverageRequest>,
    ) -> Result<Response<pb::AssignmentCoverage>, Status> {
        assignment_coverage(self.program.assignments.as_ref(), request).await
    }

    async fn get_agent_score(
        &self,
        request: Request<pb::GetAgentScoreRequest>,
    ) -> Result<Response<pb::ScoreSummary>, Status> {
        let caller = principal(&request)?.clone();
        let tenant = caller.tenant;
        let request = request.into_inner();
        if let Some(own) = caller.own_agent()
            && request.agent_id != own
        {
            return Err(Status::permission_denied(
                "an agent key reads only its own score",
            ));
        }
        let summary = self
            .entity_summary(
                tenant,
                EntityRequest {
                    field: "agent_id",
                    id: &request.agent_id,
                    time_range: request.time_range,
                    rubric_id: &request.rubric_id,
                    kinds: &request.kinds,
                },
            )
            .await?;
        Ok(Response::new(summary))
    }

    async fn batch_get_agent_scores(
        &self,
        request: Request<pb::BatchGetAgentScoresRequest>,
    ) -> Result<Response<pb::BatchGetAgentScoresResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.agent_ids.is_empty() || request.agent_ids.len() > MAX_BATCH_AGENTS {
            violations.add(
                "agent_ids",
                format!(
                    "must hold 1 to {MAX_BATCH_AGENTS} agent ids, got {}",
                    request.agent_ids.len()
                ),
            );
        }
        for (index, id) in request.agent_ids.iter().enumerate() {
            check_external_id(&format!("agent_ids[{index}]"), id, &mut violations);
        }
        let filter = score_filter(
            request.time_range,
            &request.rubric_id,
            &request.kinds,
            &mut violations,
        );
        violations.finish(())?;
        if let Some(own) = caller.own_agent()
            && request.agent_ids.iter().any(|id| id != own)
        {
            return Err(Status::permission_denied(
                "an agent key reads only its own score",
            ));
        }
        let summaries = self
            .agent_summaries(caller.tenant, &request.agent_ids, &filter)
            .await?;
        Ok(Response::new(pb::BatchGetAgentScoresResponse {
            summaries: request
                .agent_ids
                .into_iter()
                .zip(summaries)
                .map(|(agent_id, summary)| pb::AgentScoreSummary {
                    agent_id,
                    summary: Some(summary),
                })
                .collect(),
        }))
    }

    async fn get_team_score(
        &self,
        request: Request<pb::GetTeamScoreRequest>,
    ) -> Result<Response<pb::ScoreSummary>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let summary = self
            .entity_summary(
                tenant,
                EntityRequest {
                    field: "team_id",
                    id: &request.team_id,
                    time_range: request.time_range,
                    rubric_id: &request.rubric_id,
                    kinds: &request.kinds,
                },
            )
            .await?;
        Ok(Response::new(summary))
    }

    async fn query_scores(
        &self,
        request: Request<pb::QueryScoresRequest>,
    ) -> Result<Response<pb::QueryScoresResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filter = filter_from_proto(request.filter, &mut violations);
        let mut group_by = Vec::new();
        for (index, value) in request.group_by.iter().enumerate() {
            let field = format!("group_by[{index}]");
            if let Some(dimension) = dimension_from_proto(*value, &field, &mut violations) {
                if group_by.contains(&dimension) {
                    violations.add(field, "names a dimension twice");
                } else {
                    group_by.push(dimension);
                }
            }
        }
        let interval = interval_from_proto(request.interval, &mut violations);
        violations.finish(())?;
        let groups = self
            .store
            .group_totals(tenant, &filter, &group_by, interval)
            .await?;
        let rows = groups
            .into_iter()
            .map(|group| pb::ScoreRow {
                dimensions: group_by
                    .iter()
                    .zip(group.dimensions)
                    .map(|(dimension, value)| (dimension.name().to_owned(), value))
                    .collect(),
                bucket_start: group.bucket_start.map(timestamp),
                iqs: group.totals.iqs(),
                evaluation_count: group.totals.evaluation_count.max(0) as u64,
                pass_rate: group.totals.pass_rate(),
                avg_csat: group.totals.avg_csat(),
            })
            .collect();
        Ok(Response::new(pb::QueryScoresResponse { rows }))
    }

    async fn get_criterion_breakdown(
        &self,
        request: Request<pb::GetCriterionBreakdownRequest>,
    ) -> Result<Response<pb::GetCriterionBreakdownResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filter = filter_from_proto(request.filter, &mut violations);
        let limit = match request.root_cause_limit {
            0 => DEFAULT_ROOT_CAUSES,
            n if n < 0 => {
                violations.add("root_cause_limit", "must not be negative");
                0
            }
            n => n as usize,
        };
        violations.finish(())?;
        let mut criteria: Vec<pb::CriterionAverage> = self
            .store
            .criterion_totals(tenant, &filter)
            .await?
            .into_iter()
            .map(|c| pb::CriterionAverage {
                criterion_key: c.criterion_key,
                average_score: (c.rated_count > 0).then(|| c.score_sum / c.rated_count as f64),
                rated_count: c.rated_count.max(0) as u64,
                not_applicable_count: c.not_applicable_count.max(0) as u64,
            })
            .collect();
        criteria.sort_by(|a, b| {
            weakest_first(a.average_score, b.average_score)
                .then(a.criterion_key.cmp(&b.criterion_key))
        });
        let mut sections: Vec<pb::SectionAverage> = self
            .store
            .section_totals(tenant, &filter)
            .await?
            .into_iter()
            .map(|s| pb::SectionAverage {
                section: s.section,
                average_score: (s.score_count > 0).then(|| s.score_sum / s.score_count as f64),
                scored_count: s.score_count.max(0) as u64,
            })
            .collect();
        sections.sort_by(|a, b| {
            weakest_first(a.average_score, b.average_score).then(a.section.cmp(&b.section))
        });
        let root_causes = self
            .store
            .root_cause_totals(tenant, &filter)
            .await?
            .into_iter()
            .take(limit)
            .map(|r| pb::RootCauseCount {
                criterion_key: r.criterion_key,
                root_cause: r.root_cause,
                count: r.count.max(0) as u64,
            })
            .collect();
        Ok(Response::new(pb::GetCriterionBreakdownResponse {
            criteria,
            sections,
            root_causes,
        }))
    }

    async fn get_csat_correlation(
        &self,
        request: Request<pb::GetCsatCorrelationRequest>,
    ) -> Result<Response<pb::GetCsatCorrelationResponse>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filter = filter_from_proto(request.filter, &mut violations);
        let group = match request.group_by {
            0 => Some(Dimension::Agent),
            value => match dimension_from_proto(value, "group_by", &mut violations) {
                Some(dimension @ (Dimension::Agent | Dimension::Team)) => Some(dimension),
                Some(_) => {
                    violations.add("group_by", "must be DIMENSION_AGENT or DIMENSION_TEAM");
                    None
                }
                None => None,
            },
        };
        violations.finish(())?;
        let group = group.unwrap_or(Dimension::Agent);
        let groups = self
            .store
            .group_totals(tenant, &filter, &[group], Interval::None)
            .await?;
        let points: Vec<pb::CsatPoint> = groups
            .into_iter()
            .filter_map(|g| {
                let (iqs, csat) = (g.totals.iqs()?, g.totals.avg_csat()?);
                Some(pb::CsatPoint {
                    group_id: g.dimensions.into_iter().next().unwrap_or_default(),
                    iqs,
                    avg_csat: csat,
                    evaluation_count: g.totals.evaluation_count.max(0) as u64,
                })
            })
            .collect();
        let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.iqs, p.avg_csat)).collect();
        Ok(Response::new(pb::GetCsatCorrelationResponse {
            pearson_r: pearson(&pairs),
            spearman_rho: spearman(&pairs),
            pairs: pairs.len() as u64,
            points,
        }))
    }

    async fn export_evaluations(
        &self,
        request: Request<pb::ExportEvaluationsRequest>,
    ) -> Result<Response<Self::ExportEvaluationsStream>, Status> {
        let tenant = principal(&request)?.tenant;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filter = filter_from_proto(request.filter, &mut violations);
        let fingerprint =
            filter_fingerprint(&format!("export;{filter:?};{}", request.include_deleted));
        let mut after = self.tokens.read(
            tenant,
            &request.cursor,
            &fingerprint,
            "cursor",
            |key| Uuid::parse_str(key).ok(),
            &mut violations,
        );
        violations.finish(())?;
        // Two pages in flight at most: memory stays flat however many rows there are.
        let (sender, receiver) = tokio::sync::mpsc::channel(2 * EXPORT_PAGE as usize);
        let store = self.store.clone();
        let tokens = self.tokens.clone();
        let include_deleted = request.include_deleted;
        tokio::spawn(async move {
            loop {
                let page = match store
                    .export_page(tenant, &filter, include_deleted, after, EXPORT_PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(err) => {
                        let _ = sender.send(Err(Status::from(err))).await;
                        return;
                    }
                };
                let full = page.len() == EXPORT_PAGE as usize;
                for event in page {
                    after = Some(event.evaluation_id);
                    let cursor =
                        tokens.encode(tenant, &fingerprint, &event.evaluation_id.to_string());
                    if sender.send(Ok(export_row(event, cursor))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
