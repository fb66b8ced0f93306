//! Serving the router on a TCP listener with the limits a slow or hostile client must not get
//! around: a cap on open connections, a deadline for a request's headers, one for its body, and
//! an idle timeout for kept-alive connections. Every connection also carries its peer address
//! (`ConnectInfo<SocketAddr>`), which throttling failed sign-ins needs.
//!
//! The header and idle deadlines live in the connection's IO ([`GuardedIo`]): while no request is
//! in flight, a connection that sent nothing since the last response is idle (closed after
//! `idle_timeout` without a byte), and one that sent some bytes of the next request must finish
//! its headers within `header_timeout` of the first byte (trickling bytes does not extend it).
//! The body deadline wraps each request's body: reading it fails with `408 request_timeout`
//! once `body_timeout` has passed since the headers arrived.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::{ConnectInfo, Request, connect_info::Connected},
    middleware::Next,
    response::Response,
    serve::{IncomingStream, Listener},
};
use parking_lot::Mutex;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

/// Connection limits and timeouts (`attune serve --header-timeout` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request in flight and nothing sent is closed after this.
    pub idle_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener =
        GuardedListener { inner: listener, permits: Arc::new(Semaphore::new(limits.max_connections.max(1))), limits };
    let app = app.layer(axum::middleware::from_fn(move |request, next| track(request, next, limits.body_timeout)));
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).with_graceful_shutdown(shutdown).await
}

/// A listener that holds a permit per open connection and wraps each in [`GuardedIo`].
pub struct GuardedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: ServerLimits,
}

impl Listener for GuardedListener {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        // Wait for a free slot before accepting: past the cap, clients wait in the backlog.
        let permit = Arc::clone(&self.permits).acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, address)) => {
                    let _ = stream.set_nodelay(true);
                    let io = GuardedIo::new(stream, self.limits, permit);
                    return (io, address);
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, as axum's own loop does.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a connection's requests tell its IO: how many are in flight, and when the last ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    state: Mutex<Clock>,
}

#[derive(Debug)]
struct Clock {
    /// The last byte read or written, or the last response.
    last: Instant,
    /// The first byte of a request whose headers are not complete yet.
    head_started: Option<Instant>,
}

impl Activity {
    fn touch(&self) {
        self.state.lock().last = Instant::now();
    }
}

/// The peer of a connection and its [`Activity`] (the router's connect info).
#[derive(Debug, Clone)]
pub struct Peer {
    address: SocketAddr,
    activity: Arc<Activity>,
}

impl Connected<IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Peer { address: *stream.remote_addr(), activity: Arc::clone(&stream.io().activity) }
    }
}

/// A TCP stream that closes itself when the client stalls (see the module docs); holds its
/// connection slot until dropped. It also percent-encodes the bytes of a request line's target
/// that the HTTP parser would refuse (`<`, `>`, `"`, …) — browsers encode them anyway — so
/// such a request reaches the router and gets a JSON answer instead of the parser's empty 400.
pub struct GuardedIo {
    stream: TcpStream,
    limits: ServerLimits,
    activity: Arc<Activity>,
    deadline: Pin<Box<Sleep>>,
    /// Where in the request line of the current request the stream is.
    line: Line,
    /// Rewritten bytes the caller's buffer had no room for yet.
    pending: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// The part of a request line being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Method,
    Target,
    Version,
    Done,
}

/// Bytes of a request target the URI parser refuses: encode them as `%XX`.
fn needs_escape(byte: u8) -> bool {
    matches!(byte, b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}') || byte >= 0x80
}

/// Rewrites `input` (the next bytes of the stream) into `out`, advancing `line`.
fn rewrite_line(line: &mut Line, input: &[u8], out: &mut Vec<u8>) {
    for (i, &byte) in input.iter().enumerate() {
        match *line {
            Line::Done => {
                out.extend_from_slice(&input[i..]);
                return;
            }
            Line::Method => {
                if byte == b' ' {
                    *line = Line::Target;
                }
                out.push(byte);
            }
            Line::Target => {
                if byte == b' ' {
                    *line = Line::Version;
                    out.push(byte);
                } else if byte == b'\r' || byte == b'\n' {
                    *line = Line::Done;
                    out.push(byte);
                } else if needs_escape(byte) {
                    out.extend_from_slice(format!("%{byte:02X}").as_bytes());
                } else {
                    out.push(byte);
                }
            }
            Line::Version => {
                if byte == b'\n' {
                    *line = Line::Done;
                }
                out.push(byte);
            }
        }
    }
}

