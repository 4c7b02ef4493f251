use std::collections::HashSet;

use iqs::config::ServiceSet;
use iqs::proto::evaluation::{self as pb, submit_evaluation_request::InteractionRef as PbRef};
use iqs::proto::rubric as rubric_pb;
use serde_json::Value;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, criterion, draft, interaction, new_rubric, published_rubric, rating,
    spawn_app_on, spawn_app_with, submission, violated_fields,
};

const TOLERANCE: f64 = 1e-9;

fn close(actual: Option<f64>, expected: Option<f64>) -> bool {
    match (actual, expected) {
        (Some(a), Some(e)) => (a - e).abs() < TOLERANCE,
        (a, e) => a == e,
    }
}

fn case_criterion(value: &Value) -> rubric_pb::Criterion {
    let mut c = criterion(
        value["key"].as_str().unwrap(),
        value["weight"].as_u64().unwrap() as u32,
        value["scale_min"].as_i64().unwrap() as i32,
        value["scale_max"].as_i64().unwrap() as i32,
    );
    c.section = value["section"].as_str().unwrap_or_default().into();
    c.allow_not_applicable = value["allow_not_applicable"].as_bool().unwrap_or(false);
    c.critical = match value["critical"].as_str().unwrap_or("NONE") {
        "EVALUATION" => rubric_pb::CriticalScope::Evaluation,
        "SECTION" => rubric_pb::CriticalScope::Section,
        _ => rubric_pb::CriticalScope::None,
    } as i32;
    c
}

