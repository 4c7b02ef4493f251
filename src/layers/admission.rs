//! At most `max_concurrent` calls are handled at once. A call that finds no free slot
//! waits at most `queue_timeout` for one, then is refused with RESOURCE_EXHAUSTED and a
//! retry delay: under a flood the server answers quickly and keeps the latency of the
//! calls it admits, instead of queueing without bound.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::{BoxFuture, is_infrastructure, take_ready};

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

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

fn refusal(queue_timeout: Duration) -> Status {
    let retry = queue_timeout.max(Duration::from_millis(10));
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "the server is at its concurrency limit; retry shortly",
        ErrorDetails::with_retry_info(Some(retry)),
    )
}

impl<S, B> Service<http::Request<B>> for Admission<S>
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
        let mut inner = take_ready(&mut self.inner);
        let layer = self.layer.clone();
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
