//! Length-prefixed messages, the framing gRPC and Connect streaming share (one flags
//! byte, a big-endian 32-bit length, the message), and bodies that rewrite one framing
//! into the other as the bytes arrive, so a long export or import is never buffered.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use tonic::Status;

/// Connect: the message is compressed (gRPC uses the same bit).
pub const COMPRESSED: u8 = 0b01;
/// Connect: the last message of a stream, holding its status as JSON.
pub const END_OF_STREAM: u8 = 0b10;
const PREFIX: usize = 5;

/// One message with its prefix.
pub fn enveloped(flags: u8, message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(PREFIX + message.len());
    framed.put_u8(flags);
    framed.put_u32(u32::try_from(message.len()).expect("messages are bounded far below 4 GiB"));
    framed.put_slice(message);
    framed.freeze()
}

/// The first complete message at the front of `buffer`, taken out of it.
pub fn take_message(buffer: &mut BytesMut, max_len: usize) -> Result<Option<(u8, Bytes)>, Status> {
    if buffer.len() < PREFIX {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if len > max_len {
        return Err(Status::out_of_range(format!(
            "a message of {len} bytes is over the limit of {max_len}"
        )));
    }
    if buffer.len() < PREFIX + len {
        return Ok(None);
    }
    let flags = buffer[0];
    buffer.advance(PREFIX);
    Ok(Some((flags, buffer.split_to(len).freeze())))
}

/// What a `Reframed` body does with each message and with the end of its input.
pub trait Reframe: Send + Unpin + 'static {
    /// One message in; the bytes to send for it, if any.
    fn message(&mut self, flags: u8, message: Bytes) -> Result<Option<Bytes>, Status>;
    /// The input ended, with its trailers when it had some; the last bytes to send.
    fn finish(&mut self, trailers: Option<&HeaderMap>) -> Option<Bytes>;
    /// The input failed (or a message was refused): the last bytes to send, or the
    /// error that ends this body.
    fn fail(&mut self, status: Status) -> Result<Bytes, Status>;
}

/// `inner`'s messages, rewritten one by one by `reframe`.
pub struct Reframed<B, R> {
    inner: B,
    reframe: R,
    buffer: BytesMut,
    max_message: usize,
    finished: bool,
}

impl<B, R> Reframed<B, R> {
    pub fn new(inner: B, reframe: R, max_message: usize) -> Self {
        Self {
            inner,
            reframe,
            buffer: BytesMut::new(),
            max_message,
            finished: false,
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, Status>>>;

impl<B, R> Reframed<B, R>
where
    R: Reframe,
{
    fn fail(&mut self, status: Status) -> Polled {
        self.finished = true;
        self.buffer.clear();
        Poll::Ready(Some(self.reframe.fail(status).map(Frame::data)))
    }

    fn finish(&mut self, trailers: Option<&HeaderMap>) -> Polled {
        self.finished = true;
        if !self.buffer.is_empty() {
            return self.fail(Status::invalid_argument(
                "the body ended in the middle of a message",
            ));
        }
        Poll::Ready(
            self.reframe
                .finish(trailers)
                .map(|bytes| Ok(Frame::data(bytes))),
        )
    }
}

impl<B, R> Body for Reframed<B, R>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
    R: Reframe,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match take_message(&mut this.buffer, this.max_message) {
                Ok(Some((flags, message))) => match this.reframe.message(flags, message) {
                    Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    Ok(None) => continue,
                    Err(status) => return this.fail(status),
                },
                Ok(None) => {}
                Err(status) => return this.fail(status),
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            return this.finish(Some(&trailers));
                        }
                    }
                },
                Some(Err(status)) => return this.fail(status),
                None => return this.finish(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

/// A whole unary body (bounded by `max_len`), rewritten at its end into one message by
/// `convert`.
pub struct Whole<B, F> {
    inner: B,
    buffer: BytesMut,
    max_len: usize,
    convert: Option<F>,
}

impl<B, F> Whole<B, F> {
    pub fn new(inner: B, max_len: usize, convert: F) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
            max_len,
            convert: Some(convert),
        }
    }
}

