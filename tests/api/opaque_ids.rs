//! Helpdesk ids are opaque: any UTF-8 of 1..256 bytes without control characters is
//! stored and returned byte for byte, and listings, page tokens, the summary cache and
//! exports stay correct with them.

use iqs::proto::analytics as an;
use iqs::proto::evaluation::{self as pb, submit_evaluation_request::InteractionRef};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::helpers::{Backend, published_rubric, rating, spawn_app_on, wait_for_projection};

crate::on_every_store!(arbitrary_opaque_ids_round_trip_and_list_page_cache_and_export_correctly);

/// Ids as helpdesks make them: any character but a control one, with the separators
/// that would confuse a naive key or token format made likely.
fn opaque_id() -> BoxedStrategy<String> {
    prop_oneof![
        "[^\\p{Cc}]{1,24}",
        "[a-zA-Z0-9 ;:{}\"#+@/\\\\|,.'-]{1,24}",
        Just("Zendesk".to_owned()),
        Just("#1042".to_owned()),
        Just("jane+qa@acme.com".to_owned()),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Ids {
    source: String,
    external_id: String,
    channel: String,
    agent_id: String,
    team_id: String,
    region: String,
    reviewer_id: String,
}

fn ids() -> BoxedStrategy<Ids> {
    (
        opaque_id(),
        opaque_id(),
        opaque_id(),
        opaque_id(),
        opaque_id(),
        opaque_id(),
        opaque_id(),
    )
        .prop_map(
            |(source, external_id, channel, agent_id, team_id, region, reviewer_id)| Ids {
                source,
                external_id,
                channel,
                agent_id,
                team_id,
                region,
                reviewer_id,
            },
        )
        .boxed()
}

fn submission(rubric_id: &str, ids: &Ids, external_id: String) -> pb::SubmitEvaluationRequest {
    pb::SubmitEvaluationRequest {
        request_id: Uuid::now_v7().to_string(),
        interaction_ref: Some(InteractionRef::Interaction(pb::Interaction {
            source: ids.source.clone(),
            external_id,
            channel: ids.channel.clone(),
            agent_id: ids.agent_id.clone(),
            team_id: ids.team_id.clone(),
            region: ids.region.clone(),
            csat: Some(4),
            ..Default::default()
        })),
        rubric_id: rubric_id.into(),
        reviewer_id: ids.reviewer_id.clone(),
        kind: pb::EvaluationKind::Manual as i32,
        ratings: vec![rating("greeting", 1), rating("empathy", 4)],
        ..Default::default()
    }
}

async fn arbitrary_opaque_ids_round_trip_and_list_page_cache_and_export_correctly(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = ids();
    for case in 0..16 {
        let mut ids = strategy.new_tree(&mut runner).unwrap().current();
        // Unique per case, so that cases never share an agent or an interaction.
        ids.agent_id = format!("{} ·{case}", ids.agent_id);
        ids.external_id = format!("{}·{case}", ids.external_id);
        let context = format!("case {case}: {ids:?}");
        let mut evaluations = app.evaluations();
        let first = evaluations
            .submit_evaluation(submission(&rubric.id, &ids, ids.external_id.clone()))
            .await
            .unwrap_or_else(|status| panic!("{status:?}: {context}"))
            .into_inner();
        let second = evaluations
            .submit_evaluation(submission(
                &rubric.id,
                &ids,
                format!("{}+2", ids.external_id),
            ))
            .await
            .unwrap()
            .into_inner();
        for evaluation in [&first, &second] {
            assert_eq!(evaluation.agent_id, ids.agent_id, "{context}");
            assert_eq!(evaluation.team_id, ids.team_id, "{context}");
            assert_eq!(evaluation.channel, ids.channel, "{context}");
            assert_eq!(evaluation.region, ids.region, "{context}");
            assert_eq!(evaluation.reviewer_id, ids.reviewer_id, "{context}");
        }
        let interaction = evaluations
            .get_interaction(pb::GetInteractionRequest {
                id: first.interaction_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(interaction.source, ids.source, "{context}");
        assert_eq!(interaction.external_id, ids.external_id, "{context}");

        // Paged by one, filtered by the agent: both, newest first, then no more.
        let page = |token: String| pb::ListEvaluationsRequest {
            agent_id: ids.agent_id.clone(),
            team_id: ids.team_id.clone(),
            page_size: 1,
            page_token: token,
            ..Default::default()
        };
        let one = evaluations
            .list_evaluations(page(String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.evaluations[0].id, second.id, "{context}");
        let two = evaluations
            .list_evaluations(page(one.next_page_token))
            .await
            .unwrap_or_else(|status| panic!("{status:?}: {context}"))
            .into_inner();
        assert_eq!(two.evaluations[0].id, first.id, "{context}");
        assert!(two.next_page_token.is_empty(), "no third page: {context}");

        // The summary, computed and then from the cache, is this agent's alone.
        wait_for_projection(&app).await;
        for _ in 0..2 {
            let score = app
                .analytics()
                .get_agent_score(an::GetAgentScoreRequest {
                    agent_id: ids.agent_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(score.evaluation_count, 2, "{context}");
        }
        let mut rows = app
            .analytics()
            .export_evaluations(an::ExportEvaluationsRequest {
                filter: Some(an::ScoreFilter {
                    agent_ids: vec![ids.agent_id.clone()],
                    channels: vec![ids.channel.clone()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut exported = Vec::new();
        while let Some(row) = rows.next().await {
            exported.push(row.unwrap());
        }
        assert_eq!(exported.len(), 2, "{context}");
        assert!(
            exported
                .iter()
                .all(|row| row.agent_id == ids.agent_id && row.region == ids.region)
        );
    }
    // A control character is still refused, by field.
    let mut bad = Ids {
        source: "Zendesk".into(),
        external_id: "#1".into(),
        channel: "chat".into(),
        agent_id: "tab\there".into(),
        team_id: "t".into(),
        region: "r".into(),
        reviewer_id: "qa".into(),
    };
    let refused = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, &bad, "#1".into()))
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&refused),
        ["interaction.agent_id"]
    );
    bad.agent_id = "a".repeat(257);
    let refused = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, &bad, "#1".into()))
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&refused),
        ["interaction.agent_id"]
    );
}
