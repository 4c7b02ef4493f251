//! Logs, traces and metrics. Logs go to stderr, readable by default and JSON with
//! `IQS_LOG_FORMAT=json`. When an OTLP endpoint is configured through the standard
//! variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the `_TRACES_`/`_METRICS_` ones), spans
//! and metrics are also exported over OTLP/gRPC; the exporters read the other standard
//! variables themselves (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_RESOURCE_ATTRIBUTES`, …).
//! Trace context crosses processes in W3C `traceparent` metadata.

use std::io::IsTerminal;

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator,
    trace::SdkTracerProvider,
};
use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Providers to flush when the process stops.
#[derive(Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

fn configured(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|value| !value.trim().is_empty())
}

/// Whether the standard variables name an OTLP endpoint for `signal` ("TRACES", "METRICS").
fn exports(signal: &str) -> bool {
    let disabled = std::env::var(format!("OTEL_{signal}_EXPORTER"))
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("none"));
    !disabled
        && (configured("OTEL_EXPORTER_OTLP_ENDPOINT")
            || configured(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
}

/// `OTEL_SERVICE_NAME` when set (the resource reads it), else `default_service`.
fn resource(default_service: &str) -> Resource {
    let builder = Resource::builder();
    if configured("OTEL_SERVICE_NAME") {
        builder.build()
    } else {
        builder
            .with_service_name(default_service.to_owned())
            .build()
    }
}

impl Telemetry {
    /// Installs the global subscriber and, when configured, the OTLP exporters. Runs
    /// inside the tokio runtime: the exporters' channels live on it. Errors building an
    /// exporter are logged, and the process runs on without it. `default_filter` applies
    /// unless RUST_LOG says otherwise.
    pub fn init(format: LogFormat, default_service: &str, default_filter: &str) -> Telemetry {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let fmt = match format {
            LogFormat::Text => fmt.boxed(),
            LogFormat::Json => fmt.json().boxed(),
        };
        let mut problems = Vec::new();
        let tracer_provider = exports("TRACES")
            .then(|| {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(|err| problems.push(format!("span exporter: {err}")))
                    .ok()
            })
            .flatten()
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_resource(resource(default_service))
                    .with_batch_exporter(exporter)
                    .build()
            });
        let meter_provider = exports("METRICS")
            .then(|| {
                opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(|err| problems.push(format!("metric exporter: {err}")))
                    .ok()
            })
            .flatten()
            .map(|exporter| {
                SdkMeterProvider::builder()
                    .with_resource(resource(default_service))
                    .with_periodic_exporter(exporter)
                    .build()
            });
        if let Some(provider) = &meter_provider {
            global::set_meter_provider(provider.clone());
        }
        let otel = tracer_provider.as_ref().map(|provider| {
            global::set_tracer_provider(provider.clone());
            tracing_opentelemetry::layer().with_tracer(provider.tracer("iqs"))
        });
        // A second init (tests start many servers in one process) keeps the first.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(otel)
            .try_init();
        for problem in problems {
            tracing::error!(%problem, "OpenTelemetry export is off");
        }
        Telemetry {
            tracer_provider,
            meter_provider,
        }
    }

    /// Exports what is still buffered and stops the exporters.
    pub async fn shutdown(self) {
        let flushed = tokio::task::spawn_blocking(move || {
            if let Some(provider) = self.tracer_provider
                && let Err(err) = provider.shutdown()
            {
                eprintln!("iqs: flushing traces: {err}");
            }
            if let Some(provider) = self.meter_provider
                && let Err(err) = provider.shutdown()
            {
                eprintln!("iqs: flushing metrics: {err}");
            }
        });
        let _ = flushed.await;
    }
}

/// Reads W3C trace context from incoming HTTP/2 headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Writes W3C trace context into outgoing gRPC metadata.
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Puts the current span's trace context on an outgoing call.
pub fn inject_current_context<T>(request: &mut tonic::Request<T>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()))
    });
}
