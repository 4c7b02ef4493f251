//! Sampling plans and reviewer assignments through the real server: what a run picks
//! and for whom, once per period, and how the queue is worked through.

use std::collections::{BTreeMap, HashSet};

use iqs::domain::access::Role;
use iqs::proto::analytics::{self as an, analytics_service_client::AnalyticsServiceClient};
use iqs::proto::evaluation::{
    self as pb, assignment_service_client::AssignmentServiceClient,
    submit_evaluation_request::InteractionRef,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Authed, Backend, TestApp, interaction, published_rubric, rating, spawn_app_on, violated_fields,
};

crate::on_every_store!(
    a_run_assigns_each_agents_quota_round_robin_once_per_period_even_when_run_concurrently,
    a_review_of_an_assigned_interaction_completes_it_and_a_revision_does_not_reopen_it,
    a_skipped_assignment_is_replaced_by_another_of_the_same_agent_when_one_is_eligible,
    sampling_follows_the_plans_filter_and_leaves_out_reviewed_and_assigned_interactions,
    a_bound_reviewer_works_only_its_own_queue_and_coverage_counts_every_state,
);

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    }
}

fn assignments(app: &TestApp) -> AssignmentServiceClient<Authed> {
    AssignmentServiceClient::new(app.channel.clone())
}

