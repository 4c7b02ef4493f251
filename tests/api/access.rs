//! Tenants, API keys, roles, rate limits and the audit log, against the real server.

use std::time::{Duration, Instant};

use iqs::auth::limits::{Rate, RoleRates};
use iqs::domain::access::{MATRIX, Role};
use iqs::proto::{
    analytics::{self as an, analytics_service_client::AnalyticsServiceClient},
    evaluation::{
        self as ev, assignment_service_client::AssignmentServiceClient,
        calibration_service_client::CalibrationServiceClient,
        coaching_service_client::CoachingServiceClient,
        dispute_service_client::DisputeServiceClient,
        evaluation_service_client::EvaluationServiceClient,
        submit_evaluation_request::InteractionRef,
    },
    integration::{self as wh, webhook_service_client::WebhookServiceClient},
    rubric::{self as rb, rubric_service_client::RubricServiceClient},
};
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::{
    AppOptions, Authed, Backend, TestApp, published_rubric, rating, spawn_app_on, spawn_app_with,
    submission, with_key,
};

/// Ids of real resources, so that an allowed call can succeed.
#[derive(Default, Clone)]
struct Ids {
    rubric: String,
    interaction: String,
    evaluation: String,
}

/// Calls `method` with a request built from `ids`; only the status matters.
async fn call(method: &str, channel: Authed, ids: &Ids) -> Result<(), Status> {
    let mut rubrics = RubricServiceClient::new(channel.clone());
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let mut calibrations = CalibrationServiceClient::new(channel.clone());
    let mut disputes = DisputeServiceClient::new(channel.clone());
    let mut coaching = CoachingServiceClient::new(channel.clone());
    let mut assignments = AssignmentServiceClient::new(channel.clone());
    let mut webhooks = WebhookServiceClient::new(channel.clone());
    let mut analytics = AnalyticsServiceClient::new(channel);
    let id = ids.rubric.clone();
    let own_submission = || {
        let mut request = submission(
            &ids.rubric,
            &format!("M-{}", uuid::Uuid::now_v7().simple()),
            1,
            4,
        );
        request.kind = ev::EvaluationKind::Self_ as i32;
        request.reviewer_id = "agent-1".into();
        request
    };
    match method {
        "CreateRubric" => rubrics
            .create_rubric(crate::helpers::new_rubric(
                "M",
                crate::helpers::draft(vec![]),
            ))
            .await
            .map(drop),
        "GetRubric" => rubrics
            .get_rubric(rb::GetRubricRequest { id })
            .await
            .map(drop),
        "ListRubrics" => rubrics
            .list_rubrics(rb::ListRubricsRequest::default())
            .await
            .map(drop),
        "UpdateRubricDraft" => rubrics
            .update_rubric_draft(rb::UpdateRubricDraftRequest {
                id,
                draft: Some(crate::helpers::draft(vec![crate::helpers::criterion(
                    "greeting", 1, 0, 1,
                )])),
                update_mask: None,
            })
            .await
            .map(drop),
        "PublishRubric" => rubrics
            .publish_rubric(rb::PublishRubricRequest { id })
            .await
            .map(drop),
        "GetRubricVersion" => rubrics
            .get_rubric_version(rb::GetRubricVersionRequest {
                rubric_id: id,
                version: 1,
            })
            .await
            .map(drop),
        "ListRubricVersions" => rubrics
            .list_rubric_versions(rb::ListRubricVersionsRequest {
                rubric_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
        "ArchiveRubric" => rubrics
            .archive_rubric(rb::ArchiveRubricRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "UpsertInteraction" => evaluations
            .upsert_interaction(ev::UpsertInteractionRequest {
                interaction: Some(crate::helpers::interaction("M-1", "agent-1")),
            })
            .await
            .map(drop),
        "GetInteraction" => evaluations
            .get_interaction(ev::GetInteractionRequest {
                id: ids.interaction.clone(),
            })
            .await
            .map(drop),
        "SubmitEvaluation" => evaluations
            .submit_evaluation(own_submission())
            .await
            .map(drop),
        "ScoreEvaluation" => evaluations
            .score_evaluation(ev::ScoreEvaluationRequest {
                rubric_id: id,
                rubric_version: 0,
                ratings: vec![rating("greeting", 1), rating("empathy", 4)],
            })
            .await
            .map(drop),
        "GetEvaluation" => evaluations
            .get_evaluation(ev::GetEvaluationRequest {
                id: ids.evaluation.clone(),
                revision: 0,
            })
            .await
            .map(drop),
        "ListEvaluations" => evaluations
            .list_evaluations(ev::ListEvaluationsRequest::default())
            .await
            .map(drop),
        "ReviseEvaluation" => evaluations
            .revise_evaluation(ev::ReviseEvaluationRequest {
                id: ids.evaluation.clone(),
                request_id: String::new(),
                ratings: vec![rating("greeting", 1), rating("empathy", 4)],
                comment: String::new(),
                reason: "matrix".into(),
            })
            .await
            .map(drop),
        "DeleteEvaluation" => evaluations
            .delete_evaluation(ev::DeleteEvaluationRequest {
                id: uuid::Uuid::now_v7().to_string(),
                reason: "matrix".into(),
            })
            .await
            .map(drop),
        "AutoScoreInteraction" => evaluations
            .auto_score_interaction(ev::AutoScoreInteractionRequest {
                interaction_id: ids.interaction.clone(),
                rubric_id: ids.rubric.clone(),
                rubric_version: 0,
            })
            .await
            .map(drop),
        "ImportEvaluations" => evaluations
            .import_evaluations(tokio_stream::iter(vec![own_submission()]))
            .await
            .map(drop),
        "GetAgentScore" => analytics
            .get_agent_score(an::GetAgentScoreRequest {
                agent_id: "agent-1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "BatchGetAgentScores" => analytics
            .batch_get_agent_scores(an::BatchGetAgentScoresRequest {
                agent_ids: vec!["agent-1".into()],
                ..Default::default()
            })
            .await
            .map(drop),
        "GetTeamScore" => analytics
            .get_team_score(an::GetTeamScoreRequest {
                team_id: "tier1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "QueryScores" => analytics
            .query_scores(an::QueryScoresRequest::default())
            .await
            .map(drop),
        "GetCriterionBreakdown" => analytics
            .get_criterion_breakdown(an::GetCriterionBreakdownRequest::default())
            .await
            .map(drop),
        "GetCsatCorrelation" => analytics
            .get_csat_correlation(an::GetCsatCorrelationRequest::default())
            .await
            .map(drop),
        "ExportEvaluations" => {
            let mut stream = analytics
                .export_evaluations(an::ExportEvaluationsRequest::default())
                .await?
                .into_inner();
            while let Some(row) = stream.next().await {
                row?;
            }
            Ok(())
        }
        "AcknowledgeEvaluation" => evaluations
            .acknowledge_evaluation(ev::AcknowledgeEvaluationRequest {
                id: ids.evaluation.clone(),
            })
            .await
            .map(drop),
        "GetAutoQaAgreement" => analytics
            .get_auto_qa_agreement(an::GetAutoQaAgreementRequest {
                rubric_id: ids.rubric.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetCalibrationReport" => analytics
            .get_calibration_report(an::GetCalibrationReportRequest {
                session_id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "CreateCalibrationSession" => calibrations
            .create_calibration_session(ev::CreateCalibrationSessionRequest {
                request_id: String::new(),
                session: Some(ev::CalibrationSession {
                    display_name: "matrix".into(),
                    rubric_id: ids.rubric.clone(),
                    interaction_ids: vec![ids.interaction.clone()],
                    reviewer_ids: vec!["rev-a".into(), "rev-b".into()],
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "GetCalibrationSession" => calibrations
            .get_calibration_session(ev::GetCalibrationSessionRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "ListCalibrationSessions" => calibrations
            .list_calibration_sessions(ev::ListCalibrationSessionsRequest::default())
            .await
            .map(drop),
        "CloseCalibrationSession" => calibrations
            .close_calibration_session(ev::CloseCalibrationSessionRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "OpenDispute" => disputes
            .open_dispute(ev::OpenDisputeRequest {
                evaluation_id: ids.evaluation.clone(),
                comment: "matrix".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ResolveDispute" => disputes
            .resolve_dispute(ev::ResolveDisputeRequest {
                id: uuid::Uuid::now_v7().to_string(),
                outcome: ev::DisputeOutcome::Rejected as i32,
                comment: "matrix".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "WithdrawDispute" => disputes
            .withdraw_dispute(ev::WithdrawDisputeRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "GetDispute" => disputes
            .get_dispute(ev::GetDisputeRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "ListDisputes" => disputes
            .list_disputes(ev::ListDisputesRequest::default())
            .await
            .map(drop),
        "GetDisputeSummary" => analytics
            .get_dispute_summary(an::GetDisputeSummaryRequest::default())
            .await
            .map(drop),
        "CreateCoachingSession" => coaching
            .create_coaching_session(ev::CreateCoachingSessionRequest {
                request_id: String::new(),
                session: Some(ev::CoachingSession {
                    agent_id: "agent-1".into(),
                    coach_id: "lead".into(),
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "UpdateActionItem" => coaching
            .update_action_item(ev::UpdateActionItemRequest {
                session_id: uuid::Uuid::now_v7().to_string(),
                action_item_id: uuid::Uuid::now_v7().to_string(),
                done: true,
            })
            .await
            .map(drop),
        "ListCoachingSessions" => coaching
            .list_coaching_sessions(ev::ListCoachingSessionsRequest::default())
            .await
            .map(drop),
        "GetCoachingSession" => coaching
            .get_coaching_session(ev::GetCoachingSessionRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "GetCoachingImpact" => analytics
            .get_coaching_impact(an::GetCoachingImpactRequest {
                session_id: uuid::Uuid::now_v7().to_string(),
                window_days: 0,
            })
            .await
            .map(drop),
        "CreateSamplingPlan" => assignments
            .create_sampling_plan(ev::CreateSamplingPlanRequest {
                request_id: String::new(),
                plan: Some(ev::SamplingPlan {
                    display_name: "matrix".into(),
                    rubric_id: ids.rubric.clone(),
                    per_agent_count: 1,
                    period: ev::SamplingPeriod::Week as i32,
                    strategy: ev::SamplingStrategy::Random as i32,
                    reviewer_ids: vec!["rev-a".into()],
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "GetSamplingPlan" => assignments
            .get_sampling_plan(ev::GetSamplingPlanRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "ListSamplingPlans" => assignments
            .list_sampling_plans(ev::ListSamplingPlansRequest::default())
            .await
            .map(drop),
        "RunSampling" => assignments
            .run_sampling(ev::RunSamplingRequest {
                plan_id: uuid::Uuid::now_v7().to_string(),
                period_start: None,
            })
            .await
            .map(drop),
        "ListAssignments" => assignments
            .list_assignments(ev::ListAssignmentsRequest::default())
            .await
            .map(drop),
        "NextAssignment" => assignments
            .next_assignment(ev::NextAssignmentRequest {
                reviewer_id: "rev-a".into(),
            })
            .await
            .map(drop),
        "SkipAssignment" => assignments
            .skip_assignment(ev::SkipAssignmentRequest {
                id: uuid::Uuid::now_v7().to_string(),
                reason: "matrix".into(),
            })
            .await
            .map(drop),
        "GetAssignmentCoverage" => analytics
            .get_assignment_coverage(an::GetAssignmentCoverageRequest {
                plan_id: uuid::Uuid::now_v7().to_string(),
                period_start: None,
            })
            .await
            .map(drop),
        "CreateWebhook" => webhooks
            .create_webhook(wh::CreateWebhookRequest {
                request_id: String::new(),
                webhook: Some(wh::Webhook {
                    url: "https://hooks.example.com/iqs".into(),
                    event_types: vec!["evaluation.created".into()],
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "ListWebhooks" => webhooks
            .list_webhooks(wh::ListWebhooksRequest::default())
            .await
            .map(drop),
        "DeleteWebhook" => webhooks
            .delete_webhook(wh::DeleteWebhookRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop),
        "ListWebhookDeliveries" => webhooks
            .list_webhook_deliveries(wh::ListWebhookDeliveriesRequest {
                webhook_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            })
            .await
            .map(drop),
        other => panic!("the matrix test does not know {other}"),
    }
}

async fn resources(app: &TestApp) -> Ids {
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "R-1", 1, 4))
        .await
        .unwrap()
        .into_inner();
    Ids {
        rubric: rubric.id,
        interaction: evaluation.interaction_id.clone(),
        evaluation: evaluation.id,
    }
}

async fn every_cell_of_the_role_matrix_is_enforced(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let ids = resources(&app).await;
    let mut checked = 0;
    for role in Role::ALL {
        let agent = (role == Role::Agent).then_some("agent-1");
        let channel = app.channel_as(role, agent).await;
        for rpc in MATRIX {
            let (method, roles) = (rpc.method, rpc.roles);
            let outcome = call(method, channel.clone(), &ids).await;
            let code = outcome.as_ref().err().map(Status::code);
            if roles.contains(&role) {
                assert!(
                    !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
                    "{role} may call {method}, got {outcome:?}"
                );
            } else {
                assert_eq!(
                    code,
                    Some(Code::PermissionDenied),
                    "{role} may not call {method}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, Role::ALL.len() * MATRIX.len());
}

#[tokio::test]
async fn the_matrix_in_the_security_docs_is_the_one_enforced() {
    let docs = include_str!("../../docs/SECURITY.md");
    let section = docs
        .split("\n## ")
        .find(|section| section.starts_with("Roles × RPCs"))
        .expect("docs/SECURITY.md has a section \"Roles × RPCs\"");
    let mut documented: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .collect();
    let mut enforced: Vec<&str> = MATRIX.iter().map(|rpc| rpc.method).collect();
    documented.sort_unstable();
    enforced.sort_unstable();
    assert_eq!(documented, enforced, "one row per RPC in docs/SECURITY.md");
    for rpc in MATRIX {
        let (method, roles) = (rpc.method, rpc.roles);
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{method}` |")))
            .unwrap_or_else(|| panic!("docs/SECURITY.md has no row for {method}"));
        let cells: Vec<&str> = row
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .skip(2)
            .collect();
        for (role, cell) in Role::ALL.iter().zip(cells) {
            assert_eq!(
                cell == "✓",
                roles.contains(role),
                "{method} × {role} in docs/SECURITY.md"
            );
        }
    }
}

async fn calls_without_a_valid_key_are_unauthenticated_and_say_nothing_more(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let ids = resources(&app).await;
    let unknown = iqs::auth::keys::generate(app.tenant).unwrap().key;
    let mut messages = Vec::new();
    for key in [
        None,
        Some("not-a-key"),
        Some("Bearer"),
        Some(unknown.as_str()),
    ] {
        let channel = match key {
            Some(key) => with_key(app.raw_channel.clone(), key),
            None => tonic::service::interceptor::InterceptedService::new(
                app.raw_channel.clone(),
                crate::helpers::Bearer(None),
            ),
        };
        let status = call("GetRubric", channel, &ids).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{key:?}");
        messages.push(status.message().to_owned());
    }
    // The same answer whatever was wrong: nothing about whether a tenant or key exists.
    assert!(messages.iter().all(|m| *m == messages[0]));
}

async fn a_revoked_key_is_refused_within_5_seconds(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let ids = resources(&app).await;
    let key = crate::helpers::create_key(app.store.as_ref(), app.tenant, Role::Analyst, None).await;
    let channel = with_key(app.raw_channel.clone(), &key);
    call("GetRubric", channel.clone(), &ids).await.unwrap();
    let parsed = iqs::auth::keys::parse(&key).unwrap();
    assert!(app.store().revoke_key(parsed.key_id).await.unwrap());
    let revoked = Instant::now();
    loop {
        match call("GetRubric", channel.clone(), &ids).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            _ => assert!(
                revoked.elapsed() < Duration::from_secs(5),
                "still accepted after 5 s"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn an_agent_key_sees_only_its_own_score_and_evaluations(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    for (n, agent) in ["agent-a", "agent-b"].iter().enumerate() {
        let mut request = submission(&rubric.id, &format!("AG-{n}"), 1, 4);
        if let Some(InteractionRef::Interaction(inline)) = request.interaction_ref.as_mut() {
            inline.agent_id = (*agent).into();
        }
        app.evaluations().submit_evaluation(request).await.unwrap();
    }
    let agent_a = app.channel_as(Role::Agent, Some("agent-a")).await;
    let mut analytics = AnalyticsServiceClient::new(agent_a.clone());
    let denied = analytics
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "agent-b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    analytics
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "agent-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut evaluations = EvaluationServiceClient::new(agent_a);
    let listed = evaluations
        .list_evaluations(ev::ListEvaluationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .evaluations;
    assert_eq!(listed.len(), 1);
    assert!(listed.iter().all(|e| e.agent_id == "agent-a"));
    let denied = evaluations
        .list_evaluations(ev::ListEvaluationsRequest {
            agent_id: "agent-b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let b_evaluation = app
        .evaluations()
        .list_evaluations(ev::ListEvaluationsRequest {
            agent_id: "agent-b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluations
        .remove(0);
    let hidden = evaluations
        .get_evaluation(ev::GetEvaluationRequest {
            id: b_evaluation.id,
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    // An agent submits SELF reviews of itself only.
    let mut manual = submission(&rubric.id, "AG-9", 1, 4);
    if let Some(InteractionRef::Interaction(inline)) = manual.interaction_ref.as_mut() {
        inline.agent_id = "agent-a".into();
    }
    manual.reviewer_id = "agent-a".into();
    assert_eq!(
        evaluations
            .submit_evaluation(manual.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    manual.kind = ev::EvaluationKind::Self_ as i32;
    evaluations.submit_evaluation(manual.clone()).await.unwrap();
    let mut other = manual;
    other.request_id = uuid::Uuid::now_v7().to_string();
    if let Some(InteractionRef::Interaction(inline)) = other.interaction_ref.as_mut() {
        inline.agent_id = "agent-b".into();
    }
    assert_eq!(
        evaluations
            .submit_evaluation(other)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
}

async fn ids_of_another_tenant_answer_not_found_on_every_rpc(backend: Backend) {
    let first = spawn_app_on(backend).await;
    let ids = resources(&first).await;
    let second = spawn_app_with(AppOptions {
        backend,
        database_url: Some(first.database_url.clone()),
        ..AppOptions::default()
    })
    .await;
    for rpc in MATRIX {
        let method = rpc.method;
        let outcome = call(method, second.channel.clone(), &ids).await;
        match method {
            "GetRubric"
            | "UpdateRubricDraft"
            | "PublishRubric"
            | "GetRubricVersion"
            | "ListRubricVersions"
            | "GetInteraction"
            | "GetEvaluation"
            | "ReviseEvaluation"
            | "ScoreEvaluation"
            | "SubmitEvaluation"
            | "OpenDispute"
            | "AutoScoreInteraction" => {
                assert_eq!(outcome.unwrap_err().code(), Code::NotFound, "{method}");
            }
            "ImportEvaluations" => {
                outcome.unwrap();
            }
            _ => {
                outcome.unwrap_or_else(|status| {
                    assert_eq!(status.code(), Code::NotFound, "{method}");
                });
            }
        }
    }
    // Listings and figures of the second tenant show nothing of the first.
    let rubrics = RubricServiceClient::new(second.channel.clone())
        .list_rubrics(rb::ListRubricsRequest {
            include_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rubrics.rubrics.iter().all(|r| r.id != ids.rubric));
    let evaluations = EvaluationServiceClient::new(second.channel.clone())
        .list_evaluations(ev::ListEvaluationsRequest {
            include_inactive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        evaluations
            .evaluations
            .iter()
            .all(|e| e.id != ids.evaluation)
    );
    let score = AnalyticsServiceClient::new(second.channel.clone())
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(score.evaluation_count, 0);
}

async fn a_key_over_its_rate_gets_resource_exhausted_with_retry_info(backend: Backend) {
    let app = spawn_app_with(AppOptions {
        backend,
        rate_limits: RoleRates {
            analyst: Rate {
                per_second: 1.0,
                burst: 3.0,
            },
            ..RoleRates::default()
        },
        ..AppOptions::default()
    })
    .await;
    let ids = resources(&app).await;
    let channel = app.channel_as(Role::Analyst, None).await;
    for _ in 0..3 {
        call("ListRubrics", channel.clone(), &ids).await.unwrap();
    }
    let status = call("ListRubrics", channel.clone(), &ids)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status
        .get_details_retry_info()
        .expect("RetryInfo")
        .retry_delay
        .unwrap();
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1));
    // Other keys are not slowed down.
    call("ListRubrics", app.channel.clone(), &ids)
        .await
        .unwrap();
}

async fn every_write_is_in_the_audit_log_with_key_role_and_request_id(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut request = tonic::Request::new(submission(&rubric.id, "AU-1", 1, 4));
    request
        .metadata_mut()
        .insert("x-request-id", "req-audit-1".parse().unwrap());
    let response = app.evaluations().submit_evaluation(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "req-audit-1"
    );
    let refused = app
        .evaluations()
        .delete_evaluation(ev::DeleteEvaluationRequest {
            id: uuid::Uuid::now_v7().to_string(),
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    app.rubrics()
        .list_rubrics(rb::ListRubricsRequest::default())
        .await
        .unwrap();

    let entries = app.store().list_audit(Some(app.tenant), 100).await.unwrap();
    let rpcs: Vec<&str> = entries.iter().rev().map(|e| e.rpc.as_str()).collect();
    assert_eq!(
        rpcs,
        [
            "CreateRubric",
            "PublishRubric",
            "SubmitEvaluation",
            "DeleteEvaluation"
        ]
    );
    let admin_key = iqs::auth::keys::parse(&app.admin_key).unwrap().key_id;
    assert!(
        entries
            .iter()
            .all(|e| e.key_id == Some(admin_key) && e.role == Role::Admin)
    );
    let submit = entries
        .iter()
        .find(|e| e.rpc == "SubmitEvaluation")
        .unwrap();
    assert_eq!(
        (submit.request_id.as_str(), submit.status_code),
        ("req-audit-1", 0)
    );
    let delete = entries
        .iter()
        .find(|e| e.rpc == "DeleteEvaluation")
        .unwrap();
    assert_eq!(delete.status_code, Code::NotFound as i32);
}

async fn a_write_the_callers_role_may_not_make_is_in_the_audit_log_as_permission_denied(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let analyst = app.channel_as(Role::Analyst, None).await;
    let mut request = tonic::Request::new(submission(&rubric.id, "AU-D", 1, 4));
    request
        .metadata_mut()
        .insert("x-request-id", "req-denied-1".parse().unwrap());
    let denied = EvaluationServiceClient::new(analyst)
        .submit_evaluation(request)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let entries = app.store().list_audit(Some(app.tenant), 100).await.unwrap();
    let attempt = entries
        .iter()
        .find(|e| e.request_id == "req-denied-1")
        .expect("the refused attempt is in the audit log");
    assert_eq!(
        (
            attempt.rpc.as_str(),
            attempt.role,
            attempt.status_code,
            attempt.key_id.is_some()
        ),
        (
            "SubmitEvaluation",
            Role::Analyst,
            Code::PermissionDenied as i32,
            true
        )
    );
    assert_eq!(app.count("evaluation.evaluations").await, 0);
}

async fn concurrent_writes_each_have_their_own_audit_entry_before_they_are_answered(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..24 {
        let mut evaluations = app.evaluations();
        let mut request = tonic::Request::new(submission(&rubric.id, &format!("AU-C{n}"), 1, 4));
        request.metadata_mut().insert(
            "x-request-id",
            format!("req-concurrent-{n}").parse().unwrap(),
        );
        calls.spawn(async move { evaluations.submit_evaluation(request).await.map(|_| ()) });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap().unwrap();
    }
    // Read as soon as the last answer arrived: each entry is stored before its answer.
    let entries = app.store().list_audit(Some(app.tenant), 100).await.unwrap();
    let mut request_ids: Vec<&str> = entries
        .iter()
        .filter(|e| e.rpc == "SubmitEvaluation")
        .map(|e| e.request_id.as_str())
        .collect();
    request_ids.sort_unstable();
    let mut expected: Vec<String> = (0..24).map(|n| format!("req-concurrent-{n}")).collect();
    expected.sort_unstable();
    assert_eq!(request_ids, expected);
}

async fn keys_never_reach_the_logs(backend: Backend) {
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app_on(backend).await;
    let tenant_name = format!("logs-{}", uuid::Uuid::now_v7().simple());
    let iqs = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_iqs"));
        command
            .args(args)
            .env("DATABASE_URL", &app.database_url)
            .env_remove("IQS_CONFIG");
        command
    };
    assert!(
        iqs(&["tenant", "create", &tenant_name])
            .output()
            .await
            .unwrap()
            .status
            .success()
    );
    let created = iqs(&["key", "create", "--tenant", &tenant_name, "--role", "admin"])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    let secret = iqs::auth::keys::parse(&key)
        .expect("the last line is the key")
        .secret;

    let mut server = iqs(&["serve"])
        .env("IQS_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace")
        .env("IQS_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("\"address\":\"").nth(1)
                && let Some(tx) = address_tx.take()
            {
                let _ = tx.send(rest.split('"').next().unwrap_or_default().to_owned());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let address = tokio::time::timeout(Duration::from_secs(30), address_rx)
        .await
        .unwrap()
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let wrong = format!("{}x", &key[..key.len() - 1]);
    for key in [key.as_str(), wrong.as_str()] {
        let _ = RubricServiceClient::new(with_key(channel.clone(), key))
            .list_rubrics(rb::ListRubricsRequest::default())
            .await;
    }
    let _ = server.start_kill();
    let _ = server.wait().await;
    let text = logs.await.unwrap();
    assert!(text.len() > 1000, "trace logs were captured");
    assert!(!text.contains(&secret), "a key secret reached the logs");
    assert!(
        !text.contains(&wrong[wrong.len() - 20..]),
        "a presented key reached the logs"
    );
    // The key is shown once, alone on the last line, and nowhere else.
    assert_eq!(stdout.matches(&secret).count(), 1);
}

crate::on_every_store! {
    every_cell_of_the_role_matrix_is_enforced,
    calls_without_a_valid_key_are_unauthenticated_and_say_nothing_more,
    a_revoked_key_is_refused_within_5_seconds,
    an_agent_key_sees_only_its_own_score_and_evaluations,
    ids_of_another_tenant_answer_not_found_on_every_rpc,
    a_key_over_its_rate_gets_resource_exhausted_with_retry_info,
    every_write_is_in_the_audit_log_with_key_role_and_request_id,
    a_write_the_callers_role_may_not_make_is_in_the_audit_log_as_permission_denied,
    concurrent_writes_each_have_their_own_audit_entry_before_they_are_answered,
    keys_never_reach_the_logs,
}