impl GuardedIo {
    fn new(stream: TcpStream, limits: ServerLimits, permit: OwnedSemaphorePermit) -> GuardedIo {
        let now = Instant::now();
        GuardedIo {
            stream,
            limits,
            activity: Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                state: Mutex::new(Clock { last: now, head_started: None }),
            }),
            deadline: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            line: Line::Done,
            pending: Vec::new(),
            _permit: permit,
        }
    }

    /// With no request in flight: when the connection must have done something by.
    fn waiting_deadline(&self) -> Instant {
        let clock = self.activity.state.lock();
        match clock.head_started {
            Some(started) => started + self.limits.header_timeout,
            None => clock.last + self.limits.idle_timeout,
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let starting =
            this.activity.in_flight.load(Ordering::Acquire) == 0 && this.activity.state.lock().head_started.is_none();
        if starting || this.line != Line::Done {
            // A request line may be under way: read into a buffer of our own and rewrite it.
            let mut raw = vec![0u8; buf.remaining().clamp(1, 8192)];
            let mut raw_buf = ReadBuf::new(&mut raw);
            let polled = this.poll_read_inner(cx, &mut raw_buf);
            if let Poll::Ready(Ok(())) = polled {
                let read = raw_buf.filled();
                if !read.is_empty() {
                    if starting {
                        this.line = Line::Method;
                    }
                    let mut out = Vec::with_capacity(read.len());
                    rewrite_line(&mut this.line, read, &mut out);
                    let n = out.len().min(buf.remaining());
                    buf.put_slice(&out[..n]);
                    this.pending.extend_from_slice(&out[n..]);
                }
            }
            return polled;
        }
        this.poll_read_inner(cx, buf)
    }
}

impl GuardedIo {
    fn poll_read_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    let mut clock = this.activity.state.lock();
                    clock.last = now;
                    if this.activity.in_flight.load(Ordering::Acquire) == 0 && clock.head_started.is_none() {
                        clock.head_started = Some(now);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.activity.in_flight.load(Ordering::Acquire) > 0 {
                    return Poll::Pending;
                }
                let deadline = this.waiting_deadline();
                if this.deadline.deadline() != deadline {
                    this.deadline.as_mut().reset(deadline);
                }
                match this.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent no complete request in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Marks the request in flight on its connection (the header deadline no longer applies),
/// gives handlers the peer address, and puts the body deadline on the body.
async fn track(mut request: Request, next: Next, body_timeout: Duration) -> Response {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|info| info.0.clone());
    if let Some(peer) = &peer {
        request.extensions_mut().insert(ConnectInfo(peer.address));
        peer.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        peer.activity.state.lock().head_started = None;
    }
    let request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
    let response = next.run(request).await;
    if let Some(peer) = &peer {
        peer.activity.touch();
        peer.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
    response
}

/// The request body, failing with [`BodyTimedOut`] once its deadline has passed.
struct DeadlineBody {
    body: Body,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(body: Body, timeout: Duration) -> DeadlineBody {
        DeadlineBody { body, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

/// A request body that did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether an error (from reading a body) is, somewhere in its chain, [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<BodyTimedOut>() || err.to_string() == BodyTimedOut.to_string() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(chunks: &[&str]) -> String {
        let mut line = Line::Method;
        let mut out = Vec::new();
        for chunk in chunks {
            rewrite_line(&mut line, chunk.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_targets_are_encoded_and_nothing_else() {
        assert_eq!(
            rewritten(&["GET /v1/users/<x>?q=\"a\" HTTP/1.1\r\nHost: <h>\r\n\r\n"]),
            "GET /v1/users/%3Cx%3E?q=%22a%22 HTTP/1.1\r\nHost: <h>\r\n\r\n"
        );
        assert_eq!(rewritten(&["GE", "T /a<", "b> HT", "TP/1.1\r\n{}"]), "GET /a%3Cb%3E HTTP/1.1\r\n{}");
        assert_eq!(rewritten(&["GET /ok/%3C HTTP/1.1\r\n"]), "GET /ok/%3C HTTP/1.1\r\n");
    }
}
