use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use iqs::config::ServiceSet;
use iqs::proto::evaluation::{
    self as evaluation_pb, evaluation_service_client::EvaluationServiceClient,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{AppOptions, create_test_database, spawn_app, spawn_app_with};

const SERVICES: [&str; 3] = [
    "iqs.rubric.v1.RubricService",
    "iqs.evaluation.v1.EvaluationService",
    "iqs.analytics.v1.AnalyticsService",
];

async fn health_of(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<i32, Code> {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|response| response.into_inner().status)
        .map_err(|status| status.code())
}

#[tokio::test]
async fn health_reports_serving_for_each_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.raw_channel.clone());
    for service in SERVICES.into_iter().chain([""]) {
        assert_eq!(
            health_of(&mut health, service).await,
            Ok(ServingStatus::Serving as i32),
            "{service}"
        );
    }
}

#[tokio::test]
async fn reflection_v1_lists_the_three_services() {
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.raw_channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
        assert!(
            names.iter().any(|name| name == service),
            "{service} in {names:?}"
        );
    }
}

#[tokio::test]
async fn only_the_chosen_services_are_served() {
    let app = spawn_app_with(AppOptions {
        services: "rubric".parse::<ServiceSet>().unwrap(),
        ..AppOptions::default()
    })
    .await;
    let mut health = HealthClient::new(app.raw_channel.clone());
    assert_eq!(
        health_of(&mut health, SERVICES[0]).await,
        Ok(ServingStatus::Serving as i32)
    );
    assert_eq!(
        health_of(&mut health, SERVICES[1]).await,
        Err(Code::NotFound)
    );
    let status = EvaluationServiceClient::new(app.channel.clone())
        .get_evaluation(evaluation_pb::GetEvaluationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_stops_within_the_grace_period() {
    let mut app = spawn_app().await;
    let mut health = HealthClient::new(app.raw_channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICES[0].to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let stopped = tokio::spawn(async move {
        app.stop().await;
    });
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("health changes on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The open Watch stream never ends by itself; the grace period (2 s here) bounds it.
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("server stops after the grace period")
        .unwrap();
}

#[tokio::test]
async fn the_binary_serves_on_port_0_and_exits_0_on_sigterm() {
    let database_url = create_test_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_iqs"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("IQS_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env_remove("IQS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iqs serve");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("address=").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = addr_tx.send(addr);
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the bound address is logged");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    assert_eq!(
        health_of(&mut health, SERVICES[2]).await,
        Ok(ServingStatus::Serving as i32)
    );
    drop(health);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "iqs did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
}