async fn every_shared_scoring_case_scores_as_expected_through_submit_and_score(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let cases: Value = serde_json::from_str(include_str!("../data/scoring-cases.json")).unwrap();
    for (n, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let rubric = &case["rubric"];
        let rubric = app
            .rubrics()
            .create_rubric(new_rubric(
                name,
                rubric_pb::RubricDraft {
                    criteria: rubric["criteria"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(case_criterion)
                        .collect(),
                    pass_threshold: rubric["pass_threshold"].as_f64(),
                    auto_score: false,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        app.rubrics()
            .publish_rubric(rubric_pb::PublishRubricRequest {
                id: rubric.id.clone(),
            })
            .await
            .unwrap();
        let ratings: Vec<pb::Rating> = case["ratings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| pb::Rating {
                criterion_key: r["criterion_key"].as_str().unwrap().into(),
                value: r["value"].as_i64().map(|v| v as i32),
                not_applicable: r["not_applicable"].as_bool().unwrap_or(false),
                ..Default::default()
            })
            .collect();
        let mut request = submission(&rubric.id, &format!("case-{n}"), 0, 1);
        request.ratings = ratings.clone();
        let evaluation = app
            .evaluations()
            .submit_evaluation(request)
            .await
            .unwrap()
            .into_inner();
        let preview = app
            .evaluations()
            .score_evaluation(pb::ScoreEvaluationRequest {
                rubric_id: rubric.id.clone(),
                rubric_version: 0,
                ratings,
            })
            .await
            .unwrap()
            .into_inner();
        let expect = &case["expect"];
        assert!(
            close(evaluation.score, expect["score"].as_f64()),
            "{name}: {:?}",
            evaluation.score
        );
        assert!(
            close(preview.score, expect["score"].as_f64()),
            "{name}: {:?}",
            preview.score
        );
        assert_eq!(
            evaluation.critical_failed,
            expect["critical_failed"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            evaluation.passed,
            expect["passed"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(preview.passed, evaluation.passed, "{name}");
        let sections = expect["section_scores"].as_object().unwrap();
        assert_eq!(evaluation.section_scores.len(), sections.len(), "{name}");
        for section in &evaluation.section_scores {
            assert!(
                close(section.score, sections[&section.section].as_f64()),
                "{name}: {section:?}"
            );
        }
        // What was stored reads back the same.
        let read = app
            .evaluations()
            .get_evaluation(pb::GetEvaluationRequest {
                id: evaluation.id.clone(),
                revision: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read, evaluation, "{name}");
    }
}

async fn upserting_the_same_interaction_key_updates_it_and_never_duplicates(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.evaluations();
    let first = client
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(interaction("ZD-1", "agent-1")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut changed = interaction("ZD-1", "agent-2");
    changed.csat = Some(2);
    changed.attributes.insert("priority".into(), "high".into());
    let second = client
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(changed),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, second.id);
    assert_eq!(second.agent_id, "agent-2");
    assert_eq!(second.csat, Some(2));
    assert_eq!(app.count("evaluation.interactions").await, 1);
    let read = client
        .get_interaction(pb::GetInteractionRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, second);
}

async fn an_interaction_with_bad_fields_is_refused_naming_each(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut bad = interaction("carriage\rreturn", "");
    bad.csat = Some(9);
    bad.nps = Some(11);
    bad.channel = "x".repeat(257);
    bad.messages = vec![pb::Message {
        role: 0,
        text: "hi".into(),
        ..Default::default()
    }];
    let status = app
        .evaluations()
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(bad),
        })
        .await
        .unwrap_err();
    let fields: HashSet<String> = violated_fields(&status).into_iter().collect();
    for field in [
        "interaction.external_id",
        "interaction.agent_id",
        "interaction.csat",
        "interaction.nps",
        "interaction.channel",
        "interaction.messages[0].role",
    ] {
        assert!(fields.contains(field), "{field} in {fields:?}");
    }
    assert_eq!(app.count("evaluation.interactions").await, 0);
}

async fn submit_scores_and_copies_the_interactions_dimensions(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ZD-7", 1, 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluation.revision, 1);
    assert_eq!(evaluation.rubric_version, 1);
    assert_eq!(
        (
            evaluation.agent_id.as_str(),
            evaluation.team_id.as_str(),
            evaluation.channel.as_str(),
            evaluation.region.as_str()
        ),
        ("agent-1", "tier1", "chat", "eu-west")
    );
    assert!(close(
        evaluation.score,
        Some((100.0 + 2.0 * 200.0 / 3.0) / 3.0)
    ));
    assert_eq!(evaluation.state, pb::EvaluationState::Active as i32);
    assert_eq!(app.count("evaluation.ratings").await, 2);
    assert_eq!(app.count("evaluation.outbox").await, 1);

    // Changing the interaction later does not rewrite the evaluation's dimensions.
    app.evaluations()
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(interaction("ZD-7", "agent-9")),
        })
        .await
        .unwrap();
    let read = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: evaluation.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.agent_id, "agent-1");
}

async fn a_submission_can_name_a_stored_interaction_by_id(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let stored = app
        .evaluations()
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(interaction("ZD-8", "agent-3")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut request = submission(&rubric.id, "unused", 1, 4);
    request.interaction_ref = Some(PbRef::InteractionId(stored.id.clone()));
    let evaluation = app
        .evaluations()
        .submit_evaluation(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluation.interaction_id, stored.id);
    assert_eq!(evaluation.agent_id, "agent-3");

    request.request_id = Uuid::now_v7().to_string();
    request.interaction_ref = Some(PbRef::InteractionId(Uuid::now_v7().to_string()));
    let status = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn a_hundred_concurrent_submits_with_one_request_id_store_one_evaluation(backend: Backend) {
    // One key with a hundred calls in flight: beyond the default share of a key.
    let app = spawn_app_with(AppOptions {
        backend,
        tune: |config| config.max_concurrent_calls_per_key = 100,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let request = submission(&rubric.id, "ZD-100", 1, 4);
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let mut client = app.evaluations();
            let request = request.clone();
            tokio::spawn(async move {
                client
                    .submit_evaluation(request)
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let mut responses = Vec::new();
    for call in calls {
        responses.push(call.await.unwrap().expect("every call succeeds"));
    }
    assert!(responses.iter().all(|response| *response == responses[0]));
    assert_eq!(app.count("evaluation.evaluations").await, 1);
    assert_eq!(app.count("evaluation.ratings").await, 2);
    assert_eq!(app.count("evaluation.outbox").await, 1);
    assert_eq!(app.count("evaluation.interactions").await, 1);
}

async fn the_same_request_id_with_other_content_is_already_exists(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let request = submission(&rubric.id, "ZD-2", 1, 4);
    app.evaluations()
        .submit_evaluation(request.clone())
        .await
        .unwrap();
    let mut other = request.clone();
    other.ratings[1].value = Some(2);
    let status = app
        .evaluations()
        .submit_evaluation(other)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(app.count("evaluation.evaluations").await, 1);
}

async fn a_retry_is_answered_as_the_first_time_after_the_rubric_moved_on(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let request = submission(&rubric.id, "ZD-RETRY", 1, 4);
    let first = app
        .evaluations()
        .submit_evaluation(request.clone())
        .await
        .unwrap()
        .into_inner();
    // Version 2 drops "greeting": the first request's ratings no longer fit the latest
    // version, yet its retry must get the stored answer, not a new verdict.
    publish_next_version(&app, &rubric.id, vec![criterion("tone", 1, 1, 4)]).await;
    let retried = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    assert_eq!(retried.rubric_version, 1);
    assert_eq!(app.count("evaluation.evaluations").await, 1);
}

async fn a_refused_submission_leaves_no_evaluation_rating_outbox_or_interaction_row(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut request = submission(&rubric.id, "ZD-3", 1, 4);
    request.ratings = vec![
        rating("greeting", 2),
        rating("greeting", 1),
        rating("ghost", 1),
        pb::Rating {
            criterion_key: "empathy".into(),
            not_applicable: true,
            ..Default::default()
        },
    ];
    request.reviewer_id = String::new();
    let status = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "reviewer_id",
            "ratings",
            "ratings[0].value",
            "ratings[1].criterion_key",
            "ratings[2].criterion_key",
            "ratings[3].not_applicable",
        ]
    );
    for table in [
        "evaluation.evaluations",
        "evaluation.ratings",
        "evaluation.outbox",
        "evaluation.interactions",
    ] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
}

async fn unknown_and_unpublished_rubrics_are_not_found_and_failed_precondition(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let request = submission(&Uuid::now_v7().to_string(), "ZD-4", 1, 4);
    let status = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let draft_only = app
        .rubrics()
        .create_rubric(new_rubric(
            "Draft",
            draft(vec![criterion("greeting", 1, 0, 1)]),
        ))
        .await
        .unwrap()
        .into_inner();
    let status = app
        .evaluations()
        .submit_evaluation(submission(&draft_only.id, "ZD-5", 1, 4))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(app.count("evaluation.evaluations").await, 0);
}

/// Drafts `criteria` as the rubric's next version and publishes it.
async fn publish_next_version(
    app: &crate::helpers::TestApp,
    rubric_id: &str,
    criteria: Vec<rubric_pb::Criterion>,
) {
    app.rubrics()
        .update_rubric_draft(rubric_pb::UpdateRubricDraftRequest {
            id: rubric_id.to_owned(),
            draft: Some(draft(criteria)),
            update_mask: None,
        })
        .await
        .unwrap();
    app.rubrics()
        .publish_rubric(rubric_pb::PublishRubricRequest {
            id: rubric_id.to_owned(),
        })
        .await
        .unwrap();
}

async fn publishing_version_2_leaves_version_1_scores_unchanged(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let v1 = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ZD-6", 0, 4))
        .await
        .unwrap()
        .into_inner();
    publish_next_version(
        &app,
        &rubric.id,
        vec![
            criterion("greeting", 9, 0, 1),
            criterion("empathy", 1, 1, 4),
        ],
    )
    .await;
    let read = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: v1.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, v1);
    let v2 = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ZD-6", 0, 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.rubric_version, 2);
    assert!(close(v2.score, Some(10.0)));
    // Revising a version-1 evaluation scores it against version 1.
    let revised = app
        .evaluations()
        .revise_evaluation(pb::ReviseEvaluationRequest {
            id: v1.id.clone(),
            request_id: Uuid::now_v7().to_string(),
            ratings: vec![rating("greeting", 0), rating("empathy", 4)],
            comment: String::new(),
            reason: "same ratings".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revised.rubric_version, 1);
    assert_eq!(revised.score, v1.score);
}

async fn a_revision_supersedes_the_current_one_which_stays_readable(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let original = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ZD-9", 0, 1))
        .await
        .unwrap()
        .into_inner();
    let revise = pb::ReviseEvaluationRequest {
        id: original.id.clone(),
        request_id: Uuid::now_v7().to_string(),
        ratings: vec![rating("greeting", 1), rating("empathy", 4)],
        comment: "after calibration".into(),
        reason: "calibration session".into(),
    };
    let revised = app
        .evaluations()
        .revise_evaluation(revise.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revised.id.as_str(), revised.revision),
        (original.id.as_str(), 2)
    );
    assert_eq!(revised.score, Some(100.0));
    assert_eq!(
        revised
            .create_time
            .as_ref()
            .map(|t| t.seconds >= original.create_time.as_ref().unwrap().seconds),
        Some(true)
    );
    // A retry of the revision returns it again.
    let retried = app
        .evaluations()
        .revise_evaluation(revise.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, revised);

    let old = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: original.id.clone(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.state, pb::EvaluationState::Superseded as i32);
    assert_eq!(old.score, original.score);
    let current = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: original.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current, revised);
    assert_eq!(app.count("evaluation.outbox").await, 2);

    let mut no_reason = revise;
    no_reason.request_id = Uuid::now_v7().to_string();
    no_reason.reason = " ".into();
    no_reason.ratings = vec![rating("greeting", 7)];
    let status = app
        .evaluations()
        .revise_evaluation(no_reason)
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["reason", "ratings[0].value", "ratings"]
    );
}

async fn deleting_is_soft_kept_for_audit_and_hidden_from_default_listings(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ZD-10", 1, 4))
        .await
        .unwrap()
        .into_inner();
    let status = app
        .evaluations()
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: evaluation.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);
    let deleted = app
        .evaluations()
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: evaluation.id.clone(),
            reason: "wrong agent".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.state, pb::EvaluationState::Deleted as i32);
    assert_eq!(deleted.score, evaluation.score);
    let again = app
        .evaluations()
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: evaluation.id.clone(),
            reason: "wrong agent".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, deleted);
    assert_eq!(app.count("evaluation.outbox").await, 2);

    let listed = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.evaluations.is_empty());
    let all = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest {
            include_inactive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.evaluations, vec![deleted]);
    let status = app
        .evaluations()
        .revise_evaluation(pb::ReviseEvaluationRequest {
            id: evaluation.id.clone(),
            request_id: String::new(),
            ratings: vec![rating("greeting", 1), rating("empathy", 4)],
            comment: String::new(),
            reason: "undo".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn listing_filters_and_pages_newest_first(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let mut request = submission(&rubric.id, &format!("ZD-L{n}"), 1, 4);
        if let Some(PbRef::Interaction(inline)) = request.interaction_ref.as_mut() {
            inline.agent_id = if n % 2 == 0 {
                "even".into()
            } else {
                "odd".into()
            };
        }
        if n == 6 {
            request.kind = pb::EvaluationKind::Calibration as i32;
        }
        ids.push(
            app.evaluations()
                .submit_evaluation(request)
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .evaluations()
            .list_evaluations(pb::ListEvaluationsRequest {
                page_size: 2,
                page_token: token,
                agent_id: "even".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.evaluations.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            ids[6].clone(),
            ids[4].clone(),
            ids[2].clone(),
            ids[0].clone()
        ]
    );
    let calibrations = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest {
            kinds: vec![pb::EvaluationKind::Calibration as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(calibrations.evaluations.len(), 1);
    let future = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest {
            time_range: Some(iqs::proto::common::TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: 4_000_000_000,
                    nanos: 0,
                }),
                end_time: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(future.evaluations.is_empty());
}

async fn scoring_a_preview_stores_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let preview = app
        .evaluations()
        .score_evaluation(pb::ScoreEvaluationRequest {
            rubric_id: rubric.id.clone(),
            rubric_version: 1,
            ratings: vec![rating("greeting", 1), rating("empathy", 4)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.score, Some(100.0));
    assert!(preview.passed);
    assert_eq!(app.count("evaluation.evaluations").await, 0);
    assert_eq!(app.count("evaluation.outbox").await, 0);
}

async fn an_import_stores_every_good_row_and_reports_every_bad_one_by_index(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    const ROWS: usize = 100_000;
    let bad: HashSet<usize> = (0..ROWS).filter(|i| i % 100 == 37).collect();
    let rubric_id = rubric.id.clone();
    let rows = (0..ROWS).map(move |i| {
        let mut row = submission(
            &rubric_id,
            &format!("IMP-{i}"),
            (i % 2) as i32,
            1 + (i % 4) as i32,
        );
        row.request_id = format!("import-{i}");
        if i % 100 == 37 {
            row.ratings[0].value = Some(5);
        }
        row
    });
    let response = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted as usize, ROWS - bad.len());
    assert_eq!(response.rejected_count as usize, bad.len());
    let indexes: HashSet<usize> = response.rejected.iter().map(|r| r.index as usize).collect();
    assert_eq!(indexes, bad);
    assert!(
        response
            .rejected
            .iter()
            .all(|r| r.reason.contains("ratings[0].value"))
    );
    assert_eq!(
        app.count("evaluation.evaluations").await as usize,
        ROWS - bad.len()
    );
    assert_eq!(
        app.count("evaluation.ratings").await as usize,
        2 * (ROWS - bad.len())
    );
    assert_eq!(
        app.count("evaluation.outbox").await as usize,
        ROWS - bad.len()
    );
}

/// Rows are checked while earlier batches are being stored; the rejections of both
/// stages are still listed in stream order.
async fn an_import_lists_rejections_of_checks_and_of_the_store_in_stream_order(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    const ROWS: usize = 3_500;
    let refused_by_checks = [5, 1_700, 3_499];
    let refused_by_store = [10, 1_200, 2_999];
    let rubric_id = rubric.id.clone();
    let rows = (0..ROWS).map(move |i| {
        let mut row = submission(&rubric_id, &format!("ORDER-{i}"), 1, 2);
        if refused_by_checks.contains(&i) {
            row.ratings[0].value = Some(5);
        }
        if refused_by_store.contains(&i) {
            row.interaction_ref = Some(PbRef::InteractionId(Uuid::now_v7().to_string()));
        }
        row
    });
    let response = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<u64> = response.rejected.iter().map(|r| r.index).collect();
    assert_eq!(listed, [5, 10, 1_200, 1_700, 2_999, 3_499]);
    assert_eq!(response.rejected_count, 6);
    assert_eq!(response.accepted as usize, ROWS - 6);
    assert_eq!(app.count("evaluation.evaluations").await as usize, ROWS - 6);
}

/// Two imports of the same rows at once, one in reverse order so that their batches
/// overlap in part: each row is stored once, every row is accepted by one import and a
/// duplicate for the other, and neither import fails on a lock the other holds.
async fn concurrent_imports_of_the_same_rows_store_each_once(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    const ROWS: usize = 2_500;
    let rows: Vec<pb::SubmitEvaluationRequest> = (0..ROWS)
        .map(|i| {
            let mut row = submission(&rubric.id, &format!("TWICE-{i}"), 1, 3);
            row.request_id = format!("twice-{i}");
            row
        })
        .collect();
    let reversed: Vec<_> = rows.iter().rev().cloned().collect();
    let (mut first, mut second) = (app.evaluations(), app.evaluations());
    let (a, b) = tokio::join!(
        first.import_evaluations(tokio_stream::iter(rows)),
        second.import_evaluations(tokio_stream::iter(reversed)),
    );
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    assert_eq!((a.rejected_count, b.rejected_count), (0, 0), "{a:?} {b:?}");
    assert_eq!(a.accepted + b.accepted, ROWS as u64);
    assert_eq!(a.duplicates + b.duplicates, ROWS as u64);
    assert_eq!(app.count("evaluation.evaluations").await as usize, ROWS);
    assert_eq!(app.count("evaluation.outbox").await as usize, ROWS);
}

async fn importing_again_counts_duplicates_and_refuses_changed_rows(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let rows: Vec<_> = (0..50)
        .map(|i| {
            let mut row = submission(&rubric.id, &format!("DUP-{i}"), 1, 4);
            row.request_id = format!("dup-{i}");
            row
        })
        .collect();
    let first = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.accepted, 50);
    let mut again = rows.clone();
    again[3].ratings[1].value = Some(1);
    again.push(rows[0].clone());
    let second = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(again))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (second.accepted, second.duplicates, second.rejected_count),
        (0, 50, 1)
    );
    assert_eq!(second.rejected[0].index, 3);
    assert_eq!(app.count("evaluation.evaluations").await, 50);
}

async fn an_evaluation_server_reads_rubrics_from_a_remote_rubric_server(backend: Backend) {
    let rubric_server = spawn_app_with(AppOptions {
        backend,
        services: "rubric".parse::<ServiceSet>().unwrap(),
        ..AppOptions::default()
    })
    .await;
    // One database, one tenant: the caller's key is passed on to the rubric service.
    let evaluation_server = spawn_app_with(AppOptions {
        backend,
        services: "evaluation".parse::<ServiceSet>().unwrap(),
        database_url: Some(rubric_server.database_url.clone()),
        rubric_endpoint: Some(format!("http://{}", rubric_server_addr(&rubric_server))),
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut rubric_server.rubrics()).await;
    let caller = crate::helpers::with_key(
        evaluation_server.raw_channel.clone(),
        &rubric_server.admin_key,
    );
    let mut evaluations =
        iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient::new(caller);
    let evaluation = evaluations
        .submit_evaluation(submission(&rubric.id, "REMOTE-1", 1, 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluation.score, Some(100.0));
    let status = evaluations
        .submit_evaluation(submission(&Uuid::now_v7().to_string(), "REMOTE-2", 1, 4))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

fn rubric_server_addr(app: &crate::helpers::TestApp) -> std::net::SocketAddr {
    app.addr
}

async fn an_import_keeps_the_review_time_of_history_and_a_submission_may_not_carry_one(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let reviewed = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:30:00Z")
        .unwrap()
        .to_utc();
    let mut history = submission(&rubric.id, "HIST-1", 1, 4);
    history.create_time = Some(prost_types::Timestamp {
        seconds: reviewed.timestamp(),
        nanos: 0,
    });
    let mut future = submission(&rubric.id, "HIST-2", 1, 4);
    future.create_time = Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 86_400,
        nanos: 0,
    });
    let response = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(vec![history.clone(), future]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.rejected_count), (1, 1));
    assert_eq!(response.rejected[0].index, 1);
    assert!(response.rejected[0].reason.contains("create_time"));
    let listed = app
        .evaluations()
        .list_evaluations(pb::ListEvaluationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.evaluations[0].create_time,
        Some(prost_types::Timestamp {
            seconds: reviewed.timestamp(),
            nanos: 0,
        })
    );

    history.request_id = uuid::Uuid::now_v7().to_string();
    let refused = app
        .evaluations()
        .submit_evaluation(history)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["create_time".to_owned()]);
}

crate::on_every_store! {
    an_import_keeps_the_review_time_of_history_and_a_submission_may_not_carry_one,
    every_shared_scoring_case_scores_as_expected_through_submit_and_score,
    upserting_the_same_interaction_key_updates_it_and_never_duplicates,
    an_interaction_with_bad_fields_is_refused_naming_each,
    submit_scores_and_copies_the_interactions_dimensions,
    a_submission_can_name_a_stored_interaction_by_id,
    a_hundred_concurrent_submits_with_one_request_id_store_one_evaluation,
    the_same_request_id_with_other_content_is_already_exists,
    a_retry_is_answered_as_the_first_time_after_the_rubric_moved_on,
    a_refused_submission_leaves_no_evaluation_rating_outbox_or_interaction_row,
    unknown_and_unpublished_rubrics_are_not_found_and_failed_precondition,
    publishing_version_2_leaves_version_1_scores_unchanged,
    a_revision_supersedes_the_current_one_which_stays_readable,
    deleting_is_soft_kept_for_audit_and_hidden_from_default_listings,
    listing_filters_and_pages_newest_first,
    scoring_a_preview_stores_nothing,
    an_import_stores_every_good_row_and_reports_every_bad_one_by_index,
    an_import_lists_rejections_of_checks_and_of_the_store_in_stream_order,
    concurrent_imports_of_the_same_rows_store_each_once,
    importing_again_counts_duplicates_and_refuses_changed_rows,
    an_evaluation_server_reads_rubrics_from_a_remote_rubric_server,
}

/// Ratings are checked against their evaluation revision once per statement rather than
/// by a foreign key row by row; the rule itself is the foreign key's.
#[tokio::test]
async fn the_database_refuses_ratings_without_their_evaluation_and_keeps_an_evaluation_with_ratings()
 {
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let stored = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "FK-1", 1, 4))
        .await
        .unwrap()
        .into_inner();
    let id: Uuid = stored.id.parse().unwrap();
    let refused = [
        (
            "a rating of an evaluation that does not exist",
            "INSERT INTO evaluation.ratings
                 (tenant_id, evaluation_id, revision, position, criterion_key, value,
                  not_applicable, comment, root_causes)
             SELECT tenant_id, $1, 1, 0, 'greeting', 1, false, '', '[]'
             FROM evaluation.evaluations LIMIT 1",
            Uuid::now_v7(),
        ),
        (
            "ratings moved to a revision that does not exist",
            "UPDATE evaluation.ratings SET revision = 2 WHERE evaluation_id = $1",
            id,
        ),
        (
            "an evaluation deleted from under its ratings",
            "DELETE FROM evaluation.evaluations WHERE id = $1",
            id,
        ),
        (
            "an evaluation re-keyed from under its ratings",
            "UPDATE evaluation.evaluations SET revision = 7 WHERE id = $1",
            id,
        ),
    ];
    for (what, sql, target) in refused {
        let code = match app.db.execute_with(sql, target).await {
            Err(sqlx::Error::Database(err)) => err.code().map(|code| code.into_owned()),
            other => panic!("{what} was not refused: {other:?}"),
        };
        assert_eq!(code.as_deref(), Some("23503"), "{what}");
    }
    // Changing an evaluation's state, as revisions and deletions do, is untouched.
    let restated = "UPDATE evaluation.evaluations SET state = state WHERE id = $1";
    assert_eq!(app.db.execute_with(restated, id).await.unwrap(), 1);
    let fetched = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: stored.id.clone(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.ratings, stored.ratings);
}

