//! The fixed set of failure reasons: the only values the `result` label can take besides `ok`.

use std::fmt;
use std::io;

use serde::Serialize;

/// The one list of failure reasons, as `Variant "label" "doc",`: it becomes the enum, its
/// `ALL` and its labels, so a new reason is one line here.
macro_rules! failure_reasons {
    ($($variant:ident $label:literal $doc:literal,)*) => {
        /// Why a check failed. A closed set, so metrics never carry free text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FailureReason {
            $(#[doc = $doc] $variant,)*
        }

        impl FailureReason {
            /// Every reason, for pre-registering or removing series.
            pub const ALL: &'static [FailureReason] = &[$(FailureReason::$variant,)*];

            /// The value of the `result` label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FailureReason::$variant => $label,)*
                }
            }
        }
    };
}

failure_reasons! {
    Timeout "timeout" "The check's deadline passed (no answer, SYN dropped, handshake stalled).",
    Refused "refused" "The peer actively refused (TCP RST to a SYN, ICMP port unreachable).",
    Unreachable "unreachable" "No route to the address, or the family has no address to try.",
    Nat64Unreachable "nat64_unreachable" "A NAT64-synthesized IPv6 address did not connect (timeout or no route): the NAT64 path is broken, not native IPv6.",
    Reset "reset" "An established connection was reset or closed early.",
    PmtuBlackhole "pmtu_blackhole" "Full-size packets stall but small ones pass: the path MTU is lower than the route's and Packet Too Big / Fragmentation Needed is filtered.",
    Nxdomain "nxdomain" "The name does not exist (NXDOMAIN).",
    Nodata "nodata" "The name exists but has no record of this family's type (NOERROR, empty answer).",
    Servfail "servfail" "The DNS server answered SERVFAIL.",
    DnsError "dns_error" "Any other DNS failure (REFUSED, malformed name, no nameserver, ...).",
    TlsError "tls_error" "The TLS handshake failed for a reason other than the certificate.",
    CertInvalid "cert_invalid" "The server's certificate did not verify (unknown CA, expired, wrong name).",
    HttpStatus "http_status" "The HTTP response status was not one of the expected ones, or the request failed.",
    Skipped "skipped" "Not run because an earlier check of the same chain failed.",
    IcmpNotPermitted "icmp_not_permitted" "The kernel refused an unprivileged ICMP socket: the agent's group is outside the sysctl net.ipv4.ping_group_range.",
    Forbidden "forbidden" "Refused by the probe's own safety rules (metadata address, not on the allowlist).",
    PublicAddress "public_address" "A PrivateLink name answered with a public address: private DNS is off.",
    AwsAuth "aws_auth" "AWS rejected the credentials or the signature.",
    AwsDenied "aws_denied" "AWS answered AccessDenied: the network path worked.",
    AwsThrottled "aws_throttled" "AWS throttled the call.",
    AwsError "aws_error" "Any other AWS service error.",
    Other "other" "Anything else.",
}

impl FailureReason {
    /// Classifies a socket error. `ETIMEDOUT` from the kernel counts as a timeout too.
    pub fn from_io(err: &io::Error) -> FailureReason {
        use io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused => FailureReason::Refused,
            K::TimedOut | K::WouldBlock => FailureReason::Timeout,
            K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                FailureReason::Unreachable
            }
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                FailureReason::Reset
            }
            _ => match err.raw_os_error() {
                // EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT, ENETDOWN on Linux.
                Some(113 | 101 | 99 | 97 | 100) => FailureReason::Unreachable,
                Some(110) => FailureReason::Timeout,
                Some(111) => FailureReason::Refused,
                Some(104) => FailureReason::Reset,
                _ => FailureReason::Other,
            },
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check: the reason that goes into metrics and a detail that goes only into logs and
/// JSON answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The fixed reason (metric label).
    pub reason: FailureReason,
    /// Human-readable detail for logs and `/probe?format=json`; never a metric label.
    pub detail: String,
}

impl Failure {
    /// A failure with a reason and a detail.
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }

    /// A failure classified from a socket error.
    pub fn from_io(context: &str, err: &io::Error) -> Failure {
        Failure::new(FailureReason::from_io(err), format!("{context}: {err}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// An error and its sources on one line, without repeating a message a wrapper already holds:
/// the detail of failures that come from layered clients (reqwest, hyper, the AWS SDK).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::FailureReason;

    #[test]
    fn labels_are_the_serde_names_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in FailureReason::ALL {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json, r.as_str(), "{r:?}");
            assert!(seen.insert(r.as_str()), "{r:?} twice");
        }
        assert_eq!(FailureReason::ALL.len(), 22);
    }
}
