//! The calibration sessions `iqs demo seed` adds: two sessions over the chat rubric, the
//! older one closed, each scored by an accurate baseline reviewer, a lenient one, a
//! strict one and a noisy one, so the tour has a report to show. Every request carries a
//! request id: seeding again changes nothing.

use tonic::transport::Channel;

use super::bench_client::{Authed, authed};
use super::demo::Random;
use super::demo_program::failed;
use crate::proto::analytics::{self as apb, analytics_service_client::AnalyticsServiceClient};
use crate::proto::evaluation::{
    self as epb, calibration_service_client::CalibrationServiceClient,
    evaluation_service_client::EvaluationServiceClient, submit_evaluation_request::InteractionRef,
};
use crate::proto::rubric as rpb;

/// The reviewers and how far from the truth each one rates (a bias, and how much the
/// noise spreads; see `Reviewer`).
const REVIEWERS: [(&str, f64, f64); 4] = [
    ("qa-anna", 0.0, 0.3),
    ("qa-ben", 1.0, 0.5),
    ("qa-carla", -1.0, 0.5),
    ("qa-dev", 0.0, 1.5),
];
/// How far one unit of bias moves a rating, as a share of the scale.
const BIAS_SHARE: f64 = 0.12;
/// How far one unit of spread scatters a rating, as a share of the scale.
const SPREAD_SHARE: f64 = 0.08;
/// How often a pass/fail item is failed, by any reviewer.
const BINARY_FAILURE: f64 = 0.05;
const INTERACTIONS_PER_SESSION: usize = 10;

/// A reviewer of a generated session: who, and how far from the truth they rate (a bias,
/// positive = lenient, and how much their noise spreads, in units of `BIAS_SHARE` and
/// `SPREAD_SHARE` of the scale).
pub type Reviewer = (String, f64, f64);

/// Creates a session of `interactions` new interactions scored by every reviewer (the
/// first is the baseline); `label` keeps its request ids apart from other sessions'.
pub async fn seed_session(
    channel: Authed,
    label: &str,
    rubric_id: &str,
    criteria: &[rpb::Criterion],
    interactions: usize,
    reviewers: &[Reviewer],
    draws: &mut Random,
) -> Result<epb::CalibrationSession, String> {
    let mut sessions = CalibrationServiceClient::new(channel.clone());
    let mut evaluations = EvaluationServiceClient::new(channel);
    let mut interaction_ids = Vec::new();
    for index in 0..interactions {
        let interaction = evaluations
            .upsert_interaction(epb::UpsertInteractionRequest {
                interaction: Some(epb::Interaction {
                    source: "demo".into(),
                    external_id: format!("calibration-{label}-{index}"),
                    channel: "chat".into(),
                    agent_id: format!("agent-{}", index % 5),
                    team_id: "tier1".into(),
                    region: "emea".into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(failed("store a calibration interaction"))?
            .into_inner();
        interaction_ids.push(interaction.id);
    }
    let session = sessions
        .create_calibration_session(epb::CreateCalibrationSessionRequest {
            request_id: format!("calibration-{label}"),
            session: Some(epb::CalibrationSession {
                display_name: format!("Calibration {label}"),
                rubric_id: rubric_id.into(),
                interaction_ids: interaction_ids.clone(),
                reviewer_ids: reviewers.iter().map(|(id, ..)| id.clone()).collect(),
                baseline_reviewer_id: reviewers
                    .first()
                    .map(|(id, ..)| id.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
        })
        .await
        .map_err(failed("create a calibration session"))?
        .into_inner();
    for (unit, interaction_id) in interaction_ids.iter().enumerate() {
        let quality = 0.35 + 0.6 * draws.unit();
        for (reviewer, bias, spread) in reviewers {
            let ratings = criteria
                .iter()
                .map(|criterion| {
                    let steps = criterion.scale_max - criterion.scale_min;
                    let value = if steps == 1 {
                        // Pass/fail items (compliance) are rarely failed.
                        criterion.scale_max - i32::from(draws.unit() < BINARY_FAILURE)
                    } else {
                        let noise = SPREAD_SHARE * spread * draws.normal(1.0);
                        let level = (quality + BIAS_SHARE * bias + noise).clamp(0.0, 1.0);
                        criterion.scale_min + (level * f64::from(steps)).round() as i32
                    };
                    epb::Rating {
                        criterion_key: criterion.key.clone(),
                        value: Some(value),
                        ..Default::default()
                    }
                })
                .collect();
            evaluations
                .submit_evaluation(epb::SubmitEvaluationRequest {
                    request_id: format!("calibration-{label}-{unit}-{reviewer}"),
                    interaction_ref: Some(InteractionRef::InteractionId(interaction_id.clone())),
                    rubric_id: rubric_id.into(),
                    reviewer_id: reviewer.clone(),
                    kind: epb::EvaluationKind::Calibration as i32,
                    ratings,
                    calibration_session_id: session.id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(failed("submit a calibration review"))?;
        }
    }
    Ok(session)
}

/// Seeds the demo's sessions; a line for the summary.
pub async fn seed_calibration(
    channel: Channel,
    seed: u64,
    rubric_id: &str,
    criteria: &[rpb::Criterion],
) -> Result<String, String> {
    let channel = authed(channel, None);
    let mut sessions = CalibrationServiceClient::new(channel.clone());
    let mut draws = Random(seed ^ 0xca1b);
    let reviewers: Vec<Reviewer> = REVIEWERS
        .iter()
        .map(|(id, bias, spread)| (id.to_string(), *bias, *spread))
        .collect();
    let mut closed = None;
    for number in 1..=2 {
        let session = seed_session(
            channel.clone(),
            &format!("demo-{seed}-week-{number}"),
            rubric_id,
            criteria,
            INTERACTIONS_PER_SESSION,
            &reviewers,
            &mut draws,
        )
        .await?;
        if number == 1 {
            sessions
                .close_calibration_session(epb::CloseCalibrationSessionRequest {
                    id: session.id.clone(),
                })
                .await
                .map_err(failed("close a calibration session"))?;
            closed = Some(session.id);
        }
    }
    let session_id = closed.unwrap_or_default();
    let report = AnalyticsServiceClient::new(channel)
        .get_calibration_report(apb::GetCalibrationReportRequest {
            session_id: session_id.clone(),
        })
        .await
        .map_err(failed("read the calibration report"))?
        .into_inner();
    let deviations: Vec<String> = report
        .reviewers
        .iter()
        .filter_map(|reviewer| {
            let deviation = reviewer.mean_deviation_from_baseline?;
            Some(format!("{} {deviation:+.1}", reviewer.reviewer_id))
        })
        .collect();
    Ok(format!(
        "  calibration:           session {session_id} (closed): score alpha {}; against the baseline {}",
        report
            .score_alpha_interval
            .map_or("n/a".into(), |alpha| format!("{alpha:.2}")),
        deviations.join(", "),
    ))
}