/// Evaluations are checked against their interaction once per statement rather than by a
/// foreign key; the rule itself is the foreign key's.
#[tokio::test]
async fn the_database_refuses_an_evaluation_without_its_interaction_and_keeps_an_interaction_with_evaluations()
 {
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let stored = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "FK-I", 1, 4))
        .await
        .unwrap()
        .into_inner();
    let interaction: Uuid = stored.interaction_id.parse().unwrap();
    let refused = [
        (
            "an evaluation of an interaction that does not exist",
            "INSERT INTO evaluation.evaluations
                 (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region,
                  rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
                  criterion_scores, critical_failed, passed, state, reason, create_time,
                  first_create_time)
             SELECT tenant_id, gen_random_uuid(), 1, $1, agent_id, team_id, channel, region,
                    rubric_id, rubric_version, reviewer_id, kind, comment, score, section_scores,
                    criterion_scores, critical_failed, passed, state, reason, create_time,
                    first_create_time
             FROM evaluation.evaluations LIMIT 1",
            Uuid::now_v7(),
        ),
        (
            "an interaction deleted from under its evaluation",
            "DELETE FROM evaluation.interactions WHERE id = $1",
            interaction,
        ),
        (
            "an interaction re-keyed from under its evaluation",
            "UPDATE evaluation.interactions SET id = gen_random_uuid() WHERE id = $1",
            interaction,
        ),
    ];
    for (what, sql, target) in refused {
        let code = match app.db.execute_with(sql, target).await {
            Err(sqlx::Error::Database(err)) => err.code().map(|code| code.into_owned()),
            other => panic!("{what} was not refused: {other:?}"),
        };
        assert_eq!(code.as_deref(), Some("23503"), "{what}");
    }
}

