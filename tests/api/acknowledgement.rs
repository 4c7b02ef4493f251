//! An agent acknowledging the evaluations of its work (AcknowledgeEvaluation).

use iqs::domain::access::Role;
use iqs::proto::evaluation::{self as pb, evaluation_service_client::EvaluationServiceClient};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Authed, Backend, published_rubric, rating, spawn_app_on, submission};

crate::on_every_store!(an_agent_acknowledges_its_own_evaluation_once_and_a_revision_asks_again);

async fn unread(client: &mut EvaluationServiceClient<Authed>) -> Vec<String> {
    client
        .list_evaluations(pb::ListEvaluationsRequest {
            unacknowledged: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluations
        .into_iter()
        .map(|evaluation| evaluation.id)
        .collect()
}

async fn an_agent_acknowledges_its_own_evaluation_once_and_a_revision_asks_again(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(submission(&rubric.id, "ACK-1", 1, 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluation.acknowledge_time, None);
    let mut agent =
        EvaluationServiceClient::new(app.channel_as(Role::Agent, Some("agent-1")).await);
    assert_eq!(
        unread(&mut agent).await,
        std::slice::from_ref(&evaluation.id)
    );

    let acknowledge = |client: &mut EvaluationServiceClient<Authed>, id: &str| {
        let mut client = client.clone();
        let request = pb::AcknowledgeEvaluationRequest { id: id.to_owned() };
        async move { client.acknowledge_evaluation(request).await }
    };
    let first = acknowledge(&mut agent, &evaluation.id)
        .await
        .unwrap()
        .into_inner();
    let read_at = first.acknowledge_time.expect("acknowledged");
    let again = acknowledge(&mut agent, &evaluation.id)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.acknowledge_time,
        Some(read_at),
        "the first time is kept"
    );
    assert!(unread(&mut agent).await.is_empty());

    let mut other =
        EvaluationServiceClient::new(app.channel_as(Role::Agent, Some("agent-2")).await);
    let refused = acknowledge(&mut other, &evaluation.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "another agent's evaluation");
    let unknown = acknowledge(&mut agent, &Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // A revision is new content: the agent is asked to read it again.
    let revised = app
        .evaluations()
        .revise_evaluation(pb::ReviseEvaluationRequest {
            id: evaluation.id.clone(),
            request_id: Uuid::now_v7().to_string(),
            ratings: vec![rating("greeting", 0), rating("empathy", 4)],
            comment: String::new(),
            reason: "second look".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revised.acknowledge_time, None);
    assert_eq!(
        unread(&mut agent).await,
        std::slice::from_ref(&evaluation.id)
    );
    let first_revision = app
        .evaluations()
        .get_evaluation(pb::GetEvaluationRequest {
            id: evaluation.id.clone(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first_revision.acknowledge_time,
        Some(read_at),
        "revision 1 stays read"
    );

    app.evaluations()
        .delete_evaluation(pb::DeleteEvaluationRequest {
            id: evaluation.id.clone(),
            reason: "duplicate".into(),
        })
        .await
        .unwrap();
    let deleted = acknowledge(&mut agent, &evaluation.id).await.unwrap_err();
    assert_eq!(deleted.code(), Code::FailedPrecondition);
    assert!(unread(&mut agent).await.is_empty());
}
