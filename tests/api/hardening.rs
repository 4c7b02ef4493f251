//! Calls an attacker or a careless client makes: each one here once got through, crashed
//! a store call into INTERNAL, or cost the server far more than the caller.

use iqs::domain::access::Role;
use iqs::proto::evaluation::{
    self as ev, evaluation_service_client::EvaluationServiceClient,
    submit_evaluation_request::InteractionRef,
};
use tonic::Code;

use crate::helpers::{Backend, published_rubric, spawn_app_on, submission};

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

crate::on_every_store! {
    an_agent_key_cannot_take_over_another_agents_interaction,
}