/// A session that checked evaluations against interactions while the table was nearly
/// empty still looks each interaction up by its primary key once there are many: the
/// check is planned for its values every time, not frozen in a plan made on an empty
/// table (which read every interaction of the tenant).
#[tokio::test]
async fn the_interaction_check_reads_the_primary_key_after_the_table_grows_in_the_same_session() {
    use sqlx::{Connection, Executor};
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let seed = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "PLAN-0", 1, 4))
        .await
        .unwrap()
        .into_inner();
    let mut session = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    session
        .execute(
            format!(
                "CREATE TEMP TABLE probe AS SELECT * FROM evaluation.evaluations WHERE id = '{}'",
                seed.id
            )
            .as_str(),
        )
        .await
        .unwrap();
    // One interaction and one evaluation of it, written as a client of the table would.
    let write_one = |n: usize| {
        format!(
            "WITH i AS (
                 INSERT INTO evaluation.interactions
                     (tenant_id, id, source, external_id, channel, agent_id, team_id, region,
                      messages, attributes)
                 SELECT tenant_id, gen_random_uuid(), 'probe', 'P-{n}', 'chat', agent_id,
                        team_id, region, '[]', '{{}}'
                 FROM probe RETURNING id)
             UPDATE probe SET id = gen_random_uuid(), interaction_id = (SELECT id FROM i),
                              request_id = NULL;
             INSERT INTO evaluation.evaluations SELECT * FROM probe;"
        )
    };
    for n in 0..8 {
        sqlx::raw_sql(&write_one(n))
            .execute(&mut session)
            .await
            .unwrap();
    }
    app.db
        .execute(
            "INSERT INTO evaluation.interactions
                 (tenant_id, id, source, external_id, channel, agent_id, team_id, region,
                  messages, attributes)
             SELECT tenant_id, gen_random_uuid(), 'bulk', g::text, 'chat', 'a', 't', 'r', '[]', '{}'
             FROM evaluation.interactions, generate_series(1, 20000) g
             WHERE external_id = 'PLAN-0'",
            "",
        )
        .await;
    // Counted within one transaction: the session's counters are not flushed meanwhile.
    const SCANS: &str = "SELECT pg_stat_get_xact_numscans('evaluation.interactions_by_time'::regclass),
                                pg_stat_get_xact_numscans('evaluation.interactions_pkey'::regclass)";
    let mut tx = session.begin().await.unwrap();
    let before: (i64, i64) = sqlx::query_as(SCANS).fetch_one(&mut *tx).await.unwrap();
    for n in 8..13 {
        sqlx::raw_sql(&write_one(n))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let after: (i64, i64) = sqlx::query_as(SCANS).fetch_one(&mut *tx).await.unwrap();
    let scans = (after.0 - before.0, after.1 - before.1);
    assert_eq!(scans.0, 0, "the check scanned interactions by time");
    assert!(
        scans.1 >= 5,
        "the check did not read the primary key: {scans:?}"
    );
}

