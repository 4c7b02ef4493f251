//! The `iqs` binary as an operator meets it: output into pipes that close early, error
//! messages, and configuration mistakes.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use iqs::config::Config;
use iqs::domain::access::Role;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

use crate::helpers::create_key;

/// An empty working and data directory of its own.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iqs-cli-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// `iqs` on the embedded store in `dir`, without any configuration from the test's
/// environment.
fn iqs(dir: &PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iqs"));
    command
        .current_dir(dir)
        .env("IQS_DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("IQS_CONFIG")
        .env_remove("IQS_LISTEN_ADDR");
    command
}

/// Runs `command` with its stdout closed before it writes anything.
fn with_stdout_closed(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iqs");
    drop(child.stdout.take());
    child.wait_with_output().expect("iqs ends")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_quiet_stop(output: &Output, what: &str) {
    let stderr = stderr(output);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
    assert_eq!(output.status.code(), Some(141), "{what}: {stderr}");
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = scratch_dir();
    let setup = iqs(&dir)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", stderr(&setup));
    for args in [
        &["key", "list"][..],
        &["key", "create", "--tenant", "acme", "--role", "admin"],
        &["tenant", "create", "acme"],
        &["audit"],
        &["migrate"],
        &["analytics", "rebuild"],
    ] {
        let mut command = iqs(&dir);
        command.args(args);
        assert_quiet_stop(&with_stdout_closed(command), &args.join(" "));
    }
}

/// `iqs key list | head -1`, with more keys than a pipe buffers.
#[tokio::test]
async fn key_list_into_head_stops_quietly() {
    let dir = scratch_dir();
    let store = iqs::server::open_store(&Config {
        data_dir: dir.join("data"),
        ..Config::default()
    })
    .await
    .expect("the test opens the store");
    let tenant = store.create_tenant("acme").await.expect("tenant").id;
    for _ in 0..1500 {
        create_key(store.as_ref(), tenant, Role::Analyst, None).await;
    }
    let mut child = iqs(&dir)
        .args(["key", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(first_line.starts_with("key id"), "{first_line}");
    let mut errors = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!errors.contains("panicked"), "{errors}");
    assert_eq!(status.code(), Some(141), "{errors}");
}

/// A scratch directory with an (empty) embedded store in it.
fn scratch_dir_with_store() -> PathBuf {
    let dir = scratch_dir();
    let migrated = iqs(&dir).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    dir
}

#[test]
fn each_command_error_is_printed_once() {
    let dir = scratch_dir_with_store();
    let missing = Uuid::now_v7();
    let output = iqs(&dir)
        .args(["key", "revoke", &missing.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert_eq!(
        errors.matches(&format!("no key {missing}")).count(),
        1,
        "{errors}"
    );
    assert_eq!(errors.trim(), format!("iqs: no key {missing}"));

    let output = iqs(&dir)
        .args(["key", "create", "--tenant", "nobody", "--role", "admin"])
        .output()
        .unwrap();
    let errors = stderr(&output);
    assert_eq!(errors.matches("no tenant named").count(), 1, "{errors}");
}

#[test]
fn a_server_that_cannot_start_says_why_once() {
    let dir = scratch_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = iqs(&dir)
        .args(["serve", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert_eq!(
        errors.matches(&format!("cannot bind {addr}")).count(),
        1,
        "{errors}"
    );
}

#[test]
fn a_misspelt_key_in_iqs_toml_stops_serve_naming_it() {
    let dir = scratch_dir();
    std::fs::write(dir.join("iqs.toml"), "max_concurent_calls = 5\n").unwrap();
    let output = iqs(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let errors = stderr(&output);
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(
        errors.contains("`max_concurent_calls` in iqs.toml"),
        "{errors}"
    );
    assert!(
        errors.contains("did you mean `max_concurrent_calls`"),
        "{errors}"
    );
}

#[test]
fn config_errors_name_the_key_and_where_it_was_set_not_source_lines() {
    let dir = scratch_dir();
    let output = iqs(&dir)
        .args(["serve", "--services", "billing"])
        .output()
        .unwrap();
    let errors = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{errors}");
    assert!(
        errors.contains("`services` on the command line"),
        "{errors}"
    );
    assert!(!errors.contains(".rs:"), "{errors}");

    let output = iqs(&dir)
        .args(["serve"])
        .env("IQS_LISTEN_ADDR", "everywhere")
        .output()
        .unwrap();
    let errors = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{errors}");
    assert!(
        errors.contains("`listen_addr` in environment variable IQS_LISTEN_ADDR"),
        "{errors}"
    );
    assert!(!errors.contains(".rs:"), "{errors}");
}

#[test]
fn variables_of_other_tools_sharing_the_prefix_do_not_stop_commands() {
    let dir = scratch_dir_with_store();
    let output = iqs(&dir)
        .args(["key", "list"])
        .env("IQS_TEST_THROWAWAY", "1")
        .env("IQS_API_KEY", "iqs_not_a_config_key")
        .env("IQS_PG_BIN", "/usr/lib/postgresql/16/bin")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The first run prints an admin key; a closed stdout loses the key but must not stop
/// the server.
#[tokio::test]
async fn serve_keeps_serving_when_stdout_is_closed() {
    let dir = scratch_dir();
    let mut child = iqs(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let addr_rx = crate::owned_servers::watch_log(child.stderr.take().unwrap(), None);
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the bound address is logged");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().unwrap().is_none(), "the server stopped");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the server still answers");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serve_help_says_where_the_data_lives_and_where_settings_come_from() {
    let output = iqs(&scratch_dir())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for named in [
        "DATABASE_URL",
        "IQS_DATA_DIR",
        "REDIS_URL",
        "iqs.toml",
        "--config",
    ] {
        assert!(
            help.contains(named),
            "serve --help does not name {named}:\n{help}"
        );
    }
}

#[test]
fn commands_that_read_the_store_say_where_they_looked_and_create_nothing() {
    let dir = scratch_dir();
    for args in [&["key", "list"][..], &["audit"], &["analytics", "rebuild"]] {
        let output = iqs(&dir).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let said = stderr(&output);
        assert!(
            said.contains("no IQS data at") && said.contains("iqs.db"),
            "{args:?}: {said}"
        );
    }
    assert!(!dir.join("data").exists(), "an empty store was created");
}

#[test]
fn a_qa_reviewer_key_may_be_bound_to_a_reviewer_and_no_other_role_may() {
    let dir = scratch_dir_with_store();
    let tenant = iqs(&dir)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(tenant.status.success(), "{}", stderr(&tenant));
    let bound = iqs(&dir)
        .args(["key", "create", "--tenant", "acme", "--role", "qa_reviewer"])
        .args(["--reviewer-id", "rev-a"])
        .output()
        .unwrap();
    assert!(bound.status.success(), "{}", stderr(&bound));
    let listed = iqs(&dir).args(["key", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|line| line.contains("qa_reviewer") && line.contains("rev-a")),
        "{listed}"
    );
    for (role, id) in [("admin", "rev-a"), ("qa_reviewer", "bell\u{7}")] {
        let refused = iqs(&dir)
            .args(["key", "create", "--tenant", "acme", "--role", role])
            .args(["--reviewer-id", id])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{role} {id}");
        assert!(
            stderr(&refused).contains("--reviewer-id"),
            "{}",
            stderr(&refused)
        );
    }
}

#[test]
fn tenant_configure_sets_the_dispute_window_and_refuses_days_outside_1_to_365() {
    let dir = scratch_dir_with_store();
    let created = iqs(&dir)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let shown = iqs(&dir)
        .args(["tenant", "configure", "acme"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("dispute_window_days 14"),
        "a new tenant has 14 days"
    );
    let set = iqs(&dir)
        .args(["tenant", "configure", "acme", "--dispute-window-days", "30"])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(String::from_utf8_lossy(&set.stdout).contains("dispute_window_days 30"));
    for days in ["0", "366"] {
        let refused = iqs(&dir)
            .args(["tenant", "configure", "acme", "--dispute-window-days", days])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{days}");
        assert!(
            stderr(&refused).contains("--dispute-window-days must be 1..365"),
            "{}",
            stderr(&refused)
        );
    }
    let unknown = iqs(&dir)
        .args([
            "tenant",
            "configure",
            "nobody",
            "--dispute-window-days",
            "7",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no tenant \"nobody\""),
        "{}",
        stderr(&unknown)
    );
}
