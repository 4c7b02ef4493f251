//! `iqs bench` load scenarios, run as the binary against real servers.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use iqs::auth::limits::{Rate, RoleRates};

use crate::helpers::{AppOptions, published_rubric, spawn_app_with, submission};

fn iqs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iqs"));
    command.env_remove("IQS_CONFIG").env_remove("IQS_API_KEY");
    command
}

/// `iqs bench echo-server` on a free port, and its address.
fn echo_server() -> (Child, String) {
    let mut child = iqs()
        .args(["bench", "echo-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    (child, format!("http://{addr}"))
}

fn load(args: &[&str]) -> Value {
    let output = iqs()
        .arg("bench")
        .args(args)
        .args(["--duration-ms", "500", "--warmup", "10", "--json"])
        .output()
        .expect("run iqs bench");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[tokio::test]
async fn the_echo_baseline_answers_under_load_and_reports_latency_quantiles() {
    let (mut server, target) = echo_server();
    let report = load(&["echo", "--target", &target, "--concurrency", "4"]);
    server.kill().unwrap();
    assert_eq!(report["errors"], 0);
    assert!(report["requests"].as_u64().unwrap() > 10, "{report}");
    let (p50, p99, max) = (
        report["p50_ms"].as_f64().unwrap(),
        report["p99_ms"].as_f64().unwrap(),
        report["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
}

#[tokio::test]
async fn an_open_loop_sends_at_the_fixed_rate_however_fast_answers_come() {
    let (mut server, target) = echo_server();
    let report = load(&[
        "echo",
        "--target",
        &target,
        "--concurrency",
        "4",
        "--rate",
        "200",
    ]);
    server.kill().unwrap();
    // 200 calls per second for half a second.
    let requests = report["requests"].as_u64().unwrap();
    assert!((90..=101).contains(&requests), "{report}");
    assert_eq!(report["open_loop_rate"], 200.0);
}

// Several threads: the server under load runs in this test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_score_load_reads_one_agents_summary_with_a_key() {
    // Load, not the admin's rate limit, is what this measures.
    let unlimited = Rate {
        per_second: 1e9,
        burst: 1e9,
    };
    let app = spawn_app_with(AppOptions {
        rate_limits: RoleRates {
            admin: unlimited,
            ..RoleRates::default()
        },
        ..AppOptions::default()
    })
    .await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    app.evaluations()
        .submit_evaluation(submission(&rubric.id, "LOAD-1", 1, 4))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let target = format!("http://{}", app.addr);
    let report = tokio::task::spawn_blocking({
        let key = app.admin_key.clone();
        move || {
            load(&[
                "agent-score",
                "--target",
                &target,
                "--key",
                &key,
                "--agent-id",
                "agent-1",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 10, "{report}");

    let unauthenticated = iqs()
        .args([
            "bench",
            "agent-score",
            "--target",
            &format!("http://{}", app.addr),
        ])
        .args(["--duration-ms", "100", "--warmup", "1"])
        .output()
        .unwrap();
    assert!(!unauthenticated.status.success());
    assert!(String::from_utf8_lossy(&unauthenticated.stderr).contains("warm-up"));
}