/// A submission of the rubric of `published_rubric`, as the service hands it to the store.
fn scored(
    rubric_id: &str,
    interaction: iqs::domain::evaluation::InteractionRef,
    request_id: &str,
    comment: &str,
) -> iqs::domain::evaluation::NewEvaluation {
    use iqs::domain::evaluation::{EvaluationKind, NewEvaluation};
    use iqs::domain::scoring::{Rating, ScoreOutcome};
    let rating = |key: &str, value: i32| Rating {
        criterion_key: key.into(),
        value: Some(value),
        not_applicable: false,
        comment: String::new(),
        root_causes: Vec::new(),
        explanation: String::new(),
    };
    NewEvaluation {
        request_id: Some(request_id.to_owned()),
        fingerprint: format!("{request_id}/{comment}").into_bytes(),
        interaction,
        rubric_id: rubric_id.parse().unwrap(),
        rubric_version: 1,
        reviewer_id: "qa-lead".into(),
        kind: EvaluationKind::Manual,
        ratings: vec![rating("greeting", 1), rating("empathy", 4)],
        comment: comment.into(),
        outcome: ScoreOutcome {
            score: Some(100.0),
            section_scores: Vec::new(),
            criterion_scores: Vec::new(),
            critical_failed: false,
            passed: true,
        },
        review_time: None,
        interaction_keeps_agent: false,
        calibration_session_id: None,
    }
}

