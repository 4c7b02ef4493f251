//! Arbitrary requests against the real server on each store: generated messages that
//! mix well-formed and hostile values (NUL characters, any Unicode, extreme numbers and
//! timestamps, unknown enum values), and arbitrary bytes as the encoding of a request.
//! Whatever a client sends, the answer is never INTERNAL or UNKNOWN, the server keeps
//! serving, and a refused call stores nothing.
//!
//! `IQS_FUZZ_CASES` sets the number of cases per store (default 400) and
//! `IQS_FUZZ_SEED` the seed (a failure prints the one it used).

use std::collections::BTreeMap;

use iqs::proto::{
    analytics as an, common,
    evaluation::{
        self as ev, assignment_service_client::AssignmentServiceClient,
        coaching_service_client::CoachingServiceClient,
        dispute_service_client::DisputeServiceClient, submit_evaluation_request::InteractionRef,
    },
    rubric as rb,
};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, published_rubric};

/// Mostly `valid`, sometimes `hostile`: a request then tends to carry one or two bad
/// values among good ones, and so reaches the checks past the first.
fn often<T: std::fmt::Debug + Clone + 'static>(
    valid: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![30 => valid, 1 => hostile].boxed()
}

/// Any text: arbitrary Unicode, NUL characters, empty, long.
fn hostile_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<String>(),
        1 => Just(String::new()),
        4 => "[a-z]{1,4}\u{0}[a-z]{0,4}",
        1 => "\\PC{100,400}",
        1 => "[a-z]{300}",
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    often("[A-Za-z0-9 ,.!?'-]{0,40}", hostile_text())
}

fn label() -> BoxedStrategy<String> {
    often("[a-z][a-z0-9_-]{0,12}", hostile_text())
}

fn id() -> BoxedStrategy<String> {
    often(
        prop_oneof![
            Just("agent-1".to_owned()),
            "[A-Za-z0-9][A-Za-z0-9._:@/-]{0,20}"
        ],
        hostile_text(),
    )
}

fn request_id() -> BoxedStrategy<String> {
    often(
        prop_oneof![
            Just(String::new()),
            "[a-f0-9]{8}-[a-f0-9]{4}-7[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}"
        ],
        hostile_text(),
    )
}

fn between(valid: std::ops::RangeInclusive<i32>) -> BoxedStrategy<i32> {
    often(valid, any::<i32>())
}

