//! The vocabulary every other layer speaks: address families, failures and their fixed reasons,
//! the check kinds, targets, NAT64 address synthesis, and the outcomes of checks. It imports nothing else of the crate.

pub mod aws;
pub mod check_kind;
pub mod failure;
pub mod family;
pub mod nat64;
pub mod outcome;
pub mod target;
pub mod trace;