fn inline(external_id: &str, agent_id: &str) -> iqs::domain::evaluation::InteractionRef {
    iqs::domain::evaluation::InteractionRef::Inline(Box::new(
        iqs::domain::interaction::InteractionInput {
            source: "zendesk".into(),
            external_id: external_id.into(),
            channel: "chat".into(),
            agent_id: agent_id.into(),
            team_id: "tier1".into(),
            region: "eu-west".into(),
            occur_time: None,
            csat: Some(4),
            nps: None,
            messages: Vec::new(),
            attributes: Default::default(),
        },
    ))
}

/// What `submit` does with calls that arrive together: one transaction for the group,
/// each call answered as if alone. A row the database refuses (here a NUL the service
/// would have refused first) rolls the group back and each is stored alone: it fails,
/// and no other does.
#[tokio::test]
async fn a_group_of_submissions_answers_each_as_alone_and_a_refused_one_fails_no_other() {
    use iqs::domain::evaluation::InteractionRef as Ref;
    use iqs::error::Error;
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let stored = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "GROUP-0", 1, 4))
        .await
        .unwrap()
        .into_inner();
    let stored_request = app
        .store
        .get_evaluation(app.tenant, stored.id.parse().unwrap(), None)
        .await
        .unwrap();
    let store = iqs::store::postgres::PostgresStore::connect(
        &app.database_url,
        &iqs::store::postgres::PoolSettings::default(),
    )
    .await
    .unwrap();
    let (tenant, id) = (app.tenant, &rubric.id);
    let first_retry = {
        // A retry of the stored submission must present its fingerprint, which the
        // service computed: read it back.
        let (request_id, fingerprint): (String, Vec<u8>) = sqlx::query_as(
            "SELECT request_id, request_fingerprint FROM evaluation.evaluations WHERE id = $1",
        )
        .bind(stored_request.id)
        .fetch_one(app.pg_pool())
        .await
        .unwrap();
        let mut retry = scored(id, inline("GROUP-0", "agent-1"), &request_id, "");
        retry.fingerprint = fingerprint;
        retry
    };
    let changed_retry = scored(
        id,
        inline("GROUP-0", "agent-1"),
        first_retry.request_id.as_deref().unwrap(),
        "other content",
    );
    let missing = Uuid::now_v7();
    let group = vec![
        scored(id, inline("GROUP-1", "agent-a"), "r-1", ""),
        scored(id, inline("GROUP-2", "agent-b"), "r-2", "a NUL \0 here"),
        scored(id, Ref::Id(missing), "r-3", ""),
        first_retry,
        changed_retry,
        scored(id, inline("GROUP-5", "agent-c"), "r-5", ""),
        scored(id, inline("GROUP-5", "agent-c"), "r-5", ""),
        scored(id, inline("GROUP-1", "agent-d"), "r-7", ""),
    ];
    let before = app.count("evaluation.evaluations").await;
    let outcomes = store
        .submit_group(
            group.into_iter().map(|row| (tenant, row)).collect(),
            &|_| true,
        )
        .await;
    assert_eq!(outcomes.len(), 8);
    let ok = |n: usize| {
        outcomes[n]
            .as_ref()
            .unwrap_or_else(|err| panic!("row {n}: {err:?}"))
    };
    assert_eq!(ok(0).agent_id, "agent-a");
    assert!(outcomes[1].is_err(), "{:?}", outcomes[1]);
    assert!(
        matches!(&outcomes[2], Err(Error::NotFound { id, .. }) if *id == missing.to_string()),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(
        ok(3).id,
        stored_request.id,
        "a retry answers the stored evaluation"
    );
    assert!(
        matches!(outcomes[4], Err(Error::AlreadyExists(_))),
        "{:?}",
        outcomes[4]
    );
    assert_eq!(
        ok(5).id,
        ok(6).id,
        "a request id repeated in the group is its retry"
    );
    // The later submission on the same interaction key updated the interaction first.
    assert_eq!(ok(7).agent_id, "agent-d");
    assert_eq!(ok(7).interaction_id, ok(0).interaction_id);
    assert_eq!(app.count("evaluation.evaluations").await, before + 3);
    let nothing_of_the_refused_row: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM evaluation.interactions WHERE external_id = 'GROUP-2'",
    )
    .fetch_one(app.pg_pool())
    .await
    .unwrap();
    assert_eq!(nothing_of_the_refused_row, 0);
    for n in [0, 5, 7] {
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM evaluation.outbox WHERE evaluation_id = $1")
                .bind(ok(n).id)
                .fetch_one(app.pg_pool())
                .await
                .unwrap();
        assert_eq!(events, 1, "row {n} has one outbox event");
    }
}

