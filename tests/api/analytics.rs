use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use iqs::proto::analytics::{self as pb, analytics_service_client::AnalyticsServiceClient};
use iqs::proto::common::TimeRange;
use iqs::proto::evaluation::{self as eval_pb, submit_evaluation_request::InteractionRef};
use iqs::proto::rubric as rubric_pb;
use tokio_stream::StreamExt;

use crate::helpers::{
    AppOptions, Backend, TestApp, criterion, new_rubric, spawn_app, spawn_app_on, spawn_app_with,
    wait_for_projection,
};

const TOLERANCE: f64 = 1e-9;

fn assert_close(actual: Option<f64>, expected: Option<f64>, what: &str) {
    match (actual, expected) {
        (Some(a), Some(e)) => assert!((a - e).abs() < TOLERANCE, "{what}: {a} != {e}"),
        (a, e) => assert_eq!(a, e, "{what}"),
    }
}

fn analytics(app: &TestApp) -> AnalyticsServiceClient<crate::helpers::Authed> {
    app.analytics()
}

/// What the test knows of one evaluation, to compute the expected figures itself.
#[derive(Clone, Debug)]
struct Known {
    evaluation: eval_pb::Evaluation,
    csat: Option<i32>,
    deleted: bool,
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let values: Vec<f64> = values.into_iter().collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

struct Expected {
    iqs: Option<f64>,
    evaluation_count: u64,
    scored_count: u64,
    pass_rate: f64,
    critical_fail_count: u64,
    avg_csat: Option<f64>,
    sections: BTreeMap<String, f64>,
}

fn expected(set: &[&Known]) -> Expected {
    let scored: Vec<&&Known> = set
        .iter()
        .filter(|k| k.evaluation.score.is_some())
        .collect();
    let mut section_values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for known in set {
        for section in &known.evaluation.section_scores {
            if let Some(score) = section.score {
                section_values
                    .entry(section.section.clone())
                    .or_default()
                    .push(score);
            }
        }
    }
    Expected {
        iqs: mean(scored.iter().map(|k| k.evaluation.score.unwrap())),
        evaluation_count: set.len() as u64,
        scored_count: scored.len() as u64,
        pass_rate: if scored.is_empty() {
            0.0
        } else {
            scored.iter().filter(|k| k.evaluation.passed).count() as f64 / scored.len() as f64
        },
        critical_fail_count: set.iter().filter(|k| k.evaluation.critical_failed).count() as u64,
        avg_csat: mean(set.iter().filter_map(|k| k.csat.map(f64::from))),
        sections: section_values
            .into_iter()
            .map(|(section, values)| (section, mean(values).unwrap()))
            .collect(),
    }
}

fn check_summary(summary: &pb::ScoreSummary, expected: &Expected, what: &str) {
    assert_close(summary.iqs, expected.iqs, what);
    assert_eq!(
        summary.evaluation_count, expected.evaluation_count,
        "{what}"
    );
    assert_eq!(summary.scored_count, expected.scored_count, "{what}");
    assert!(
        (summary.pass_rate - expected.pass_rate).abs() < TOLERANCE,
        "{what}"
    );
    assert_eq!(
        summary.critical_fail_count, expected.critical_fail_count,
        "{what}"
    );
    let sections: BTreeMap<String, f64> = summary
        .section_scores
        .iter()
        .map(|s| (s.section.clone(), s.score.unwrap()))
        .collect();
    assert_eq!(sections.len(), expected.sections.len(), "{what}");
    for (section, value) in &expected.sections {
        assert_close(
            sections.get(section).copied(),
            Some(*value),
            &format!("{what} section {section}"),
        );
    }
    assert!(summary.as_of.is_some());
}

async fn two_rubrics(app: &TestApp) -> Vec<String> {
    let mut disclosure = criterion("disclosure", 1, 0, 1);
    disclosure.section = "Compliance".into();
    disclosure.critical = rubric_pb::CriticalScope::Section as i32;
    let mut empathy = criterion("empathy", 2, 1, 4);
    empathy.section = "Soft skills".into();
    empathy.allow_not_applicable = true;
    empathy.root_causes = vec!["rushed".into(), "scripted".into()];
    let mut verify = criterion("verify_identity", 0, 0, 1);
    verify.critical = rubric_pb::CriticalScope::Evaluation as i32;
    let mut accuracy = criterion("accuracy", 3, 0, 4);
    accuracy.root_causes = vec!["knowledge_gap".into()];
    let mut ids = Vec::new();
    for (name, criteria) in [
        ("Chat", vec![disclosure, empathy]),
        ("Email", vec![verify, accuracy]),
    ] {
        let rubric = app
            .rubrics()
            .create_rubric(new_rubric(
                name,
                rubric_pb::RubricDraft {
                    criteria,
                    pass_threshold: Some(70.0),
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
        ids.push(rubric.id);
    }
    ids
}

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

fn random_ratings(rng: &mut Rng, rubric: usize) -> Vec<eval_pb::Rating> {
    let mut rating = |key: &str, max: u32, min: i32| eval_pb::Rating {
        criterion_key: key.into(),
        value: Some(min + (rng.next_u32() % max) as i32),
        ..Default::default()
    };
    if rubric == 0 {
        let disclosure = rating("disclosure", 2, 0);
        let mut empathy = rating("empathy", 4, 1);
        match rng.next_u32() % 5 {
            0 => {
                empathy.value = None;
                empathy.not_applicable = true;
            }
            1 => empathy.root_causes = vec!["rushed".into()],
            2 => empathy.root_causes = vec!["rushed".into(), "scripted".into()],
            _ => {}
        }
        vec![disclosure, empathy]
    } else {
        let verify = rating("verify_identity", 2, 0);
        let mut accuracy = rating("accuracy", 5, 0);
        if rng.next_u32().is_multiple_of(3) {
            accuracy.root_causes = vec!["knowledge_gap".into()];
        }
        vec![verify, accuracy]
    }
}

async fn every_analytics_rpc_agrees_with_figures_computed_from_the_evaluations(backend: Backend) {
    let app = spawn_app_on(backend).await;
    // A second replica on the same database: two projectors compete for the outbox.
    let replica = spawn_app_with(AppOptions {
        backend,
        database_url: Some(app.database_url.clone()),
        ..AppOptions::default()
    })
    .await;
    let rubrics = two_rubrics(&app).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let agents = ["ana", "ben", "chloe", "dev", "eli", "fay"];
    let channels = ["chat", "email", "voice"];
    let kinds = [
        eval_pb::EvaluationKind::Manual,
        eval_pb::EvaluationKind::Manual,
        eval_pb::EvaluationKind::Manual,
        eval_pb::EvaluationKind::Self_,
        eval_pb::EvaluationKind::Calibration,
    ];
    let mut known: HashMap<String, Known> = HashMap::new();
    let started = chrono::Utc::now();
    for i in 0..240 {
        let agent = agents[(rng.next_u32() as usize) % agents.len()];
        let team = if agent < "d" { "north" } else { "south" };
        let rubric = (rng.next_u32() % 2) as usize;
        let csat = (!rng.next_u32().is_multiple_of(4)).then(|| 1 + (rng.next_u32() % 5) as i32);
        let request = eval_pb::SubmitEvaluationRequest {
            calibration_session_id: String::new(),
            request_id: format!("r-{i}"),
            interaction_ref: Some(InteractionRef::Interaction(eval_pb::Interaction {
                source: "zendesk".into(),
                external_id: format!("T-{i}"),
                channel: channels[(rng.next_u32() as usize) % 3].into(),
                agent_id: agent.into(),
                team_id: team.into(),
                region: if i % 2 == 0 {
                    "emea".into()
                } else {
                    "amer".into()
                },
                csat,
                ..Default::default()
            })),
            rubric_id: rubrics[rubric].clone(),
            rubric_version: 0,
            reviewer_id: format!("qa-{}", rng.next_u32() % 3),
            kind: kinds[(rng.next_u32() as usize) % kinds.len()] as i32,
            ratings: random_ratings(&mut rng, rubric),
            comment: String::new(),
            create_time: None,
        };
        let evaluation = app
            .evaluations()
            .submit_evaluation(request)
            .await
            .unwrap()
            .into_inner();
        known.insert(
            evaluation.id.clone(),
            Known {
                evaluation,
                csat,
                deleted: false,
            },
        );
    }
    // Revise some, delete others, revise-then-delete a few.
    let ids: Vec<String> = {
        let mut ids: Vec<String> = known.keys().cloned().collect();
        ids.sort();
        ids
    };
    for (n, id) in ids.iter().enumerate() {
        let entry = known.get(id).unwrap().clone();
        let rubric = rubrics
            .iter()
            .position(|r| *r == entry.evaluation.rubric_id)
            .unwrap();
        if n % 5 == 0 || n % 11 == 0 {
            let revised = app
                .evaluations()
                .revise_evaluation(eval_pb::ReviseEvaluationRequest {
                    id: id.clone(),
                    request_id: format!("rev-{n}"),
                    ratings: random_ratings(&mut rng, rubric),
                    comment: String::new(),
                    reason: "recalibrated".into(),
                })
                .await
                .unwrap()
                .into_inner();
            known.get_mut(id).unwrap().evaluation = revised;
        }
        if n % 7 == 0 || n % 11 == 0 {
            app.evaluations()
                .delete_evaluation(eval_pb::DeleteEvaluationRequest {
                    id: id.clone(),
                    reason: "duplicate".into(),
                })
                .await
                .unwrap();
            known.get_mut(id).unwrap().deleted = true;
        }
    }
    wait_for_projection(&app).await;
    let ended = chrono::Utc::now();
    drop(replica);

    let ts = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    let today = started.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let ranges = [
        // Partial days: answered from facts.
        Some(TimeRange {
            start_time: Some(ts(started - chrono::Duration::seconds(1))),
            end_time: Some(ts(ended + chrono::Duration::seconds(1))),
        }),
        // Whole days: answered from rollups.
        Some(TimeRange {
            start_time: Some(ts(today)),
            end_time: Some(ts(today + chrono::Duration::days(2))),
        }),
        // Unbounded.
        None,
    ];
    let manual =
        |k: &&Known| !k.deleted && k.evaluation.kind == eval_pb::EvaluationKind::Manual as i32;
    let mut client = analytics(&app);
    for range in ranges {
        let what = format!("range {range:?}");
        for agent in agents {
            let summary = client
                .get_agent_score(pb::GetAgentScoreRequest {
                    agent_id: agent.into(),
                    time_range: range,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let set: Vec<&Known> = known
                .values()
                .filter(manual)
                .filter(|k| k.evaluation.agent_id == agent)
                .collect();
            check_summary(&summary, &expected(&set), &format!("{what} agent {agent}"));
            if range.is_some() {
                assert_close(summary.previous_iqs, None, "previous period is empty");
            }
        }
        for team in ["north", "south"] {
            let summary = client
                .get_team_score(pb::GetTeamScoreRequest {
                    team_id: team.into(),
                    time_range: range,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let set: Vec<&Known> = known
                .values()
                .filter(manual)
                .filter(|k| k.evaluation.team_id == team)
                .collect();
            check_summary(&summary, &expected(&set), &format!("{what} team {team}"));
        }
        // Other kinds only when asked for, and together when asked for together.
        let both = [
            eval_pb::EvaluationKind::Self_ as i32,
            eval_pb::EvaluationKind::Calibration as i32,
        ];
        let summary = client
            .get_agent_score(pb::GetAgentScoreRequest {
                agent_id: "ana".into(),
                time_range: range,
                rubric_id: String::new(),
                kinds: both.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        let set: Vec<&Known> = known
            .values()
            .filter(|k| {
                !k.deleted && k.evaluation.agent_id == "ana" && both.contains(&k.evaluation.kind)
            })
            .collect();
        check_summary(
            &summary,
            &expected(&set),
            &format!("{what} ana self+calibration"),
        );

        // QueryScores: team x channel, and per rubric x reviewer by day.
        let filter = pb::ScoreFilter {
            time_range: range,
            ..Default::default()
        };
        let rows = client
            .query_scores(pb::QueryScoresRequest {
                filter: Some(filter.clone()),
                group_by: vec![pb::Dimension::Team as i32, pb::Dimension::Channel as i32],
                interval: pb::Interval::None as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .rows;
        let mut groups: BTreeMap<(String, String), Vec<&Known>> = BTreeMap::new();
        for k in known.values().filter(manual) {
            groups
                .entry((k.evaluation.team_id.clone(), k.evaluation.channel.clone()))
                .or_default()
                .push(k);
        }
        assert_eq!(rows.len(), groups.len(), "{what}");
        for row in &rows {
            let key = (
                row.dimensions["team"].clone(),
                row.dimensions["channel"].clone(),
            );
            let e = expected(&groups[&key]);
            assert_close(row.iqs, e.iqs, &format!("{what} {key:?}"));
            assert_eq!(row.evaluation_count, e.evaluation_count);
            assert!((row.pass_rate - e.pass_rate).abs() < TOLERANCE);
            assert_close(row.avg_csat, e.avg_csat, &format!("{what} {key:?} csat"));
            assert!(row.bucket_start.is_none());
        }
        let by_day = client
            .query_scores(pb::QueryScoresRequest {
                filter: Some(pb::ScoreFilter {
                    rubric_id: rubrics[1].clone(),
                    ..filter.clone()
                }),
                group_by: vec![pb::Dimension::Reviewer as i32],
                interval: pb::Interval::Day as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .rows;
        let mut reviewers: BTreeMap<String, Vec<&Known>> = BTreeMap::new();
        for k in known
            .values()
            .filter(manual)
            .filter(|k| k.evaluation.rubric_id == rubrics[1])
        {
            reviewers
                .entry(k.evaluation.reviewer_id.clone())
                .or_default()
                .push(k);
        }
        assert_eq!(by_day.len(), reviewers.len(), "{what}");
        for row in &by_day {
            assert_eq!(
                row.bucket_start.as_ref().map(|b| b.seconds),
                Some(today.timestamp())
            );
            assert_close(
                row.iqs,
                expected(&reviewers[&row.dimensions["reviewer"]]).iqs,
                &what,
            );
        }

        // Criterion breakdown of the chat rubric.
        let breakdown = client
            .get_criterion_breakdown(pb::GetCriterionBreakdownRequest {
                filter: Some(pb::ScoreFilter {
                    rubric_id: rubrics[0].clone(),
                    ..filter.clone()
                }),
                root_cause_limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let chat: Vec<&Known> = known
            .values()
            .filter(manual)
            .filter(|k| k.evaluation.rubric_id == rubrics[0])
            .collect();
        for criterion in &breakdown.criteria {
            let scores: Vec<f64> = chat
                .iter()
                .flat_map(|k| k.evaluation.criterion_scores.iter())
                .filter(|c| c.criterion_key == criterion.criterion_key)
                .filter_map(|c| c.score)
                .collect();
            assert_eq!(criterion.rated_count as usize, scores.len());
            assert_close(
                criterion.average_score,
                mean(scores),
                &format!("{what} {}", criterion.criterion_key),
            );
        }
        let averages: Vec<f64> = breakdown
            .criteria
            .iter()
            .filter_map(|c| c.average_score)
            .collect();
        assert!(averages.windows(2).all(|w| w[0] <= w[1]), "weakest first");
        let e = expected(&chat);
        for section in &breakdown.sections {
            assert_close(
                section.average_score,
                e.sections.get(&section.section).copied(),
                &section.section,
            );
        }
        let mut causes: HashMap<(String, String), u64> = HashMap::new();
        for k in &chat {
            for rating in &k.evaluation.ratings {
                for cause in &rating.root_causes {
                    *causes
                        .entry((rating.criterion_key.clone(), cause.clone()))
                        .or_default() += 1;
                }
            }
        }
        assert_eq!(breakdown.root_causes.len(), causes.len());
        for cause in &breakdown.root_causes {
            assert_eq!(
                cause.count,
                causes[&(cause.criterion_key.clone(), cause.root_cause.clone())]
            );
        }

        // CSAT correlation over agents.
        let correlation = client
            .get_csat_correlation(pb::GetCsatCorrelationRequest {
                filter: Some(filter.clone()),
                group_by: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut points = Vec::new();
        for agent in agents {
            let set: Vec<&Known> = known
                .values()
                .filter(manual)
                .filter(|k| k.evaluation.agent_id == agent)
                .collect();
            let e = expected(&set);
            if let (Some(iqs), Some(csat)) = (e.iqs, e.avg_csat) {
                points.push((iqs, csat));
            }
        }
        assert_eq!(correlation.pairs as usize, points.len());
        let n = points.len() as f64;
        let (mx, my) = (
            points.iter().map(|p| p.0).sum::<f64>() / n,
            points.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        assert_close(
            correlation.pearson_r,
            Some(sxy / (sxx * syy).sqrt()),
            "pearson",
        );
        assert!(correlation.spearman_rho.is_some());
    }

    // Export: every current evaluation once, resumable from any row's cursor.
    let rows: Vec<pb::EvaluationRow> = client
        .export_evaluations(pb::ExportEvaluationsRequest {
            filter: None,
            cursor: String::new(),
            include_deleted: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let manual_count = known.values().filter(manual).count();
    assert_eq!(rows.len(), manual_count);
    for row in &rows {
        let k = &known[&row.evaluation_id];
        assert_eq!(row.revision, k.evaluation.revision);
        assert_eq!(row.score, k.evaluation.score);
        assert_eq!(row.criterion_scores, k.evaluation.criterion_scores);
        assert_eq!(row.csat, k.csat);
    }
    let resumed: Vec<pb::EvaluationRow> = client
        .export_evaluations(pb::ExportEvaluationsRequest {
            filter: None,
            cursor: rows[9].cursor.clone(),
            include_deleted: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(resumed, rows[10..].to_vec());

    // Rebuilding from the evaluations gives the same figures.
    let before = client
        .query_scores(pb::QueryScoresRequest {
            filter: None,
            group_by: vec![pb::Dimension::Agent as i32],
            interval: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = app.store.rebuild().await.unwrap();
    assert_eq!(
        replayed as i64,
        app.count("evaluation.evaluations WHERE state <> 'superseded'")
            .await
    );
    let after = client
        .query_scores(pb::QueryScoresRequest {
            filter: None,
            group_by: vec![pb::Dimension::Agent as i32],
            interval: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.rows.len(), after.rows.len());
    for (b, a) in before.rows.iter().zip(&after.rows) {
        assert_eq!(b.dimensions, a.dimensions);
        assert_close(b.iqs, a.iqs, "after rebuild");
        assert_eq!(b.evaluation_count, a.evaluation_count);
    }
}

/// A review of `agent` on the email rubric of `two_rubrics`, with `request_id` as both
/// the request id and the interaction's external id.
fn email_review(
    rubric: &str,
    agent: &str,
    request_id: &str,
    accuracy: i32,
) -> eval_pb::SubmitEvaluationRequest {
    eval_pb::SubmitEvaluationRequest {
        request_id: request_id.into(),
        interaction_ref: Some(InteractionRef::Interaction(eval_pb::Interaction {
            source: "zendesk".into(),
            external_id: request_id.into(),
            channel: "email".into(),
            agent_id: agent.into(),
            ..Default::default()
        })),
        rubric_id: rubric.into(),
        reviewer_id: "qa".into(),
        ratings: vec![
            crate::helpers::rating("verify_identity", 1),
            crate::helpers::rating("accuracy", accuracy),
        ],
        ..Default::default()
    }
}

async fn a_submitted_evaluation_shows_in_the_agent_score_within_a_second(backend: Backend) {
    each_submission_counts_within(backend, "fresh-agent", 20, Duration::from_secs(1)).await;
}

async fn each_commit_wakes_the_projector_at_once_rather_than_at_its_next_poll(backend: Backend) {
    // The projector polls every second; ten submissions each visible within 300 ms
    // cannot all come from polls, only from the wake-up each commit sends.
    each_submission_counts_within(backend, "woken-agent", 10, Duration::from_millis(300)).await;
}

/// Submits `submissions` evaluations of `agent` one after another, each visible in the
/// agent's score within `limit` of its answer.
async fn each_submission_counts_within(
    backend: Backend,
    agent: &str,
    submissions: u32,
    limit: Duration,
) {
    let app = spawn_app_on(backend).await;
    let rubric = two_rubrics(&app).await.remove(1);
    let mut client = analytics(&app);
    for n in 0..submissions {
        let request = email_review(&rubric, agent, &format!("{agent}-{n}"), 4);
        app.evaluations().submit_evaluation(request).await.unwrap();
        let submitted = Instant::now();
        loop {
            let summary = client
                .get_agent_score(pb::GetAgentScoreRequest {
                    agent_id: agent.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if summary.evaluation_count == u64::from(n) + 1 {
                break;
            }
            assert!(
                submitted.elapsed() < limit,
                "submission {n} was not counted within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

async fn analytics_requests_with_bad_fields_name_each_one(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = analytics(&app);
    let status = client
        .get_agent_score(pb::GetAgentScoreRequest {
            agent_id: String::new(),
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: 100,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 50,
                    nanos: 0,
                }),
            }),
            rubric_id: "nope".into(),
            kinds: vec![42],
        })
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&status),
        ["agent_id", "time_range.end_time", "rubric_id", "kinds[0]"]
    );
    let status = client
        .query_scores(pb::QueryScoresRequest {
            filter: Some(pb::ScoreFilter {
                rubric_id: "x".into(),
                ..Default::default()
            }),
            group_by: vec![pb::Dimension::Agent as i32, pb::Dimension::Agent as i32, 0],
            interval: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&status),
        ["filter.rubric_id", "group_by[1]", "group_by[2]", "interval"]
    );
}

async fn an_agent_without_evaluations_has_no_iqs(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let summary = analytics(&app)
        .get_agent_score(pb::GetAgentScoreRequest {
            agent_id: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.iqs, summary.evaluation_count, summary.pass_rate),
        (None, 0, 0.0)
    );
}

async fn iqs_analytics_rebuild_derives_the_figures_again_while_the_server_keeps_answering(
    backend: Backend,
) {
    let app = spawn_app_on(backend).await;
    let rubric = two_rubrics(&app).await.remove(1);
    for n in 0..5 {
        let request = email_review(&rubric, "rebuilt", &format!("rebuild-{n}"), n);
        app.evaluations().submit_evaluation(request).await.unwrap();
    }
    wait_for_projection(&app).await;
    let before = analytics(&app)
        .get_agent_score(pb::GetAgentScoreRequest {
            agent_id: "rebuilt".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_iqs"))
        .args(["analytics", "rebuild"])
        .env("DATABASE_URL", &app.database_url)
        .env_remove("IQS_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rebuilt analytics from 5 evaluations")
    );
    let after = analytics(&app)
        .get_agent_score(pb::GetAgentScoreRequest {
            agent_id: "rebuilt".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (after.iqs, after.evaluation_count),
        (before.iqs, before.evaluation_count)
    );
}

#[tokio::test]
async fn a_rebuild_reads_committed_evaluations_without_waiting_and_later_events_count_once() {
    use iqs::store::AnalyticsStore;
    use sqlx::Connection;
    let app = spawn_app().await;
    let rubric = two_rubrics(&app).await.remove(1);
    // A transaction elsewhere in the cluster, older than the evaluations below: the
    // projector cannot apply their events while it runs.
    let mut blocker = sqlx::PgConnection::connect(&crate::helpers::admin_database_url())
        .await
        .unwrap();
    let mut blocking = blocker.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *blocking)
        .await
        .unwrap();
    for n in 0..3 {
        let request = email_review(&rubric, "blocked", &format!("blocked-{n}"), n);
        app.evaluations().submit_evaluation(request).await.unwrap();
    }
    let store =
        iqs::store::postgres::PostgresStore::connect(&app.database_url, &Default::default())
            .await
            .unwrap();
    let rebuilt = tokio::time::timeout(Duration::from_secs(10), store.rebuild())
        .await
        .expect("the rebuild waited for a transaction it does not need")
        .unwrap();
    assert_eq!(rebuilt, 3);
    let score = |app: &TestApp| {
        let mut client = analytics(app);
        async move {
            client
                .get_agent_score(pb::GetAgentScoreRequest {
                    agent_id: "blocked".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .evaluation_count
        }
    };
    assert_eq!(score(&app).await, 3);
    // Their events, applied once the blocker ends, describe what the rebuild read.
    blocking.rollback().await.unwrap();
    wait_for_projection(&app).await;
    assert_eq!(score(&app).await, 3);
}

/// Figures by agent as QueryScores answers them: (agent, iqs, count, avg csat).
async fn figures_by_agent(app: &TestApp) -> Vec<(String, Option<f64>, u64, Option<f64>)> {
    analytics(app)
        .query_scores(pb::QueryScoresRequest {
            filter: None,
            group_by: vec![pb::Dimension::Agent as i32],
            interval: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|row| {
            (
                row.dimensions["agent"].clone(),
                row.iqs,
                row.evaluation_count,
                row.avg_csat,
            )
        })
        .collect()
}

async fn a_rebuild_after_the_outbox_is_pruned_equals_the_live_projection(backend: Backend) {
    let app = spawn_app_with(AppOptions {
        backend,
        tune: |config| config.outbox_retention_s = 0,
        ..AppOptions::default()
    })
    .await;
    let rubric = two_rubrics(&app).await.remove(1);
    let mut ids = Vec::new();
    for n in 0..12 {
        let mut request = email_review(
            &rubric,
            ["ana", "ben"][n % 2],
            &format!("pruned-{n}"),
            (n % 5) as i32,
        );
        if let Some(InteractionRef::Interaction(interaction)) = &mut request.interaction_ref {
            interaction.csat = Some(1 + (n % 5) as i32);
        }
        let evaluation = app
            .evaluations()
            .submit_evaluation(request)
            .await
            .unwrap()
            .into_inner();
        ids.push(evaluation.id);
    }
    // CSAT arriving after a review changes the interaction, not the figures of
    // evaluations already made; a later revision counts it.
    for n in [0, 1, 2] {
        let interaction = eval_pb::Interaction {
            source: "zendesk".into(),
            external_id: format!("pruned-{n}"),
            channel: "email".into(),
            agent_id: ["ana", "ben"][n % 2].into(),
            csat: Some(5),
            ..Default::default()
        };
        app.evaluations()
            .upsert_interaction(eval_pb::UpsertInteractionRequest {
                interaction: Some(interaction),
            })
            .await
            .unwrap();
    }
    for (n, id) in ids.iter().enumerate().take(6).skip(2) {
        app.evaluations()
            .revise_evaluation(eval_pb::ReviseEvaluationRequest {
                id: id.clone(),
                request_id: format!("pruned-rev-{n}"),
                ratings: vec![
                    crate::helpers::rating("verify_identity", 0),
                    crate::helpers::rating("accuracy", 4),
                ],
                comment: String::new(),
                reason: "recalibrated".into(),
            })
            .await
            .unwrap();
    }
    for id in &ids[5..7] {
        app.evaluations()
            .delete_evaluation(eval_pb::DeleteEvaluationRequest {
                id: id.clone(),
                reason: "duplicate".into(),
            })
            .await
            .unwrap();
    }
    wait_for_projection(&app).await;
    // With no retention, consumed events leave the outbox within moments.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.count("evaluation.outbox").await > 0 {
        assert!(
            Instant::now() < deadline,
            "consumed events stayed in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = figures_by_agent(&app).await;
    assert_eq!(live.iter().map(|row| row.2).sum::<u64>(), 10);
    assert_eq!(app.store.rebuild().await.unwrap(), 12);
    let rebuilt = figures_by_agent(&app).await;
    assert_eq!(live.len(), rebuilt.len());
    for (live, rebuilt) in live.iter().zip(&rebuilt) {
        assert_eq!((&live.0, live.2), (&rebuilt.0, rebuilt.2));
        assert_close(rebuilt.1, live.1, &format!("{} iqs", live.0));
        assert_close(rebuilt.3, live.3, &format!("{} csat", live.0));
    }
}

async fn the_outbox_keeps_an_event_until_the_projector_and_the_webhook_dispatcher_have_passed_it(
    backend: Backend,
) {
    // No analytics service: no projector and no pruner run; the test plays both.
    let app = spawn_app_with(AppOptions {
        backend,
        services: "rubric,evaluation"
            .parse::<iqs::config::ServiceSet>()
            .unwrap(),
        ..Default::default()
    })
    .await;
    let rubric = two_rubrics(&app).await.remove(1);
    let written = chrono::Utc::now();
    for n in 0..3 {
        let request = email_review(&rubric, "kept", &format!("kept-{n}"), n);
        app.evaluations().submit_evaluation(request).await.unwrap();
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        app.store.prune_outbox(later, 100).await.unwrap(),
        0,
        "events the projector has not applied were pruned"
    );
    let mut applied = 0;
    while applied < 3 {
        applied += app.store.apply_pending(100).await.unwrap().events;
    }
    let earlier = written - chrono::Duration::hours(1);
    assert_eq!(
        app.store.prune_outbox(earlier, 100).await.unwrap(),
        0,
        "events within their retention were pruned"
    );
    // The webhook dispatcher passes them within its poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pruned = 0;
    while pruned < 3 {
        assert!(
            Instant::now() < deadline,
            "consumed events were never pruned"
        );
        pruned += app.store.prune_outbox(later, 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("evaluation.outbox").await, 0);
}

#[tokio::test]
async fn score_queries_are_served_by_a_streaming_replica_whose_as_of_admits_its_lag() {
    use sqlx::Connection;
    let primary = crate::owned_servers::Postgres::start();
    let replica = primary.replica();
    let app = spawn_app_with(AppOptions {
        database_url: Some(primary.url()),
        database_read_url: Some(replica.url()),
        ..AppOptions::default()
    })
    .await;
    let rubric = two_rubrics(&app).await.remove(1);
    let submit = |n: i32| {
        let request = email_review(&rubric, "replicated", &format!("replicated-{n}"), n % 5);
        let mut evaluations = app.evaluations();
        async move { evaluations.submit_evaluation(request).await.unwrap() }
    };
    let summary = || {
        let mut client = analytics(&app);
        async move {
            client
                .get_agent_score(pb::GetAgentScoreRequest {
                    agent_id: "replicated".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let counted_within = |count: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let summary = summary().await;
            if summary.evaluation_count == count {
                return summary;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never counted {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    for n in 0..3 {
        submit(n).await;
    }
    wait_for_projection(&app).await;
    counted_within(3).await;

    // Replay stops on the replica; writes still go to the primary.
    let mut standby = sqlx::PgConnection::connect(&replica.url()).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .await
        .unwrap();
    let paused = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in 3..5 {
        submit(n).await;
    }
    wait_for_projection(&app).await;
    assert_eq!(app.count("evaluation.evaluations").await, 5);
    // The replica has received the new WAL but not replayed it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let behind: bool =
            sqlx::query_scalar("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
                .fetch_one(&mut standby)
                .await
                .unwrap();
        if behind {
            break;
        }
        assert!(Instant::now() < deadline, "the replica received nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Served from the replica: still three, and as of no later than the pause.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let lagging = summary().await;
    assert_eq!(
        lagging.evaluation_count, 3,
        "the score was not read from the replica"
    );
    let as_of = lagging.as_of.expect("as_of").seconds;
    assert!(
        as_of <= paused.timestamp(),
        "as_of {as_of} claims figures newer than the replica's replay, paused at {}",
        paused.timestamp()
    );

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut standby)
        .await
        .unwrap();
    let caught_up = counted_within(5).await;
    assert!(caught_up.as_of.expect("as_of").seconds >= paused.timestamp());

    // With the replica gone, the score queries read the primary. A call that was handed
    // one of the replica's pooled connections as it went down answers UNAVAILABLE, which
    // is safe to retry; each such connection is closed, and the next call reads the
    // primary.
    drop(standby);
    drop(replica);
    submit(5).await;
    wait_for_projection(&app).await;
    let mut client = analytics(&app);
    let mut unavailable = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client
            .get_agent_score(pb::GetAgentScoreRequest {
                agent_id: "replicated".into(),
                ..Default::default()
            })
            .await
        {
            Ok(summary) if summary.get_ref().evaluation_count == 6 => break,
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::Unavailable => unavailable += 1,
            Err(status) => panic!("{status}"),
        }
        assert!(
            Instant::now() < deadline,
            "the primary never answered for the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unavailable <= 4,
        "{unavailable} calls failed after the replica stopped"
    );
}

#[tokio::test]
async fn the_projector_reads_the_outbox_in_numeric_txid_order_past_a_power_of_ten() {
    use iqs::store::AnalyticsStore;
    // No analytics service, so no projector runs: the test applies the outbox itself.
    let app = spawn_app_with(AppOptions {
        services: "rubric,evaluation"
            .parse::<iqs::config::ServiceSet>()
            .unwrap(),
        ..Default::default()
    })
    .await;
    let rubric = two_rubrics(&app).await.remove(1);
    for n in 0..2 {
        let request = email_review(&rubric, "ordered", &format!("ordered-{n}"), n);
        app.evaluations().submit_evaluation(request).await.unwrap();
    }
    // Transaction ids 9 and 10 sort the other way round as text.
    sqlx::query(
        "UPDATE evaluation.outbox o SET txid = ranked.txid
         FROM (SELECT position, (8 + row_number() OVER (ORDER BY position))::text::xid8 AS txid
               FROM evaluation.outbox) ranked
         WHERE o.position = ranked.position",
    )
    .execute(app.pg_pool())
    .await
    .unwrap();
    let store =
        iqs::store::postgres::PostgresStore::connect(&app.database_url, &Default::default())
            .await
            .unwrap();
    assert_eq!(store.apply_pending(100).await.unwrap().events, 2);
    assert_eq!(
        store.apply_pending(100).await.unwrap().events,
        0,
        "an event was read twice"
    );
    let cursor: String =
        sqlx::query_scalar("SELECT last_txid::text FROM analytics.projector_cursor")
            .fetch_one(app.pg_pool())
            .await
            .unwrap();
    assert_eq!(cursor, "10");
}

crate::on_every_store! {
    every_analytics_rpc_agrees_with_figures_computed_from_the_evaluations,
    a_submitted_evaluation_shows_in_the_agent_score_within_a_second,
    each_commit_wakes_the_projector_at_once_rather_than_at_its_next_poll,
    analytics_requests_with_bad_fields_name_each_one,
    an_agent_without_evaluations_has_no_iqs,
    iqs_analytics_rebuild_derives_the_figures_again_while_the_server_keeps_answering,
    a_rebuild_after_the_outbox_is_pruned_equals_the_live_projection,
    the_outbox_keeps_an_event_until_the_projector_and_the_webhook_dispatcher_have_passed_it,
}

#[tokio::test]
async fn the_outbox_trigger_notifies_for_sessions_of_earlier_versions_only() {
    use sqlx::{Connection, Executor, postgres::PgConnectOptions, postgres::PgListener};
    let url = crate::helpers::migrated_test_database().await;
    let mut listener = PgListener::connect(&url).await.unwrap();
    listener.listen("iqs_outbox").await.unwrap();
    let write_event =
        "INSERT INTO evaluation.outbox (tenant_id, event_type, evaluation_id, revision, payload)
                       VALUES (gen_random_uuid(), 'submitted', gen_random_uuid(), 1, '{}')";
    // A session that does not say it notifies after commit: the trigger wakes the projector.
    let mut earlier = sqlx::PgConnection::connect(&url).await.unwrap();
    earlier.execute(write_event).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(
        matches!(woken, Ok(Ok(_))),
        "no NOTIFY for an earlier version's write"
    );
    // A session of this version: the trigger leaves the NOTIFY to the server.
    let options = url
        .parse::<PgConnectOptions>()
        .unwrap()
        .options([("iqs.outbox_notify_after_commit", "on")]);
    let mut current = sqlx::PgConnection::connect_with(&options).await.unwrap();
    current.execute(write_event).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        woken.is_err(),
        "the trigger notified inside this version's transaction"
    );
}

/// The outbox keeps every event; the projector's reads behind its cursor must reach the
/// `(txid, position)` index, not scan the events already consumed. Checked on the generic
/// plan, which prepared statements end up using.
#[tokio::test]
async fn the_projectors_outbox_reads_use_the_consumption_index_not_a_scan_of_consumed_events() {
    use sqlx::{Connection, Executor, Row};
    let url = crate::helpers::migrated_test_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // 50,000 consumed events in one transaction, then 10 pending ones in another.
    for events in [50_000, 10] {
        conn.execute(
            format!(
                "INSERT INTO evaluation.outbox (tenant_id, event_type, evaluation_id, revision, payload)
                 SELECT gen_random_uuid(), 'submitted', gen_random_uuid(), 1, '{{}}'
                 FROM generate_series(1, {events})"
            )
            .as_str(),
        )
        .await
        .unwrap();
        if events > 10 {
            conn.execute(
                "UPDATE analytics.projector_cursor SET (last_txid, last_position) =
                     (SELECT txid, position FROM evaluation.outbox ORDER BY position DESC LIMIT 1)",
            )
            .await
            .unwrap();
        }
    }
    conn.execute("ANALYZE evaluation.outbox").await.unwrap();
    conn.execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let cursor =
        sqlx::query("SELECT last_txid::text, last_position FROM analytics.projector_cursor")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let (txid, position): (String, i64) = (cursor.get(0), cursor.get(1));
    for (name, sql) in iqs::store::postgres::OUTBOX_READS {
        let arguments = if name == "prune_outbox" {
            "(now(), 5000)".to_owned()
        } else if sql.contains("$3") {
            format!("('{txid}', {position}, 500)")
        } else {
            String::new()
        };
        conn.execute(format!("PREPARE {name} AS {sql}").as_str())
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}{arguments}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("outbox_consumption_order") && !plan.contains("Seq Scan on outbox"),
            "{name} does not read the outbox by its consumption index:\n{plan}"
        );
    }
}

/// Pruned events leave their space to new ones: the outbox is vacuumed after every
/// 10,000 pruned events instead of waiting for autovacuum, which looks at a table about
/// once a minute (switched off for the outbox here, so that only IQS's own vacuum counts).
/// With it, the file's largest size holds at most a burst in flight plus the 10,000
/// events pruned since the last vacuum: under twice what one burst of 12,000 needs,
/// however many follow (a vacuum may also truncate the file once it is empty). Without
/// it, four bursts grew the file to four times what one did, although each burst was
/// consumed before the next.
#[tokio::test]
async fn the_outbox_file_stops_growing_once_pruned_space_is_reused_during_a_burst() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    };
    let app = spawn_app_with(AppOptions {
        tune: |config| config.outbox_retention_s = 0,
        ..AppOptions::default()
    })
    .await;
    sqlx::query("ALTER TABLE evaluation.outbox SET (autovacuum_enabled = false)")
        .execute(app.pg_pool())
        .await
        .unwrap();
    let (rubric, _) = crate::helpers::published_rubric(&mut app.rubrics()).await;
    // The file's largest size, sampled every 20 ms.
    let largest = Arc::new(AtomicI64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (pool, largest, sampling) = (app.pg_pool().clone(), largest.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                let bytes: i64 = sqlx::query_scalar("SELECT pg_relation_size('evaluation.outbox')")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                largest.fetch_max(bytes, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    const BURST: usize = 12_000;
    let burst_consumed = |burst: usize| {
        let (app, rubric_id) = (&app, rubric.id.clone());
        async move {
            let stream =
                tokio_stream::iter((burst * BURST..(burst + 1) * BURST).map(move |n| {
                    crate::helpers::submission(&rubric_id, &format!("BURST-{n}"), 1, 3)
                }));
            app.evaluations().import_evaluations(stream).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while app.count("evaluation.outbox").await > 0 {
                assert!(Instant::now() < deadline, "the outbox was not pruned");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    burst_consumed(0).await;
    let largest_after_one = largest.load(Ordering::Relaxed);
    for burst in 1..4 {
        burst_consumed(burst).await;
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let largest_after_four = largest.load(Ordering::Relaxed);
    assert!(largest_after_one > 0);
    assert!(
        largest_after_four < largest_after_one * 5 / 2,
        "largest {largest_after_one} bytes during one burst of {BURST} events, \
         {largest_after_four} during four"
    );
}