/// A time in the past few years, or any instant a Timestamp can say, or beyond.
fn timestamp() -> BoxedStrategy<Option<prost_types::Timestamp>> {
    let valid = (1_500_000_000..1_750_000_000i64, 0..1_000_000_000i32);
    let hostile = (
        prop_oneof![
            -62_135_596_900..-62_135_596_700i64,
            253_402_300_700..253_402_300_900i64,
            any::<i64>(),
        ],
        any::<i32>(),
    );
    proptest::option::of(
        often(valid, hostile)
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
    .boxed()
}

fn interaction() -> BoxedStrategy<ev::Interaction> {
    let message = (between(1..=3), id(), text(), timestamp()).prop_map(
        |(role, author_id, text, send_time)| ev::Message {
            role,
            author_id,
            text,
            send_time,
        },
    );
    (
        (label(), id(), label()),
        (id(), id(), label(), timestamp()),
        (
            proptest::option::of(between(1..=5)),
            proptest::option::of(between(0..=10)),
        ),
        proptest::collection::vec(message, 0..3),
        proptest::collection::btree_map(
            often("[a-z][a-z0-9_]{0,10}", hostile_text()),
            text(),
            0..3,
        ),
    )
        .prop_map(
            |(
                (source, external_id, channel),
                (agent_id, team_id, region, occur_time),
                (csat, nps),
                messages,
                attributes,
            ): (_, _, _, _, BTreeMap<String, String>)| ev::Interaction {
                source,
                external_id,
                channel,
                agent_id,
                team_id,
                region,
                occur_time,
                csat,
                nps,
                messages,
                attributes: attributes.into_iter().collect(),
                ..Default::default()
            },
        )
        .boxed()
}

/// Ratings of the rubric of `published_rubric` (greeting 0..1, empathy 1..4), each
/// value or field sometimes hostile, sometimes one too many or one missing.
fn ratings() -> BoxedStrategy<Vec<ev::Rating>> {
    let rating = |key: &'static str, values: std::ops::RangeInclusive<i32>| {
        (
            often(Just(key.to_owned()), hostile_text()),
            proptest::option::of(between(values)),
            often(Just(false), any::<bool>()),
            text(),
            proptest::collection::vec(hostile_text(), 0..2),
            often(Just(String::new()), hostile_text()),
        )
            .prop_map(
                |(criterion_key, value, not_applicable, comment, root_causes, explanation)| {
                    ev::Rating {
                        criterion_key,
                        value: value.or(Some(1)),
                        not_applicable,
                        comment,
                        explanation,
                        root_causes: if root_causes.len() > 1 {
                            root_causes
                        } else {
                            Vec::new()
                        },
                    }
                },
            )
    };
    (
        rating("greeting", 0..=1),
        rating("empathy", 1..=4),
        often(Just(None), proptest::option::of(rating("greeting", 0..=1))),
        often(Just(false), any::<bool>()),
    )
        .prop_map(|(greeting, empathy, extra, drop_one)| {
            let mut ratings = vec![greeting, empathy];
            ratings.extend(extra);
            if drop_one {
                ratings.pop();
            }
            ratings
        })
        .boxed()
}

fn submission(rubric_id: String, dating: bool) -> BoxedStrategy<ev::SubmitEvaluationRequest> {
    (
        request_id(),
        often(
            interaction().prop_map(|inline| Some(InteractionRef::Interaction(inline))),
            prop_oneof![
                hostile_text().prop_map(|id| Some(InteractionRef::InteractionId(id))),
                Just(None)
            ],
        ),
        often(Just(rubric_id), hostile_text()),
        often(Just(0u32), any::<u32>()),
        (id(), between(1..=3), ratings(), text()),
        if dating {
            timestamp()
        } else {
            often(Just(None), timestamp())
        },
    )
        .prop_map(
            |(
                request_id,
                interaction_ref,
                rubric_id,
                rubric_version,
                (reviewer_id, kind, ratings, comment),
                create_time,
            )| ev::SubmitEvaluationRequest {
                request_id,
                interaction_ref,
                rubric_id,
                rubric_version,
                reviewer_id,
                kind,
                ratings,
                comment,
                create_time,
                calibration_session_id: String::new(),
            },
        )
        .boxed()
}

fn criterion() -> BoxedStrategy<rb::Criterion> {
    (
        (
            often("[a-z][a-z0-9_]{0,10}", hostile_text()),
            text(),
            text(),
            text(),
        ),
        (
            often(0..5u32, any::<u32>()),
            between(0..=1),
            between(1..=5),
            any::<bool>(),
            between(1..=3),
        ),
        (
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec(often("[a-z][a-z0-9_]{0,10}", hostile_text()), 0..3),
            proptest::option::of(auto_rule()),
        ),
    )
        .prop_map(
            |(
                (key, display_name, description, section),
                (weight, scale_min, scale_max, allow_not_applicable, critical),
                (level_labels, root_causes, auto),
            )| {
                rb::Criterion {
                    key,
                    display_name,
                    description,
                    section,
                    weight,
                    scale_min,
                    scale_max,
                    allow_not_applicable,
                    critical,
                    level_labels,
                    root_causes,
                    auto,
                }
            },
        )
        .boxed()
}

