//! Reading the files a config names (the config itself, CA bundles, token files, CloudFormation
//! templates): regular files only, opened without blocking, and at most a stated size. A FIFO
//! would block the reader for as long as nobody writes, and `/dev/zero` never ends; either must
//! be a clear error, never a hang or an out-of-memory abort of the running agent.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest config file (a 24,000-target config is about 2 MiB).
pub const CONFIG_MAX: u64 = 16 << 20;
/// The largest CloudFormation template (AWS accepts 1 MB through S3).
pub const TEMPLATE_MAX: u64 = 4 << 20;
/// The largest CA bundle (Mozilla's whole bundle is about 220 KiB).
pub const CA_MAX: u64 = 1 << 20;
/// The largest token file.
pub const TOKEN_MAX: u64 = 4096;

/// Reads `path` as bytes: a regular file of at most `limit` bytes. The error names the file and
/// what is wrong with it.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    // The type of what was opened, not of what the path named a moment earlier.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(format!("{shown} is {what}"));
    }
    if meta.len() > limit {
        return Err(format!(
            "{shown} is {} bytes, more than the {limit} allowed",
            meta.len()
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "{shown} grew past the {limit} bytes allowed while read"
        ));
    }
    Ok(out)
}

/// [`read_bytes`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    String::from_utf8(read_bytes(path, limit)?)
        .map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, "hello").unwrap();
        assert_eq!(read_text(&small, 5).unwrap(), "hello");
        let e = read_text(&small, 4).unwrap_err();
        assert!(e.contains("is 5 bytes, more than the 4 allowed"), "{e}");
        let e = read_text(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            e.ends_with("is not a regular file (a FIFO, socket or device)"),
            "{e}"
        );
        let e = read_text(dir.path(), 10).unwrap_err();
        assert!(e.ends_with("is a directory"), "{e}");
        let e = read_text(&dir.path().join("missing"), 10).unwrap_err();
        assert!(e.starts_with("cannot read "), "{e}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [0xff, 0xfe]).unwrap();
        assert!(read_text(&bad, 10).unwrap_err().contains("is not UTF-8"));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo is not available");
            return;
        }
        // Nobody writes: a blocking open would hang this test for ever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_text(&fifo, 100));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO returned at once");
        assert!(
            got.unwrap_err()
                .ends_with("is not a regular file (a FIFO, socket or device)")
        );
    }
}
