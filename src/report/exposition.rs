//! `/metrics` as a sequence of bounded chunks, so a scrape never holds its whole body (12 MB at
//! 1,000 targets with dns, tcp and http checks): the per-target table ([`CheckSeries`]) a batch
//! of series per chunk, then the client crate's registry, which holds only what does not scale
//! with targets (a few KiB), and OpenMetrics' `# EOF` last. A client that stops reading holds
//! one chunk; the next is written only when it is asked for.

use std::ops::Deref;

use prometheus_client::registry::Registry;

use crate::report::check_series::{CheckSeries, Cursor};
use crate::report::prom_text::Format;

/// The buffer a chunk is rendered into: large enough that the kernel gets a few big writes,
/// not hundreds of small ones, small enough that hundreds of stalled scrapes hold a few MiB.
pub const CHUNK: usize = 64 * 1024;

/// Room left in a chunk's buffer for the series that crosses the cut (a chunk ends after it):
/// a histogram with 32 buckets and long labels is about 5 KiB.
const SLACK: usize = 8 * 1024;

/// One scrape's body, chunk by chunk. `R` is what holds the registry (an `Arc` of its owner).
pub struct Exposition<R> {
    registry: R,
    series: CheckSeries,
    format: Format,
    cursor: Cursor,
    /// The registry and the end are written.
    done: bool,
}

impl<R: Deref<Target = Registry>> Exposition<R> {
    /// A scrape of `series` and `registry` in `format`; nothing is rendered yet.
    pub fn new(registry: R, series: CheckSeries, format: Format) -> Exposition<R> {
        Exposition {
            registry,
            series,
            format,
            cursor: Cursor::default(),
            done: false,
        }
    }

    /// True once the last chunk has been handed out.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk, `None` after the last. The last one carries the registry and, in
    /// OpenMetrics, `# EOF`.
    pub fn next_chunk(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let mut out = String::with_capacity(CHUNK);
        if self
            .series
            .encode_some(&mut self.cursor, &mut out, self.format, CHUNK - SLACK)
        {
            // Writing to a String cannot fail.
            let _ = match self.format {
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode(&mut out, &self.registry)
                }
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
                }
            };
            self.done = true;
        }
        Some(out)
    }
}
