//! dualprobe: tells a dual-stack ECS/Fargate task, per address family, whether it can reach what
//! it depends on. Data flows one way — config → targets → scheduler → checks → reports →
//! metrics / HTTP — and so do the imports: each module below uses only those listed before it.
#![forbid(unsafe_code)]

pub mod agent;
pub mod aws;
pub mod checks;
pub mod config;
pub mod discovery;
pub mod model;
pub mod net;
pub mod report;
pub mod scheduler;
pub mod serve;
