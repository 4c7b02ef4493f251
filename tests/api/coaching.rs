//! Coaching sessions through the real server: recording one with its action items,
//! completing them, who sees what, and whether the coaching worked.

use iqs::domain::access::Role;
use iqs::proto::analytics::{self as an, analytics_service_client::AnalyticsServiceClient};
use iqs::proto::evaluation::{self as pb, coaching_service_client::CoachingServiceClient};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Authed, Backend, TestApp, published_rubric, spawn_app_on, submission, violated_fields,
};

crate::on_every_store!(
    coaching_impact_compares_the_agents_scores_before_and_after_the_session,
    action_items_are_completed_and_reopened_and_an_agent_sees_only_its_own_sessions,
    a_coaching_session_names_every_bad_field_and_refuses_another_agents_evaluations,
);

const DAY: i64 = 86_400;

fn days_ago(days: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - days * DAY,
        nanos: 0,
    }
}

async fn coaching_as(
    app: &TestApp,
    role: Role,
    bound_to: Option<&str>,
) -> CoachingServiceClient<Authed> {
    CoachingServiceClient::new(app.channel_as(role, bound_to).await)
}

fn session(agent: &str, evaluation_ids: Vec<String>) -> pb::CoachingSession {
    pb::CoachingSession {
        agent_id: agent.into(),
        coach_id: "lead-1".into(),
        criterion_keys: vec!["greeting".into()],
        evaluation_ids,
        notes: "Open every chat with a greeting.".into(),
        session_time: Some(days_ago(10)),
        action_items: vec![
            pb::ActionItem {
                description: "Use the greeting macro".into(),
                due_time: Some(days_ago(3)),
                ..Default::default()
            },
            pb::ActionItem {
                description: "Shadow a senior agent for an hour".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn create(session: pb::CoachingSession) -> pb::CreateCoachingSessionRequest {
    pb::CreateCoachingSessionRequest {
        request_id: Uuid::now_v7().to_string(),
        session: Some(session),
    }
}

/// Welch's t-test computed here, independently of the server: (t, df).
fn welch(before: &[f64], after: &[f64]) -> (f64, f64) {
    let stats = |values: &[f64]| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / n, n)
    };
    let (mb, sb, nb) = stats(before);
    let (ma, sa, na) = stats(after);
    let t = (ma - mb) / (sb + sa).sqrt();
    let df = (sb + sa).powi(2) / (sb * sb / (nb - 1.0) + sa * sa / (na - 1.0));
    (t, df)
}

async fn coaching_impact_compares_the_agents_scores_before_and_after_the_session(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // (days ago, greeting 0..1, empathy 1..4): score = (greeting + 2 (empathy-1)/3) / 3 * 100.
    let history = [
        (40, 1, 4), // before the window
        (30, 0, 2),
        (15, 0, 3),
        (12, 1, 2),
        (8, 1, 3),
        (5, 1, 4),
        (2, 1, 4),
    ];
    let rows: Vec<pb::SubmitEvaluationRequest> = history
        .iter()
        .enumerate()
        .map(|(index, (days, greeting, empathy))| {
            let mut row = submission(&rubric.id, &format!("C-{index}"), *greeting, *empathy);
            row.create_time = Some(days_ago(*days));
            row
        })
        .collect();
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.accepted, history.len() as u64);
    let mut lead = coaching_as(&app, Role::QaReviewer, None).await;
    let coached = lead
        .create_coaching_session(create(session("agent-1", vec![])))
        .await
        .unwrap()
        .into_inner();

    let mut agent = AnalyticsServiceClient::new(app.channel_as(Role::Agent, Some("agent-1")).await);
    let impact = agent
        .get_coaching_impact(an::GetCoachingImpactRequest {
            session_id: coached.id.clone(),
            window_days: 14,
        })
        .await
        .unwrap()
        .into_inner();
    let score =
        |greeting: f64, empathy: f64| (greeting + 2.0 * (empathy - 1.0) / 3.0) / 3.0 * 100.0;
    let before = [score(0.0, 3.0), score(1.0, 2.0)];
    let after = [score(1.0, 3.0), score(1.0, 4.0), score(1.0, 4.0)];
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (b, a) = (impact.before.unwrap(), impact.after.unwrap());
    assert_eq!(
        (b.count, a.count),
        (2, 3),
        "days 30 and 40 lie outside 14 days"
    );
    assert!((b.iqs.unwrap() - mean(&before)).abs() < 1e-9);
    assert!((a.iqs.unwrap() - mean(&after)).abs() < 1e-9);
    assert!((impact.iqs_change.unwrap() - (mean(&after) - mean(&before))).abs() < 1e-9);
    assert_eq!(b.criteria[0].criterion_key, "greeting");
    assert_eq!(b.criteria[0].average_score, Some(50.0));
    assert_eq!(a.criteria[0].average_score, Some(100.0));
    let (t, df) = welch(&before, &after);
    assert!((impact.t_statistic.unwrap() - t).abs() < 1e-9);
    assert!((impact.degrees_of_freedom.unwrap() - df).abs() < 1e-9);
    let p = impact.p_value.unwrap();
    assert!(p > 0.0 && p < 1.0, "{p}");

    // The default window is 28 days: day 30 joins the before side.
    let wide = agent
        .get_coaching_impact(an::GetCoachingImpactRequest {
            session_id: coached.id.clone(),
            window_days: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wide.before.unwrap().count, 3);

    // Under two evaluations a side there is no test.
    let narrow = agent
        .get_coaching_impact(an::GetCoachingImpactRequest {
            session_id: coached.id.clone(),
            window_days: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(narrow.before.unwrap().count, 0);
    assert_eq!(narrow.p_value, None);
    assert_eq!(narrow.iqs_change, None);

    let mut other = AnalyticsServiceClient::new(app.channel_as(Role::Agent, Some("agent-2")).await);
    let hidden = other
        .get_coaching_impact(an::GetCoachingImpactRequest {
            session_id: coached.id.clone(),
            window_days: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let refused = agent
        .get_coaching_impact(an::GetCoachingImpactRequest {
            session_id: "nope".into(),
            window_days: 366,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["session_id", "window_days"]);
}

async fn action_items_are_completed_and_reopened_and_an_agent_sees_only_its_own_sessions(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "C-LINK", 0, 2))
        .await
        .unwrap()
        .into_inner();
    let mut lead = coaching_as(&app, Role::QaReviewer, Some("lead-1")).await;
    let mut request = create(session("agent-1", vec![evaluation.id.clone()]));
    request.session.as_mut().unwrap().coach_id = String::new();
    let created = lead
        .create_coaching_session(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.coach_id, "lead-1",
        "a bound key coaches as its reviewer"
    );
    assert_eq!(created.evaluation_ids, std::slice::from_ref(&evaluation.id));
    assert_eq!(created.action_items.len(), 2);
    assert!(created.action_items.iter().all(|item| !item.done));
    let retry = lead
        .create_coaching_session(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, created, "a retry answers as the first time");
    let mut as_other_coach = create(session("agent-1", vec![]));
    as_other_coach.session.as_mut().unwrap().coach_id = "lead-2".into();
    let refused = lead
        .create_coaching_session(as_other_coach)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    lead.create_coaching_session(create(session("agent-2", vec![])))
        .await
        .unwrap();

    let mut agent = coaching_as(&app, Role::Agent, Some("agent-1")).await;
    let item = created.action_items[0].id.clone();
    let update = |done: bool| pb::UpdateActionItemRequest {
        session_id: created.id.clone(),
        action_item_id: item.clone(),
        done,
    };
    let done = agent
        .update_action_item(update(true))
        .await
        .unwrap()
        .into_inner();
    let done_item = &done.action_items[0];
    assert!(done_item.done && done_item.done_time.is_some());
    let again = agent
        .update_action_item(update(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.action_items[0].done_time, done_item.done_time,
        "the first time is kept"
    );
    let reopened = lead
        .update_action_item(update(false))
        .await
        .unwrap()
        .into_inner();
    assert!(!reopened.action_items[0].done && reopened.action_items[0].done_time.is_none());
    let unknown_item = agent
        .update_action_item(pb::UpdateActionItemRequest {
            action_item_id: Uuid::now_v7().to_string(),
            ..update(true)
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_item.code(), Code::NotFound);

    let mut other = coaching_as(&app, Role::Agent, Some("agent-2")).await;
    assert_eq!(
        other
            .update_action_item(update(true))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other
            .get_coaching_session(pb::GetCoachingSessionRequest {
                id: created.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let own = agent
        .list_coaching_sessions(pb::ListCoachingSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.sessions.len(), 1);
    assert_eq!(own.sessions[0].agent_id, "agent-1");
    let asked = agent
        .list_coaching_sessions(pb::ListCoachingSessionsRequest {
            agent_id: "agent-2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(asked.code(), Code::PermissionDenied);
    let all = lead
        .list_coaching_sessions(pb::ListCoachingSessionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.sessions[0].agent_id, "agent-2", "newest first");
    let rest = lead
        .list_coaching_sessions(pb::ListCoachingSessionsRequest {
            page_size: 1,
            page_token: all.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.sessions[0].id, created.id);
    assert!(rest.next_page_token.is_empty());
}

async fn a_coaching_session_names_every_bad_field_and_refuses_another_agents_evaluations(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "C-OWN", 1, 2))
        .await
        .unwrap()
        .into_inner();
    let mut lead = coaching_as(&app, Role::Admin, None).await;
    let bad = pb::CoachingSession {
        agent_id: String::new(),
        coach_id: "lead\u{1b}one".into(),
        criterion_keys: vec!["greeting".into(), "greeting".into()],
        evaluation_ids: vec!["not-a-uuid".into()],
        action_items: vec![pb::ActionItem::default()],
        ..Default::default()
    };
    let refused = lead.create_coaching_session(create(bad)).await.unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "session.evaluation_ids[0]",
            "session.agent_id",
            "session.coach_id",
            "session.criterion_keys[1]",
            "session.action_items[0].description",
        ]
    );
    let foreign = lead
        .create_coaching_session(create(session("agent-2", vec![evaluation.id.clone()])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&foreign), ["session.evaluation_ids[0]"]);
    assert!(
        foreign
            .message()
            .contains("not an evaluation of agent \"agent-2\""),
        "{foreign:?}"
    );
    assert_eq!(app.count("evaluation.coaching_sessions").await, 0);
    assert_eq!(app.count("evaluation.action_items").await, 0);
}