/// AutoQA rules, hostile ones included: no rule set, unknown enums, reversed limits,
/// phrases of spaces, addresses that are not addresses.
fn auto_rule() -> BoxedStrategy<rb::AutoRule> {
    use rb::auto_rule::Rule;
    let phrase = (
        proptest::collection::vec(often("[a-z ]{1,12}", hostile_text()), 0..4),
        -1i32..6,
        0u32..200,
        -1i32..4,
    )
        .prop_map(|(phrases, scope, message_count, expect)| {
            Rule::Phrase(rb::PhraseRule {
                phrases,
                scope,
                message_count,
                expect,
            })
        });
    let response_time = (0u32..1000, 0u32..1000).prop_map(|(target_seconds, limit_seconds)| {
        Rule::ResponseTime(rb::ResponseTimeRule {
            target_seconds,
            limit_seconds,
        })
    });
    let external = often("https://scorer\\.example\\.com/[a-z]{0,8}", hostile_text())
        .prop_map(|endpoint| Rule::External(rb::ExternalRule { endpoint }));
    proptest::option::of(prop_oneof![
        phrase,
        response_time,
        Just(Rule::SentimentShift(rb::SentimentShiftRule {})),
        Just(Rule::CardNumber(rb::CardNumberRule {})),
        external,
    ])
    .prop_map(|rule| rb::AutoRule { rule })
    .boxed()
}

fn new_rubric() -> BoxedStrategy<rb::CreateRubricRequest> {
    (
        text(),
        text(),
        text(),
        proptest::collection::vec(criterion(), 0..4),
        proptest::option::of(prop_oneof![0.0..100.0f64, any::<f64>()]),
    )
        .prop_map(
            |(request_id, display_name, description, criteria, pass_threshold)| {
                rb::CreateRubricRequest {
                    request_id,
                    rubric: Some(rb::Rubric {
                        display_name,
                        description,
                        draft: Some(rb::RubricDraft {
                            criteria,
                            pass_threshold,
                            auto_score: false,
                        }),
                        ..Default::default()
                    }),
                }
            },
        )
        .boxed()
}

