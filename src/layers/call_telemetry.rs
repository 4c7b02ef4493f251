//! One span per call, a child of the caller's span when the call carries W3C trace
//! context, and the call's count and duration by RPC and status code. The code is the
//! one the response headers carry (errors before any message); a call answered with
//! messages counts as OK, even if its stream fails later.
//!
//! Every call has a request id: the caller's `x-request-id` when it sends a usable one
//! (up to 128 visible ASCII characters), else a new UUID. It is a field of the call's
//! span, so every log line of the call carries it, and it comes back in the answer's
//! `x-request-id` header for the caller's own logs.

use std::time::Instant;

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
};
use tower::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{AroundCall, BoxFuture, HttpRequest, HttpResponse, service_and_method, status_code};
use crate::telemetry::HeaderExtractor;

#[derive(Clone)]
pub struct CallTelemetryLayer {
    calls: Counter<u64>,
    duration: Histogram<f64>,
}

impl CallTelemetryLayer {
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

impl Default for CallTelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The caller's request id when usable, else a new one.
fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    headers
        .get(REQUEST_ID_HEADER)
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 128
                && bytes.iter().all(|byte| byte.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            http::HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
                .expect("a UUID is a valid header value")
        })
}

impl AroundCall for CallTelemetryLayer {
    fn around<S>(&self, mut inner: S, mut request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let layer = self.clone();
        let path = request.uri().path().to_owned();
        let (service, method) = service_and_method(&path);
        let request_id = request_id(request.headers());
        // Inner layers (the audit log) see the same id.
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, request_id.clone());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = request_id.to_str().unwrap_or_default(),
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
                let mut response = inner.call(request).await;
                if let Ok(response) = response.as_mut() {
                    response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
                }
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
