//! A request body that must keep arriving: each frame within `idle` of the last one (or
//! of the call's start), and the whole body within `total`. A caller that sends headers
//! and then nothing holds a slot of the server's concurrency limit until these run out.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Status;

pub struct TimedBody<B> {
    inner: Pin<Box<B>>,
    idle: Duration,
    total: Duration,
    started: Instant,
    /// When the body must have sent its next frame, or ended: the sooner of the idle
    /// and the total limit. Armed only when the body first has to be waited for (a
    /// unary message has usually arrived whole before it is read).
    timer: Option<Pin<Box<Sleep>>>,
    last_frame: Instant,
    finished: bool,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, idle: Duration, total: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner: Box::pin(inner),
            idle,
            total,
            started: now,
            timer: None,
            last_frame: now,
            finished: false,
        }
    }

    fn deadline(&self) -> Instant {
        (self.last_frame + self.idle).min(self.started + self.total)
    }

    fn refusal(&self) -> Status {
        if self.last_frame + self.idle < self.started + self.total {
            Status::deadline_exceeded(format!(
                "nothing of the request arrived for {} ms",
                self.idle.as_millis()
            ))
        } else {
            Status::deadline_exceeded(format!(
                "the request did not finish arriving within {} ms",
                self.total.as_millis()
            ))
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(frame)) => {
                self.last_frame = Instant::now();
                return Poll::Ready(Some(frame.map_err(Into::into)));
            }
            Poll::Ready(None) => {
                self.finished = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let deadline = self.deadline();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            self.finished = true;
            return Poll::Ready(Some(Err(Box::new(self.refusal()))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn silent() -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        StreamBody::new(futures_pending())
    }

    fn futures_pending()
    -> impl tokio_stream::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> {
        tokio_stream::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_arrives_fails_after_the_idle_timeout() {
        let body = TimedBody::new(silent(), Duration::from_secs(10), Duration::from_secs(60));
        let started = Instant::now();
        let err = body.collect().await.expect_err("times out");
        let status = err.downcast_ref::<Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_trickling_fails_after_the_total_limit() {
        let trickle = tokio_stream::StreamExt::throttle(
            tokio_stream::iter(std::iter::repeat_with(|| {
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x")))
            })),
            Duration::from_secs(1),
        );
        let body = TimedBody::new(
            StreamBody::new(trickle),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        let started = Instant::now();
        let err = body.collect().await.expect_err("times out");
        let status = err.downcast_ref::<Status>().expect("a status");
        assert!(status.message().contains("30000 ms"), "{status:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_passed_through() {
        let body = TimedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }
}
