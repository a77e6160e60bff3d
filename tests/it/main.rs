//! dualprobe's integration tests, one crate: the support code (real peers on loopback, moto, the
//! binary as a child process) is compiled once, and a helper no test uses is a dead-code warning.
//! One module per area; the checks are split per check kind.

mod agent_proc;
mod support;
mod support_aws;

mod abuse;
mod aws_config;
mod aws_metadata;
mod bad_input;
mod binary;
mod checks;
mod config;
mod discovery;
mod emf;
mod first_results;
mod fuzz_regressions;
mod guard_nat64;
mod guard_table;
mod happy_eyeballs_series;
mod healthcheck;
mod icmp_he_netns;
mod logs;
mod metrics_exposition;
mod metrics_gauges;
mod metrics_stall;
mod nat64_agent;
mod pmtu_netns;
mod probe_endpoint;
mod probe_load;
mod probe_prometheus;
mod reload;
mod reload_load;
mod resolv_conf;
mod scheduler;
mod self_loop;
mod serve_limits;
mod ssrf_netns;
mod status_page_browser;
mod vpc_refresh;