/// A caller that goes away (deadline, cancel) while its group is being written has
/// nothing stored, as a call alone: the group is rolled back before its commit, and the
/// submissions of the callers still waiting are stored alone.
#[tokio::test]
async fn a_caller_gone_before_its_groups_commit_has_nothing_stored_and_the_others_are() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let store = iqs::store::postgres::PostgresStore::connect(
        &app.database_url,
        &iqs::store::postgres::PoolSettings::default(),
    )
    .await
    .unwrap();
    let group: Vec<_> = (0..4)
        .map(|n| {
            let row = scored(
                &rubric.id,
                inline(&format!("GONE-{n}"), "agent-1"),
                &format!("gone-{n}"),
                "",
            );
            (app.tenant, row)
        })
        .collect();
    let gone = 2;
    let outcomes = store.submit_group(group, &|index| index != gone).await;
    for (n, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.is_ok(), n != gone, "row {n}: {outcome:?}");
    }
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT i.external_id FROM evaluation.evaluations e
           JOIN evaluation.interactions i ON i.tenant_id = e.tenant_id AND i.id = e.interaction_id
           JOIN evaluation.outbox o ON o.evaluation_id = e.id
          ORDER BY i.external_id",
    )
    .fetch_all(app.pg_pool())
    .await
    .unwrap();
    assert_eq!(stored, ["GONE-0", "GONE-1", "GONE-3"]);
    let interactions_of_the_gone_caller: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM evaluation.interactions WHERE external_id = 'GONE-2'",
    )
    .fetch_one(app.pg_pool())
    .await
    .unwrap();
    assert_eq!(interactions_of_the_gone_caller, 0);
}

