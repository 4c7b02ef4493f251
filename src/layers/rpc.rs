//! One span per call, a child of the caller's span when the call carries W3C trace
//! context, and the call's count and duration by RPC and status code. The code is the
//! one the response headers carry (errors before any message); a call answered with
//! messages counts as OK, even if its stream fails later.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{BoxFuture, service_and_method};
use crate::telemetry::HeaderExtractor;

#[derive(Clone)]
pub struct RpcLayer {
    calls: Counter<u64>,
    duration: Histogram<f64>,
}

impl RpcLayer {
    /// Instruments from the global meter provider: build after telemetry is set up.
    pub fn new() -> Self {
        let meter = global::meter("iqs");
        Self {
            calls: meter
                .u64_counter("iqs.rpc.calls")
                .with_description("Calls answered, by RPC and gRPC status code")
                .build(),
            duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("s")
                .with_description("Time from a call's arrival to its answer's headers")
                .build(),
        }
    }
}

impl Default for RpcLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    layer: RpcLayer,
}

/// The gRPC status code a response's headers carry; 0 (OK) when they carry none.
fn status_code(response: &http::Response<tonic::body::Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

impl<S, B> Service<http::Request<B>> for Rpc<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let path = request.uri().path().to_owned();
        let (service, method) = service_and_method(&path);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        // Without a parent in the headers the span starts a trace of its own.
        let _ = span.set_parent(parent);
        let rpc = KeyValue::new("rpc.method", path.trim_start_matches('/').to_owned());
        let started = Instant::now();
        Box::pin(
            async move {
                let response = inner.call(request).await;
                let code = response.as_ref().map_or(2, status_code);
                let current = tracing::Span::current();
                current.record("rpc.grpc.status_code", code);
                if code != 0 {
                    current.record("otel.status_code", "ERROR");
                }
                let attributes = [rpc, KeyValue::new("rpc.grpc.status_code", i64::from(code))];
                layer.calls.add(1, &attributes);
                layer
                    .duration
                    .record(started.elapsed().as_secs_f64(), &attributes);
                response
            }
            .instrument(span),
        )
    }
}
