//! The HTTP server under hostile clients, in process on 127.0.0.1 with small limits: HTTP/1.1
//! only (an HTTP/2 preface gets no HTTP/2 answer), half-sent requests cut at the header
//! deadline, oversized heads refused, a connection cap at which a newcomer evicts the connection
//! that waited longest for a request (so `/-/healthy` answers at once while every slot is held
//! by a slow client), connections with a request in progress never evicted, and the local
//! health socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dualprobe::agent::{Agent, RunOptions};
use dualprobe::config::{Config, ConfigSource};
use dualprobe::serve::{Limits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LIMITS: Limits = Limits {
    connections: 6,
    header_timeout: Duration::from_secs(2),
    max_header_bytes: 8192,
    lifetime: Duration::from_secs(3),
    drain: Duration::from_millis(200),
    local_connections: 2,
};

struct Server {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Server {
    start_with("listen: \"127.0.0.1:0\"\ntargets: []\n", None).await
}

/// An agent on `yaml`, served on 127.0.0.1; with `send_buffer`, the accepted sockets' send
/// buffer (inherited from the listener; fixed, not autotuned), so a client that does not read
/// soon leaves the server holding the rest of a big answer.
async fn start_with(yaml: &str, send_buffer: Option<u32>) -> Server {
    let config = Config::from_yaml(yaml, "test", None).expect("config");
    let shutdown = CancellationToken::new();
    let agent = Agent::start(
        ConfigSource::Inline(yaml.into()),
        config,
        RunOptions::default(),
        shutdown.clone(),
    )
    .expect("agent");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size).expect("SO_SNDBUF");
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener: TcpListener = socket.listen(1024).expect("listen");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_with(
        listener,
        Arc::clone(&agent),
        shutdown.clone(),
        LIMITS,
    ));
    Server { addr, shutdown }
}

/// Reads until EOF or `limit`; `None` when the connection stayed open past `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthy(addr: std::net::SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let body = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .ok_or("no answer in 5 s")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_http2_preface_gets_no_http2_answer() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // The HTTP/2 connection preface and an empty SETTINGS frame, as an h2c client sends.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("the server answers or closes");
    // An HTTP/2 server would answer with its own SETTINGS frame (type 4 at byte 3).
    assert!(
        answer.len() < 9 || answer[3] != 0x04,
        "HTTP/2 answered: {answer:?}"
    );
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 4"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn half_sent_requests_are_evicted_by_a_health_check_and_cut_at_their_deadline() {
    let server = start().await;
    // Every slot held by a request that never finishes, the first one opened first.
    let mut slow = Vec::new();
    for _ in 0..LIMITS.connections {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The health check takes the slot of the one that waited longest: answered on its first
    // attempt, long before any slow client's header deadline.
    let started = Instant::now();
    let answer = healthy(server.addr).await.expect("health check");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "health waited {:?}",
        started.elapsed()
    );
    let first = read_until_closed(&mut slow[0], Duration::from_millis(500)).await;
    assert!(
        first.is_some(),
        "the longest-waiting slow client was not evicted"
    );
    // Every other slow client is cut at its header deadline (a 408 or a close), none kept for
    // ever, none evicted before it.
    for (i, s) in slow.iter_mut().enumerate().skip(1) {
        let closed = read_until_closed(s, LIMITS.header_timeout + Duration::from_secs(2)).await;
        assert!(closed.is_some(), "slow client {i} still open");
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut req = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(20)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    // The server may close before reading all of it; a write error is a refusal too.
    let _ = s.write_all(&req).await;
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered or closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 431"),
        "a {}-byte head was accepted: {text}",
        req.len()
    );
}

