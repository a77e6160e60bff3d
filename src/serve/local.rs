//! The local health socket: `/-/healthy` and `/-/ready` on the abstract Unix socket
//! `@dualprobe/health/PORT` (Linux), beside the TCP listener on PORT. Only processes in the
//! agent's network namespace can reach an abstract socket — on Fargate, the task's own
//! containers, among them the container health check — so no network client, however many
//! connections it opens, stands between ECS and its answer. `dualprobe healthcheck` asks here
//! first and falls back to TCP. An abstract socket has no file: nothing to clean up, and it
//! works on a read-only root filesystem as a non-root user.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The socket's name for the TCP listener on `port` (without the leading NUL that makes it
/// abstract; `ss -xl` shows it as `@dualprobe/health/PORT`).
pub fn socket_name(port: u16) -> String {
    format!("dualprobe/health/{port}")
}

/// The most of an answer read: the health answers are one line.
const MAX_ANSWER: usize = 4096;

/// Why the local socket gave no status.
#[derive(Debug, thiserror::Error)]
pub enum LocalHealthError {
    /// Nothing listens under the name (no agent on that port, or an older one).
    #[error("cannot connect to @{name}: {source}")]
    Connect {
        /// The socket name.
        name: String,
        /// The connect error.
        source: io::Error,
    },
    /// The exchange failed after connecting.
    #[error("@{name}: {source}")]
    Io {
        /// The socket name.
        name: String,
        /// The read or write error.
        source: io::Error,
    },
    /// No complete answer in time.
    #[error("@{name}: no answer within {timeout:?}")]
    Timeout {
        /// The socket name.
        name: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The answer was not an HTTP/1.1 status line.
    #[error("@{name}: not an HTTP answer: {start:?}")]
    Malformed {
        /// The socket name.
        name: String,
        /// The answer's first bytes.
        start: String,
    },
}

/// Binds the local health socket for `port`.
#[cfg(target_os = "linux")]
pub fn bind(port: u16) -> io::Result<tokio::net::UnixListener> {
    // tokio reads a leading NUL as "abstract" (std's `SocketAddrExt::from_abstract_name`).
    tokio::net::UnixListener::bind(format!("\0{}", socket_name(port)))
}

/// Abstract sockets are Linux's; elsewhere there is only TCP.
#[cfg(not(target_os = "linux"))]
pub fn bind(_port: u16) -> io::Result<tokio::net::UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets are Linux-only",
    ))
}

/// GETs `path` on the local health socket of `port` within `timeout`: the answer's status code.
pub async fn get_status(port: u16, path: &str, timeout: Duration) -> Result<u16, LocalHealthError> {
    let name = socket_name(port);
    match tokio::time::timeout(timeout, exchange(&name, path)).await {
        Ok(r) => r,
        Err(_) => Err(LocalHealthError::Timeout { name, timeout }),
    }
}

async fn exchange(name: &str, path: &str) -> Result<u16, LocalHealthError> {
    // A non-blocking connect: a full backlog is an error at once, not a wait.
    let mut s = tokio::net::UnixStream::connect(format!("\0{name}"))
        .await
        .map_err(|source| LocalHealthError::Connect {
            name: name.to_string(),
            source,
        })?;
    let io = |source| LocalHealthError::Io {
        name: name.to_string(),
        source,
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::new();
    (&mut s)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    status_of(&answer).ok_or_else(|| LocalHealthError::Malformed {
        name: name.to_string(),
        start: String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned(),
    })
}

/// The status code of an `HTTP/1.1 NNN ...` answer.
fn status_of(answer: &[u8]) -> Option<u16> {
    let rest = answer.strip_prefix(b"HTTP/1.1 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(status_of(b""), None);
    }
}
