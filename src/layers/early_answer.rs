//! An answer given before the request body was read (no key, a rate limit, an unknown
//! procedure) is sent only once the rest of the body has been read, on HTTP/1.1.
//!
//! HTTP/1.1 has no way to stop one request and keep the connection: a server that
//! answers without reading the body closes the connection, and a client still writing
//! the body (as Connect and gRPC-Web clients in browsers and Node.js do, headers first)
//! sees a broken pipe instead of the answer. So the body is read on and dropped, up to
//! `max_bytes` and for at most `timeout`; a longer one still closes the connection.
//! HTTP/2 resets just the stream, and needs none of this.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Version;
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tower::Service;

use super::{AroundCall, BoxFuture, HttpRequest, HttpResponse};

#[derive(Clone)]
pub struct EarlyAnswerLayer {
    max_bytes: usize,
    timeout: Duration,
}

impl EarlyAnswerLayer {
    pub fn new(max_bytes: usize, timeout: Duration) -> Self {
        Self { max_bytes, timeout }
    }
}

/// The request body, shared by the call and this layer: what the call leaves unread
/// (or drops unread) stays reachable here.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Shared>>);

struct Shared {
    body: tonic::body::Body,
    ended: bool,
}

impl SharedBody {
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut shared = match self.0.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shared.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut shared.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            shared.ended = true;
        }
        polled
    }

    fn ended(&self) -> bool {
        self.0.lock().map_or(true, |shared| shared.ended)
    }

    /// Reads and drops the rest of the body; false when it is longer than `max_bytes`.
    async fn drain(&self, max_bytes: usize) -> bool {
        let mut read = 0usize;
        loop {
            match std::future::poll_fn(|cx| self.poll_next(cx)).await {
                None | Some(Err(_)) => return true,
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > max_bytes {
                        return false;
                    }
                }
            }
        }
    }
}

impl Body for SharedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .map_or_else(|_| SizeHint::default(), |shared| shared.body.size_hint())
    }
}

impl AroundCall for EarlyAnswerLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        if !matches!(request.version(), Version::HTTP_10 | Version::HTTP_11) {
            return Box::pin(inner.call(request));
        }
        let (parts, body) = request.into_parts();
        let shared = SharedBody(Arc::new(Mutex::new(Shared { body, ended: false })));
        let answer = inner.call(HttpRequest::from_parts(
            parts,
            tonic::body::Body::new(shared.clone()),
        ));
        let (max_bytes, timeout) = (self.max_bytes, self.timeout);
        Box::pin(async move {
            let response = answer.await?;
            if !shared.ended() {
                match tokio::time::timeout(timeout, shared.drain(max_bytes)).await {
                    Ok(true) => {}
                    Ok(false) => tracing::debug!(
                        max_bytes,
                        "answered early; the rest of the body is too long to read, the connection closes"
                    ),
                    Err(_) => tracing::debug!(
                        ?timeout,
                        "answered early; the rest of the body did not arrive in time, the connection closes"
                    ),
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body_of(chunks: usize) -> tonic::body::Body {
        tonic::body::Body::new(StreamBody::new(tokio_stream::iter(
            (0..chunks).map(|_| Ok::<_, Status>(Frame::data(Bytes::from_static(b"0123456789")))),
        )))
    }

    #[tokio::test]
    async fn what_the_call_leaves_unread_is_drained_up_to_the_limit() {
        let shared = SharedBody(Arc::new(Mutex::new(Shared {
            body: body_of(5),
            ended: false,
        })));
        let mut reader = shared.clone();
        let first = reader.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        drop(reader);
        assert!(!shared.ended());
        assert!(shared.drain(40).await, "40 bytes were left");
        assert!(shared.ended());

        let long = SharedBody(Arc::new(Mutex::new(Shared {
            body: body_of(5),
            ended: false,
        })));
        assert!(!long.drain(39).await, "50 bytes are over a limit of 39");
    }
}
