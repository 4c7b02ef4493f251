use std::time::Duration;

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
use crate::owned_servers::ServerProcess;

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
    let mut server = ServerProcess::spawn(&[("DATABASE_URL", &database_url)]);
    let mut health = HealthClient::new(server.channel().await);
    assert_eq!(
        health_of(&mut health, SERVICES[2]).await,
        Ok(ServingStatus::Serving as i32)
    );
    drop(health);

    server.terminate();
    let exit = server.exit_within(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0));
}
