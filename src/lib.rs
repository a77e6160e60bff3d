//! dualprobe: tells a dual-stack ECS/Fargate task, per address family, whether it can reach what
//! it depends on. Data flows one way — config → targets → scheduler → checks → reports →
//! metrics / HTTP — and so do the imports: the modules are declared bottom up, and each uses
//! only those declared before it (`scripts/check-structure.py` fails CI otherwise).
#![forbid(unsafe_code)]

/// Bounded reading of the files a config names.
pub mod files;

/// The vocabulary: families, failures, check kinds, targets, outcomes.
pub mod model;

/// Resolver, TLS, address policy, the family-pinned HTTP stack.
pub mod net;

/// AWS SDK clients, their errors, ECS task metadata.
pub mod aws;

/// The check kinds and the chain that runs them.
pub mod checks;

/// Targets found in CloudFormation templates and by `DescribeVpcEndpoints`.
pub mod discovery;

/// The YAML config, validated into targets.
pub mod config;

/// When each (target, family) runs.
pub mod scheduler;

/// Results, metrics, EMF.
pub mod report;

/// Generations and reloads.
pub mod agent;

/// The HTTP surface.
pub mod serve;

/// The entry points of the fuzz targets (`fuzz/`) that are not public API: hidden, for them only.
#[doc(hidden)]
pub mod fuzzing;