/// Concurrent SubmitEvaluation calls share transactions (their outbox events share
/// transaction ids), and each still gets its own answer: a missing interaction or a
/// reused request id fails only its own call.
#[tokio::test]
async fn concurrent_submissions_share_transactions_and_each_keeps_its_own_outcome() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let seed = submission(&rubric.id, "SHARED-0", 1, 4);
    app.evaluations()
        .submit_evaluation(seed.clone())
        .await
        .unwrap();
    // 60 calls: within an API key's limit of 64 calls in flight.
    let calls = (0..60).map(|n| {
        let mut client = app.evaluations();
        let mut request = submission(&rubric.id, &format!("SHARED-{}", n + 1), 1, 4);
        match n % 10 {
            8 => request.interaction_ref = Some(PbRef::InteractionId(Uuid::now_v7().to_string())),
            9 => {
                request.request_id = seed.request_id.clone();
                request.comment = format!("other content {n}");
            }
            _ => {}
        }
        async move { (n, client.submit_evaluation(request).await) }
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut stored = Vec::new();
    for (n, answer) in answers {
        match (n % 10, answer) {
            (8, Err(status)) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            (9, Err(status)) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            (_, Ok(evaluation)) if n % 10 < 8 => stored.push(evaluation.into_inner().id),
            (_, other) => panic!("call {n}: {other:?}"),
        }
    }
    assert_eq!(stored.len(), 48);
    let ids: Vec<Uuid> = stored.iter().map(|id| id.parse().unwrap()).collect();
    let (events, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT txid::text) FROM evaluation.outbox
         WHERE evaluation_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(app.pg_pool())
    .await
    .unwrap();
    assert_eq!(events, 48, "one event per stored evaluation");
    assert!(
        transactions < 48,
        "48 concurrent submissions used {transactions} transactions"
    );
}

/// A call is answered only after the commit that stored it: killing the server with
/// SIGKILL while 16 callers submit loses none of the answered submissions, and the
/// callers' retries of every request (answered or not) store each exactly once.
#[tokio::test]
async fn every_answered_submission_survives_a_kill_9_and_retries_store_each_once() {
    use crate::owned_servers::ServerProcess;
    use std::sync::{Arc, Mutex};
    let database_url = crate::helpers::migrated_test_database().await;
    let key = crate::helpers::admin_key_in(&database_url).await;
    let server = ServerProcess::spawn(&[("DATABASE_URL", &database_url)]);
    let channel = crate::helpers::with_key(server.channel().await, &key);
    let mut rubrics =
        iqs::proto::rubric::rubric_service_client::RubricServiceClient::new(channel.clone());
    let (rubric, _) = published_rubric(&mut rubrics).await;
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sent: Arc<Mutex<Vec<pb::SubmitEvaluationRequest>>> = Arc::default();
    let callers: Vec<_> = (0..16)
        .map(|caller| {
            let (answered, sent) = (answered.clone(), sent.clone());
            let mut client =
                pb::evaluation_service_client::EvaluationServiceClient::new(channel.clone());
            let rubric_id = rubric.id.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let request = submission(&rubric_id, &format!("KILL-{caller}-{n}"), 1, 4);
                    sent.lock().unwrap().push(request.clone());
                    let request_id = request.request_id.clone();
                    match client.submit_evaluation(request).await {
                        Ok(evaluation) => answered
                            .lock()
                            .unwrap()
                            .push((request_id, evaluation.into_inner().id)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    drop(server);
    for caller in callers {
        caller.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        answered.len() >= 16,
        "only {} calls were answered",
        answered.len()
    );

    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    for (request_id, id) in &answered {
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT e.id::text FROM evaluation.evaluations e
             JOIN evaluation.outbox o ON o.evaluation_id = e.id AND o.revision = e.revision
             WHERE e.request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&db)
        .await
        .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(id.as_str()),
            "answered {request_id} was lost"
        );
    }

    let restarted = ServerProcess::spawn(&[("DATABASE_URL", &database_url)]);
    let mut client = pb::evaluation_service_client::EvaluationServiceClient::new(
        crate::helpers::with_key(restarted.channel().await, &key),
    );
    for request in &sent {
        let again = client
            .submit_evaluation(request.clone())
            .await
            .unwrap()
            .into_inner();
        if let Some((_, id)) = answered.iter().find(|(r, _)| *r == request.request_id) {
            assert_eq!(&again.id, id, "a retry answers the stored evaluation");
        }
    }
    let request_ids: Vec<&str> = sent.iter().map(|r| r.request_id.as_str()).collect();
    let (rows, events): (i64, i64) = sqlx::query_as(
        "SELECT count(*), (SELECT count(*) FROM evaluation.outbox o
                           WHERE o.evaluation_id IN (SELECT id FROM evaluation.evaluations
                                                     WHERE request_id = ANY($1)))
         FROM evaluation.evaluations WHERE request_id = ANY($1)",
    )
    .bind(&request_ids)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((rows, events), (sent.len() as i64, sent.len() as i64));
}

/// The lookups an import makes by key (stored request ids, the interaction of each new
/// evaluation) read only those keys, even when the tables have never been analysed, as
/// during a first bulk import before autovacuum has looked at them (switched off here so
/// that it cannot). Written as `= ANY(array)`, the planner read every request id and
/// every interaction of the tenant for each part of each batch instead.
#[tokio::test]
async fn import_lookups_read_only_their_keys_before_the_tables_are_analysed() {
    let app = spawn_app_with(AppOptions::default()).await;
    for table in ["evaluations", "interactions"] {
        sqlx::query(&format!(
            "ALTER TABLE evaluation.{table} SET (autovacuum_enabled = false)"
        ))
        .execute(app.pg_pool())
        .await
        .unwrap();
    }
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let import = |rows: std::ops::Range<usize>| {
        let (app, rubric_id) = (&app, rubric.id.clone());
        async move {
            let stream = tokio_stream::iter(
                rows.map(move |n| submission(&rubric_id, &format!("UNANALYSED-{n}"), 1, 3)),
            );
            let response = app
                .evaluations()
                .import_evaluations(stream)
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.rejected_count, 0, "{response:?}");
        }
    };
    // Index entries read so far by the scans that are not key lookups, once the
    // server's sessions have reported their statistics (at most a second after a call).
    let entries_read = || async {
        let read = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes
                  WHERE indexrelname IN ('evaluations_request_id_key', 'interactions_by_time',
                                         'interactions_by_update')",
            )
            .fetch_one(app.pg_pool())
            .await
            .unwrap()
        };
        let mut last = read().await;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
            let now = read().await;
            if now == last {
                return now;
            }
            last = now;
        }
    };
    import(0..20_000).await;
    let before = entries_read().await;
    import(20_000..21_000).await;
    let read = entries_read().await - before;
    assert!(
        read < 5_000,
        "an import of 1,000 rows into 20,000 read {read} index entries beyond its keys"
    );
}

/// An import whose events would leave the projector more than
/// `import_max_projection_lag` behind waits before its next batch. Here the projector's
/// cursor is locked (the projector skips a locked cursor): the import stores its first
/// batch, then waits, for half a second, well under the second after which a projector
/// that does not move stops holding imports back. Without the wait, the other two
/// batches are stored within that half second. Once the projector may move, the import
/// ends with every row.
#[tokio::test]
async fn an_import_waits_before_its_next_batch_while_the_projector_is_far_behind() {
    use iqs::services::evaluation::IMPORT_BATCH_SIZE;
    use std::time::Duration;
    use tokio::time::Instant;

    let app = spawn_app_with(AppOptions {
        tune: |config| config.import_max_projection_lag = 300,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut holder = app.pg_pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM analytics.projector_cursor FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    const ROWS: usize = 3 * IMPORT_BATCH_SIZE;
    let rubric_id = rubric.id.clone();
    let rows = (0..ROWS).map(move |i| submission(&rubric_id, &format!("HELD-{i}"), 1, 3));
    let mut client = app.evaluations();
    let import =
        tokio::spawn(async move { client.import_evaluations(tokio_stream::iter(rows)).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count("evaluation.evaluations").await < IMPORT_BATCH_SIZE as i64 {
        assert!(Instant::now() < deadline, "the first batch was not stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("evaluation.evaluations").await,
        IMPORT_BATCH_SIZE as i64,
        "the import went on while the projector was a batch behind"
    );
    holder.rollback().await.unwrap();
    let response = import.await.unwrap().unwrap().into_inner();
    assert_eq!(response.accepted as usize, ROWS);
    crate::helpers::wait_for_projection(&app).await;
}

/// No projector runs with the analytics service off: an import waits for it once, for
/// about a second, and then stores every row.
#[tokio::test]
async fn an_import_goes_on_when_no_projector_moves() {
    use iqs::services::evaluation::IMPORT_BATCH_SIZE;

    let app = spawn_app_with(AppOptions {
        services: "rubric,evaluation".parse::<ServiceSet>().unwrap(),
        tune: |config| config.import_max_projection_lag = 300,
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    const ROWS: usize = 4 * IMPORT_BATCH_SIZE;
    let rubric_id = rubric.id.clone();
    let rows = (0..ROWS).map(move |i| submission(&rubric_id, &format!("ALONE-{i}"), 1, 3));
    let response = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted as usize, ROWS);
    assert_eq!(app.count("evaluation.evaluations").await as usize, ROWS);
}
