//! Text logs cannot be forged: a value that carries a newline or an escape sequence (here the
//! error of a refused reload, which quotes the config's own text) is written escaped, on the one
//! line of its event.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::BIN;

#[test]
fn control_characters_in_values_are_escaped_in_text_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "targets: []\n").unwrap();
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
    let wait_for = |lines: &mut Vec<String>, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                let done = l.contains(what);
                lines.push(l);
                if done {
                    return;
                }
            }
        }
        panic!("no `{what}` in the log:\n{}", lines.join("\n"));
    };
    wait_for(&mut lines, "config loaded");
    // A value the error quotes, carrying a newline, a forged log line and an ESC sequence.
    std::fs::write(
        &cfg,
        "targets: []\ninterval: \"evil\\n2026-01-01T00:00:00Z  INFO FORGED \\u001b[31mred\"\n",
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for(&mut lines, "config reload refused");
    let _ = child.kill();
    let _ = child.wait();
    let all = lines.join("\n");
    assert!(
        all.contains("evil\\n2026"),
        "the value is written escaped:\n{all}"
    );
    assert!(all.contains("\\u{1b}[31m"), "ESC is escaped:\n{all}");
    assert!(
        !lines.iter().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line:\n{all}"
    );
    assert!(!all.contains('\u{1b}'), "a raw ESC reached the log:\n{all}");
}