/// `count` interactions of `agent` on `channel` this week, CSAT 1..5 in turn.
async fn interactions(app: &TestApp, agent: &str, channel: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for index in 0..count {
        let mut new = interaction(&format!("{agent}-{channel}-{index}"), agent);
        new.channel = channel.into();
        new.occur_time = Some(now());
        new.csat = Some(1 + (index % 5) as i32);
        let stored = app
            .evaluations()
            .upsert_interaction(pb::UpsertInteractionRequest {
                interaction: Some(new),
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(stored.id);
    }
    ids
}

fn plan(rubric_id: &str, quota: u32, reviewers: &[&str]) -> pb::SamplingPlan {
    pb::SamplingPlan {
        display_name: "Weekly chat sample".into(),
        rubric_id: rubric_id.into(),
        per_agent_count: quota,
        period: pb::SamplingPeriod::Week as i32,
        strategy: pb::SamplingStrategy::Random as i32,
        reviewer_ids: reviewers.iter().map(|r| r.to_string()).collect(),
        seed: 7,
        ..Default::default()
    }
}

async fn create_plan(app: &TestApp, plan: pb::SamplingPlan) -> pb::SamplingPlan {
    assignments(app)
        .create_sampling_plan(pb::CreateSamplingPlanRequest {
            request_id: Uuid::now_v7().to_string(),
            plan: Some(plan),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn run(app: &TestApp, plan_id: &str) -> pb::RunSamplingResponse {
    assignments(app)
        .run_sampling(pb::RunSamplingRequest {
            plan_id: plan_id.into(),
            period_start: None,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn listed(app: &TestApp, plan_id: &str) -> Vec<pb::Assignment> {
    assignments(app)
        .list_assignments(pb::ListAssignmentsRequest {
            plan_id: plan_id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .assignments
}

fn review(assignment: &pb::Assignment, reviewer: &str) -> pb::SubmitEvaluationRequest {
    pb::SubmitEvaluationRequest {
        request_id: Uuid::now_v7().to_string(),
        interaction_ref: Some(InteractionRef::InteractionId(
            assignment.interaction_id.clone(),
        )),
        rubric_id: assignment.rubric_id.clone(),
        reviewer_id: reviewer.into(),
        kind: pb::EvaluationKind::Manual as i32,
        ratings: vec![rating("greeting", 1), rating("empathy", 3)],
        ..Default::default()
    }
}

async fn a_run_assigns_each_agents_quota_round_robin_once_per_period_even_when_run_concurrently(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    for (agent, count) in [("ann", 8), ("bob", 5), ("cat", 2), ("dan", 6), ("rev-b", 4)] {
        interactions(&app, agent, "chat", count).await;
    }
    let plan = create_plan(&app, plan(&rubric.id, 4, &["rev-a", "rev-b", "rev-c"])).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut client = assignments(&app);
            let id = plan.id.clone();
            tokio::spawn(async move {
                client
                    .run_sampling(pb::RunSamplingRequest {
                        plan_id: id,
                        period_start: None,
                    })
                    .await
                    .unwrap()
                    .into_inner()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    // 4 + 4 + 2 + 4 + 4: "cat" has fewer than the quota.
    let created: Vec<u32> = outcomes
        .iter()
        .map(|o| o.created)
        .filter(|c| *c > 0)
        .collect();
    assert_eq!(
        created,
        [18],
        "one run creates, the others find it: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.created == 0)
            .all(|o| o.already_assigned == 18)
    );
    for outcome in &outcomes {
        assert_eq!(outcome.short_agents.len(), 1);
        assert_eq!(outcome.short_agents[0].agent_id, "cat");
        assert_eq!(outcome.short_agents[0].eligible, 2);
    }
    let made = listed(&app, &plan.id).await;
    assert_eq!(made.len(), 18);
    let mut loads: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_agent: BTreeMap<&str, usize> = BTreeMap::new();
    for assignment in &made {
        *loads.entry(&assignment.reviewer_id).or_default() += 1;
        *per_agent.entry(&assignment.agent_id).or_default() += 1;
        assert_ne!(
            assignment.reviewer_id, assignment.agent_id,
            "never one's own"
        );
        assert_eq!(assignment.state, pb::AssignmentState::Open as i32);
    }
    let (min, max) = (loads.values().min().unwrap(), loads.values().max().unwrap());
    assert!(max - min <= 1, "{loads:?}");
    assert_eq!(per_agent["ann"], 4);
    assert_eq!(per_agent["cat"], 2);
    let again = run(&app, &plan.id).await;
    assert_eq!((again.created, again.already_assigned), (0, 18));

    // The same data, plan and period give the same assignments.
    let picked: HashSet<String> = made.iter().map(|a| a.interaction_id.clone()).collect();
    app.db
        .execute(
            "DELETE FROM evaluation.assignments",
            "DELETE FROM assignments",
        )
        .await;
    app.db
        .execute(
            "DELETE FROM evaluation.sampling_runs",
            "DELETE FROM sampling_runs",
        )
        .await;
    assert_eq!(run(&app, &plan.id).await.created, 18);
    let repicked: HashSet<String> = listed(&app, &plan.id)
        .await
        .into_iter()
        .map(|a| a.interaction_id)
        .collect();
    assert_eq!(repicked, picked);
}

async fn a_review_of_an_assigned_interaction_completes_it_and_a_revision_does_not_reopen_it(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    interactions(&app, "ann", "chat", 3).await;
    let plan = create_plan(&app, plan(&rubric.id, 3, &["rev-a"])).await;
    run(&app, &plan.id).await;
    let mut queue = assignments(&app);
    let next = |queue: &mut AssignmentServiceClient<Authed>| {
        let mut queue = queue.clone();
        async move {
            queue
                .next_assignment(pb::NextAssignmentRequest {
                    reviewer_id: "rev-a".into(),
                })
                .await
        }
    };
    let first = next(&mut queue).await.unwrap().into_inner();
    let made = listed(&app, &plan.id).await;
    assert_eq!(first.id, made[0].id, "the oldest open one");

    // Another reviewer's review of it does not complete it.
    app.evaluations()
        .submit_evaluation(review(&first, "rev-z"))
        .await
        .unwrap();
    assert_eq!(next(&mut queue).await.unwrap().into_inner().id, first.id);
    let evaluation = app
        .evaluations()
        .submit_evaluation(review(&first, "rev-a"))
        .await
        .unwrap()
        .into_inner();
    let done = listed(&app, &plan.id).await.remove(0);
    assert_eq!(done.state, pb::AssignmentState::Done as i32);
    assert_eq!(done.evaluation_id, Some(evaluation.id.clone()));
    assert!(done.close_time.is_some());
    let second = next(&mut queue).await.unwrap().into_inner();
    assert_eq!(second.id, made[1].id);

    // An import completes its assignment too.
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(vec![review(&second, "rev-a")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.accepted, 1);
    assert_eq!(next(&mut queue).await.unwrap().into_inner().id, made[2].id);

    // Neither a revision nor a deletion reopens it.
    app.evaluations()
        .revise_evaluation(pb::ReviseEvaluationRequest {
            id: evaluation.id.clone(),
            request_id: Uuid::now_v7().to_string(),
            ratings: vec![rating("greeting", 0), rating("empathy", 2)],
            comment: String::new(),
            reason: "second look".into(),
        })
        .await
        .unwrap();
    app.evaluations()
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: evaluation.id.clone(),
            reason: "duplicate".into(),
        })
        .await
        .unwrap();
    let after = listed(&app, &plan.id).await.remove(0);
    assert_eq!(after.state, pb::AssignmentState::Done as i32);
    assert_eq!(after.evaluation_id, Some(evaluation.id));

    app.evaluations()
        .submit_evaluation(review(&made[2], "rev-a"))
        .await
        .unwrap();
    let none = next(&mut queue).await.unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    assert!(none.message().contains("no open assignment"), "{none:?}");
}

async fn a_skipped_assignment_is_replaced_by_another_of_the_same_agent_when_one_is_eligible(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    interactions(&app, "ann", "chat", 3).await;
    let plan = create_plan(&app, plan(&rubric.id, 2, &["rev-a"])).await;
    run(&app, &plan.id).await;
    let made = listed(&app, &plan.id).await;
    let mut queue = assignments(&app);
    let skip = |id: &str, reason: &str| pb::SkipAssignmentRequest {
        id: id.into(),
        reason: reason.into(),
    };
    let refused = queue
        .skip_assignment(skip(&made[0].id, " "))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["reason"]);
    let skipped = queue
        .skip_assignment(skip(&made[0].id, "spam"))
        .await
        .unwrap()
        .into_inner();
    let (old, new) = (
        skipped.skipped.unwrap(),
        skipped.replacement.expect("the third chat"),
    );
    assert_eq!(old.state, pb::AssignmentState::Skipped as i32);
    assert_eq!(old.skip_reason, "spam");
    assert_eq!(
        (new.agent_id.as_str(), new.reviewer_id.as_str()),
        ("ann", "rev-a")
    );
    let ids: HashSet<&str> = made.iter().map(|a| a.interaction_id.as_str()).collect();
    assert!(
        !ids.contains(new.interaction_id.as_str()),
        "a new interaction"
    );
    let again = queue
        .skip_assignment(skip(&made[0].id, "spam"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again
            .message()
            .contains("only an open assignment is skipped")
    );
    let last = queue
        .skip_assignment(skip(&new.id, "test chat"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.replacement, None, "nothing of ann's is left");
    assert_eq!(listed(&app, &plan.id).await.len(), 3);
}

async fn sampling_follows_the_plans_filter_and_leaves_out_reviewed_and_assigned_interactions(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let chats = interactions(&app, "ann", "chat", 5).await;
    interactions(&app, "ann", "email", 5).await;
    // Last month's chat is outside this week.
    let mut old = interaction("ann-old", "ann");
    old.occur_time = Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 40 * 86_400,
        nanos: 0,
    });
    app.evaluations()
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(old),
        })
        .await
        .unwrap();
    // One chat is reviewed already.
    app.evaluations()
        .submit_evaluation(pb::SubmitEvaluationRequest {
            request_id: Uuid::now_v7().to_string(),
            interaction_ref: Some(InteractionRef::InteractionId(chats[0].clone())),
            rubric_id: rubric.id.clone(),
            reviewer_id: "qa-x".into(),
            kind: pb::EvaluationKind::Manual as i32,
            ratings: vec![rating("greeting", 1), rating("empathy", 3)],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut low_chats = plan(&rubric.id, 10, &["rev-a"]);
    low_chats.filter = Some(pb::SamplingFilter {
        channels: vec!["chat".into()],
        max_csat: Some(3),
        ..Default::default()
    });
    low_chats.strategy = pb::SamplingStrategy::LowCsatFirst as i32;
    let plan_one = create_plan(&app, low_chats.clone()).await;
    let outcome = run(&app, &plan_one.id).await;
    // CSAT 1..5 in turn: chats 0..2 have CSAT ≤ 3, and chat 0 is reviewed.
    assert_eq!(outcome.created, 2);
    let picked: Vec<String> = listed(&app, &plan_one.id)
        .await
        .into_iter()
        .map(|a| a.interaction_id)
        .collect();
    assert_eq!(
        picked.iter().collect::<HashSet<_>>(),
        [&chats[1], &chats[2]].into_iter().collect::<HashSet<_>>()
    );
    // A second plan under the same rubric finds them assigned already.
    let plan_two = create_plan(&app, low_chats).await;
    assert_eq!(run(&app, &plan_two.id).await.created, 0);
    assert_eq!(
        run(&app, &plan_two.id).await.short_agents[0].eligible,
        0,
        "ann is listed with nothing eligible"
    );

    let mut bad = plan(&rubric.id, 0, &[]);
    bad.display_name = String::new();
    bad.period = pb::SamplingPeriod::Unspecified as i32;
    bad.filter = Some(pb::SamplingFilter {
        min_csat: Some(4),
        max_csat: Some(2),
        ..Default::default()
    });
    let refused = assignments(&app)
        .create_sampling_plan(pb::CreateSamplingPlanRequest {
            request_id: String::new(),
            plan: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "plan.period",
            "plan.display_name",
            "plan.per_agent_count",
            "plan.reviewer_ids",
            "plan.filter.max_csat"
        ]
    );
    let unknown_rubric = assignments(&app)
        .create_sampling_plan(pb::CreateSamplingPlanRequest {
            request_id: String::new(),
            plan: Some(plan(&Uuid::now_v7().to_string(), 1, &["rev-a"])),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_rubric.code(), Code::NotFound);
}

async fn a_bound_reviewer_works_only_its_own_queue_and_coverage_counts_every_state(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    interactions(&app, "ann", "chat", 4).await;
    interactions(&app, "bob", "chat", 4).await;
    let plan = create_plan(&app, plan(&rubric.id, 2, &["rev-a", "rev-b"])).await;
    run(&app, &plan.id).await;
    let mut rev_a =
        AssignmentServiceClient::new(app.channel_as(Role::QaReviewer, Some("rev-a")).await);
    let own = rev_a
        .next_assignment(pb::NextAssignmentRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.reviewer_id, "rev-a");
    let refused = rev_a
        .next_assignment(pb::NextAssignmentRequest {
            reviewer_id: "rev-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let listed_own = rev_a
        .list_assignments(pb::ListAssignmentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .assignments;
    assert_eq!(listed_own.len(), 2);
    assert!(listed_own.iter().all(|a| a.reviewer_id == "rev-a"));
    let others = listed(&app, &plan.id)
        .await
        .into_iter()
        .find(|a| a.reviewer_id == "rev-b")
        .unwrap();
    let refused = rev_a
        .skip_assignment(pb::SkipAssignmentRequest {
            id: others.id.clone(),
            reason: "not mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unbound = assignments(&app)
        .next_assignment(pb::NextAssignmentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unbound), ["reviewer_id"]);

    // One done, one skipped (replaced), the rest open.
    app.evaluations()
        .submit_evaluation(review(&own, "rev-a"))
        .await
        .unwrap();
    rev_a
        .skip_assignment(pb::SkipAssignmentRequest {
            id: listed_own[1].id.clone(),
            reason: "duplicate ticket".into(),
        })
        .await
        .unwrap();
    let coverage = AnalyticsServiceClient::new(app.channel_as(Role::Analyst, None).await)
        .get_assignment_coverage(an::GetAssignmentCoverageRequest {
            plan_id: plan.id.clone(),
            period_start: None,
        })
        .await
        .unwrap()
        .into_inner();
    let total = coverage.total.unwrap();
    assert_eq!(
        (total.assigned, total.done, total.skipped, total.open),
        (5, 1, 1, 3)
    );
    assert_eq!(total.done_share, Some(0.25));
    let a = coverage.reviewers.iter().find(|r| r.id == "rev-a").unwrap();
    assert_eq!((a.assigned, a.done, a.skipped, a.open), (3, 1, 1, 1));
    assert_eq!(coverage.agents.len(), 2);
    assert_eq!(coverage.agents.iter().map(|a| a.assigned).sum::<u64>(), 5);
}
