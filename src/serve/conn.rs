//! The connection loop under the HTTP server: a fixed number of connection slots, and when they
//! are all taken, eviction of the connection that has waited longest without a request in
//! progress (a slowloris, an idle socket, a kept-alive connection between requests) instead of
//! refusing the newcomer. A client that sends its request promptly is therefore always served,
//! however many hostile clients reconnect at once: a refused newcomer would have to win a race
//! against every one of them, an evicting one wins by arriving.
//!
//! A connection is busy from the moment hyper hands us a complete request head until hyper has
//! taken the last piece of its response body, and only idle connections are evicted: a scrape
//! whose streamed body is still being written, or a `/probe` waiting on its checks, is never cut.
//! A client that has had its whole answer queued and does not read it is idle, and goes.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Limits;

/// A listening socket the loop can accept from (TCP, or the local Unix socket).
pub(crate) trait Listen: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Accepts the next connection.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        tokio::net::TcpListener::poll_accept(self, cx).map_ok(|(s, _)| {
            tune(&s);
            s
        })
    }
}

/// The kernel send buffer of an accepted connection, at most. Left alone, Linux grows it to
/// `net.ipv4.tcp_wmem`'s maximum (4 MiB): 300 clients that send `GET /metrics` and never read
/// then park 950 MB of the agent's answers in kernel memory (the task's memory under cgroup
/// v2), and the agent renders all of it. At 64 KiB (the kernel doubles it for its own
/// bookkeeping) a stalled client holds about 128 KiB there, and a scrape still moves at
/// 128 KiB per round trip: 1 GB/s at a VPC's 0.1 ms.
const SEND_BUFFER: usize = 64 * 1024;

/// Lowers the connection's send buffer to [`SEND_BUFFER`] (a smaller one, set on the listener,
/// stays), and turns Nagle's algorithm off: a streamed answer's last chunk is shorter than a
/// segment, and held back until the client acknowledges the one before, which a client
/// delaying its ACKs does 40 ms later (every `/metrics` scrape took that much longer).
fn tune(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
    let socket = socket2::SockRef::from(stream);
    // Linux reports the doubled value it keeps.
    if socket.send_buffer_size().is_ok_and(|n| n > 2 * SEND_BUFFER)
        && let Err(e) = socket.set_send_buffer_size(SEND_BUFFER)
    {
        tracing::debug!(error = %e, "cannot cap a connection's send buffer");
    }
}

