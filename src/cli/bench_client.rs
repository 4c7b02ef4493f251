//! What the load generators of `iqs bench` share: channels that carry an API key, the
//! benchmark rubric, and generated evaluations.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Channel;

use crate::proto::{
    evaluation::{self as eval_pb, submit_evaluation_request::InteractionRef},
    rubric::{self as rubric_pb, rubric_service_client::RubricServiceClient},
};

/// A channel whose calls carry the API key, if any.
pub(super) type Authed = InterceptedService<Channel, BearerKey>;

#[derive(Clone)]
pub(super) struct BearerKey(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub(super) async fn open_channel(target: &str) -> Result<Channel, String> {
    Channel::from_shared(target.to_owned())
        .map_err(|err| format!("bad target {target:?}: {err}"))?
        .connect()
        .await
        .map_err(|err| format!("cannot connect to {target}: {err}"))
}

/// The `authorization` value for a key.
pub(super) fn bearer(key: Option<&str>) -> Result<Option<MetadataValue<Ascii>>, String> {
    key.map(|key| format!("Bearer {key}").parse::<MetadataValue<Ascii>>())
        .transpose()
        .map_err(|_| "the key has characters that cannot be sent".to_owned())
}

pub(super) fn authed(channel: Channel, bearer: Option<MetadataValue<Ascii>>) -> Authed {
    InterceptedService::new(channel, BearerKey(bearer))
}

/// A rubric shaped like a real chat scorecard: a critical compliance check, binary
/// checks and 4-point soft-skill criteria, one of them N/A-able.
pub(super) async fn bench_rubric(channel: Authed) -> Result<String, String> {
    let mut client = RubricServiceClient::new(channel);
    let criterion = |key: &str, section: &str, weight, min, max| rubric_pb::Criterion {
        key: key.into(),
        display_name: key.replace('_', " "),
        section: section.into(),
        weight,
        scale_min: min,
        scale_max: max,
        ..Default::default()
    };
    let mut verify = criterion("verify_identity", "Compliance", 0, 0, 1);
    verify.critical = rubric_pb::CriticalScope::Evaluation as i32;
    let mut resolution = criterion("resolution", "Solution", 3, 1, 4);
    resolution.allow_not_applicable = true;
    resolution.root_causes = vec!["knowledge_gap".into(), "process".into()];
    let rubric = client
        .create_rubric(rubric_pb::CreateRubricRequest {
            request_id: String::new(),
            rubric: Some(rubric_pb::Rubric {
                display_name: "Benchmark chat rubric".into(),
                draft: Some(rubric_pb::RubricDraft {
                    criteria: vec![
                        verify,
                        criterion("greeting", "Soft skills", 1, 0, 1),
                        criterion("empathy", "Soft skills", 2, 1, 4),
                        criterion("tone", "Soft skills", 1, 1, 4),
                        resolution,
                        criterion("closing", "Soft skills", 1, 0, 1),
                    ],
                    pass_threshold: None,
                    auto_score: false,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| format!("CreateRubric: {status}"))?
        .into_inner();
    client
        .publish_rubric(rubric_pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .map_err(|status| format!("PublishRubric: {status}"))?;
    Ok(rubric.id)
}

/// Row `i` of a generated import: deterministic, varied, valid unless `bad`.
pub fn import_row(
    prefix: &str,
    rubric_id: &str,
    i: u64,
    bad: bool,
) -> eval_pb::SubmitEvaluationRequest {
    let pick = |n: u64| (i.wrapping_mul(2654435761) >> (n * 3)) % 4;
    let rating = |key: &str, value: i32| eval_pb::Rating {
        criterion_key: key.into(),
        value: Some(value),
        ..Default::default()
    };
    let mut resolution = rating("resolution", 1 + pick(3) as i32);
    if pick(4) == 0 {
        resolution.root_causes = vec!["knowledge_gap".into()];
    }
    let ratings = vec![
        rating("verify_identity", i32::from(!i.is_multiple_of(50))),
        rating("greeting", (pick(1) % 2) as i32),
        rating("empathy", if bad { 9 } else { 1 + pick(2) as i32 }),
        rating("tone", 1 + pick(5) as i32),
        resolution,
        rating("closing", (pick(6) % 2) as i32),
    ];
    eval_pb::SubmitEvaluationRequest {
        calibration_session_id: String::new(),
        request_id: format!("{prefix}-{i}"),
        interaction_ref: Some(InteractionRef::Interaction(eval_pb::Interaction {
            source: "zendesk".into(),
            external_id: format!("{prefix}-{i}"),
            channel: ["chat", "email", "voice"][(i % 3) as usize].into(),
            agent_id: format!("agent-{}", i % 30),
            team_id: format!("team-{}", i % 3),
            region: ["emea", "amer", "apac"][(i % 3) as usize].into(),
            csat: Some(1 + (pick(7) as i32 + i32::from(i.is_multiple_of(2))).min(4)),
            messages: vec![
                eval_pb::Message {
                    role: eval_pb::MessageRole::Customer as i32,
                    author_id: format!("customer-{i}"),
                    text: "Hello, my order has not arrived yet.".into(),
                    send_time: None,
                },
                eval_pb::Message {
                    role: eval_pb::MessageRole::Agent as i32,
                    author_id: format!("agent-{}", i % 30),
                    text: "Sorry to hear that, let me check the tracking for you.".into(),
                    send_time: None,
                },
            ],
            ..Default::default()
        })),
        rubric_id: rubric_id.into(),
        rubric_version: 0,
        reviewer_id: format!("reviewer-{}", i % 5),
        kind: eval_pb::EvaluationKind::Manual as i32,
        ratings,
        comment: String::new(),
        create_time: None,
    }
}

/// The `q` quantile of latencies, in milliseconds (nearest rank; 0 when there are none).
pub(super) fn quantile_ms(samples: &mut [std::time::Duration], q: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
