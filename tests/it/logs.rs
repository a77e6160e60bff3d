//! Text logs cannot be forged: a value that carries a newline or an escape sequence (here a
//! target name from the config, which every state-change line names) is written escaped, on the
//! one line of its event.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::BIN;

#[test]
fn control_characters_in_values_are_escaped_in_text_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    // Port 9 on loopback refuses: the target starts failing at once, which is logged.
    std::fs::write(
        &cfg,
        "interval: 1s\ntimeout: 500ms\ntargets:\n  - name: \"evil\\n2026-01-01T00:00:00Z  INFO FORGED \\u001b[31mred\"\n    host: 127.0.0.1\n    port: 9\n    checks: [tcp]\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .env("DUALPROBE_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
            if lines
                .iter()
                .any(|l| l.contains("started failing") || l.contains("failing"))
            {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = lines.join("\n");
    assert!(
        all.contains("evil\\n2026"),
        "the name is written escaped:\n{all}"
    );
    assert!(all.contains("\\u{1b}[31m"), "ESC is escaped:\n{all}");
    assert!(
        !lines.iter().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line:\n{all}"
    );
    assert!(!all.contains('\u{1b}'), "a raw ESC reached the log:\n{all}");
}
