//! Calls an attacker or a careless client makes: each one here once got through, crashed
//! a store call into INTERNAL, or cost the server far more than the caller.

use iqs::domain::access::Role;
use iqs::proto::analytics as an;
use iqs::proto::evaluation::{
    self as ev, evaluation_service_client::EvaluationServiceClient,
    submit_evaluation_request::InteractionRef,
};
use tonic::Code;

use crate::helpers::{
    Backend, criterion, draft, new_rubric, published_rubric, spawn_app_on, submission,
    violated_fields,
};

fn inline(request: &mut ev::SubmitEvaluationRequest) -> &mut ev::Interaction {
    match request.interaction_ref.as_mut() {
        Some(InteractionRef::Interaction(inline)) => inline,
        _ => panic!("the submission has no inline interaction"),
    }
}

async fn an_agent_key_cannot_take_over_another_agents_interaction(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut theirs = submission(&rubric.id, "TAKEN-1", 1, 4);
    inline(&mut theirs).agent_id = "agent-b".into();
    inline(&mut theirs).csat = Some(5);
    let stored = app
        .evaluations()
        .submit_evaluation(theirs)
        .await
        .unwrap()
        .into_inner();

    let mut agent_a =
        EvaluationServiceClient::new(app.channel_as(Role::Agent, Some("agent-a")).await);
    let mut takeover = submission(&rubric.id, "TAKEN-1", 0, 1);
    takeover.kind = ev::EvaluationKind::Self_ as i32;
    takeover.reviewer_id = "agent-a".into();
    let reused = inline(&mut takeover);
    reused.agent_id = "agent-a".into();
    reused.team_id = "other-team".into();
    reused.csat = Some(1);
    reused.messages = vec![ev::Message {
        role: ev::MessageRole::Customer as i32,
        text: "rewritten".into(),
        ..Default::default()
    }];
    let refused = agent_a.submit_evaluation(takeover).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let unchanged = app
        .evaluations()
        .get_interaction(ev::GetInteractionRequest {
            id: stored.interaction_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.agent_id, "agent-b");
    assert_eq!(unchanged.team_id, "tier1");
    assert_eq!(unchanged.csat, Some(5));
    assert!(unchanged.messages.is_empty());
    assert_eq!(
        app.count("evaluation.evaluations").await,
        1,
        "nothing stored for the refused call"
    );

    // Its own interactions it may still create and update.
    let mut own = submission(&rubric.id, "OWN-1", 1, 4);
    own.kind = ev::EvaluationKind::Self_ as i32;
    own.reviewer_id = "agent-a".into();
    inline(&mut own).agent_id = "agent-a".into();
    agent_a.submit_evaluation(own.clone()).await.unwrap();
    own.request_id = uuid::Uuid::now_v7().to_string();
    inline(&mut own).csat = Some(2);
    let updated = agent_a.submit_evaluation(own).await.unwrap().into_inner();
    let interaction = app
        .evaluations()
        .get_interaction(ev::GetInteractionRequest {
            id: updated.interaction_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(interaction.csat, Some(2));
}

fn nul(text: &str) -> String {
    format!("{text}\0{text}")
}

async fn nul_characters_in_any_text_are_invalid_argument_naming_the_field(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut evaluations = app.evaluations();

    let mut request = submission(&rubric.id, "NUL-1", 1, 4);
    request.comment = nul("comment");
    request.ratings[0].comment = nul("rating");
    let interaction = inline(&mut request);
    interaction.messages = vec![ev::Message {
        role: ev::MessageRole::Customer as i32,
        text: nul("hello"),
        ..Default::default()
    }];
    interaction.attributes.insert("plan".into(), nul("gold"));
    let refused = evaluations.submit_evaluation(request).await.unwrap_err();
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "comment",
            "interaction.attributes[\"plan\"]",
            "interaction.messages[0].text",
            "ratings[0].comment",
        ]
    );

    let refused = evaluations
        .list_evaluations(ev::ListEvaluationsRequest {
            agent_id: nul("agent"),
            team_id: nul("team"),
            reviewer_id: nul("qa"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["agent_id", "team_id", "reviewer_id"]
    );

    let refused = app
        .analytics()
        .query_scores(an::QueryScoresRequest {
            filter: Some(an::ScoreFilter {
                team_ids: vec!["tier1".into(), nul("tier2")],
                channels: vec![nul("chat")],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["filter.team_ids[1]", "filter.channels[0]"]
    );

    let mut named = new_rubric(&nul("Chat"), draft(vec![criterion("greeting", 1, 0, 1)]));
    named.rubric.as_mut().unwrap().description = nul("about");
    let refused = app.rubrics().create_rubric(named).await.unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["rubric.display_name", "rubric.description"]
    );
    assert_eq!(app.count("evaluation.evaluations").await, 0);
    assert_eq!(app.count("evaluation.interactions").await, 0);
}

fn at_seconds(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

async fn timestamps_outside_years_1_to_9999_are_invalid_argument_naming_the_field(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // Year 0, year 10000, year 200000 and year -10000.
    let out_of_range = [
        -62_167_219_200,
        253_402_300_800,
        6_249_223_209_600,
        -377_705_116_800,
    ];
    for seconds in out_of_range {
        let mut request = submission(&rubric.id, &format!("TS-{seconds}"), 1, 4);
        inline(&mut request).occur_time = at_seconds(seconds);
        let refused = app
            .evaluations()
            .submit_evaluation(request)
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), ["interaction.occur_time"]);

        let refused = app
            .evaluations()
            .list_evaluations(ev::ListEvaluationsRequest {
                time_range: Some(iqs::proto::common::TimeRange {
                    start_time: at_seconds(seconds),
                    end_time: None,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), ["time_range.start_time"]);
    }
    let mut history = submission(&rubric.id, "TS-import", 1, 4);
    history.create_time = at_seconds(-62_167_219_200);
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(vec![history]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((imported.accepted, imported.rejected_count), (0, 1));
    assert!(
        imported.rejected[0].reason.contains("create_time"),
        "{:?}",
        imported.rejected
    );
    assert_eq!(app.count("evaluation.evaluations").await, 0);
}

async fn one_bad_row_of_an_import_is_rejected_and_the_good_rows_are_stored(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut rows: Vec<_> = (0..6)
        .map(|n| submission(&rubric.id, &format!("IMP-{n}"), 1, 4))
        .collect();
    rows[5].comment = nul("bad");
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((imported.accepted, imported.rejected_count), (5, 1));
    assert_eq!(imported.rejected[0].index, 5);
    assert!(imported.rejected[0].reason.contains("comment"));
    assert_eq!(app.count("evaluation.evaluations").await, 5);
}

async fn a_row_the_database_refuses_is_that_rows_rejection_and_the_others_are_stored(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    // A row the validation lets through but the database refuses.
    app.db
        .execute(
            "CREATE FUNCTION evaluation.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'poisoned row'; END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON evaluation.evaluations
             FOR EACH ROW WHEN (NEW.reviewer_id = 'poison')
             EXECUTE FUNCTION evaluation.refuse_poison();",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON evaluations
             WHEN NEW.reviewer_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
        )
        .await;
    let mut rows: Vec<_> = (0..7)
        .map(|n| submission(&rubric.id, &format!("DB-{n}"), 1, 4))
        .collect();
    rows[2].reviewer_id = "poison".into();
    rows[6].reviewer_id = "poison".into();
    let imported = app
        .evaluations()
        .import_evaluations(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((imported.accepted, imported.rejected_count), (5, 2));
    let rejected: Vec<u64> = imported.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [2, 6]);
    assert!(
        !imported.rejected[0].reason.contains("poisoned"),
        "database errors stay in the server's log: {:?}",
        imported.rejected[0].reason
    );
    assert_eq!(app.count("evaluation.evaluations").await, 5);
    assert_eq!(app.count("evaluation.outbox").await, 5);
}

crate::on_every_store! {
    an_agent_key_cannot_take_over_another_agents_interaction,
    nul_characters_in_any_text_are_invalid_argument_naming_the_field,
    timestamps_outside_years_1_to_9999_are_invalid_argument_naming_the_field,
    one_bad_row_of_an_import_is_rejected_and_the_good_rows_are_stored,
    a_row_the_database_refuses_is_that_rows_rejection_and_the_others_are_stored,
}
