//! The check kinds: a closed enum, generated from the one registry list below, so that adding a
//! kind is that list's line plus the kind's own file under `src/checks/`.

use std::fmt;

use serde::Serialize;

/// The registry: every check kind, in the order a chain runs them, as
/// `Variant "config name" module [section],`. This file expands it into [`CheckKind`];
/// `src/checks/mod.rs` into the module declarations and the kind → implementation table; and
/// `src/config/raw.rs` into the per-kind config sections of targets and modules (a kind with
/// a `[section]` key owns that key: its YAML shape, defaults and validation, through
/// `checks::Configure`). A new kind is one line here plus `src/checks/<module>.rs` defining
/// `pub struct Variant` that implements `checks::Check` (and `checks::Configure` when it has a
/// section).
macro_rules! check_kinds {
    ($callback:path) => {
        $callback! {
            Dns "dns" dns [],
            PrivateDns "private_dns" private_dns [private_dns],
            HappyEyeballs "happy_eyeballs" happy_eyeballs [],
            Icmp "icmp" icmp [],
            Tcp "tcp" tcp [],
            Tls "tls" tls [],
            Http "http" http [http],
            Pmtu "pmtu" pmtu [pmtu],
            S3 "s3" s3 [],
            Ec2 "ec2" ec2 [],
            Trace "trace" trace [trace],
        }
    };
}
pub(crate) use check_kinds;

macro_rules! define_check_kind {
    ($($variant:ident $name:literal $module:ident [$($section:ident)?],)*) => {
        /// One kind of check, e.g. `tcp`. Ordered as chains run.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl CheckKind {
            /// Every kind, in chain order.
            pub const ALL: &'static [CheckKind] = &[$(CheckKind::$variant,)*];

            /// The name used in config (`checks: [...]`) and as the `check` label.
            pub fn name(self) -> &'static str {
                match self {
                    $(CheckKind::$variant => $name,)*
                }
            }
        }
    };
}
check_kinds!(define_check_kind);

impl CheckKind {
    /// Looks a kind up by its config name.
    pub fn from_name(name: &str) -> Option<CheckKind> {
        CheckKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// All names, for error messages and help.
    pub fn all_names() -> Vec<&'static str> {
        CheckKind::ALL.iter().map(|k| k.name()).collect()
    }
}

impl fmt::Debug for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CheckKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// How deep into the stack a check goes; `expect: unreachable` is judged on the layers above
/// name resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Name resolution: may succeed even when the path is down.
    Resolve,
    /// Anything that sends packets to the target's address.
    Connect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_chain_order() {
        for k in CheckKind::ALL {
            assert_eq!(CheckKind::from_name(k.name()), Some(*k));
        }
        let mut sorted = CheckKind::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, CheckKind::ALL);
        assert_eq!(CheckKind::from_name("ping"), None);
    }
}
