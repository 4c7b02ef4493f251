//! Who may call what: roles, the role × RPC matrix, and API key format.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including rubric changes.
    Admin,
    /// Submits, revises and deletes evaluations; reads everything.
    QaReviewer,
    /// Bound to one agent id: reads only its own evaluations and score, submits only
    /// SELF evaluations of itself.
    Agent,
    /// A helpdesk: upserts interactions, submits and scores evaluations, reads agent and
    /// team scores.
    Integration,
    /// Reads rubrics and analytics, exports.
    Analyst,
    /// Reads agent and team scores.
    Service,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::QaReviewer,
        Role::Agent,
        Role::Integration,
        Role::Analyst,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::QaReviewer => "qa_reviewer",
            Self::Agent => "agent",
            Self::Integration => "integration",
            Self::Analyst => "analyst",
            Self::Service => "service",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Role::{Admin, Agent, Analyst, Integration, QaReviewer, Service};

const RUBRIC: &str = "/iqs.rubric.v1.RubricService/";
const EVALUATION: &str = "/iqs.evaluation.v1.EvaluationService/";
const ANALYTICS: &str = "/iqs.analytics.v1.AnalyticsService/";
const CALIBRATION: &str = "/iqs.evaluation.v1.CalibrationService/";
const DISPUTE: &str = "/iqs.evaluation.v1.DisputeService/";
const COACHING: &str = "/iqs.evaluation.v1.CoachingService/";
const ASSIGNMENT: &str = "/iqs.evaluation.v1.AssignmentService/";
const WEBHOOK: &str = "/iqs.integration.v1.WebhookService/";

/// What a call does, for the audit log and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    /// Recorded in the audit log.
    Write,
    /// A write whose request streams for as long as the caller has rows: exempt from the
    /// server's maximum call duration, bounded by the stream limits instead.
    BulkWrite,
}

/// One RPC of the API: who may call it and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    /// `/package.Service/`
    pub service: &'static str,
    pub method: &'static str,
    pub roles: &'static [Role],
    pub kind: Kind,
}

impl Rpc {
    pub fn path(&self) -> String {
        format!("{}{}", self.service, self.method)
    }
}

const fn rpc(
    service: &'static str,
    method: &'static str,
    kind: Kind,
    roles: &'static [Role],
) -> Rpc {
    Rpc {
        service,
        method,
        roles,
        kind,
    }
}

use Kind::{BulkWrite, Read, Write};

