//! The accept loop: a connection cap, header- and body-read timeouts, and a bounded shutdown
//! drain (see docs/security.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use crate::guard::HYPER_MAX_HEADERS;
use crate::AppState;

/// Open connections now, and the most open at once so far.
#[derive(Debug, Default)]
pub struct ConnCount {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl ConnCount {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    fn enter(&self) -> OpenGuard<'_> {
        let n = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        OpenGuard(&self.open)
    }
}

struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts requests of a connection that reached the router and have no response yet.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error a body yields when its client is too slow.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body read timed out after {} s", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails once `limit` has passed since the request head arrived.
struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(f) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, with one rewrite on the way out: the bare 400, 414 or 431 that hyper sends by
/// itself for a request head it cannot parse (a malformed request line or header, more than
/// `HYPER_MAX_HEADERS` fields, a head over its buffer) has no body; it leaves with a one-line JSON
/// error like every other answer. Our own answers never match: every error has a JSON body.
struct JsonParseErrors<S> {
    inner: S,
    /// The rewritten answer, and how much of it has been written.
    pending: Vec<u8>,
    sent: usize,
}

impl<S> JsonParseErrors<S> {
    fn new(inner: S) -> Self {
        JsonParseErrors { inner, pending: Vec::new(), sent: 0 }
    }
}

/// The JSON answer for one of hyper's own error answers; `None` for anything else.
fn rewrite_parse_error(buf: &[u8]) -> Option<Vec<u8>> {
    let msg = match buf.get(..13)? {
        b"HTTP/1.1 400 " => "malformed HTTP request head (request line or header field)",
        b"HTTP/1.1 414 " => "request target is longer than the HTTP layer accepts",
        b"HTTP/1.1 431 " => "request head is larger than the HTTP layer accepts (too many or too long header fields)",
        _ => return None,
    };
    // Exactly one head, and no body.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut out = format!("{status_line}\r\n");
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("content-length") && value.trim() != "0"
        {
            return None;
        }
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let body = serde_json::json!({ "error": msg }).to_string();
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<S: tokio::io::AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonParseErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        if !this.pending.is_empty() {
            return Poll::Pending;
        }
        if let Some(json) = rewrite_parse_error(buf) {
            this.pending = json;
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            // Taken whole: the rest goes out on the next write, flush or shutdown.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }

    // Unvectored, so that hyper hands over each answer's head as one buffer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let local = listener.local_addr().context("cannot read the listening address")?;
    let app = crate::router(state.clone(), local);
    let lim = state.limits.clone();
    let slots = Arc::new(Semaphore::new(lim.max_connections));
    let (stop_tx, stop_rx) = watch::channel::<Option<Instant>>(None);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        // At the cap, stop accepting: new clients wait in the kernel's backlog until a
        // connection closes (the header timeout closes idle and stalled ones).
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of file descriptors or a connection reset before accept: back off.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            connection(stream, app, st, stop).await
        });
    }
    drop(listener);
    let deadline = Instant::now() + lim.drain;
    let _ = stop_tx.send(Some(deadline));
    let drained = tokio::time::timeout_at(deadline + Duration::from_millis(100), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!("vlsm serve: closing {} connection(s) at the drain deadline", conns.len());
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    state: Arc<AppState>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let _open = state.conns.enter();
    let lim = &state.limits;
    let busy = Arc::new(AtomicUsize::new(0));
    let body_timeout = lim.body_timeout;
    let b2 = busy.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut app = app.clone();
        let guard = Busy::new(b2.clone());
        async move {
            let _guard = guard;
            let req: Request = req.map(|inner| {
                Body::new(DeadlineBody {
                    inner,
                    sleep: Box::pin(tokio::time::sleep(body_timeout)),
                    limit: body_timeout,
                })
            });
            let r: Result<axum::response::Response, Infallible> = app.call(req).await;
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(lim.header_timeout).max_headers(HYPER_MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(JsonParseErrors::new(stream)), svc);
    tokio::pin!(conn);
    let deadline = tokio::select! {
        _ = conn.as_mut() => return,
        d = stop.wait_for(|d| d.is_some()) => match d {
            Ok(d) => *d,
            Err(_) => None,
        },
    };
    conn.as_mut().graceful_shutdown();
    // Idle keep-alive connections and partial request heads are closed now; a request being
    // answered (or whose body is arriving) gets until the deadline.
    if busy.load(Ordering::SeqCst) == 0 {
        return;
    }
    if let Some(d) = deadline {
        let _ = tokio::time::timeout_at(d, conn).await;
    }
}
