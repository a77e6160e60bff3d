//! Where cycle reports go: the latest results per (target, family), Prometheus metrics and
//! their text exposition, CloudWatch EMF lines, process metrics, and the CLI's table.

pub mod check_series;
pub mod cli_table;
pub mod emf;
pub mod exposition;
pub mod metrics;
pub(crate) mod process_metrics;
pub(crate) mod prom_text;
pub mod results;
pub(crate) mod series_encode;
