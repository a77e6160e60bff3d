//! dualprobe: tells a dual-stack ECS/Fargate task, per address family, whether it can reach what
//! it depends on. Data flows one way: config → targets → scheduler → probers → results →
//! metrics / HTTP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod env;
pub mod family;
pub mod probe;
pub mod resolver;
pub mod target;
pub mod tls_client;