impl<B, F> Body for Whole<B, F>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
    F: FnOnce(&[u8]) -> Result<Bytes, Status> + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        loop {
            if this.convert.is_none() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if this.buffer.len() + data.len() > this.max_len {
                            this.convert = None;
                            return Poll::Ready(Some(Err(Status::out_of_range(format!(
                                "the request body is over the limit of {} bytes",
                                this.max_len
                            )))));
                        }
                        this.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => {
                    this.convert = None;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    let convert = this.convert.take().expect("checked above");
                    return Poll::Ready(Some(convert(&this.buffer).map(Frame::data)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.convert.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    struct Doubling;

    impl Reframe for Doubling {
        fn message(&mut self, flags: u8, message: Bytes) -> Result<Option<Bytes>, Status> {
            if message.as_ref() == b"bad" {
                return Err(Status::invalid_argument("bad message"));
            }
            let doubled = [message.as_ref(), message.as_ref()].concat();
            Ok(Some(enveloped(flags, &doubled)))
        }
        fn finish(&mut self, trailers: Option<&HeaderMap>) -> Option<Bytes> {
            Some(enveloped(
                END_OF_STREAM,
                if trailers.is_some() { b"t" } else { b"-" },
            ))
        }
        fn fail(&mut self, status: Status) -> Result<Bytes, Status> {
            Ok(enveloped(END_OF_STREAM, status.message().as_bytes()))
        }
    }

    fn chunks(parts: Vec<Bytes>) -> impl Body<Data = Bytes, Error = Status> + Unpin {
        StreamBody::new(tokio_stream::iter(
            parts.into_iter().map(|bytes| Ok(Frame::data(bytes))),
        ))
    }

    async fn messages(body: impl Body<Data = Bytes, Error = Status> + Unpin) -> Vec<(u8, Bytes)> {
        let mut all = BytesMut::from(body.collect().await.unwrap().to_bytes().as_ref());
        let mut out = Vec::new();
        while let Some(message) = take_message(&mut all, usize::MAX).unwrap() {
            out.push(message);
        }
        assert!(all.is_empty());
        out
    }

    #[tokio::test]
    async fn messages_split_anywhere_across_chunks_are_rewritten_one_by_one() {
        let stream = [enveloped(0, b"ab"), enveloped(0, b""), enveloped(0, b"xyz")].concat();
        for cut in 0..stream.len() {
            let body = chunks(vec![
                Bytes::copy_from_slice(&stream[..cut]),
                Bytes::copy_from_slice(&stream[cut..]),
            ]);
            let got = messages(Reframed::new(body, Doubling, 16)).await;
            let texts: Vec<&[u8]> = got.iter().map(|(_, m)| m.as_ref()).collect();
            assert_eq!(
                texts,
                vec![b"abab".as_ref(), b"", b"xyzxyz", b"-"],
                "cut at {cut}"
            );
            assert_eq!(got[3].0, END_OF_STREAM);
        }
    }

    #[tokio::test]
    async fn a_refused_message_a_truncated_one_and_an_oversized_one_end_the_stream() {
        let refused = [
            enveloped(0, b"ok"),
            enveloped(0, b"bad"),
            enveloped(0, b"never"),
        ]
        .concat();
        let got = messages(Reframed::new(chunks(vec![refused.into()]), Doubling, 16)).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.as_ref(), b"bad message");

        let truncated = enveloped(0, b"abc").slice(..6);
        let got = messages(Reframed::new(chunks(vec![truncated]), Doubling, 16)).await;
        assert_eq!(
            got[0].1.as_ref(),
            b"the body ended in the middle of a message"
        );

        let got = messages(Reframed::new(
            chunks(vec![enveloped(0, &[0; 17])]),
            Doubling,
            16,
        ))
        .await;
        assert!(
            String::from_utf8_lossy(&got[0].1).contains("over the limit of 16"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_whole_body_is_converted_once_and_an_oversized_one_is_refused() {
        let body = Whole::new(
            chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
            4,
            |all: &[u8]| Ok(enveloped(0, all)),
        );
        let got = messages(body).await;
        assert_eq!(got, vec![(0, Bytes::from_static(b"abcd"))]);

        let body = Whole::new(
            chunks(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]),
            4,
            |all: &[u8]| Ok(enveloped(0, all)),
        );
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
    }
}
