//! Calibration sessions through the real server: the rules a calibration review
//! follows, blind review for reviewer-bound keys, and the agreement report.

use iqs::domain::access::Role;
use iqs::proto::analytics as an;
use iqs::proto::evaluation::{self as pb, submit_evaluation_request::InteractionRef};
use iqs::proto::rubric as rb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Authed, Backend, TestApp, criterion, draft, interaction, new_rubric, rating, spawn_app_on,
    violated_fields,
};

crate::on_every_store!(
    krippendorffs_reference_example_through_the_api_gives_nominal_0_743_ordinal_0_815_interval_0_849,
    calibration_reviews_follow_the_sessions_rules_each_refusal_naming_its_field,
    a_reviewer_bound_key_submits_only_as_itself_and_is_blind_to_others_until_the_session_closes,
    sessions_are_listed_newest_first_by_state_and_a_retried_creation_returns_the_first,
    the_store_itself_refuses_a_review_in_a_closed_session_and_a_second_review_of_a_cell,
);

/// Krippendorff (2011): 4 coders × 12 units on a 1..5 scale; `None` = not rated.
const REFERENCE: [[Option<i32>; 12]; 4] = {
    const N: Option<i32> = None;
    [
        [
            Some(1),
            Some(2),
            Some(3),
            Some(3),
            Some(2),
            Some(1),
            Some(4),
            Some(1),
            Some(2),
            N,
            N,
            N,
        ],
        [
            Some(1),
            Some(2),
            Some(3),
            Some(3),
            Some(2),
            Some(2),
            Some(4),
            Some(1),
            Some(2),
            Some(5),
            N,
            Some(3),
        ],
        [
            N,
            Some(3),
            Some(3),
            Some(3),
            Some(2),
            Some(3),
            Some(4),
            Some(2),
            Some(2),
            Some(5),
            Some(1),
            N,
        ],
        [
            Some(1),
            Some(2),
            Some(3),
            Some(3),
            Some(2),
            Some(4),
            Some(4),
            Some(1),
            Some(2),
            Some(5),
            Some(1),
            N,
        ],
    ]
};
const CODERS: [&str; 4] = ["rev-a", "rev-b", "rev-c", "rev-d"];

/// A published rubric with one criterion `c` on 1..5; its id.
async fn one_criterion_rubric(app: &TestApp) -> String {
    let mut rubrics = app.rubrics();
    let rubric = rubrics
        .create_rubric(new_rubric(
            "Calibration",
            draft(vec![criterion("c", 1, 1, 5)]),
        ))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap();
    rubric.id
}

