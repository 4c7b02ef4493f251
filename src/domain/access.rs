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

/// Every RPC of the API and the roles that may call it. Calls of the `agent` role are
/// further limited to its own agent id inside the services.
pub const MATRIX: &[(&str, &str, &[Role])] = &[
    (RUBRIC, "CreateRubric", &[Admin]),
    (
        RUBRIC,
        "GetRubric",
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    (
        RUBRIC,
        "ListRubrics",
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    (RUBRIC, "UpdateRubricDraft", &[Admin]),
    (RUBRIC, "PublishRubric", &[Admin]),
    (
        RUBRIC,
        "GetRubricVersion",
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    (
        RUBRIC,
        "ListRubricVersions",
        &[Admin, QaReviewer, Agent, Integration, Analyst],
    ),
    (RUBRIC, "ArchiveRubric", &[Admin]),
    (
        EVALUATION,
        "UpsertInteraction",
        &[Admin, QaReviewer, Integration],
    ),
    (
        EVALUATION,
        "GetInteraction",
        &[Admin, QaReviewer, Integration],
    ),
    (
        EVALUATION,
        "SubmitEvaluation",
        &[Admin, QaReviewer, Agent, Integration],
    ),
    (
        EVALUATION,
        "ScoreEvaluation",
        &[Admin, QaReviewer, Agent, Integration],
    ),
    (EVALUATION, "GetEvaluation", &[Admin, QaReviewer, Agent]),
    (EVALUATION, "ListEvaluations", &[Admin, QaReviewer, Agent]),
    (EVALUATION, "ReviseEvaluation", &[Admin, QaReviewer]),
    (EVALUATION, "DeleteEvaluation", &[Admin, QaReviewer]),
    (
        EVALUATION,
        "ImportEvaluations",
        &[Admin, QaReviewer, Integration],
    ),
    (
        ANALYTICS,
        "GetAgentScore",
        &[Admin, QaReviewer, Agent, Integration, Analyst, Service],
    ),
    (
        ANALYTICS,
        "GetTeamScore",
        &[Admin, QaReviewer, Integration, Analyst, Service],
    ),
    (ANALYTICS, "QueryScores", &[Admin, QaReviewer, Analyst]),
    (
        ANALYTICS,
        "GetCriterionBreakdown",
        &[Admin, QaReviewer, Analyst],
    ),
    (
        ANALYTICS,
        "GetCsatCorrelation",
        &[Admin, QaReviewer, Analyst],
    ),
    (
        ANALYTICS,
        "ExportEvaluations",
        &[Admin, QaReviewer, Analyst],
    ),
];

/// Services anyone may call without a key: health checks and reflection.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Whether `role` may call the method at `path` (`/package.Service/Method`). Unknown
/// methods are refused.
pub fn may_call(role: Role, path: &str) -> bool {
    MATRIX
        .iter()
        .find(|(service, method, _)| path.strip_prefix(service) == Some(method))
        .is_some_and(|(_, _, roles)| roles.contains(&role))
}

/// Whether a role writes data (for the audit log) when it calls `path`.
pub fn is_write(path: &str) -> bool {
    const WRITES: [&str; 9] = [
        "CreateRubric",
        "UpdateRubricDraft",
        "PublishRubric",
        "ArchiveRubric",
        "UpsertInteraction",
        "SubmitEvaluation",
        "ReviseEvaluation",
        "DeleteEvaluation",
        "ImportEvaluations",
    ];
    path.rsplit('/')
        .next()
        .is_some_and(|method| WRITES.contains(&method))
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
        for (service, method, _) in MATRIX {
            assert!(may_call(Role::Admin, &format!("{service}{method}")));
        }
        assert!(!may_call(
            Role::Admin,
            "/iqs.rubric.v1.RubricService/DropEverything"
        ));
        assert!(!may_call(Role::Admin, "/other.Service/CreateRubric"));
    }

    #[test]
    fn the_service_role_reads_agent_and_team_scores_only() {
        let allowed: Vec<&str> = MATRIX
            .iter()
            .filter(|(_, _, roles)| roles.contains(&Role::Service))
            .map(|(_, method, _)| *method)
            .collect();
        assert_eq!(allowed, ["GetAgentScore", "GetTeamScore"]);
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
