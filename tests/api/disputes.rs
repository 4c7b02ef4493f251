//! Disputes through the real server: an agent contests its score, a lead decides, the
//! revision reaches analytics, every refusal names its rule, and the summary shows which
//! reviewers get overturned.

use iqs::domain::access::Role;
use iqs::proto::analytics as an;
use iqs::proto::evaluation::{
    self as pb, dispute_service_client::DisputeServiceClient,
    evaluation_service_client::EvaluationServiceClient,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Authed, Backend, TestApp, published_rubric, rating, spawn_app_on, submission, violated_fields,
    wait_for_projection,
};

crate::on_every_store!(
    an_accepted_dispute_revises_the_evaluation_and_the_agents_score_follows,
    every_dispute_refusal_has_its_code_and_names_its_rule,
    of_concurrent_resolutions_of_one_dispute_exactly_one_wins,
    a_retried_open_answers_the_first_dispute_and_a_withdrawn_one_still_counts,
    the_dispute_summary_shows_which_reviewers_get_overturned,
);

/// A dispute client for a key of `role` (an agent key bound to `bound_to`).
async fn disputes_as(
    app: &TestApp,
    role: Role,
    bound_to: Option<&str>,
) -> DisputeServiceClient<Authed> {
    DisputeServiceClient::new(app.channel_as(role, bound_to).await)
}

/// An evaluation of agent-1 by `reviewer` (greeting 0..1, empathy 1..4).
async fn evaluation_by(
    app: &TestApp,
    rubric_id: &str,
    reviewer: &str,
    greeting: i32,
    empathy: i32,
) -> pb::Evaluation {
    let mut request = submission(
        rubric_id,
        &format!("D-{}", Uuid::now_v7().simple()),
        greeting,
        empathy,
    );
    request.reviewer_id = reviewer.into();
    app.evaluations()
        .submit_evaluation(request)
        .await
        .unwrap()
        .into_inner()
}

fn open(evaluation_id: &str, proposed: Vec<pb::Rating>) -> pb::OpenDisputeRequest {
    pb::OpenDisputeRequest {
        request_id: Uuid::now_v7().to_string(),
        evaluation_id: evaluation_id.into(),
        comment: "I did greet the customer, see the first message".into(),
        proposed_ratings: proposed,
    }
}

fn resolve(
    id: &str,
    outcome: pb::DisputeOutcome,
    ratings: Vec<pb::Rating>,
) -> pb::ResolveDisputeRequest {
    pb::ResolveDisputeRequest {
        id: id.into(),
        outcome: outcome as i32,
        ratings,
        comment: "checked the transcript".into(),
    }
}