async fn interactions(app: &TestApp, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for index in 0..count {
        let stored = app
            .evaluations()
            .upsert_interaction(pb::UpsertInteractionRequest {
                interaction: Some(interaction(
                    &format!("cal-{}-{index}", Uuid::now_v7()),
                    "agent-1",
                )),
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(stored.id);
    }
    ids
}

async fn open_session(
    app: &TestApp,
    rubric_id: &str,
    interaction_ids: &[String],
    reviewers: &[&str],
    baseline: &str,
) -> pb::CalibrationSession {
    app.calibrations()
        .create_calibration_session(pb::CreateCalibrationSessionRequest {
            request_id: Uuid::now_v7().to_string(),
            session: Some(pb::CalibrationSession {
                display_name: "Weekly calibration".into(),
                rubric_id: rubric_id.into(),
                interaction_ids: interaction_ids.to_vec(),
                reviewer_ids: reviewers.iter().map(|r| r.to_string()).collect(),
                baseline_reviewer_id: baseline.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create session")
        .into_inner()
}

fn review(
    session: &pb::CalibrationSession,
    interaction_id: &str,
    reviewer: &str,
    value: i32,
) -> pb::SubmitEvaluationRequest {
    pb::SubmitEvaluationRequest {
        request_id: Uuid::now_v7().to_string(),
        interaction_ref: Some(InteractionRef::InteractionId(interaction_id.into())),
        rubric_id: session.rubric_id.clone(),
        reviewer_id: reviewer.into(),
        kind: pb::EvaluationKind::Calibration as i32,
        ratings: vec![rating("c", value)],
        calibration_session_id: session.id.clone(),
        ..Default::default()
    }
}

async fn report(app: &TestApp, session: &pb::CalibrationSession) -> an::CalibrationReport {
    app.analytics()
        .get_calibration_report(an::GetCalibrationReportRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("report")
        .into_inner()
}

fn close_to(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|actual| (actual - expected).abs() < 5e-4)
}

async fn krippendorffs_reference_example_through_the_api_gives_nominal_0_743_ordinal_0_815_interval_0_849(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let rubric_id = one_criterion_rubric(&app).await;
    let units = interactions(&app, 12).await;
    let session = open_session(&app, &rubric_id, &units, &CODERS, "rev-a").await;
    for (coder, values) in CODERS.iter().zip(REFERENCE) {
        for (unit, value) in units.iter().zip(values) {
            if let Some(value) = value {
                app.evaluations()
                    .submit_evaluation(review(&session, unit, coder, value))
                    .await
                    .expect("calibration review");
            }
        }
    }
    let report = report(&app, &session).await;
    assert_eq!((report.unit_count, report.reviewer_count), (12, 4));
    let c = &report.criteria[0];
    assert_eq!(c.criterion_key, "c");
    assert_eq!(c.pairable_count, 40);
    assert!(close_to(c.alpha_nominal, 0.743), "{c:?}");
    assert!(close_to(c.alpha_ordinal, 0.8154), "{c:?}");
    assert!(close_to(c.alpha_interval, 0.8491), "{c:?}");
    assert!(c.alpha_interval_low.unwrap() <= c.alpha_interval.unwrap());
    assert!(c.alpha_interval_high.unwrap() >= c.alpha_interval.unwrap());
    // Scores are a linear map of the one rating: interval alpha does not change.
    assert!(close_to(report.score_alpha_interval, 0.8491), "{report:?}");
    let baseline = &report.reviewers[0];
    assert_eq!(baseline.reviewer_id, "rev-a");
    assert_eq!(baseline.mean_deviation_from_baseline, None);
    let rev_c = report
        .reviewers
        .iter()
        .find(|r| r.reviewer_id == "rev-c")
        .unwrap();
    assert_eq!(rev_c.evaluation_count, 10);
    // rev-c rates above rev-a on units 2, 6 and 8 and never below: lenient.
    assert!(
        rev_c.mean_deviation_from_baseline.unwrap() > 0.0,
        "{rev_c:?}"
    );
    // The report is computed the same way each time (the bootstrap is seeded).
    assert_eq!(report, self::report(&app, &session).await);
}

async fn calibration_reviews_follow_the_sessions_rules_each_refusal_naming_its_field(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let rubric_id = one_criterion_rubric(&app).await;
    let units = interactions(&app, 3).await;
    let session = open_session(&app, &rubric_id, &units[..2], &["rev-a", "rev-b"], "").await;
    assert_eq!(session.rubric_version, 1);
    assert_eq!(session.state, pb::CalibrationSessionState::Open as i32);
    // A new version after the session began: the session stays on the one it pinned.
    let mut rubrics = app.rubrics();
    rubrics
        .update_rubric_draft(rb::UpdateRubricDraftRequest {
            id: rubric_id.clone(),
            draft: Some(draft(vec![criterion("c", 2, 1, 5)])),
            ..Default::default()
        })
        .await
        .unwrap();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric_id.clone(),
        })
        .await
        .unwrap();
    let mut evaluations = app.evaluations();
    let refusing = evaluations.clone();
    let refusal = |request: pb::SubmitEvaluationRequest| {
        let mut evaluations = refusing.clone();
        async move { evaluations.submit_evaluation(request).await.unwrap_err() }
    };
    let outsider = refusal(review(&session, &units[2], "rev-a", 3)).await;
    assert_eq!(outsider.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&outsider), ["interaction_id"]);
    let uninvited = refusal(review(&session, &units[0], "rev-z", 3)).await;
    assert_eq!(violated_fields(&uninvited), ["reviewer_id"]);
    let other_version = refusal(pb::SubmitEvaluationRequest {
        rubric_version: 2,
        ..review(&session, &units[0], "rev-a", 3)
    })
    .await;
    assert_eq!(violated_fields(&other_version), ["rubric_version"]);
    let not_calibration = refusal(pb::SubmitEvaluationRequest {
        kind: pb::EvaluationKind::Manual as i32,
        ..review(&session, &units[0], "rev-a", 3)
    })
    .await;
    assert_eq!(violated_fields(&not_calibration), ["kind"]);
    let unknown = refusal(pb::SubmitEvaluationRequest {
        calibration_session_id: Uuid::now_v7().to_string(),
        ..review(&session, &units[0], "rev-a", 3)
    })
    .await;
    assert_eq!(unknown.code(), Code::NotFound);

    let first = review(&session, &units[0], "rev-a", 3);
    let stored = evaluations
        .submit_evaluation(first.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.rubric_version, 1, "the session's pinned version");
    assert_eq!(stored.calibration_session_id, session.id);
    let retried = evaluations
        .submit_evaluation(first.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.id, stored.id);
    let second = refusal(review(&session, &units[0], "rev-a", 4)).await;
    assert_eq!(second.code(), Code::AlreadyExists);
    assert!(second.message().contains("ReviseEvaluation"), "{second:?}");

    let closed = app
        .calibrations()
        .close_calibration_session(pb::CloseCalibrationSessionRequest {
            id: session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, pb::CalibrationSessionState::Closed as i32);
    assert!(closed.close_time.is_some());
    let late = refusal(review(&session, &units[1], "rev-b", 3)).await;
    assert_eq!(late.code(), Code::FailedPrecondition);
    // A retry of a review made while the session was open is still answered.
    let retried_after_close = evaluations
        .submit_evaluation(first)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried_after_close.id, stored.id);
    // Calibration reviews never enter IQS unless asked for by kind.
    let summary = app
        .analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.evaluation_count, 0);
}

async fn a_reviewer_bound_key_submits_only_as_itself_and_is_blind_to_others_until_the_session_closes(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let rubric_id = one_criterion_rubric(&app).await;
    let units = interactions(&app, 1).await;
    let session = open_session(&app, &rubric_id, &units, &["rev-a", "rev-b"], "rev-a").await;
    let as_a: Authed = app.channel_as(Role::QaReviewer, Some("rev-a")).await;
    let mut a = pb::evaluation_service_client::EvaluationServiceClient::new(as_a.clone());
    let own = a
        .submit_evaluation(review(&session, &units[0], "", 3))
        .await
        .expect("an empty reviewer_id is the key's own")
        .into_inner();
    assert_eq!(own.reviewer_id, "rev-a");
    let as_other = a
        .submit_evaluation(review(&session, &units[0], "rev-b", 3))
        .await
        .unwrap_err();
    assert_eq!(as_other.code(), Code::PermissionDenied);
    let others = app
        .evaluations()
        .submit_evaluation(review(&session, &units[0], "rev-b", 5))
        .await
        .unwrap()
        .into_inner();

    let listed = |client: &mut pb::evaluation_service_client::EvaluationServiceClient<Authed>| {
        let mut client = client.clone();
        async move {
            let response = client
                .list_evaluations(pb::ListEvaluationsRequest {
                    kinds: vec![pb::EvaluationKind::Calibration as i32],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut reviewers: Vec<String> = response
                .evaluations
                .into_iter()
                .map(|e| e.reviewer_id)
                .collect();
            reviewers.sort();
            reviewers
        }
    };
    assert_eq!(listed(&mut a).await, ["rev-a"]);
    assert_eq!(listed(&mut app.evaluations()).await, ["rev-a", "rev-b"]);
    let hidden = a
        .get_evaluation(pb::GetEvaluationRequest {
            id: others.id.clone(),
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let revise_other = a
        .revise_evaluation(pb::ReviseEvaluationRequest {
            id: others.id.clone(),
            request_id: Uuid::now_v7().to_string(),
            ratings: vec![rating("c", 1)],
            comment: String::new(),
            reason: "not mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(revise_other.code(), Code::PermissionDenied);
    let delete_other = a
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: others.id.clone(),
            reason: "not mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(delete_other.code(), Code::PermissionDenied);
    let mut a_analytics = an::analytics_service_client::AnalyticsServiceClient::new(as_a.clone());
    let request = an::GetCalibrationReportRequest {
        session_id: session.id.clone(),
    };
    let blind = a_analytics
        .get_calibration_report(request.clone())
        .await
        .unwrap_err();
    assert_eq!(blind.code(), Code::PermissionDenied);
    let mut a_sessions = pb::calibration_service_client::CalibrationServiceClient::new(as_a);
    let refused = a_sessions
        .close_calibration_session(pb::CloseCalibrationSessionRequest {
            id: session.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    app.calibrations()
        .close_calibration_session(pb::CloseCalibrationSessionRequest {
            id: session.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(listed(&mut a).await, ["rev-a", "rev-b"]);
    a.get_evaluation(pb::GetEvaluationRequest {
        id: others.id,
        revision: 0,
    })
    .await
    .expect("visible once closed");
    let report = a_analytics
        .get_calibration_report(request)
        .await
        .unwrap()
        .into_inner();
    let b = report
        .reviewers
        .iter()
        .find(|r| r.reviewer_id == "rev-b")
        .unwrap();
    assert_eq!(b.mean_deviation_from_baseline, Some(50.0));
    assert_eq!(b.within_10_share, Some(0.0));
}

async fn sessions_are_listed_newest_first_by_state_and_a_retried_creation_returns_the_first(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let rubric_id = one_criterion_rubric(&app).await;
    let units = interactions(&app, 2).await;
    let mut sessions = app.calibrations();
    let create = pb::CreateCalibrationSessionRequest {
        request_id: "calibration-week-48".into(),
        session: Some(pb::CalibrationSession {
            display_name: "Week 48".into(),
            rubric_id: rubric_id.clone(),
            interaction_ids: units.clone(),
            reviewer_ids: vec!["rev-a".into(), "rev-b".into()],
            ..Default::default()
        }),
    };
    let first = sessions
        .create_calibration_session(create.clone())
        .await
        .unwrap()
        .into_inner();
    let retried = sessions
        .create_calibration_session(create.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retried);
    let mut changed = create.clone();
    changed.session.as_mut().unwrap().display_name = "Week 49".into();
    let reused = sessions
        .create_calibration_session(changed)
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    let second = open_session(&app, &rubric_id, &units, &["rev-a", "rev-b"], "").await;
    sessions
        .close_calibration_session(pb::CloseCalibrationSessionRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();
    let list = |state: pb::CalibrationSessionState| {
        let mut sessions = sessions.clone();
        async move {
            sessions
                .list_calibration_sessions(pb::ListCalibrationSessionsRequest {
                    page_size: 1,
                    state: state as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let page = list(pb::CalibrationSessionState::Unspecified).await;
    assert_eq!(page.sessions[0].id, second.id);
    assert!(!page.next_page_token.is_empty());
    let open = list(pb::CalibrationSessionState::Open).await;
    assert_eq!(
        open.sessions.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&second.id]
    );
    assert!(open.next_page_token.is_empty());
    let closed = list(pb::CalibrationSessionState::Closed).await;
    assert_eq!(closed.sessions[0].id, first.id);

    let bad = sessions
        .create_calibration_session(pb::CreateCalibrationSessionRequest {
            request_id: String::new(),
            session: Some(pb::CalibrationSession {
                display_name: " ".into(),
                rubric_id: rubric_id.clone(),
                interaction_ids: vec!["not-a-uuid".into()],
                reviewer_ids: vec!["rev-a".into()],
                baseline_reviewer_id: "rev-z".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "session.baseline_reviewer_id",
            "session.display_name",
            "session.interaction_ids[0]",
            "session.reviewer_ids",
        ]
    );
    // Hostile input is refused by field and stores nothing: a NUL in the name, more
    // interactions than a session holds.
    let sessions_before = app.count("evaluation.calibration_sessions").await;
    let hostile = sessions
        .create_calibration_session(pb::CreateCalibrationSessionRequest {
            request_id: String::new(),
            session: Some(pb::CalibrationSession {
                display_name: "Week\u{0}48".into(),
                rubric_id: rubric_id.clone(),
                interaction_ids: (0..501).map(|_| Uuid::now_v7().to_string()).collect(),
                reviewer_ids: vec!["rev-a".into(), "rev-b".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(hostile.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&hostile);
    fields.sort();
    assert_eq!(fields, ["session.display_name", "session.interaction_ids"]);
    assert_eq!(
        app.count("evaluation.calibration_sessions").await,
        sessions_before
    );
    let typo = Uuid::now_v7().to_string();
    let unknown = sessions
        .create_calibration_session(pb::CreateCalibrationSessionRequest {
            request_id: String::new(),
            session: Some(pb::CalibrationSession {
                display_name: "Typo".into(),
                rubric_id,
                interaction_ids: vec![units[0].clone(), typo.clone()],
                reviewer_ids: vec!["rev-a".into(), "rev-b".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains(&typo), "{unknown:?}");
    assert!(!unknown.message().contains(&units[0]), "{unknown:?}");
}

/// The service checks a session before it writes; the database keeps the same rules
/// atomically with the write, for a close or a second review that lands in between.
async fn the_store_itself_refuses_a_review_in_a_closed_session_and_a_second_review_of_a_cell(
    backend: Backend,
) {
    use iqs::domain::evaluation::{EvaluationKind, InteractionRef as Ref, NewEvaluation};
    use iqs::domain::scoring::{Rating, ScoreOutcome};
    use iqs::error::Error;

    let app = spawn_app_on(backend).await;
    let rubric_id = one_criterion_rubric(&app).await;
    let units = interactions(&app, 1).await;
    let session = open_session(&app, &rubric_id, &units, &["rev-a", "rev-b"], "").await;
    let review = |reviewer: &str| NewEvaluation {
        request_id: Some(Uuid::now_v7().to_string()),
        fingerprint: Uuid::now_v7().as_bytes().to_vec(),
        interaction: Ref::Id(units[0].parse().unwrap()),
        rubric_id: rubric_id.parse().unwrap(),
        rubric_version: 1,
        reviewer_id: reviewer.into(),
        kind: EvaluationKind::Calibration,
        ratings: vec![Rating {
            criterion_key: "c".into(),
            value: Some(3),
            not_applicable: false,
            comment: String::new(),
            root_causes: Vec::new(),
            explanation: String::new(),
        }],
        comment: String::new(),
        outcome: ScoreOutcome {
            score: Some(50.0),
            section_scores: Vec::new(),
            criterion_scores: Vec::new(),
            critical_failed: false,
            passed: false,
        },
        review_time: None,
        interaction_keeps_agent: false,
        calibration_session_id: Some(session.id.parse().unwrap()),
    };
    app.store
        .submit(app.tenant, review("rev-a"))
        .await
        .expect("first review");
    let second = app
        .store
        .submit(app.tenant, review("rev-a"))
        .await
        .unwrap_err();
    assert!(matches!(second, Error::AlreadyExists(_)), "{second:?}");
    app.calibrations()
        .close_calibration_session(pb::CloseCalibrationSessionRequest {
            id: session.id.clone(),
        })
        .await
        .unwrap();
    let late = app
        .store
        .submit(app.tenant, review("rev-b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&late, Error::FailedPrecondition(message) if message.contains("closed")),
        "{late:?}"
    );
}
