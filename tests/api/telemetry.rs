//! Traces and metrics leave through OTLP: an in-test collector receives the spans of an
//! evaluation server and of the rubric server it calls, each a process of its own, and
//! the metrics of a server.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iqs::proto::evaluation::evaluation_service_client::EvaluationServiceClient;
use iqs::proto::rubric::rubric_service_client::RubricServiceClient;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    metrics::v1::{Metric, metric::Data},
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;

use crate::helpers::{admin_key_in, create_test_database, published_rubric, submission, with_key};
use crate::owned_servers::ServerProcess;

/// Every span received, with the `service.name` of the process that sent it, and every
/// metric.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    metrics: Arc<Mutex<Vec<Metric>>>,
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| match &value.value {
            Some(Value::StringValue(text)) => Some(text.clone()),
            Some(Value::IntValue(number)) => Some(number.to_string()),
            _ => None,
        })
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                metrics.extend(scope.metrics);
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| text(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_collector() -> (String, Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), collector)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_submission_is_one_trace_across_the_evaluation_and_rubric_servers_and_the_database() {
    let (collector_url, collector) = start_collector().await;
    let database_url = create_test_database().await;
    let otel = |service: &'static str| {
        [
            ("DATABASE_URL", database_url.clone()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url.clone()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    };
    let rubric_env = otel("iqs-rubric-test");
    let mut rubric_server = ServerProcess::spawn(
        &rubric_env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .chain([("IQS_SERVICES", "rubric")])
            .collect::<Vec<_>>(),
    );
    let rubric_endpoint = rubric_server.endpoint();
    let evaluation_env = otel("iqs-evaluation-test");
    let mut evaluation_server = ServerProcess::spawn(
        &evaluation_env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .chain([
                ("IQS_SERVICES", "evaluation"),
                ("IQS_RUBRIC_ENDPOINT", rubric_endpoint.as_str()),
            ])
            .collect::<Vec<_>>(),
    );

    let key = admin_key_in(&database_url).await;
    let (rubric, _) = published_rubric(&mut RubricServiceClient::new(with_key(
        rubric_server.channel().await,
        &key,
    )))
    .await;
    // The caller's own trace: the servers' spans must continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(submission(&rubric.id, "TRACED-1", 1, 4));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    EvaluationServiceClient::new(with_key(evaluation_server.channel().await, &key))
        .submit_evaluation(request)
        .await
        .unwrap();

    // SIGTERM flushes what the batch processors still hold.
    evaluation_server.terminate();
    rubric_server.terminate();
    assert_eq!(
        evaluation_server
            .exit_within(Duration::from_secs(30))
            .await
            .code(),
        Some(0)
    );
    assert_eq!(
        rubric_server
            .exit_within(Duration::from_secs(30))
            .await
            .code(),
        Some(0)
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let traced = loop {
        let traced: Vec<(String, Span)> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, span)| hex(&span.trace_id) == trace_id)
            .cloned()
            .collect();
        let services: Vec<&str> = traced.iter().map(|(service, _)| service.as_str()).collect();
        if services.contains(&"iqs-evaluation-test") && services.contains(&"iqs-rubric-test") {
            break traced;
        }
        assert!(
            Instant::now() < deadline,
            "spans of both services in trace {trace_id}: got {services:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<(&str, &str)> = traced
        .iter()
        .map(|(service, span)| (service.as_str(), span.name.as_str()))
        .collect();
    let submit = traced
        .iter()
        .find(|(service, span)| {
            service == "iqs-evaluation-test" && span.name.ends_with("/SubmitEvaluation")
        })
        .map(|(_, span)| span)
        .unwrap_or_else(|| panic!("the SubmitEvaluation span in {names:?}"));
    assert_eq!(
        hex(&submit.parent_span_id),
        caller_span,
        "the server span is a child of the caller's"
    );
    // The rubric server's span is a child of a span of the evaluation server.
    let evaluation_span_ids: Vec<Vec<u8>> = traced
        .iter()
        .filter(|(service, _)| service == "iqs-evaluation-test")
        .map(|(_, span)| span.span_id.clone())
        .collect();
    let remote = traced
        .iter()
        .find(|(service, span)| {
            service == "iqs-rubric-test" && span.name.contains("RubricService/")
        })
        .map(|(_, span)| span)
        .unwrap_or_else(|| panic!("a rubric server span in {names:?}"));
    assert!(
        evaluation_span_ids.contains(&remote.parent_span_id),
        "the rubric server's span links to the evaluation server's: {names:?}"
    );
    // And the database work is in the same trace.
    assert!(
        names
            .iter()
            .any(|(service, name)| *service == "iqs-evaluation-test" && name.starts_with("db.")),
        "database spans of the evaluation server in {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cache_lookups_projector_lag_and_pool_use_are_exported_as_metrics() {
    let (collector_url, collector) = start_collector().await;
    let database_url = create_test_database().await;
    let mut server = ServerProcess::spawn(&[
        ("DATABASE_URL", &database_url),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("IQS_HEALTH_CHECK_INTERVAL_MS", "100"),
    ]);
    let key = admin_key_in(&database_url).await;
    let channel = with_key(server.channel().await, &key);
    let (rubric, _) = published_rubric(&mut RubricServiceClient::new(channel.clone())).await;
    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    evaluations
        .submit_evaluation(submission(&rubric.id, "METERED-1", 1, 4))
        .await
        .unwrap();
    let mut refused = submission(&rubric.id, "METERED-2", 1, 4);
    refused.rubric_id = "not-a-uuid".into();
    evaluations.submit_evaluation(refused).await.unwrap_err();
    iqs::proto::analytics::analytics_service_client::AnalyticsServiceClient::new(channel)
        .get_agent_score(iqs::proto::analytics::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.terminate();
    assert_eq!(
        server.exit_within(Duration::from_secs(30)).await.code(),
        Some(0)
    );

    let metrics = collector.metrics.lock().unwrap().clone();
    let named = |name: &'static str| metrics.iter().filter(move |metric| metric.name == name);
    let names: std::collections::BTreeSet<&str> =
        metrics.iter().map(|metric| metric.name.as_str()).collect();
    for expected in [
        "iqs.rpc.calls",
        "rpc.server.duration",
        "iqs.cache.lookups",
        "iqs.projector.lag.events",
        "iqs.projector.lag.seconds",
        "iqs.db.connections",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
    // Calls are counted by RPC and status code: the submission and its refusal apart.
    let calls: Vec<(String, String, i64)> = named("iqs.rpc.calls")
        .filter_map(|metric| match &metric.data {
            Some(Data::Sum(sum)) => Some(sum.data_points.clone()),
            _ => None,
        })
        .flatten()
        .map(|point| {
            let count = match point.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    n,
                )) => n,
                _ => 0,
            };
            (
                text(&point.attributes, "rpc.method").unwrap_or_default(),
                text(&point.attributes, "rpc.grpc.status_code").unwrap_or_default(),
                count,
            )
        })
        .collect();
    let submit = "iqs.evaluation.v1.EvaluationService/SubmitEvaluation";
    for code in ["0", "3"] {
        assert!(
            calls
                .iter()
                .any(|(method, status, count)| method == submit && status == code && *count >= 1),
            "SubmitEvaluation with code {code} in {calls:?}"
        );
    }
    let pool_states: std::collections::BTreeSet<String> = named("iqs.db.connections")
        .filter_map(|metric| match &metric.data {
            Some(Data::Gauge(gauge)) => Some(gauge.data_points.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|point| text(&point.attributes, "state"))
        .collect();
    assert_eq!(
        pool_states.into_iter().collect::<Vec<_>>(),
        ["idle", "max", "used"]
    );
}
