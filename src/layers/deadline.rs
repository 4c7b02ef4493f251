//! Every call ends by its deadline: the caller's `grpc-timeout`, capped by the server's
//! maximum (`request_timeout_ms`), which also bounds calls that send none. A call past
//! its deadline answers DEADLINE_EXCEEDED and its handler is dropped, which rolls back
//! any transaction it had open: nothing is half-written. For a streamed answer the
//! deadline covers the call until its first message, not the whole stream. A bulk
//! import is bounded by the caller's `grpc-timeout` and by its body's limits.
//!
//! A request's body must keep arriving (`TimedBody`): a unary call's message within
//! `request_body_timeout_ms`, a streamed request's messages each within
//! `stream_idle_timeout_ms` and all of them within `stream_max_duration_ms`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tonic::Status;
use tower::Service;

use super::{
    AroundCall, BoxFuture, HttpRequest, HttpResponse, body_timeout::TimedBody, is_infrastructure,
};
use crate::domain::access::is_bulk;

/// How long a request's body may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The whole message of a unary call.
    pub unary: Duration,
    /// Between two messages of a streamed request.
    pub stream_idle: Duration,
    /// A whole streamed request.
    pub stream_total: Duration,
}

#[derive(Clone)]
pub struct DeadlineLayer {
    maximum: Duration,
    bodies: BodyTimeouts,
}

impl DeadlineLayer {
    pub fn new(maximum: Duration, bodies: BodyTimeouts) -> Self {
        Self { maximum, bodies }
    }
}

/// Set when a call's deadline passes, just before its handler is dropped: inner layers
/// (the audit log) tell a call stopped by its deadline from one the caller cancelled.
#[derive(Debug, Clone, Default)]
pub struct DeadlinePassed(Arc<AtomicBool>);

impl DeadlinePassed {
    pub fn has_passed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

impl AroundCall for DeadlineLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let requested = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let path = request.uri().path();
        let (deadline, body_limits) = if is_infrastructure(path) {
            (None, None)
        } else if is_bulk(path) {
            (
                requested,
                Some((self.bodies.stream_idle, self.bodies.stream_total)),
            )
        } else {
            (
                Some(requested.map_or(self.maximum, |asked| asked.min(self.maximum))),
                Some((self.bodies.unary, self.bodies.unary)),
            )
        };
        let mut request = request.map(|body| match body_limits {
            Some((idle, total)) => tonic::body::Body::new(TimedBody::new(body, idle, total)),
            None => tonic::body::Body::new(body),
        });
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return inner.call(request).await;
            };
            let passed = DeadlinePassed::default();
            request.extensions_mut().insert(passed.clone());
            let mut call = Box::pin(inner.call(request));
            tokio::select! {
                response = &mut call => response,
                () = tokio::time::sleep(deadline) => {
                    passed.mark();
                    drop(call);
                    Ok(Status::deadline_exceeded(format!(
                        "the call did not finish within its deadline of {} ms",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    use super::*;
    use crate::layers::{Around, status_code};

    const BODIES: BodyTimeouts = BodyTimeouts {
        unary: Duration::from_secs(60),
        stream_idle: Duration::from_secs(60),
        stream_total: Duration::from_secs(600),
    };

    fn call_to(path: &str, grpc_timeout: Option<&str>) -> HttpRequest {
        let mut request = http::Request::builder().uri(path);
        if let Some(timeout) = grpc_timeout {
            request = request.header("grpc-timeout", timeout);
        }
        request.body(tonic::body::Body::empty()).unwrap()
    }

    /// How long a call the inner service never answers takes to be answered, and with
    /// what code.
    async fn unanswered(path: &str, grpc_timeout: Option<&str>) -> (Duration, i32) {
        let (inner, mut handle) = mock::pair::<HttpRequest, HttpResponse>();
        let service = Around(DeadlineLayer::new(Duration::from_secs(30), BODIES)).layer(inner);
        let started = tokio::time::Instant::now();
        let call = tokio::spawn(service.oneshot(call_to(path, grpc_timeout)));
        let (request, _never_answered) = handle.next_request().await.expect("the call arrives");
        let passed = request.extensions().get::<DeadlinePassed>().cloned();
        let answer = call.await.unwrap().unwrap();
        if let Some(passed) = passed {
            assert!(passed.has_passed(), "the inner layers are told");
        }
        (started.elapsed(), status_code(&answer))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_a_timeout_ends_at_the_servers_maximum() {
        let (took, code) = unanswered("/iqs.x.v1.S/A", None).await;
        assert_eq!(code, tonic::Code::DeadlineExceeded as i32);
        assert_eq!(took, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_grpc_timeout_wins_and_a_longer_one_is_capped() {
        let (took, _) = unanswered("/iqs.x.v1.S/A", Some("250m")).await;
        assert_eq!(took, Duration::from_millis(250));
        let (took, _) = unanswered("/iqs.x.v1.S/A", Some("2H")).await;
        assert_eq!(took, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_import_is_bounded_by_its_callers_timeout_not_the_servers_maximum() {
        let import = "/iqs.evaluation.v1.EvaluationService/ImportEvaluations";
        let (took, code) = unanswered(import, Some("45S")).await;
        assert_eq!((took, code), (Duration::from_secs(45), 4));
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