#[tokio::test]
async fn a_connection_at_the_cap_evicts_the_longest_waiting_one() {
    let server = start().await;
    let mut held = Vec::new();
    for _ in 0..LIMITS.connections {
        held.push(TcpStream::connect(server.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second-oldest has had a request answered since: it waits from its answer on, so it is
    // now younger than every never-used connection.
    assert!(keep_alive_healthy(&mut held[1]).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Two newcomers that stay (kept alive): the oldest idle connection goes first, then the
    // next oldest never-used one; the kept-alive one, younger, stays.
    let mut newcomers = Vec::new();
    for victim in [0, 2] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        assert!(keep_alive_healthy(&mut s).await, "newcomer not served");
        newcomers.push(s);
        let closed = read_until_closed(&mut held[victim], Duration::from_millis(500)).await;
        assert!(closed.is_some(), "connection {victim} was not evicted");
    }
    for i in [1, 3, 4, 5] {
        let open = read_until_closed(&mut held[i], Duration::from_millis(100)).await;
        assert!(open.is_none(), "connection {i} was evicted out of turn");
    }
}

/// One `/-/healthy` on `s`, kept alive: true on a 200.
async fn keep_alive_healthy(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

/// An agent with 200 targets (so `/metrics` is hundreds of KB once they have run, far more than
/// the 16 KiB send buffers of its connections) and one whose DNS check waits on a nameserver
/// that never answers (so `/probe` of it takes its timeout). The socket is that nameserver.
async fn start_big() -> (Server, std::net::UdpSocket) {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut yaml = format!(
        "listen: \"127.0.0.1:0\"\ninterval: 1s\ntimeout: 500ms\nresolver:\n  nameservers: [\"{}\"]\ntargets:\n  - {{ name: slow, host: slow.example.test, checks: [dns], families: [ipv4], interval: 1m, timeout: 5s }}\n",
        silent.local_addr().unwrap()
    );
    for i in 0..200 {
        yaml.push_str(&format!(
            "  - {{ name: closed-port-number-{i:04}, host: 127.0.0.1, port: {closed}, checks: [tcp], families: [ipv4] }}\n"
        ));
    }
    (start_with(&yaml, Some(16 * 1024)).await, silent)
}

/// The body of a chunked HTTP/1.1 answer, `None` unless it is complete (its last chunk, of size
/// 0, arrived).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return rest.starts_with(b"\r\n").then_some(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Waits until `/metrics` of `server` is over `size` bytes (the targets have run).
async fn metrics_over(server: &Server, size: usize) {
    let started = Instant::now();
    loop {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .unwrap();
        if got.len() > size {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/metrics stayed at {} bytes",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_still_being_written_is_never_evicted_and_ends_with_its_lifetime() {
    let (server, _silent) = start_big().await;
    metrics_over(&server, 256 * 1024).await;
    // Every slot taken by a scrape that does not read its megabytes: the server's writes wait
    // on each, a response in progress on every connection.
    let mut stuck = Vec::new();
    for _ in 0..LIMITS.connections {
        // A small receive buffer too, so the kernel cannot take the answer off the server.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(server.addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        stuck.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Nothing to evict: a newcomer is closed at once.
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let closed = read_until_closed(&mut extra, Duration::from_millis(500)).await;
    assert_eq!(closed, Some(Vec::new()), "a newcomer got a busy slot");
    // The first slow reader was not cut: it gets its whole answer when it reads.
    let whole = read_until_closed(&mut stuck[0], Duration::from_secs(2))
        .await
        .expect("the answer ends");
    // `/metrics` is streamed, so chunked: a whole answer ends with the empty last chunk.
    let text = String::from_utf8_lossy(&whole[..whole.len().min(4096)]).to_string();
    let head = text.find("\r\n\r\n").expect("a head") + 4;
    assert!(
        text[..head].contains("transfer-encoding: chunked"),
        "{}",
        &text[..head]
    );
    let body = dechunk(&whole[head..]).expect("a scrape in progress was cut");
    assert!(
        body.len() > 128 * 1024,
        "{} bytes: too small to prove anything",
        body.len()
    );
    // Past their lifetime and its grace the other slots are free again: a newcomer is served.
    tokio::time::sleep(LIMITS.lifetime + Duration::from_secs(6)).await;
    let answer = healthy(server.addr)
        .await
        .expect("served after the lifetime");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_being_handled_is_never_evicted() {
    let (server, _silent) = start_big().await;
    // Every slot held by a `/probe` whose DNS check waits out its timeout.
    let mut waiting = Vec::new();
    for _ in 0..LIMITS.connections {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(
            b"GET /probe?target=slow&timeout=2s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        waiting.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let closed = read_until_closed(&mut extra, Duration::from_millis(500)).await;
    assert_eq!(closed, Some(Vec::new()), "a newcomer took a busy slot");
    for (i, s) in waiting.iter_mut().enumerate() {
        let answer = read_until_closed(s, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("probe_success"),
            "probe {i} was cut: {text}"
        );
    }
}

/// The local health socket answers `/-/healthy` and `/-/ready` while every TCP slot is held,
/// evicts its own idle connections the same way, and serves nothing else.
#[tokio::test]
async fn the_local_health_socket_answers_health_only() {
    use dualprobe::serve::local::get_status;
    let server = start().await;
    let port = server.addr.port();
    let mut held = Vec::new();
    for _ in 0..LIMITS.connections {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let name = format!("\0{}", dualprobe::serve::local::socket_name(port));
    let mut idle = Vec::new();
    for _ in 0..LIMITS.local_connections {
        idle.push(tokio::net::UnixStream::connect(&name).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = Duration::from_secs(1);
    assert_eq!(get_status(port, "/-/healthy", second).await.unwrap(), 200);
    assert_eq!(get_status(port, "/-/ready", second).await.unwrap(), 200);
    for path in ["/metrics", "/", "/probe?target=127.0.0.1:1"] {
        assert_eq!(get_status(port, path, second).await.unwrap(), 404, "{path}");
    }
    let mut buf = [0u8; 16];
    let evicted = tokio::time::timeout(Duration::from_millis(500), idle[0].read(&mut buf)).await;
    assert!(
        matches!(evicted, Ok(Ok(0)) | Ok(Err(_))),
        "idle local connection kept: {evicted:?}"
    );
    drop(held);
}