#[cfg(unix)]
impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        tokio::net::UnixListener::poll_accept(self, cx).map_ok(|(s, _)| s)
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown`, then waits up to `limits.drain`
/// for the connections in flight. `what` names the listener in logs.
pub(crate) async fn accept_loop<L: Listen>(
    listener: L,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
    what: &'static str,
) {
    let slots = Arc::new(Slots::new(limits.connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = std::future::poll_fn(|cx| listener.poll_accept(cx)) => a,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays.
                tracing::warn!(error = %e, listener = what, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.admit().await else {
            // Every slot is serving a request; those end by themselves (the handlers are
            // bounded), so the newcomer is the one to go.
            tracing::debug!(
                listener = what,
                "connection refused: every slot is serving a request"
            );
            continue; // dropping the stream closes it
        };
        serve_one(
            stream,
            Arc::new(slot),
            &app,
            &shutdown,
            &limits,
            &connections,
        );
    }
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!(
            listener = what,
            "some connections were still open at shutdown"
        );
    }
}

/// One connection's task.
fn serve_one<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: I,
    slot: Arc<Slot>,
    app: &Router,
    shutdown: &CancellationToken,
    limits: &Limits,
    connections: &TaskTracker,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let service = Tracked {
        inner: TowerToHyperService::new(app.clone()),
        slot: Arc::clone(&slot),
    };
    let shutdown = shutdown.clone();
    let (lifetime, drain) = (limits.lifetime, limits.drain);
    connections.spawn(async move {
        let evicted = slot.evicted.clone();
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        // A client that stops reading leaves hyper waiting on a write for ever, holding the
        // slot: every wait here ends. An evicted connection is dropped at once (no 408, no
        // goodbye): its slot is already promised to the newcomer.
        let grace = tokio::select! {
            _ = conn.as_mut() => return,
            _ = evicted.cancelled() => return,
            _ = shutdown.cancelled() => drain,
            _ = tokio::time::sleep(lifetime) => Duration::from_secs(5),
        };
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            _ = tokio::time::timeout(grace, conn) => {}
            _ = evicted.cancelled() => {}
        }
    });
}

/// Evicted connections whose sockets may still be open. Up to this many, the accept loop does
/// not wait for them to close, so a flood is accepted about as fast as it arrives; past it, it
/// waits, so the sockets open never exceed the cap by more than this (the fds are the task's).
const CLOSING_MAX: usize = 32;

/// How long an accept waits for evicted connections to close. They are woken when evicted, so
/// this is reached only if the runtime is wedged; the newcomer is then closed.
const CLOSING_WAIT: Duration = Duration::from_secs(1);

/// The open connections and which of them may be evicted, oldest wait first.
pub(crate) struct Slots {
    cap: usize,
    table: Mutex<Table>,
    /// Told each time an evicted connection is gone.
    closed: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// The connections with no request in progress, by when they started waiting.
    waiting: BTreeSet<(Instant, u64)>,
    /// Evicted connections not yet gone.
    closing: usize,
}

struct Entry {
    /// Requests in progress (hyper's HTTP/1 serves one at a time; counted to be safe).
    busy: u32,
    /// When the connection last became idle (accepted, or its last response handed over).
    since: Instant,
    evict: CancellationToken,
}

/// What [`Slots::try_admit`] decided.
enum Admission {
    Slot(Slot),
    /// Every connection has a request in progress.
    Busy,
    /// [`CLOSING_MAX`] evicted connections are still open.
    Closing,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            cap,
            table: Mutex::new(Table::default()),
            closed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing under this lock can panic half-way, so a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection, waiting since now: a free one, else the one of the idle
    /// connection that has waited longest, which is told to close. `None` when every
    /// connection has a request in progress (or evicted ones do not close).
    async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + CLOSING_WAIT;
        loop {
            // Registered before looking, so a close between the two is not missed.
            let closed = self.closed.notified();
            match self.try_admit() {
                Admission::Slot(slot) => return Some(slot),
                Admission::Busy => return None,
                Admission::Closing => {
                    if tokio::time::timeout_at(deadline, closed).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn try_admit(self: &Arc<Self>) -> Admission {
        let mut guard = self.lock();
        let t = &mut *guard;
        if t.entries.len() >= self.cap {
            // The evicted connection leaves the table at once; its socket closes when its
            // task next runs (it is woken now).
            if t.closing >= CLOSING_MAX {
                return Admission::Closing;
            }
            let Some((_, victim)) = t.waiting.pop_first() else {
                return Admission::Busy;
            };
            if let Some(e) = t.entries.remove(&victim) {
                e.evict.cancel();
                t.closing += 1;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let now = Instant::now();
        let evicted = CancellationToken::new();
        t.entries.insert(
            id,
            Entry {
                busy: 0,
                since: now,
                evict: evicted.clone(),
            },
        );
        t.waiting.insert((now, id));
        Admission::Slot(Slot {
            id,
            slots: Arc::clone(self),
            evicted,
        })
    }
}

/// One connection's registration; dropped with its task.
pub(crate) struct Slot {
    id: u64,
    slots: Arc<Slots>,
    evicted: CancellationToken,
}

impl Slot {
    /// Marks a request in progress until the guard drops.
    fn busy(self: &Arc<Self>) -> Busy {
        let mut guard = self.slots.lock();
        let t = &mut *guard;
        if let Some(e) = t.entries.get_mut(&self.id) {
            if e.busy == 0 {
                t.waiting.remove(&(e.since, self.id));
            }
            e.busy += 1;
        }
        Busy(Arc::clone(self))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.lock();
        match t.entries.remove(&self.id) {
            Some(e) => {
                if e.busy == 0 {
                    t.waiting.remove(&(e.since, self.id));
                }
            }
            None => {
                // Evicted: its socket is gone with its task, which is ending now.
                t.closing = t.closing.saturating_sub(1);
                drop(t);
                self.slots.closed.notify_one();
            }
        }
    }
}

/// A request in progress on a connection; dropped with the response body (or with the handler,
/// if the client went away first).
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let slot = &self.0;
        let mut guard = slot.slots.lock();
        let t = &mut *guard;
        // Not in the table: evicted meanwhile.
        if let Some(e) = t.entries.get_mut(&slot.id) {
            e.busy = e.busy.saturating_sub(1);
            if e.busy == 0 {
                e.since = Instant::now();
                t.waiting.insert((e.since, slot.id));
            }
        }
    }
}

/// The router as hyper calls it, marking the connection busy for each request.
struct Tracked {
    inner: TowerToHyperService<Router>,
    slot: Arc<Slot>,
}

type TrackedFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = self.slot.busy();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody::new(body, busy)))
        })
    }
}

/// The largest piece of a response body handed to hyper at once. hyper takes a piece only while
/// its write buffer has room, so while more than this is left, the body (and so the busy mark)
/// lives: a big body rendered as one piece would otherwise be handed over whole at once and its
/// connection look idle while the client is still reading it. The size of a `/metrics` chunk
/// (`report::exposition::CHUNK`), so each chunk goes to the kernel in one write.
const PIECE: usize = crate::report::exposition::CHUNK;

/// A response body that keeps its connection busy until hyper has taken all of it.
struct TrackedBody {
    body: axum::body::Body,
    /// What is left of the inner body's last data frame.
    rest: Bytes,
    _busy: Busy,
}

impl TrackedBody {
    fn new(body: axum::body::Body, busy: Busy) -> TrackedBody {
        TrackedBody {
            body,
            rest: Bytes::new(),
            _busy: busy,
        }
    }

    fn piece(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(PIECE);
        Frame::data(self.rest.split_to(n))
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = <axum::body::Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.piece())));
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    this.rest = data;
                    Poll::Ready(Some(Ok(this.piece())))
                }
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    // Exact when the inner body's is, so hyper still sends a content-length, not chunks.
    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}