fn listing() -> BoxedStrategy<ev::ListEvaluationsRequest> {
    (
        (
            between(0..=100),
            often(Just(String::new()), hostile_text()),
            often(Just(String::new()), hostile_text()),
            often(Just(String::new()), id()),
            often(Just(String::new()), id()),
            often(Just(String::new()), id()),
            often(Just(String::new()), hostile_text()),
        ),
        proptest::collection::vec(between(1..=4), 0..3),
        (timestamp(), timestamp(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (page_size, page_token, interaction_id, agent_id, team_id, reviewer_id, rubric_id),
                kinds,
                (start_time, end_time, include_inactive, unacknowledged),
            )| {
                ev::ListEvaluationsRequest {
                    page_size,
                    page_token,
                    interaction_id,
                    agent_id,
                    team_id,
                    reviewer_id,
                    rubric_id,
                    kinds,
                    time_range: Some(common::TimeRange {
                        start_time,
                        end_time,
                    }),
                    include_inactive,
                    unacknowledged,
                }
            },
        )
        .boxed()
}

fn query() -> BoxedStrategy<an::QueryScoresRequest> {
    (
        proptest::collection::vec(id(), 0..3),
        proptest::collection::vec(text(), 0..3),
        (
            often(Just(String::new()), hostile_text()),
            proptest::collection::vec(between(1..=4), 0..3),
        ),
        proptest::collection::vec(between(1..=6), 0..4),
        between(0..=4),
        (timestamp(), timestamp()),
    )
        .prop_map(
            |(
                agent_ids,
                channels,
                (rubric_id, kinds),
                group_by,
                interval,
                (start_time, end_time),
            )| {
                an::QueryScoresRequest {
                    filter: Some(an::ScoreFilter {
                        time_range: Some(common::TimeRange {
                            start_time,
                            end_time,
                        }),
                        agent_ids,
                        team_ids: Vec::new(),
                        channels,
                        regions: Vec::new(),
                        rubric_id,
                        kinds,
                    }),
                    group_by,
                    interval,
                }
            },
        )
        .boxed()
}

#[derive(Debug, Clone)]
enum Case {
    Submit(ev::SubmitEvaluationRequest),
    Import(Vec<ev::SubmitEvaluationRequest>),
    Upsert(ev::Interaction),
    Score(ev::ScoreEvaluationRequest),
    CreateRubric(rb::CreateRubricRequest),
    List(ev::ListEvaluationsRequest),
    Query(an::QueryScoresRequest),
    CreateSession(ev::CreateCalibrationSessionRequest),
    OpenDispute(ev::OpenDisputeRequest),
    CreateCoaching(ev::CreateCoachingSessionRequest),
    CreatePlan(ev::CreateSamplingPlanRequest),
    Bytes(&'static str, Vec<u8>),
}

const WRITE_PATHS: &[&str] = &[
    "/iqs.evaluation.v1.EvaluationService/SubmitEvaluation",
    "/iqs.evaluation.v1.EvaluationService/UpsertInteraction",
    "/iqs.evaluation.v1.EvaluationService/ReviseEvaluation",
    "/iqs.evaluation.v1.EvaluationService/ScoreEvaluation",
    "/iqs.evaluation.v1.EvaluationService/AcknowledgeEvaluation",
    "/iqs.rubric.v1.RubricService/CreateRubric",
    "/iqs.rubric.v1.RubricService/UpdateRubricDraft",
    "/iqs.analytics.v1.AnalyticsService/QueryScores",
    "/iqs.evaluation.v1.CalibrationService/CreateCalibrationSession",
    "/iqs.analytics.v1.AnalyticsService/GetCalibrationReport",
    "/iqs.evaluation.v1.DisputeService/OpenDispute",
    "/iqs.evaluation.v1.DisputeService/ResolveDispute",
    "/iqs.evaluation.v1.CoachingService/CreateCoachingSession",
    "/iqs.analytics.v1.AnalyticsService/GetCoachingImpact",
    "/iqs.evaluation.v1.AssignmentService/CreateSamplingPlan",
    "/iqs.evaluation.v1.AssignmentService/RunSampling",
    "/iqs.evaluation.v1.AssignmentService/SkipAssignment",
];

fn new_plan(rubric_id: String) -> BoxedStrategy<ev::CreateSamplingPlanRequest> {
    let values = || proptest::collection::vec(hostile_text(), 0..3);
    let csat = || often(Just(None), any::<i32>().prop_map(Some));
    (
        request_id(),
        label(),
        often(Just(rubric_id), hostile_text()),
        (values(), values(), csat(), csat()),
        any::<u32>(),
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec(id(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(
                request_id,
                display_name,
                rubric_id,
                (channels, agent_ids, min_csat, max_csat),
                per_agent_count,
                period,
                strategy,
                reviewer_ids,
                seed,
            )| {
                ev::CreateSamplingPlanRequest {
                    request_id,
                    plan: Some(ev::SamplingPlan {
                        display_name,
                        rubric_id,
                        filter: Some(ev::SamplingFilter {
                            channels,
                            agent_ids,
                            min_csat,
                            max_csat,
                            ..Default::default()
                        }),
                        per_agent_count: per_agent_count % 1_100,
                        period: period % 4,
                        strategy: strategy % 5,
                        reviewer_ids,
                        seed,
                        ..Default::default()
                    }),
                }
            },
        )
        .boxed()
}

fn open_dispute(evaluation_id: String) -> BoxedStrategy<ev::OpenDisputeRequest> {
    (
        request_id(),
        often(Just(evaluation_id), hostile_text()),
        hostile_text(),
        ratings(),
    )
        .prop_map(
            |(request_id, evaluation_id, comment, proposed_ratings)| ev::OpenDisputeRequest {
                request_id,
                evaluation_id,
                comment,
                proposed_ratings,
            },
        )
        .boxed()
}

fn new_coaching(evaluation_id: String) -> BoxedStrategy<ev::CreateCoachingSessionRequest> {
    let evaluation_ids =
        proptest::collection::vec(often(Just(evaluation_id), hostile_text()), 0..3);
    let items = proptest::collection::vec(
        (hostile_text(), timestamp()).prop_map(|(description, due_time)| ev::ActionItem {
            description,
            due_time,
            ..Default::default()
        }),
        0..3,
    );
    (
        request_id(),
        often(Just("agent-1".to_owned()), id()),
        id(),
        proptest::collection::vec(hostile_text(), 0..3),
        evaluation_ids,
        hostile_text(),
        timestamp(),
        items,
    )
        .prop_map(
            |(
                request_id,
                agent_id,
                coach_id,
                criterion_keys,
                evaluation_ids,
                notes,
                session_time,
                action_items,
            )| {
                ev::CreateCoachingSessionRequest {
                    request_id,
                    session: Some(ev::CoachingSession {
                        agent_id,
                        coach_id,
                        criterion_keys,
                        evaluation_ids,
                        notes,
                        session_time,
                        action_items,
                        ..Default::default()
                    }),
                }
            },
        )
        .boxed()
}

fn new_session(rubric_id: String) -> BoxedStrategy<ev::CreateCalibrationSessionRequest> {
    let interaction_ids = proptest::collection::vec(
        often(
            any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
            hostile_text(),
        ),
        0..4,
    );
    let reviewer_ids = proptest::collection::vec(id(), 0..4);
    (
        request_id(),
        label(),
        often(Just(rubric_id), hostile_text()),
        interaction_ids,
        reviewer_ids,
        often(Just(String::new()), id()),
        timestamp(),
    )
        .prop_map(
            |(
                request_id,
                display_name,
                rubric_id,
                interaction_ids,
                reviewer_ids,
                baseline,
                due_time,
            )| {
                ev::CreateCalibrationSessionRequest {
                    request_id,
                    session: Some(ev::CalibrationSession {
                        display_name,
                        rubric_id,
                        interaction_ids,
                        reviewer_ids,
                        baseline_reviewer_id: baseline,
                        due_time,
                        ..Default::default()
                    }),
                }
            },
        )
        .boxed()
}

fn case(rubric_id: String, evaluation_id: String) -> BoxedStrategy<Case> {
    prop_oneof![
        4 => submission(rubric_id.clone(), false).prop_map(Case::Submit),
        2 => proptest::collection::vec(submission(rubric_id.clone(), true), 1..6)
            .prop_map(Case::Import),
        2 => interaction().prop_map(Case::Upsert),
        1 => (often(Just(rubric_id.clone()), hostile_text()), ratings())
            .prop_map(|(rubric_id, ratings)| Case::Score(ev::ScoreEvaluationRequest {
                rubric_id,
                rubric_version: 0,
                ratings,
            })),
        2 => new_rubric().prop_map(Case::CreateRubric),
        1 => listing().prop_map(Case::List),
        1 => query().prop_map(Case::Query),
        1 => new_session(rubric_id.clone()).prop_map(Case::CreateSession),
        1 => open_dispute(evaluation_id.clone()).prop_map(Case::OpenDispute),
        1 => new_coaching(evaluation_id).prop_map(Case::CreateCoaching),
        1 => new_plan(rubric_id.clone()).prop_map(Case::CreatePlan),
        2 => (proptest::sample::select(WRITE_PATHS), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(path, bytes)| Case::Bytes(path, bytes)),
    ]
    .boxed()
}

/// What a refused call must not have changed.
async fn stored(app: &TestApp) -> [i64; 10] {
    [
        app.count("evaluation.evaluations").await,
        app.count("evaluation.ratings").await,
        app.count("evaluation.outbox").await,
        app.count("evaluation.interactions").await,
        app.count("rubric.rubrics").await,
        app.count("evaluation.calibration_sessions").await,
        app.count("evaluation.disputes").await,
        app.count("evaluation.coaching_sessions").await,
        app.count("evaluation.action_items").await,
        app.count("evaluation.sampling_plans").await,
    ]
}

/// The call's refusal, if any; an import counts as refused for its rejected rows, which
/// must leave the store as if only the accepted rows had come.
async fn run(app: &TestApp, case: Case) -> Result<Option<u64>, tonic::Status> {
    match case {
        Case::Submit(request) => app
            .evaluations()
            .submit_evaluation(request)
            .await
            .map(|_| None),
        Case::Import(rows) => app
            .evaluations()
            .import_evaluations(tokio_stream::iter(rows))
            .await
            .map(|answer| Some(answer.into_inner().accepted)),
        Case::Upsert(interaction) => app
            .evaluations()
            .upsert_interaction(ev::UpsertInteractionRequest {
                interaction: Some(interaction),
            })
            .await
            .map(|_| None),
        Case::Score(request) => app
            .evaluations()
            .score_evaluation(request)
            .await
            .map(|_| None),
        Case::CreateRubric(request) => app.rubrics().create_rubric(request).await.map(|_| None),
        Case::List(request) => app
            .evaluations()
            .list_evaluations(request)
            .await
            .map(|_| None),
        Case::Query(request) => app.analytics().query_scores(request).await.map(|_| None),
        Case::CreateSession(request) => app
            .calibrations()
            .create_calibration_session(request)
            .await
            .map(|_| None),
        Case::OpenDispute(request) => DisputeServiceClient::new(app.channel.clone())
            .open_dispute(request)
            .await
            .map(|_| None),
        Case::CreateCoaching(request) => CoachingServiceClient::new(app.channel.clone())
            .create_coaching_session(request)
            .await
            .map(|_| None),
        Case::CreatePlan(request) => AssignmentServiceClient::new(app.channel.clone())
            .create_sampling_plan(request)
            .await
            .map(|_| None),
        Case::Bytes(path, bytes) => crate::hardening::call_raw(app.channel.clone(), path, bytes)
            .await
            .map(|_| None),
    }
}

fn seed() -> u64 {
    std::env::var("IQS_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

async fn arbitrary_requests_never_answer_internal_and_a_refused_one_stores_nothing(
    backend: Backend,
) {
    let cases: usize = std::env::var("IQS_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(400);
    let seed = seed();
    let app = crate::helpers::spawn_app_without_rate_limits(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let evaluation = app
        .evaluations()
        .submit_evaluation(crate::helpers::submission(&rubric.id, "FUZZ-1", 0, 2))
        .await
        .unwrap()
        .into_inner();
    let strategy = case(rubric.id.clone(), evaluation.id);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..cases {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let before = stored(&app).await;
        let answer = run(&app, case.clone()).await;
        let after = stored(&app).await;
        let context = format!("case {index} of seed {seed} (IQS_FUZZ_SEED={seed}): {case:?}");
        let kind = format!("{case:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned();
        let code = match &answer {
            Ok(_) => "OK".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        };
        *outcomes.entry(format!("{kind} {code}")).or_default() += 1;
        match answer {
            Ok(Some(accepted)) => {
                assert!(
                    after[0] - before[0] <= accepted as i64,
                    "more evaluations stored than accepted: {context}"
                );
            }
            Ok(None) => {}
            Err(status) => {
                assert!(
                    !matches!(
                        status.code(),
                        Code::Internal | Code::Unknown | Code::DataLoss
                    ),
                    "{status:?}: {context}"
                );
                assert_eq!(before, after, "a refused call changed the store: {context}");
            }
        }
    }
    eprintln!("outcomes of {cases} cases (seed {seed}): {outcomes:?}");
    // Still serving.
    app.rubrics()
        .list_rubrics(rb::ListRubricsRequest::default())
        .await
        .unwrap();
}

crate::on_every_store! {
    arbitrary_requests_never_answer_internal_and_a_refused_one_stores_nothing,
}
