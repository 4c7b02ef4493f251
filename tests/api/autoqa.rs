//! AutoScoreInteraction: the AutoQA rules of a rubric version rate an interaction's
//! transcript into an AUTOMATED evaluation with an explanation per rating.

use iqs::domain::access::Role;
use iqs::proto::analytics as an;
use iqs::proto::evaluation::{self as pb, evaluation_service_client::EvaluationServiceClient};
use iqs::proto::rubric::{self as rb, auto_rule::Rule};
use prost_types::Timestamp;
use tonic::Code;

use crate::helpers::{
    Authed, Backend, TestApp, criterion, draft, new_rubric, spawn_app_on, violated_fields,
    wait_for_projection,
};
use crate::on_every_store;

on_every_store!(
    with_auto_score_every_interaction_upserted_with_messages_is_scored_once_per_transcript,
    autoqa_agreement_compares_each_persons_scores_with_the_machines_per_criterion,
    an_interaction_is_auto_scored_with_an_explanation_per_rating_once_per_transcript,
    auto_scoring_refuses_what_it_cannot_rate_and_names_bad_ids,
);

fn ruled(mut criterion: rb::Criterion, rule: Rule) -> rb::Criterion {
    criterion.allow_not_applicable = true;
    criterion.auto = Some(rb::AutoRule { rule: Some(rule) });
    criterion
}

/// A chat scorecard with a rule per criterion but `empathy`, which people rate.
async fn autoqa_rubric(app: &TestApp) -> rb::Rubric {
    let mut empathy = criterion("empathy", 2, 1, 4);
    empathy.allow_not_applicable = true;
    let criteria = vec![
        ruled(
            criterion("greeting", 1, 0, 1),
            Rule::Phrase(rb::PhraseRule {
                phrases: vec!["thank you for contacting".into()],
                ..Default::default()
            }),
        ),
        ruled(
            criterion("response", 1, 1, 5),
            Rule::ResponseTime(rb::ResponseTimeRule {
                target_seconds: 60,
                limit_seconds: 300,
            }),
        ),
        ruled(
            criterion("mood", 1, 1, 5),
            Rule::SentimentShift(rb::SentimentShiftRule {}),
        ),
        ruled(
            criterion("pci", 1, 0, 1),
            Rule::CardNumber(rb::CardNumberRule {}),
        ),
        empathy,
    ];
    let mut rubrics = app.rubrics();
    let rubric = rubrics
        .create_rubric(new_rubric("AutoQA chat", draft(criteria)))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap();
    rubric
}

fn message(role: pb::MessageRole, text: &str, second: i64) -> pb::Message {
    pb::Message {
        role: role as i32,
        author_id: String::new(),
        text: text.into(),
        send_time: Some(Timestamp {
            seconds: 1_764_000_000 + second,
            nanos: 0,
        }),
    }
}

async fn upsert(
    evaluations: &mut EvaluationServiceClient<Authed>,
    messages: Vec<pb::Message>,
) -> String {
    upsert_as(evaluations, "#1042", "jane+qa@acme.com", messages).await
}

