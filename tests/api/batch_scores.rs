//! BatchGetAgentScores: many agents in one call, in request order, each answered as
//! GetAgentScore answers it, from the cache when it holds the agent.

use std::time::{Duration, Instant};

use iqs::domain::access::Role;
use iqs::proto::analytics::{self as an, analytics_service_client::AnalyticsServiceClient};
use iqs::proto::evaluation::submit_evaluation_request::InteractionRef;
use tonic::Code;

use crate::helpers::{
    AppOptions, Backend, TestApp, published_rubric, spawn_app_on, spawn_app_with, submission,
    violated_fields, wait_for_projection,
};
use crate::on_every_store;
use crate::owned_servers::Redis;

on_every_store!(
    a_batch_answers_in_request_order_exactly_what_get_agent_score_answers,
    a_batch_names_each_bad_agent_id_and_refuses_more_than_a_thousand,
);

async fn submit_for(app: &TestApp, rubric_id: &str, agent: &str, n: usize, empathy: i32) {
    let mut request = submission(rubric_id, &format!("B-{agent}-{n}"), 1, empathy);
    if let Some(InteractionRef::Interaction(inline)) = request.interaction_ref.as_mut() {
        inline.agent_id = agent.into();
    }
    app.evaluations().submit_evaluation(request).await.unwrap();
}

async fn batch(app: &TestApp, agent_ids: &[&str]) -> Vec<an::AgentScoreSummary> {
    app.analytics()
        .batch_get_agent_scores(an::BatchGetAgentScoresRequest {
            agent_ids: agent_ids.iter().map(|id| id.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("batch")
        .into_inner()
        .summaries
}

async fn single(app: &TestApp, agent_id: &str) -> an::ScoreSummary {
    app.analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: agent_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn figures(summary: &an::ScoreSummary) -> (Option<f64>, u64, u64, f64, usize) {
    (
        summary.iqs,
        summary.evaluation_count,
        summary.scored_count,
        summary.pass_rate,
        summary.section_scores.len(),
    )
}

async fn a_batch_answers_in_request_order_exactly_what_get_agent_score_answers(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    for (n, (agent, empathy)) in [("ana", 4), ("bo", 1), ("ana", 2), ("#7 ćé", 3)]
        .into_iter()
        .enumerate()
    {
        submit_for(&app, &rubric.id, agent, n, empathy).await;
    }
    wait_for_projection(&app).await;

    let asked = ["bo", "nobody", "#7 ćé", "ana", "bo"];
    let answered = batch(&app, &asked).await;
    let ids: Vec<&str> = answered.iter().map(|s| s.agent_id.as_str()).collect();
    assert_eq!(ids, asked, "request order, repeats included");
    for (summary, agent) in answered.iter().zip(asked) {
        assert_eq!(
            figures(summary.summary.as_ref().unwrap()),
            figures(&single(&app, agent).await),
            "{agent}"
        );
    }
    assert_eq!(answered[1].summary.as_ref().unwrap().evaluation_count, 0);
    assert_eq!(answered[3].summary.as_ref().unwrap().evaluation_count, 2);

    // An agent's key reads its own score in a batch, and nobody else's.
    let mut agent = AnalyticsServiceClient::new(app.channel_as(Role::Agent, Some("ana")).await);
    let own = agent
        .batch_get_agent_scores(an::BatchGetAgentScoresRequest {
            agent_ids: vec!["ana".into()],
            ..Default::default()
        })
        .await
        .expect("its own score");
    assert_eq!(own.into_inner().summaries.len(), 1);
    let other = agent
        .batch_get_agent_scores(an::BatchGetAgentScoresRequest {
            agent_ids: vec!["ana".into(), "bo".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
}

async fn a_batch_names_each_bad_agent_id_and_refuses_more_than_a_thousand(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let call = |agent_ids: Vec<String>, rubric_id: &str| {
        let mut analytics = app.analytics();
        let request = an::BatchGetAgentScoresRequest {
            agent_ids,
            rubric_id: rubric_id.into(),
            ..Default::default()
        };
        async move { analytics.batch_get_agent_scores(request).await.unwrap_err() }
    };
    let err = call(
        vec!["ok".into(), String::new(), "bell\u{7}".into()],
        "not-a-uuid",
    )
    .await;
    assert_eq!(
        violated_fields(&err),
        ["agent_ids[1]", "agent_ids[2]", "rubric_id"]
    );
    let err = call(Vec::new(), "").await;
    assert_eq!(violated_fields(&err), ["agent_ids"]);
    let thousand_and_one = (0..1001).map(|n| format!("agent-{n}")).collect();
    let err = call(thousand_and_one, "").await;
    assert_eq!(violated_fields(&err), ["agent_ids"]);
    let thousand: Vec<String> = (0..1000).map(|n| format!("agent-{n}")).collect();
    let answered = app
        .analytics()
        .batch_get_agent_scores(an::BatchGetAgentScoresRequest {
            agent_ids: thousand,
            ..Default::default()
        })
        .await
        .expect("a thousand agents are allowed")
        .into_inner();
    assert_eq!(answered.summaries.len(), 1000);
}

#[tokio::test]
async fn a_batch_is_cached_per_agent_in_redis_and_a_new_evaluation_refreshes_its_agent_only() {
    let redis = Redis::start();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(redis.url()),
        cache_ttl_ms: 60_000,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let agents: Vec<String> = (0..50).map(|n| format!("agent-{n}")).collect();
    let asked: Vec<&str> = agents.iter().map(String::as_str).collect();
    for (n, agent) in asked.iter().enumerate().take(10) {
        submit_for(&app, &rubric.id, agent, n, 2).await;
    }
    wait_for_projection(&app).await;
    let first = batch(&app, &asked).await;
    // The cache is filled in the background, one entry per agent.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cached_summaries() < agents.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} agents cached",
            redis.cached_summaries(),
            agents.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        batch(&app, &asked).await;
    }
    let cached = batch(&app, &asked).await;
    assert_eq!(
        cached
            .iter()
            .map(|s| figures(s.summary.as_ref().unwrap()))
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|s| figures(s.summary.as_ref().unwrap()))
            .collect::<Vec<_>>()
    );
    // A new evaluation of agent-3: its summary changes at once, even with a TTL of a
    // minute, and the others stay as they were.
    submit_for(&app, &rubric.id, "agent-3", 99, 4).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = batch(&app, &asked).await;
        if now[3].summary.as_ref().unwrap().evaluation_count == 2 {
            for (n, (before, after)) in first.iter().zip(&now).enumerate() {
                if n != 3 {
                    assert_eq!(
                        figures(before.summary.as_ref().unwrap()),
                        figures(after.summary.as_ref().unwrap())
                    );
                }
            }
            assert_eq!(
                figures(now[3].summary.as_ref().unwrap()),
                figures(&single(&app, "agent-3").await)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent-3's summary did not refresh"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
