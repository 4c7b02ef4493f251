//! The Redis summary cache, against a Redis server of the test's own that it stops,
//! pauses and restarts.

use std::time::{Duration, Instant};

use iqs::proto::analytics as pb;
use iqs::proto::evaluation::submit_evaluation_request::InteractionRef;

use crate::helpers::{AppOptions, TestApp, published_rubric, rating, spawn_app_with};
use crate::owned_servers::{Redis, RedisCluster};

async fn submit(app: &TestApp, rubric_id: &str, n: usize) {
    let mut request = crate::helpers::submission(rubric_id, &format!("C-{n}"), 1, 4);
    if let Some(InteractionRef::Interaction(inline)) = request.interaction_ref.as_mut() {
        inline.agent_id = AGENT.into();
    }
    request.ratings = vec![rating("greeting", (n % 2) as i32), rating("empathy", 4)];
    app.evaluations().submit_evaluation(request).await.unwrap();
}

/// The score of the agent most tests here review.
const AGENT: &str = "cached-agent";

async fn score_of(app: &TestApp, agent: &str) -> pb::ScoreSummary {
    app.analytics()
        .get_agent_score(pb::GetAgentScoreRequest {
            agent_id: agent.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn agent_score(app: &TestApp) -> pb::ScoreSummary {
    score_of(app, AGENT).await
}

/// Waits until `agent`'s score counts `count` evaluations; fails after `limit`.
async fn wait_for_agent(
    app: &TestApp,
    agent: &str,
    count: u64,
    limit: Duration,
) -> pb::ScoreSummary {
    let started = Instant::now();
    loop {
        let summary = score_of(app, agent).await;
        if summary.evaluation_count == count {
            return summary;
        }
        assert!(
            started.elapsed() < limit,
            "{agent}: count {} != {count}",
            summary.evaluation_count
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the agent's score counts `count` evaluations; fails after `limit`.
async fn wait_for_count(app: &TestApp, count: u64, limit: Duration) -> pb::ScoreSummary {
    wait_for_agent(app, AGENT, count, limit).await
}

#[tokio::test]
async fn summaries_are_cached_in_redis_and_refreshed_when_the_projector_applies() {
    let redis = Redis::start();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(redis.url()),
        cache_ttl_ms: 60_000,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    submit(&app, &rubric.id, 0).await;
    let first = wait_for_count(&app, 1, Duration::from_secs(1)).await;
    // The put happens in the background, once the cache has connected: a read while
    // it still connects answers from PostgreSQL and caches nothing.
    let deadline = Instant::now() + Duration::from_secs(2);
    let figures = |s: &pb::ScoreSummary| (s.iqs, s.evaluation_count, s.pass_rate);
    while redis.cached_summaries() == 0 {
        assert!(Instant::now() < deadline, "nothing was cached");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(figures(&agent_score(&app).await), figures(&first));
    }
    assert_eq!(figures(&agent_score(&app).await), figures(&first));
    // A new evaluation invalidates the cached summary: no stale value, even with a
    // TTL of a minute.
    submit(&app, &rubric.id, 1).await;
    let second = wait_for_count(&app, 2, Duration::from_secs(1)).await;
    assert_ne!(second.iqs, first.iqs);
}

#[tokio::test]
async fn with_redis_stopped_every_answer_still_comes_from_postgres_and_hits_resume_after() {
    let redis = Redis::start();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(redis.url()),
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    submit(&app, &rubric.id, 0).await;
    wait_for_count(&app, 1, Duration::from_secs(1)).await;

    let port = redis.kill();
    submit(&app, &rubric.id, 1).await;
    let started = Instant::now();
    let summary = wait_for_count(&app, 2, Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(summary.scored_count, 2);
    // Other analytics RPCs do not need Redis at all.
    let rows = app
        .analytics()
        .query_scores(pb::QueryScoresRequest {
            filter: None,
            group_by: vec![pb::Dimension::Agent as i32],
            interval: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows[0].evaluation_count, 2);

    let redis = Redis::start_on(port);
    submit(&app, &rubric.id, 2).await;
    wait_for_count(&app, 3, Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cached_summaries() == 0 {
        assert!(Instant::now() < deadline, "caching did not resume");
        agent_score(&app).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(agent_score(&app).await.evaluation_count, 3);
}

#[tokio::test]
async fn a_paused_redis_is_bypassed_and_serves_nothing_stale_when_it_resumes() {
    let redis = Redis::start();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(redis.url()),
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    submit(&app, &rubric.id, 0).await;
    wait_for_count(&app, 1, Duration::from_secs(1)).await;
    // Reads made while the cache still connects cache nothing: keep reading.
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.cached_summaries() == 0 {
        assert!(Instant::now() < deadline, "nothing was cached");
        agent_score(&app).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Paused, Redis keeps its data but answers nothing: calls wait at most the timeout.
    redis.signal("-STOP");
    submit(&app, &rubric.id, 1).await;
    let summary = wait_for_count(&app, 2, Duration::from_secs(3)).await;
    assert_eq!(summary.evaluation_count, 2);
    let started = Instant::now();
    agent_score(&app).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a paused Redis slowed a call"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    // Resumed with the old summary still in memory: it is never served.
    redis.signal("-CONT");
    for _ in 0..50 {
        assert_eq!(agent_score(&app).await.evaluation_count, 2);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_a_load_of_agent_scores_fails_no_call_and_changes_no_figure() {
    let redis = Redis::start();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(redis.url()),
        // The load, not the key's rate limit, is what this test is about.
        rate_limits: iqs::auth::limits::RoleRates {
            admin: iqs::auth::limits::Rate {
                per_second: 1e6,
                burst: 1e6,
            },
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    for n in 0..3 {
        submit(&app, &rubric.id, n).await;
    }
    let expected = wait_for_count(&app, 3, Duration::from_secs(2)).await;
    let figures = |s: &pb::ScoreSummary| (s.iqs, s.evaluation_count, s.pass_rate);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut client = app.analytics();
        let stop = stop.clone();
        load.spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = client
                    .get_agent_score(pb::GetAgentScoreRequest {
                        agent_id: AGENT.into(),
                        ..Default::default()
                    })
                    .await
                    .map(|summary| summary.into_inner());
                answers.push(answer);
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = redis.kill();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cached_summaries() == 0 {
        assert!(Instant::now() < deadline, "caching did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut calls = 0;
    while let Some(answers) = load.join_next().await {
        for answer in answers.unwrap() {
            let summary = answer.expect("a call failed while Redis was down");
            assert_eq!(figures(&summary), figures(&expected));
            calls += 1;
        }
    }
    assert!(calls > 100, "only {calls} calls");
}

#[tokio::test]
async fn on_a_redis_cluster_summaries_spread_over_the_masters_and_a_failed_master_changes_no_answer()
 {
    let mut cluster = RedisCluster::start(3);
    let app = spawn_app_with(AppOptions {
        redis_url: Some(cluster.url()),
        cache_ttl_ms: 60_000,
        tune: |config| config.cache_near_ttl_ms = 0,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let agents: Vec<String> = (0..12).map(|n| format!("cluster-agent-{n}")).collect();
    let submit_for = |agent: String, n: usize| {
        let mut request = crate::helpers::submission(&rubric.id, &format!("K-{n}"), 1, 4);
        if let Some(InteractionRef::Interaction(inline)) = request.interaction_ref.as_mut() {
            inline.agent_id = agent;
        }
        let mut evaluations = app.evaluations();
        async move { evaluations.submit_evaluation(request).await.unwrap() }
    };
    for (n, agent) in agents.iter().enumerate() {
        submit_for(agent.clone(), n).await;
    }
    for agent in &agents {
        wait_for_agent(&app, agent, 1, Duration::from_secs(2)).await;
    }
    // Cached on more than one master (puts happen once the cache has connected).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let holding = cluster
            .nodes
            .iter()
            .filter(|node| node.cached_summaries() > 0)
            .count();
        if holding >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "summaries did not spread over the masters"
        );
        for agent in &agents {
            wait_for_agent(&app, agent, 1, Duration::from_secs(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Invalidation reaches each agent's slot: a minute's TTL serves nothing stale.
    for (n, agent) in agents.iter().enumerate().take(4) {
        submit_for(agent.clone(), 100 + n).await;
        wait_for_agent(&app, agent, 2, Duration::from_secs(1)).await;
    }

    // One master fails: every answer stays right (from PostgreSQL where its slots were),
    // and new evaluations still count.
    cluster.kill(2);
    for (n, agent) in agents.iter().enumerate() {
        submit_for(agent.clone(), 200 + n).await;
    }
    for (n, agent) in agents.iter().enumerate() {
        let expected = if n < 4 { 3 } else { 2 };
        wait_for_agent(&app, agent, expected, Duration::from_secs(3)).await;
    }
}