/// Upserts a Zendesk chat of `agent_id` with `messages`; its id.
async fn upsert_as(
    evaluations: &mut EvaluationServiceClient<Authed>,
    external_id: &str,
    agent_id: &str,
    messages: Vec<pb::Message>,
) -> String {
    evaluations
        .upsert_interaction(pb::UpsertInteractionRequest {
            interaction: Some(pb::Interaction {
                source: "Zendesk".into(),
                external_id: external_id.into(),
                channel: "chat".into(),
                agent_id: agent_id.into(),
                team_id: "tier1".into(),
                region: "emea".into(),
                messages,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn an_interaction_is_auto_scored_with_an_explanation_per_rating_once_per_transcript(
    backend: Backend,
) {
    use pb::MessageRole::{Agent, Customer};
    let app = spawn_app_on(backend).await;
    let rubric = autoqa_rubric(&app).await;
    let mut integration =
        EvaluationServiceClient::new(app.channel_as(Role::Integration, None).await);
    let transcript = vec![
        message(
            Customer,
            "This is terrible, my order is late and I am furious!",
            0,
        ),
        message(
            Agent,
            "Hello, thank you for contacting Acme. Let me check.",
            180,
        ),
        message(Agent, "I refunded 4111 1111 1111 1111 for you.", 240),
        message(Customer, "Thank you so much, that is great!", 300),
    ];
    let interaction_id = upsert(&mut integration, transcript.clone()).await;
    let request = pb::AutoScoreInteractionRequest {
        interaction_id: interaction_id.clone(),
        rubric_id: rubric.id.clone(),
        rubric_version: 0,
    };
    let scored = integration
        .auto_score_interaction(request.clone())
        .await
        .expect("an integration key auto-scores")
        .into_inner();
    assert_eq!(scored.kind, pb::EvaluationKind::Automated as i32);
    assert_eq!(scored.reviewer_id, "autoqa");
    assert_eq!(scored.agent_id, "jane+qa@acme.com");
    let by_key = |key: &str| {
        scored
            .ratings
            .iter()
            .find(|rating| rating.criterion_key == key)
            .unwrap_or_else(|| panic!("{key}"))
            .clone()
    };
    assert_eq!(by_key("greeting").value, Some(1));
    assert!(by_key("greeting").explanation.contains("message 2"));
    // 180 s against a target of 60 and a limit of 300: 5 − 120/240·4 = 3.
    assert_eq!(by_key("response").value, Some(3));
    assert!(by_key("response").explanation.contains("after 180 s"));
    assert!(by_key("mood").value.unwrap() >= 4, "{:?}", by_key("mood"));
    assert_eq!(by_key("pci").value, Some(0));
    assert!(by_key("pci").explanation.contains("1111"));
    assert!(!by_key("pci").explanation.contains("4111"));
    assert!(by_key("empathy").not_applicable);
    assert!(by_key("empathy").explanation.contains("no AutoQA rule"));

    // Again with the same transcript: the same evaluation, nothing new.
    let again = integration
        .auto_score_interaction(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.id.as_str(), again.revision), (scored.id.as_str(), 1));

    // The transcript changes (the agent greets late, no card number): a new revision.
    let mut changed = transcript;
    changed[1].text = "Let me check.".into();
    changed[2].text = "Refunded, hello and thank you for contacting us.".into();
    upsert(&mut integration, changed).await;
    let revised = integration
        .auto_score_interaction(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revised.id.as_str(), revised.revision),
        (scored.id.as_str(), 2)
    );
    let greeting = revised
        .ratings
        .iter()
        .find(|rating| rating.criterion_key == "greeting")
        .unwrap();
    assert_eq!(
        greeting.value,
        Some(0),
        "only the first agent message counts"
    );
    let pci = revised
        .ratings
        .iter()
        .find(|rating| rating.criterion_key == "pci")
        .unwrap();
    assert_eq!(pci.value, Some(1));

    // AUTOMATED evaluations stay out of the IQS unless asked for.
    wait_for_projection(&app).await;
    let score = |kinds: Vec<i32>| {
        let mut analytics = app.analytics();
        async move {
            analytics
                .get_agent_score(an::GetAgentScoreRequest {
                    agent_id: "jane+qa@acme.com".into(),
                    kinds,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .evaluation_count
        }
    };
    assert_eq!(score(vec![]).await, 0);
    assert_eq!(score(vec![pb::EvaluationKind::Automated as i32]).await, 1);
}

async fn auto_scoring_refuses_what_it_cannot_rate_and_names_bad_ids(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut evaluations = app.evaluations();
    let err = evaluations
        .auto_score_interaction(pb::AutoScoreInteractionRequest {
            interaction_id: "nope".into(),
            rubric_id: String::new(),
            rubric_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["interaction_id", "rubric_id"]);

    let rubric = autoqa_rubric(&app).await;
    let err = evaluations
        .auto_score_interaction(pb::AutoScoreInteractionRequest {
            interaction_id: uuid::Uuid::now_v7().to_string(),
            rubric_id: rubric.id.clone(),
            rubric_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A criterion without a rule that does not allow N/A cannot be rated by AutoQA.
    let mut rubrics = app.rubrics();
    let strict = rubrics
        .create_rubric(new_rubric(
            "People only",
            draft(vec![criterion("empathy", 1, 1, 4)]),
        ))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: strict.id.clone(),
        })
        .await
        .unwrap();
    let interaction_id = upsert(&mut evaluations, Vec::new()).await;
    let err = evaluations
        .auto_score_interaction(pb::AutoScoreInteractionRequest {
            interaction_id,
            rubric_id: strict.id,
            rubric_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("empathy"), "{err:?}");
}

async fn upsert_chat(
    evaluations: &mut EvaluationServiceClient<Authed>,
    external_id: &str,
    agent_text: &str,
) -> String {
    use pb::MessageRole::{Agent, Customer};
    let messages = vec![
        message(Customer, "my card was charged twice", 0),
        message(Agent, agent_text, 30),
    ];
    upsert_as(evaluations, external_id, "ana", messages).await
}

async fn autoqa_agreement_compares_each_persons_scores_with_the_machines_per_criterion(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let mut empathy = criterion("empathy", 1, 1, 4);
    empathy.allow_not_applicable = true;
    let mut rubrics = app.rubrics();
    let rubric = rubrics
        .create_rubric(new_rubric(
            "Agreement",
            draft(vec![
                ruled(
                    criterion("greeting", 1, 0, 1),
                    Rule::Phrase(rb::PhraseRule {
                        phrases: vec!["hello".into()],
                        ..Default::default()
                    }),
                ),
                ruled(
                    criterion("pci", 1, 0, 1),
                    Rule::CardNumber(rb::CardNumberRule {}),
                ),
                empathy,
            ]),
        ))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap();
    let mut evaluations = app.evaluations();
    // The machine: A greets (1) without a card (1); B neither greets (0) nor keeps the
    // card out (0); C like A. The person: A 1/1, B 1/0, C 1/0.
    let chats = [
        ("A", "hello, let me look", (1, 1)),
        ("B", "refunding 4111 1111 1111 1111", (1, 0)),
        ("C", "hello there, checking", (1, 0)),
    ];
    for (external_id, agent_text, (greeting, pci)) in chats {
        let interaction_id = upsert_chat(&mut evaluations, external_id, agent_text).await;
        evaluations
            .auto_score_interaction(pb::AutoScoreInteractionRequest {
                interaction_id: interaction_id.clone(),
                rubric_id: rubric.id.clone(),
                rubric_version: 0,
            })
            .await
            .unwrap();
        let rate = |key: &str, value: i32| pb::Rating {
            criterion_key: key.into(),
            value: Some(value),
            ..Default::default()
        };
        evaluations
            .submit_evaluation(pb::SubmitEvaluationRequest {
                request_id: uuid::Uuid::now_v7().to_string(),
                interaction_ref: Some(
                    pb::submit_evaluation_request::InteractionRef::InteractionId(interaction_id),
                ),
                rubric_id: rubric.id.clone(),
                reviewer_id: "qa-1".into(),
                kind: pb::EvaluationKind::Manual as i32,
                ratings: vec![
                    rate("greeting", greeting),
                    rate("pci", pci),
                    rate("empathy", 3),
                ],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let report = app
        .analytics()
        .get_auto_qa_agreement(an::GetAutoQaAgreementRequest {
            rubric_id: rubric.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = report
        .criteria
        .iter()
        .map(|c| c.criterion_key.as_str())
        .collect();
    assert_eq!(keys, ["greeting", "pci"], "empathy has no machine score");
    let close = |got: Option<f64>, want: f64| {
        assert!((got.unwrap() - want).abs() < 1e-9, "{got:?} != {want}");
    };
    for criterion in &report.criteria {
        assert_eq!(criterion.pairs, 3);
        close(criterion.exact_agreement, 2.0 / 3.0);
        close(criterion.mean_absolute_difference, 100.0 / 3.0);
    }
    // greeting: the person always 100, the machine 100, 0, 100: p_o = p_e = 2/3.
    close(report.criteria[0].cohen_kappa, 0.0);
    // pci: person 100, 0, 0; machine 100, 0, 100: p_o 2/3, p_e 4/9, kappa 0.4.
    close(report.criteria[1].cohen_kappa, 0.4);
    assert!(report.criteria[1].alpha_interval.is_some());

    // A period before any of them: nothing to compare.
    let before = app
        .analytics()
        .get_auto_qa_agreement(an::GetAutoQaAgreementRequest {
            rubric_id: rubric.id.clone(),
            time_range: Some(iqs::proto::common::TimeRange {
                start_time: Some(Timestamp {
                    seconds: 1_600_000_000,
                    nanos: 0,
                }),
                end_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(before.criteria.is_empty());

    let err = app
        .analytics()
        .get_auto_qa_agreement(an::GetAutoQaAgreementRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["rubric_id"]);
}

/// A scorer that is slow, failing or correct, as the test says, counting its calls.
#[derive(Clone, Default)]
struct Scorer {
    mode: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const SLOW: usize = 0;
const FAILING: usize = 1;
const CORRECT: usize = 2;

#[tonic::async_trait]
impl iqs::proto::autoqa::scorer_service_server::ScorerService for Scorer {
    async fn score_interaction(
        &self,
        request: tonic::Request<iqs::proto::autoqa::ScoreInteractionRequest>,
    ) -> Result<tonic::Response<iqs::proto::autoqa::ScoreInteractionResponse>, tonic::Status> {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        assert_eq!(request.criterion_keys, ["tone"]);
        assert!(!request.interaction.unwrap().messages.is_empty());
        match self.mode.load(Ordering::SeqCst) {
            SLOW => {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                Err(tonic::Status::internal("too late anyway"))
            }
            FAILING => Err(tonic::Status::internal("model server overloaded")),
            _ => Ok(tonic::Response::new(
                iqs::proto::autoqa::ScoreInteractionResponse {
                    ratings: vec![pb::Rating {
                        criterion_key: "tone".into(),
                        value: Some(4),
                        explanation: "LLM: polite and warm".into(),
                        ..Default::default()
                    }],
                },
            )),
        }
    }
}

#[tokio::test]
async fn an_external_scorer_is_asked_with_a_deadline_and_left_alone_after_failing_in_a_row() {
    use std::sync::atomic::Ordering;
    let scorer = Scorer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = scorer.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                iqs::proto::autoqa::scorer_service_server::ScorerServiceServer::new(served),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        tune: |config| config.autoqa_scorer_timeout_ms = 300,
        ..Default::default()
    })
    .await;
    let mut rubrics = app.rubrics();
    let rubric = rubrics
        .create_rubric(new_rubric(
            "External",
            draft(vec![ruled(
                criterion("tone", 1, 1, 5),
                Rule::External(rb::ExternalRule {
                    endpoint: format!("http://{address}"),
                }),
            )]),
        ))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap();
    let mut evaluations = app.evaluations();
    let interaction_id = upsert_chat(&mut evaluations, "ext-1", "hello").await;
    let tone = || {
        let mut evaluations = evaluations.clone();
        let request = pb::AutoScoreInteractionRequest {
            interaction_id: interaction_id.clone(),
            rubric_id: rubric.id.clone(),
            rubric_version: 0,
        };
        async move {
            let evaluation = evaluations
                .auto_score_interaction(request)
                .await
                .expect("a scorer's failure is N/A, not an error")
                .into_inner();
            evaluation.ratings[0].clone()
        }
    };

    scorer.mode.store(SLOW, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let rating = tone().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the deadline held"
    );
    assert!(rating.not_applicable, "{rating:?}");
    assert!(
        rating.explanation.contains("did not answer within 300 ms"),
        "{rating:?}"
    );

    scorer.mode.store(FAILING, Ordering::SeqCst);
    let rating = tone().await;
    assert!(
        rating.explanation.contains("model server overloaded"),
        "{rating:?}"
    );

    scorer.mode.store(CORRECT, Ordering::SeqCst);
    let rating = tone().await;
    assert_eq!(rating.value, Some(4));
    assert_eq!(rating.explanation, "external: LLM: polite and warm");

    // Failing five times in a row: the sixth call does not reach the scorer.
    scorer.mode.store(FAILING, Ordering::SeqCst);
    for _ in 0..iqs::services::scorers::FAILURES_TO_OPEN {
        tone().await;
    }
    let calls = scorer.calls.load(Ordering::SeqCst);
    let rating = tone().await;
    assert_eq!(scorer.calls.load(Ordering::SeqCst), calls, "left alone");
    assert!(rating.not_applicable);
    assert!(rating.explanation.contains("not asked again"), "{rating:?}");
}

/// The AUTOMATED evaluations of an interaction, once there are `count` revisions of the
/// newest; fails after `limit`.
async fn automated(
    evaluations: &mut EvaluationServiceClient<Authed>,
    interaction_id: &str,
    revision: u32,
    limit: std::time::Duration,
) -> Option<pb::Evaluation> {
    let started = std::time::Instant::now();
    loop {
        let listed = evaluations
            .list_evaluations(pb::ListEvaluationsRequest {
                interaction_id: interaction_id.into(),
                kinds: vec![pb::EvaluationKind::Automated as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .evaluations;
        if let Some(found) = listed.into_iter().find(|e| e.revision >= revision) {
            return Some(found);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn with_auto_score_every_interaction_upserted_with_messages_is_scored_once_per_transcript(
    backend: Backend,
) {
    use pb::MessageRole::{Agent, Customer};
    use std::time::Duration;
    let app = spawn_app_on(backend).await;
    let mut rubrics = app.rubrics();
    let mut scorecard = draft(vec![ruled(
        criterion("greeting", 1, 0, 1),
        Rule::Phrase(rb::PhraseRule {
            phrases: vec!["hello".into()],
            ..Default::default()
        }),
    )]);
    scorecard.auto_score = true;
    let rubric = rubrics
        .create_rubric(new_rubric("Automatic", scorecard.clone()))
        .await
        .unwrap()
        .into_inner();
    let version = rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(version.auto_score);
    // A rubric without it is left alone.
    scorecard.auto_score = false;
    let manual_only = rubrics
        .create_rubric(new_rubric("People only", scorecard))
        .await
        .unwrap()
        .into_inner();
    rubrics
        .publish_rubric(rb::PublishRubricRequest {
            id: manual_only.id.clone(),
        })
        .await
        .unwrap();

    let mut evaluations = app.evaluations();
    let greeted = vec![
        message(Customer, "hi, my parcel is lost", 0),
        message(Agent, "hello! let me check", 20),
    ];
    let interaction_id = upsert_as(&mut evaluations, "auto-1", "ana", greeted).await;
    let first = automated(&mut evaluations, &interaction_id, 1, Duration::from_secs(5))
        .await
        .expect("auto-scored after the upsert");
    assert_eq!(first.rubric_id, rubric.id);
    assert_eq!(first.ratings[0].value, Some(1));

    // A changed transcript: a new revision, not a second evaluation.
    let silent = vec![
        message(Customer, "hi, my parcel is lost", 0),
        message(Agent, "let me check", 20),
    ];
    upsert_as(&mut evaluations, "auto-1", "ana", silent).await;
    let second = automated(&mut evaluations, &interaction_id, 2, Duration::from_secs(5))
        .await
        .expect("re-scored after the change");
    assert_eq!(second.id, first.id);
    assert_eq!(second.ratings[0].value, Some(0));

    // Upserted by a submission too; an interaction without messages is not scored.
    let mut submitted = crate::helpers::submission(&manual_only.id, "auto-2", 1, 1);
    submitted.ratings = vec![crate::helpers::rating("greeting", 1)];
    if let Some(pb::submit_evaluation_request::InteractionRef::Interaction(inline)) =
        submitted.interaction_ref.as_mut()
    {
        inline.messages = vec![message(Agent, "hello there", 0)];
    }
    let manual = evaluations
        .submit_evaluation(submitted)
        .await
        .unwrap()
        .into_inner();
    assert!(
        automated(
            &mut evaluations,
            &manual.interaction_id,
            1,
            Duration::from_secs(5)
        )
        .await
        .is_some(),
        "an interaction upserted inline by SubmitEvaluation"
    );
    let empty = upsert_as(&mut evaluations, "auto-3", "ana", Vec::new()).await;
    assert!(
        automated(&mut evaluations, &empty, 1, Duration::from_millis(1500))
            .await
            .is_none(),
        "no transcript, nothing to score"
    );
    // Only the rubric that asks for it scored anything.
    let all = evaluations
        .list_evaluations(pb::ListEvaluationsRequest {
            kinds: vec![pb::EvaluationKind::Automated as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluations;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|e| e.rubric_id == rubric.id));
}
