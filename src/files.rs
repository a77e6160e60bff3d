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

/// Why a file the config names was not read.
#[derive(Debug)]
pub enum FileError {
    /// Opening or reading failed (missing, no permission, ...).
    Io(std::io::Error),
    /// A directory, FIFO, socket or device.
    NotRegular(&'static str),
    /// Larger than allowed.
    TooBig {
        /// Its size (or what was read before the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Text expected, bytes found.
    NotUtf8,
}

impl FileError {
    /// The problem as a sentence about `what` (e.g. `CA file x.pem`): `cannot read CA file
    /// x.pem: No such file or directory`, `CA file x.pem is a directory`, ...
    pub fn about(&self, what: &str) -> String {
        match self {
            FileError::Io(e) => format!("cannot read {what}: {e}"),
            FileError::NotRegular(kind) => format!("{what} is {kind}"),
            FileError::TooBig { size, limit } => {
                format!("{what} is {size} bytes, more than the {limit} allowed")
            }
            FileError::NotUtf8 => format!("{what} is not UTF-8 text"),
        }
    }
}

/// Reads `path` as bytes: a regular file of at most `limit` bytes.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(FileError::Io)?;
    // The type of what was opened, not of what the path named a moment earlier.
    let meta = file.metadata().map_err(FileError::Io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        }));
    }
    if meta.len() > limit {
        return Err(FileError::TooBig {
            size: meta.len(),
            limit,
        });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(FileError::Io)?;
    if out.len() as u64 > limit {
        return Err(FileError::TooBig {
            size: out.len() as u64,
            limit,
        });
    }
    Ok(out)
}

/// [`read_bytes`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bytes(path, limit)?).map_err(|_| FileError::NotUtf8)
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
        let about = |p: &Path, limit| read_text(p, limit).unwrap_err().about("F");
        assert_eq!(about(&small, 4), "F is 5 bytes, more than the 4 allowed");
        assert_eq!(
            about(Path::new("/dev/zero"), 1 << 20),
            "F is not a regular file (a FIFO, socket or device)"
        );
        assert_eq!(about(dir.path(), 10), "F is a directory");
        assert!(about(&dir.path().join("missing"), 10).starts_with("cannot read F: "));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [0xff, 0xfe]).unwrap();
        assert_eq!(about(&bad, 10), "F is not UTF-8 text");
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
        assert!(matches!(got, Err(FileError::NotRegular(_))), "{got:?}");
    }
}
