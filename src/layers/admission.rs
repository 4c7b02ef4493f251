//! At most `max_concurrent` calls are handled at once. A call that finds no free slot
//! waits at most `queue_timeout` for one, then is refused with RESOURCE_EXHAUSTED and a
//! retry delay: under a flood the server answers quickly and keeps the latency of the
//! calls it admits, instead of queueing without bound.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use tower::Service;

use super::{AroundCall, BoxFuture, HttpRequest, HttpResponse, is_infrastructure};

#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl AdmissionLayer {
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_timeout,
        }
    }
}

fn refusal(queue_timeout: Duration) -> Status {
    let retry = queue_timeout.max(Duration::from_millis(10));
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "the server is at its concurrency limit; retry shortly",
        ErrorDetails::with_retry_info(Some(retry)),
    )
}

impl AroundCall for AdmissionLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let layer = self.clone();
        Box::pin(async move {
            if is_infrastructure(request.uri().path()) {
                return inner.call(request).await;
            }
            let slot = match layer.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    let waited = tokio::time::timeout(
                        layer.queue_timeout,
                        layer.slots.clone().acquire_owned(),
                    )
                    .await;
                    match waited {
                        Ok(Ok(slot)) => slot,
                        _ => return Ok(refusal(layer.queue_timeout).into_http()),
                    }
                }
            };
            let response = inner.call(request).await;
            drop(slot);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    use super::*;
    use crate::layers::{Around, status_code};

    fn call_to(path: &str) -> HttpRequest {
        http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_call_beyond_the_limit_is_refused_at_once_and_the_admitted_one_is_served() {
        let (inner, mut handle) = mock::pair::<HttpRequest, HttpResponse>();
        let service = Around(AdmissionLayer::new(1, Duration::ZERO)).layer(inner);
        let admitted = tokio::spawn(service.clone().oneshot(call_to("/iqs.x.v1.S/A")));
        let (_, reply) = handle
            .next_request()
            .await
            .expect("the first call reaches the service");
        let refused = service
            .clone()
            .oneshot(call_to("/iqs.x.v1.S/A"))
            .await
            .unwrap();
        assert_eq!(status_code(&refused), tonic::Code::ResourceExhausted as i32);
        reply.send_response(http::Response::new(tonic::body::Body::empty()));
        let served = admitted.await.unwrap().unwrap();
        assert_eq!(status_code(&served), 0);
        // The slot is free again.
        let again = tokio::spawn(service.oneshot(call_to("/iqs.x.v1.S/A")));
        let (_, reply) = handle
            .next_request()
            .await
            .expect("admitted once the slot is free");
        reply.send_response(http::Response::new(tonic::body::Body::empty()));
        assert_eq!(status_code(&again.await.unwrap().unwrap()), 0);
    }

    #[tokio::test]
    async fn health_checks_pass_a_full_server() {
        let (inner, mut handle) = mock::pair::<HttpRequest, HttpResponse>();
        let service = Around(AdmissionLayer::new(1, Duration::ZERO)).layer(inner);
        let _holding = tokio::spawn(service.clone().oneshot(call_to("/iqs.x.v1.S/A")));
        let _ = handle
            .next_request()
            .await
            .expect("the first call holds the slot");
        let health = tokio::spawn(service.oneshot(call_to("/grpc.health.v1.Health/Check")));
        let (request, reply) = handle.next_request().await.expect("health passes");
        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
        reply.send_response(http::Response::new(tonic::body::Body::empty()));
        assert_eq!(status_code(&health.await.unwrap().unwrap()), 0);
    }
}