/// Every RPC of the API, the roles that may call it and what it does. Calls of the
/// `agent` role are further limited to its own agent id inside the services. A test
/// checks that every method of the served protobuf services has exactly one row here and
/// one in docs/SECURITY.md.
pub const MATRIX: &[Rpc] = &[
    // A helpdesk subscribes itself; the secret is shown once, to whoever creates it.
    rpc(WEBHOOK, "CreateWebhook", Write, &[Admin, Integration]),
    rpc(WEBHOOK, "ListWebhooks", Read, &[Admin, Integration]),
    rpc(WEBHOOK, "DeleteWebhook", Write, &[Admin, Integration]),
    rpc(
        WEBHOOK,
        "ListWebhookDeliveries",
        Read,
        &[Admin, Integration],
    ),
    rpc(RUBRIC, "CreateRubric", Write, &[Admin]),
    rpc(
        RUBRIC,
        "GetRubric",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    rpc(
        RUBRIC,
        "ListRubrics",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    rpc(RUBRIC, "UpdateRubricDraft", Write, &[Admin]),
    rpc(RUBRIC, "PublishRubric", Write, &[Admin]),
    rpc(
        RUBRIC,
        "GetRubricVersion",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    rpc(
        RUBRIC,
        "ListRubricVersions",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    rpc(RUBRIC, "ArchiveRubric", Write, &[Admin]),
    rpc(
        EVALUATION,
        "UpsertInteraction",
        Write,
        &[Admin, QaReviewer, Integration],
    ),
    rpc(
        EVALUATION,
        "GetInteraction",
        Read,
        &[Admin, QaReviewer, Integration],
    ),
    rpc(
        EVALUATION,
        "SubmitEvaluation",
        Write,
        &[Admin, QaReviewer, Agent, Integration],
    ),
    rpc(
        EVALUATION,
        "ScoreEvaluation",
        Read,
        &[Admin, QaReviewer, Agent, Integration],
    ),
    rpc(
        EVALUATION,
        "GetEvaluation",
        Read,
        &[Admin, QaReviewer, Agent],
    ),
    rpc(
        EVALUATION,
        "ListEvaluations",
        Read,
        &[Admin, QaReviewer, Agent],
    ),
    rpc(EVALUATION, "ReviseEvaluation", Write, &[Admin, QaReviewer]),
    rpc(EVALUATION, "DeleteEvaluation", Write, &[Admin, QaReviewer]),
    rpc(
        EVALUATION,
        "ImportEvaluations",
        BulkWrite,
        &[Admin, QaReviewer, Integration],
    ),
    rpc(EVALUATION, "AcknowledgeEvaluation", Write, &[Admin, Agent]),
    rpc(
        EVALUATION,
        "AutoScoreInteraction",
        Write,
        &[Admin, QaReviewer, Integration, Service],
    ),
    rpc(
        ANALYTICS,
        "GetAgentScore",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst, Service],
    ),
    rpc(
        ANALYTICS,
        "BatchGetAgentScores",
        Read,
        &[Admin, QaReviewer, Agent, Integration, Analyst, Service],
    ),
    rpc(
        ANALYTICS,
        "GetTeamScore",
        Read,
        &[Admin, QaReviewer, Integration, Analyst, Service],
    ),
    rpc(
        ANALYTICS,
        "QueryScores",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetCriterionBreakdown",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetCsatCorrelation",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ANALYTICS,
        "ExportEvaluations",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetAutoQaAgreement",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetCalibrationReport",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        CALIBRATION,
        "CreateCalibrationSession",
        Write,
        &[Admin, QaReviewer],
    ),
    rpc(
        CALIBRATION,
        "GetCalibrationSession",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        CALIBRATION,
        "ListCalibrationSessions",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        CALIBRATION,
        "CloseCalibrationSession",
        Write,
        &[Admin, QaReviewer],
    ),
    rpc(DISPUTE, "OpenDispute", Write, &[Admin, Agent]),
    rpc(DISPUTE, "ResolveDispute", Write, &[Admin, QaReviewer]),
    rpc(DISPUTE, "WithdrawDispute", Write, &[Admin, Agent]),
    rpc(
        DISPUTE,
        "GetDispute",
        Read,
        &[Admin, QaReviewer, Agent, Analyst],
    ),
    rpc(
        DISPUTE,
        "ListDisputes",
        Read,
        &[Admin, QaReviewer, Agent, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetDisputeSummary",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        COACHING,
        "CreateCoachingSession",
        Write,
        &[Admin, QaReviewer],
    ),
    rpc(
        COACHING,
        "UpdateActionItem",
        Write,
        &[Admin, QaReviewer, Agent],
    ),
    rpc(
        COACHING,
        "ListCoachingSessions",
        Read,
        &[Admin, QaReviewer, Agent, Analyst],
    ),
    rpc(
        COACHING,
        "GetCoachingSession",
        Read,
        &[Admin, QaReviewer, Agent, Analyst],
    ),
    rpc(
        ANALYTICS,
        "GetCoachingImpact",
        Read,
        &[Admin, QaReviewer, Agent, Analyst],
    ),
    rpc(ASSIGNMENT, "CreateSamplingPlan", Write, &[Admin]),
    rpc(
        ASSIGNMENT,
        "GetSamplingPlan",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(
        ASSIGNMENT,
        "ListSamplingPlans",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(ASSIGNMENT, "RunSampling", Write, &[Admin]),
    rpc(
        ASSIGNMENT,
        "ListAssignments",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
    rpc(ASSIGNMENT, "NextAssignment", Read, &[Admin, QaReviewer]),
    rpc(ASSIGNMENT, "SkipAssignment", Write, &[Admin, QaReviewer]),
    rpc(
        ANALYTICS,
        "GetAssignmentCoverage",
        Read,
        &[Admin, QaReviewer, Analyst],
    ),
];

/// Services anyone may call without a key: health checks and reflection.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// The row of the method at `path` (`/package.Service/Method`).
pub fn rpc_at(path: &str) -> Option<&'static Rpc> {
    MATRIX
        .iter()
        .find(|rpc| path.strip_prefix(rpc.service) == Some(rpc.method))
}

/// Whether `role` may call the method at `path`. Unknown methods are refused.
pub fn may_call(role: Role, path: &str) -> bool {
    rpc_at(path).is_some_and(|rpc| rpc.roles.contains(&role))
}

/// Whether a call of `path` writes data (for the audit log).
pub fn is_write(path: &str) -> bool {
    rpc_at(path).is_some_and(|rpc| matches!(rpc.kind, Write | BulkWrite))
}

/// Whether the request of `path` streams for as long as the caller has rows.
pub fn is_bulk(path: &str) -> bool {
    rpc_at(path).is_some_and(|rpc| rpc.kind == BulkWrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn admin_may_call_every_rpc_and_unknown_methods_are_refused() {
        for rpc in MATRIX {
            assert!(may_call(Role::Admin, &rpc.path()));
        }
        assert!(!may_call(
            Role::Admin,
            "/iqs.rubric.v1.RubricService/DropEverything"
        ));
        assert!(!may_call(Role::Admin, "/other.Service/CreateRubric"));
    }

    #[test]
    fn the_service_role_reads_agent_and_team_scores_and_may_auto_score_only() {
        let allowed: Vec<&str> = MATRIX
            .iter()
            .filter(|rpc| rpc.roles.contains(&Role::Service))
            .map(|rpc| rpc.method)
            .collect();
        assert_eq!(
            allowed,
            [
                "AutoScoreInteraction",
                "GetAgentScore",
                "BatchGetAgentScores",
                "GetTeamScore"
            ]
        );
    }

    #[test]
    fn health_and_reflection_are_open() {
        assert!(is_open("/grpc.health.v1.Health/Check"));
        assert!(is_open(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_open("/iqs.rubric.v1.RubricService/GetRubric"));
    }

    #[test]
    fn only_the_import_is_bulk() {
        assert!(is_bulk(
            "/iqs.evaluation.v1.EvaluationService/ImportEvaluations"
        ));
        assert!(is_write(
            "/iqs.evaluation.v1.EvaluationService/ImportEvaluations"
        ));
        assert!(!is_bulk(
            "/iqs.evaluation.v1.EvaluationService/SubmitEvaluation"
        ));
    }

    /// Every method the server serves has exactly one row: a method without one would
    /// be refused to every caller, a row without a method is a typo.
    #[test]
    fn every_method_of_the_api_has_exactly_one_row() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut served = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    served.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        let mut rows: Vec<String> = MATRIX.iter().map(Rpc::path).collect();
        served.sort();
        rows.sort();
        assert_eq!(rows, served);
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert!(is_write(
            "/iqs.evaluation.v1.EvaluationService/SubmitEvaluation"
        ));
        assert!(!is_write(
            "/iqs.evaluation.v1.EvaluationService/ScoreEvaluation"
        ));
        assert!(!is_write(
            "/iqs.analytics.v1.AnalyticsService/GetAgentScore"
        ));
    }
}
