//! The HTTP server under hostile clients, in process on 127.0.0.1 with small limits: HTTP/1.1
//! only (an HTTP/2 preface gets no HTTP/2 answer), half-sent requests cut at the header
//! deadline, oversized heads refused, a connection cap, and `/-/healthy` answering while every
//! normal slot is held by a slow client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dualprobe::agent::{Agent, RunOptions};
use dualprobe::config::{Config, ConfigSource};
use dualprobe::serve::{Limits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LIMITS: Limits = Limits {
    connections: 4,
    reserve: 2,
    header_timeout: Duration::from_secs(2),
    reserve_header_timeout: Duration::from_millis(300),
    max_header_bytes: 8192,
    lifetime: Duration::from_secs(3),
    reserve_lifetime: Duration::from_secs(1),
    drain: Duration::from_millis(200),
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
    let yaml = "listen: \"127.0.0.1:0\"\ntargets: []\n";
    let config = Config::from_yaml(yaml, "test", None).expect("config");
    let shutdown = CancellationToken::new();
    let agent = Agent::start(
        ConfigSource::Inline(yaml.into()),
        config,
        RunOptions::default(),
        shutdown.clone(),
    )
    .expect("agent");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
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
async fn half_sent_requests_are_cut_and_health_still_answers() {
    let server = start().await;
    // Hold every normal slot and every reserve slot with a request that never finishes.
    let mut slow = Vec::new();
    for _ in 0..(LIMITS.connections + LIMITS.reserve) {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Reserve slots are freed at their short deadline, so a health check gets in well before
    // the normal slow clients are cut.
    let started = Instant::now();
    let mut answer = Err(String::new());
    while started.elapsed() < Duration::from_millis(1500) {
        answer = healthy(server.addr).await;
        if answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 200")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("health check");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < LIMITS.header_timeout,
        "health waited {:?}, as long as the slow clients",
        started.elapsed()
    );
    // Every slow client is cut at its header deadline (a 408 or a close), none kept for ever.
    for (i, s) in slow.iter_mut().enumerate() {
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
async fn connections_over_the_cap_are_closed_at_once() {
    let server = start().await;
    let mut held = Vec::new();
    for _ in 0..(LIMITS.connections + LIMITS.reserve) {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let closed = read_until_closed(&mut extra, Duration::from_millis(250)).await;
    assert_eq!(
        closed,
        Some(Vec::new()),
        "a connection over the cap was kept"
    );
    drop(held);
}

#[tokio::test]
async fn clients_that_never_read_lose_their_slots() {
    let server = start().await;
    // Every normal slot taken by a client that pipelines requests and never reads an answer:
    // once the socket buffers fill, the server's writes wait on it.
    let mut stuck = Vec::new();
    for _ in 0..LIMITS.connections {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let burst = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
        let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&burst)).await;
        stuck.push(s);
    }
    // Past their lifetime and its grace the slots are free again: a new connection is a
    // normal one (keep-alive: two requests on it), not a reserve one (closed after one).
    tokio::time::sleep(LIMITS.lifetime + Duration::from_secs(6)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut answers = String::new();
    for _ in 0..2 {
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        answers.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        answers.matches("HTTP/1.1 200").count(),
        2,
        "a normal slot was not freed: {answers}"
    );
    drop(stuck);
}