async fn an_accepted_dispute_revises_the_evaluation_and_the_agents_score_follows(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // greeting 0 of 0..1 (weight 1), empathy 4 of 1..4 (weight 2): 66.67.
    let evaluation = evaluation_by(&app, &rubric.id, "qa-lead", 0, 4).await;
    let mut agent = disputes_as(&app, Role::Agent, Some("agent-1")).await;
    let dispute = agent
        .open_dispute(open(&evaluation.id, vec![rating("greeting", 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dispute.state, pb::DisputeState::Open as i32);
    assert_eq!(dispute.evaluation_revision, 1);
    assert_eq!(dispute.reviewer_id, "qa-lead");
    assert_eq!(dispute.team_id, "tier1");
    assert_eq!(dispute.proposed_ratings, [rating("greeting", 1)]);

    let mut lead = disputes_as(&app, Role::QaReviewer, Some("qa-senior")).await;
    let resolved = lead
        .resolve_dispute(resolve(
            &dispute.id,
            pb::DisputeOutcome::Accepted,
            vec![rating("greeting", 1), rating("empathy", 4)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state, pb::DisputeState::Resolved as i32);
    assert_eq!(resolved.outcome, pb::DisputeOutcome::Accepted as i32);
    assert_eq!(resolved.resolved_revision, Some(2));
    assert_eq!(resolved.resolver_id, "qa-senior");
    assert!(resolved.resolve_time.is_some());

    let current = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: evaluation.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.revision, 2);
    assert_eq!(current.score, Some(100.0));
    assert_eq!(
        current.reviewer_id, "qa-lead",
        "the revision stays the reviewer's"
    );
    let reason: (String,) = match &app.db {
        crate::helpers::TestDb::Postgres(pool) => sqlx::query_as(
            "SELECT reason FROM evaluation.evaluations WHERE id = $1 AND revision = 2",
        )
        .bind(Uuid::parse_str(&evaluation.id).unwrap())
        .fetch_one(pool)
        .await
        .unwrap(),
        crate::helpers::TestDb::Sqlite(pool) => {
            sqlx::query_as("SELECT reason FROM evaluations WHERE id = ? AND revision = 2")
                .bind(Uuid::parse_str(&evaluation.id).unwrap())
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(reason.0, format!("dispute {}", dispute.id));

    wait_for_projection(&app).await;
    let score = app
        .analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(score.iqs, Some(100.0), "the revision reached analytics");
    assert_eq!(score.evaluation_count, 1);

    let audit = app.store.list_audit(Some(app.tenant), 50).await.unwrap();
    for rpc in ["OpenDispute", "ResolveDispute"] {
        assert!(
            audit
                .iter()
                .any(|entry| entry.rpc.ends_with(rpc) && entry.status_code == 0),
            "{rpc} is audited"
        );
    }
}

async fn every_dispute_refusal_has_its_code_and_names_its_rule(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = evaluation_by(&app, &rubric.id, "qa-lead", 0, 3).await;
    let mut agent = disputes_as(&app, Role::Agent, Some("agent-1")).await;

    // Not your evaluation: as absent as one that does not exist.
    let mut other = disputes_as(&app, Role::Agent, Some("agent-2")).await;
    let refused = other
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // A missing comment and ratings off the scale or of unknown criteria, named at once.
    let mut bad = open(
        &evaluation.id,
        vec![rating("greeting", 7), rating("tone", 1)],
    );
    bad.comment = String::new();
    let refused = agent.open_dispute(bad).await.unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "comment",
            "proposed_ratings[0].value",
            "proposed_ratings[1].criterion_key"
        ]
    );
    let same = agent
        .open_dispute(open(&evaluation.id, vec![rating("greeting", 0)]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&same), ["proposed_ratings"]);
    assert_eq!(
        app.store
            .list_disputes(app.tenant, Default::default())
            .await
            .unwrap()
            .len(),
        0
    );

    let first = agent
        .open_dispute(open(&evaluation.id, vec![rating("greeting", 1)]))
        .await
        .unwrap()
        .into_inner();
    let again = agent
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("one at a time"), "{again:?}");

    // The reviewer of the evaluation does not judge it.
    let mut own_reviewer = disputes_as(&app, Role::QaReviewer, Some("qa-lead")).await;
    let refused = own_reviewer
        .resolve_dispute(resolve(&first.id, pb::DisputeOutcome::Rejected, vec![]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let mut lead = disputes_as(&app, Role::QaReviewer, None).await;
    let mut no_reason = resolve(
        &first.id,
        pb::DisputeOutcome::Rejected,
        vec![rating("greeting", 1)],
    );
    no_reason.comment = String::new();
    let refused = lead.resolve_dispute(no_reason).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["ratings", "comment"]);
    let refused = lead
        .resolve_dispute(resolve(&first.id, pb::DisputeOutcome::Accepted, vec![]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["ratings"]);
    let refused = lead
        .resolve_dispute(resolve(
            &first.id,
            pb::DisputeOutcome::PartiallyAccepted,
            vec![rating("greeting", 0), rating("empathy", 3)],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["ratings"], "unchanged ratings");
    let refused = lead
        .resolve_dispute(resolve(&first.id, pb::DisputeOutcome::Unspecified, vec![]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["outcome"]);

    let rejected = lead
        .resolve_dispute(resolve(&first.id, pb::DisputeOutcome::Rejected, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.outcome, pb::DisputeOutcome::Rejected as i32);
    assert_eq!(rejected.resolved_revision, None);
    // Resolving a closed dispute differently, or withdrawing it, names the rule.
    let closed = lead
        .resolve_dispute(resolve(
            &first.id,
            pb::DisputeOutcome::Accepted,
            vec![rating("greeting", 1), rating("empathy", 3)],
        ))
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition);
    assert!(
        closed
            .message()
            .contains("only an open dispute is resolved"),
        "{closed:?}"
    );
    let withdrawn = agent
        .withdraw_dispute(pb::WithdrawDisputeRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(withdrawn.code(), Code::FailedPrecondition);
    assert!(
        withdrawn
            .message()
            .contains("only an open dispute is withdrawn")
    );
    let current = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: evaluation.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.revision, 1, "a rejection changes nothing");

    // The second dispute is the last one.
    let second = agent
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap()
        .into_inner();
    lead.resolve_dispute(resolve(&second.id, pb::DisputeOutcome::Rejected, vec![]))
        .await
        .unwrap();
    let third = agent
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::FailedPrecondition);
    assert!(third.message().contains("has had 2 disputes"), "{third:?}");

    // The window: a review dated 20 days ago is past the default 14 days, and within
    // a window of 30 once the tenant sets it.
    let mut old = submission(&rubric.id, "D-OLD", 0, 2);
    old.create_time = Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 20 * 86_400,
        nanos: 0,
    });
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(vec![old.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.accepted, 1);
    let old_evaluation = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest {
            interaction_id: String::new(),
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluations
        .into_iter()
        .find(|e| {
            e.create_time.as_ref().map(|t| t.seconds) == old.create_time.as_ref().map(|t| t.seconds)
        })
        .expect("the imported evaluation");
    let late = agent
        .open_dispute(open(&old_evaluation.id, vec![]))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(
        late.message().contains("dispute window is over"),
        "{late:?}"
    );
    assert!(late.message().contains("14 days"), "{late:?}");
    app.store
        .set_dispute_window_days(app.tenant, 30)
        .await
        .unwrap();
    agent
        .open_dispute(open(&old_evaluation.id, vec![]))
        .await
        .expect("within a 30-day window");

    // Only scores that count are disputed: not a self-review.
    let mut own = submission(&rubric.id, "D-SELF", 1, 4);
    own.kind = pb::EvaluationKind::Self_ as i32;
    own.reviewer_id = "agent-1".into();
    let self_review =
        EvaluationServiceClient::new(app.channel_as(Role::Agent, Some("agent-1")).await)
            .submit_evaluation(own)
            .await
            .unwrap()
            .into_inner();
    let refused = agent
        .open_dispute(open(&self_review.id, vec![]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("only MANUAL and AUTOMATED"),
        "{refused:?}"
    );
}

async fn of_concurrent_resolutions_of_one_dispute_exactly_one_wins(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = evaluation_by(&app, &rubric.id, "qa-lead", 0, 2).await;
    let mut agent = disputes_as(&app, Role::Agent, Some("agent-1")).await;
    let dispute = agent
        .open_dispute(open(&evaluation.id, vec![rating("greeting", 1)]))
        .await
        .unwrap()
        .into_inner();
    let lead = disputes_as(&app, Role::Admin, None).await;
    let calls = (0..8).map(|index| {
        let mut lead = lead.clone();
        let request = if index % 2 == 0 {
            let mut request = resolve(
                &dispute.id,
                pb::DisputeOutcome::Accepted,
                vec![rating("greeting", 1), rating("empathy", 1 + index / 2)],
            );
            request.comment = format!("verdict {index}");
            request
        } else {
            let mut request = resolve(&dispute.id, pb::DisputeOutcome::Rejected, vec![]);
            request.comment = format!("verdict {index}");
            request
        };
        tokio::spawn(async move { lead.resolve_dispute(request).await })
    });
    let calls: Vec<_> = calls.collect();
    let mut won = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(resolved) => won.push(resolved.into_inner()),
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one resolution wins");
    let current = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: evaluation.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let expected_revision = won[0].resolved_revision.unwrap_or(1);
    assert_eq!(current.revision, expected_revision, "at most one revision");
    let stored = app
        .store
        .get_dispute(app.tenant, Uuid::parse_str(&dispute.id).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.resolution_comment, won[0].resolution_comment);
}

async fn a_retried_open_answers_the_first_dispute_and_a_withdrawn_one_still_counts(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = evaluation_by(&app, &rubric.id, "qa-lead", 1, 2).await;
    let mut agent = disputes_as(&app, Role::Agent, Some("agent-1")).await;
    let request = open(&evaluation.id, vec![rating("empathy", 4)]);
    // Retries racing each other all answer with the one dispute stored.
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let mut agent = agent.clone();
            let request = request.clone();
            tokio::spawn(async move { agent.open_dispute(request).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in racing {
        answers.push(call.await.unwrap().unwrap().into_inner());
    }
    let first = answers[0].clone();
    assert!(answers.iter().all(|answer| *answer == first), "{answers:?}");
    assert_eq!(app.count("evaluation.disputes").await, 1);
    let retry = agent
        .open_dispute(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first, "a retry answers as the first time");
    let mut changed = request.clone();
    changed.comment = "something else".into();
    let reused = agent.open_dispute(changed).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    let withdrawn = agent
        .withdraw_dispute(pb::WithdrawDisputeRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.state, pb::DisputeState::Withdrawn as i32);
    let again = agent
        .withdraw_dispute(pb::WithdrawDisputeRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, withdrawn, "withdrawing again changes nothing");
    let mut other = disputes_as(&app, Role::Agent, Some("agent-2")).await;
    for status in [
        other
            .withdraw_dispute(pb::WithdrawDisputeRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap_err(),
        other
            .get_dispute(pb::GetDisputeRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound, "another agent's dispute");
    }
    let listed = other
        .list_disputes(pb::ListDisputesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());

    let second = agent
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap()
        .into_inner();
    let mut lead = disputes_as(&app, Role::QaReviewer, None).await;
    let open_ones = lead
        .list_disputes(pb::ListDisputesRequest {
            states: vec![pb::DisputeState::Open as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        open_ones.disputes.iter().map(|d| &d.id).collect::<Vec<_>>(),
        [&second.id]
    );
    let page = lead
        .list_disputes(pb::ListDisputesRequest {
            page_size: 1,
            evaluation_id: evaluation.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.disputes[0].id, second.id, "newest first");
    let next = lead
        .list_disputes(pb::ListDisputesRequest {
            page_size: 1,
            evaluation_id: evaluation.id.clone(),
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.disputes[0].id, first.id);
    assert!(next.next_page_token.is_empty());
    lead.resolve_dispute(resolve(&second.id, pb::DisputeOutcome::Rejected, vec![]))
        .await
        .unwrap();
    let third = agent
        .open_dispute(open(&evaluation.id, vec![]))
        .await
        .unwrap_err();
    assert!(third.message().contains("has had 2 disputes"), "{third:?}");
}

async fn the_dispute_summary_shows_which_reviewers_get_overturned(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut agent = disputes_as(&app, Role::Agent, Some("agent-1")).await;
    let mut lead = disputes_as(&app, Role::Admin, None).await;
    // harsh: 2 accepted, 1 rejected; fair: 1 rejected, 1 withdrawn.
    let plan = [
        ("harsh", Some(pb::DisputeOutcome::Accepted)),
        ("harsh", Some(pb::DisputeOutcome::PartiallyAccepted)),
        ("harsh", Some(pb::DisputeOutcome::Rejected)),
        ("fair", Some(pb::DisputeOutcome::Rejected)),
        ("fair", None),
    ];
    for (reviewer, outcome) in plan {
        let evaluation = evaluation_by(&app, &rubric.id, reviewer, 0, 2).await;
        let dispute = agent
            .open_dispute(open(&evaluation.id, vec![rating("greeting", 1)]))
            .await
            .unwrap()
            .into_inner();
        match outcome {
            Some(pb::DisputeOutcome::Rejected) => {
                lead.resolve_dispute(resolve(&dispute.id, pb::DisputeOutcome::Rejected, vec![]))
                    .await
                    .unwrap();
            }
            Some(outcome) => {
                lead.resolve_dispute(resolve(
                    &dispute.id,
                    outcome,
                    vec![rating("greeting", 1), rating("empathy", 2)],
                ))
                .await
                .unwrap();
            }
            None => {
                agent
                    .withdraw_dispute(pb::WithdrawDisputeRequest { id: dispute.id })
                    .await
                    .unwrap();
            }
        }
    }
    let mut analyst = iqs::proto::analytics::analytics_service_client::AnalyticsServiceClient::new(
        app.channel_as(Role::Analyst, None).await,
    );
    let summary = analyst
        .get_dispute_summary(an::GetDisputeSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    /// reviewer, opened, accepted, partially accepted, rejected, withdrawn, overturn rate
    type Row<'a> = (&'a str, u64, u64, u64, u64, u64, Option<f64>);
    let rows: Vec<Row> = summary
        .rows
        .iter()
        .map(|row| {
            (
                row.dimensions["reviewer"].as_str(),
                row.opened,
                row.accepted,
                row.partially_accepted,
                row.rejected,
                row.withdrawn,
                row.overturn_rate,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("harsh", 3, 1, 1, 1, 0, Some(2.0 / 3.0)),
            ("fair", 2, 0, 0, 1, 1, Some(0.0)),
        ]
    );
    assert!(
        summary
            .rows
            .iter()
            .all(|row| row.median_resolution_seconds.is_some())
    );
    let by_criterion = analyst
        .get_dispute_summary(an::GetDisputeSummaryRequest {
            group_by: an::Dimension::Criterion as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_criterion.rows.len(), 1);
    assert_eq!(by_criterion.rows[0].dimensions["criterion"], "greeting");
    assert_eq!(by_criterion.rows[0].opened, 5);
    let future = analyst
        .get_dispute_summary(an::GetDisputeSummaryRequest {
            time_range: Some(iqs::proto::common::TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 3_600,
                    nanos: 0,
                }),
                end_time: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(future.rows.is_empty());
    let refused = analyst
        .get_dispute_summary(an::GetDisputeSummaryRequest {
            group_by: an::Dimension::Channel as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["group_by"]);
}
