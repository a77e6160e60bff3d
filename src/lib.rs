//! dualprobe: tells a dual-stack ECS/Fargate task, per address family, whether it can reach what
//! it depends on. Data flows one way: config → targets → scheduler → probers → results →
//! metrics / HTTP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adhoc;
pub mod agent;
pub mod aws;
pub mod check_series;
pub mod config;
pub mod discovery;
pub mod emf;
pub mod env;
pub mod family;
pub mod guard;
pub mod metrics;
pub mod probe;
pub mod probe_api;
pub mod process_metrics;
pub mod resolver;
pub mod results;
pub mod scheduler;
pub mod server;
pub mod status_page;
pub mod target;
pub mod tls_client;
