//! The embedded default: the binary with no `DATABASE_URL` and no `REDIS_URL`, on an
//! empty data directory, as on a machine with nothing installed.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use iqs::proto::analytics::{
    self as analytics_pb, analytics_service_client::AnalyticsServiceClient,
};
use iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient;
use iqs::proto::rubric::{self as rubric_pb, rubric_service_client::RubricServiceClient};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{published_rubric, submission, with_key};

/// A running `iqs serve` on the embedded store, with what it printed on stdout.
pub(crate) struct Embedded {
    pub(crate) child: Child,
    addr: String,
    stdout: String,
}

fn iqs(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iqs"));
    command
        .env("IQS_DATA_DIR", data_dir)
        .env("IQS_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("IQS_CONFIG");
    command
}

pub(crate) fn serve(data_dir: &Path) -> Embedded {
    let started = Instant::now();
    let mut child = iqs(data_dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iqs serve");
    let addr_rx = crate::owned_servers::watch_log(child.stderr.take().unwrap(), None);
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the bound address is logged");
    // Ready to serve in well under a second on an empty data directory (a debug build here).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to listen",
        started.elapsed()
    );
    // What the first run prints comes before the server listens.
    let mut stdout = String::new();
    let out = child.stdout.take().unwrap();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    while let Ok(line) = out_rx.recv_timeout(Duration::from_millis(300)) {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    Embedded {
        child,
        addr,
        stdout,
    }
}

impl Embedded {
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub(crate) fn printed_key(&self) -> Option<String> {
        self.stdout
            .split_whitespace()
            .find(|word| word.starts_with("iqs_"))
            .map(|key| key.trim_end_matches('\'').to_owned())
    }

    pub(crate) async fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0));
                return;
            }
            assert!(Instant::now() < deadline, "iqs did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn with_nothing_installed_serve_creates_a_key_on_first_run_and_keeps_the_data() {
    let data_dir = std::env::temp_dir()
        .join("iqs-tests")
        .join(format!("embedded-{}", uuid::Uuid::now_v7().simple()));
    let first = serve(&data_dir);
    let key = first
        .printed_key()
        .expect("the first run prints an admin key");
    assert!(first.stdout.contains("buf curl"), "{}", first.stdout);
    assert!(
        first.stdout.contains(&format!("/#key={key}")),
        "the dashboard's address with the key: {}",
        first.stdout
    );
    // The printed curl call works as printed.
    let curl = first
        .stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("curl "))
        .expect("a curl call is printed");
    let answered = Command::new("sh").args(["-c", curl]).output().unwrap();
    let answer = String::from_utf8_lossy(&answered.stdout);
    assert!(answered.status.success(), "{curl}: {answer}");
    assert!(answer.contains("\"rubrics\":[]"), "{curl}: {answer}");
    let channel = first.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "iqs.rubric.v1.RubricService",
        "iqs.evaluation.v1.EvaluationService",
        "iqs.analytics.v1.AnalyticsService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }

    let authed = with_key(channel, &key);
    let (rubric, _) = published_rubric(&mut RubricServiceClient::new(authed.clone())).await;
    EvaluationServiceClient::new(authed.clone())
        .submit_evaluation(submission(&rubric.id, "EMB-1", 1, 4))
        .await
        .unwrap();
    let mut analytics = AnalyticsServiceClient::new(authed);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let score = analytics
            .get_agent_score(analytics_pb::GetAgentScoreRequest {
                agent_id: "agent-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if score.evaluation_count == 1 {
            assert_eq!(score.iqs, Some(100.0));
            break;
        }
        assert!(Instant::now() < deadline, "the score did not show");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;

    let second = serve(&data_dir);
    assert_eq!(second.printed_key(), None, "{}", second.stdout);
    let authed = with_key(second.channel().await, &key);
    let stored = RubricServiceClient::new(authed.clone())
        .get_rubric(rubric_pb::GetRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.latest_version, 1);
    let score = AnalyticsServiceClient::new(authed)
        .get_agent_score(analytics_pb::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(score.evaluation_count, 1);
    second.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn demo_seed_fills_the_embedded_store_with_agents_that_differ_and_csat_that_follows() {
    let data_dir = std::env::temp_dir()
        .join("iqs-tests")
        .join(format!("demo-{}", uuid::Uuid::now_v7().simple()));
    let seed = |evaluations: &str| {
        let output = iqs(&data_dir)
            .args([
                "demo",
                "seed",
                "--evaluations",
                evaluations,
                "--until",
                "2026-11-01",
            ])
            .output()
            .expect("run iqs demo seed");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = seed("3000");
    assert!(first.contains("3000 evaluations added"), "{first}");
    let autoqa = |output: &str| {
        output
            .lines()
            .find(|line| line.trim_start().starts_with("autoqa:"))
            .map(str::to_owned)
    };
    let auto_scored = autoqa(&first).expect("an AutoQA line");
    assert!(
        auto_scored.contains("40 chats auto-scored"),
        "{auto_scored}"
    );
    assert!(auto_scored.contains("greeting κ"), "{auto_scored}");
    let again = seed("3000");
    assert!(
        again.contains("0 evaluations added, 3000 already there"),
        "{again}"
    );
    assert_eq!(
        autoqa(&again),
        Some(auto_scored),
        "seeding again scores nothing anew"
    );

    // The first serve on the seeded store prints a key of the seeded tenant.
    let server = serve(&data_dir);
    let key = server.printed_key().expect("an admin key");
    let mut analytics = AnalyticsServiceClient::new(with_key(server.channel().await, &key));
    let agents = analytics
        .query_scores(analytics_pb::QueryScoresRequest {
            group_by: vec![analytics_pb::Dimension::Agent as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(agents.len(), 30);
    let scores: Vec<f64> = agents.iter().filter_map(|row| row.iqs).collect();
    let (low, high) = scores.iter().fold((f64::MAX, f64::MIN), |(low, high), s| {
        (low.min(*s), high.max(*s))
    });
    assert!(high - low > 15.0, "agents barely differ: {low}..{high}");
    let correlation = analytics
        .get_csat_correlation(analytics_pb::GetCsatCorrelationRequest {
            group_by: analytics_pb::Dimension::Agent as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        correlation.pearson_r.is_some_and(|r| r > 0.3),
        "{correlation:?}"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
