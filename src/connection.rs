//! Connections that cost the server without ever calling it are closed:
//!
//! - one that has not sent the HTTP/2 preface and the header of its first frame within
//!   `handshake_timeout` (a silent TCP connection, or one that stops after the preface);
//! - one with no call in flight for `idle_timeout` (calls are counted by
//!   `ConnectionActivityLayer`, so keepalive pings and other chatter do not keep an
//!   unused connection open).
//!
//! Peers that stop answering are found by HTTP/2 keepalive pings, set on the server.
//! Closing is reading end-of-file: the HTTP/2 stack then closes the connection as if
//! the client had.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tower::Service;

use crate::layers::{AroundCall, BoxFuture, HttpRequest, HttpResponse};

/// The client preface (24 bytes) and the header of the SETTINGS frame that must follow.
const HANDSHAKE_BYTES: usize = 24 + 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the calls of one connection tell its reader.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    reader: Mutex<Option<Waker>>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
        }
    }

    fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn call_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.idle_since) = Instant::now();
            // The reader arms its idle timer only when polled: wake it to do so.
            if let Some(reader) = lock(&self.reader).take() {
                reader.wake();
            }
        }
    }

    /// When the connection counts as idle from, if it has no call in flight.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| *lock(&self.idle_since))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The open connections by peer address, shared by the connections and the layer.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    open: Arc<Mutex<HashMap<SocketAddr, Arc<Activity>>>>,
}

impl Connections {
    /// `io` with the limits applied.
    pub fn guard<IO: PeerAddr>(&self, io: IO, limits: ConnectionLimits) -> Guarded<IO> {
        let activity = Arc::new(Activity::new());
        let peer = io.peer_addr();
        if let Some(peer) = peer {
            lock(&self.open).insert(peer, activity.clone());
        }
        let now = Instant::now();
        Guarded {
            io,
            peer,
            connections: self.clone(),
            activity,
            limits,
            handshake_seen: 0,
            handshake_timer: Box::pin(tokio::time::sleep_until(now + limits.handshake_timeout)),
            idle_timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
        }
    }

    fn activity(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        lock(&self.open).get(&peer).cloned()
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        lock(&self.open).len()
    }
}

/// The remote address of an accepted connection.
pub trait PeerAddr {
    fn peer_addr(&self) -> Option<SocketAddr>;
}

impl PeerAddr for TcpStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }
}

impl PeerAddr for tokio_rustls::server::TlsStream<TcpStream> {
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.get_ref().0.peer_addr().ok()
    }
}

/// A connection closed when its handshake is late or it has been idle too long.
pub struct Guarded<IO> {
    io: IO,
    peer: Option<SocketAddr>,
    connections: Connections,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    handshake_seen: usize,
    handshake_timer: Pin<Box<Sleep>>,
    idle_timer: Pin<Box<Sleep>>,
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut open = lock(&self.connections.open);
            if open
                .get(&peer)
                .is_some_and(|activity| Arc::ptr_eq(activity, &self.activity))
            {
                open.remove(&peer);
            }
        }
    }
}

impl<IO> Guarded<IO> {
    /// Whether the connection must close now; arms the timers otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.handshake_seen < HANDSHAKE_BYTES {
            if self.handshake_timer.as_mut().poll(cx).is_ready() {
                tracing::debug!(peer = ?self.peer, "closing a connection without an HTTP/2 handshake");
                return true;
            }
            return false;
        }
        *lock(&self.activity.reader) = Some(cx.waker().clone());
        let Some(idle_since) = self.activity.idle_since() else {
            return false;
        };
        let deadline = idle_since + self.limits.idle_timeout;
        if self.idle_timer.deadline() != deadline {
            self.idle_timer.as_mut().reset(deadline);
        }
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            tracing::debug!(peer = ?self.peer, "closing an idle connection");
            return true;
        }
        false
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.handshake_seen = self
                    .handshake_seen
                    .saturating_add(buf.filled().len() - before);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            // End of file: the HTTP/2 stack closes the connection.
            Poll::Pending if self.expired(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Counts each call as in flight on its connection until its answer's body ends.
#[derive(Clone)]
pub struct ConnectionActivityLayer {
    connections: Connections,
}

impl ConnectionActivityLayer {
    pub fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

/// The peer of a call, from what the server put into its extensions.
fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// A call in flight; its end counts when dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl AroundCall for ConnectionActivityLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let in_flight = peer_of(&request)
            .and_then(|peer| self.connections.activity(peer))
            .map(|activity| {
                activity.call_started();
                InFlight(activity)
            });
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match in_flight {
                Some(in_flight) => response.map(|body| {
                    tonic::body::Body::new(CountedBody {
                        inner: body,
                        _in_flight: in_flight,
                    })
                }),
                None => response,
            })
        })
    }
}

/// An answer's body that keeps its call counted until it is dropped.
struct CountedBody {
    inner: tonic::body::Body,
    _in_flight: InFlight,
}

impl Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
