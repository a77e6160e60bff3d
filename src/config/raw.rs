//! The YAML shape of the config, as serde reads it: unknown keys are errors, and the values whose
//! lines matter for error messages are `Spanned`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::family::Family;
use crate::model::target::{AddressSelection, Expect};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) families: Option<Spanned<Vec<Family>>>,
    pub(super) concurrency: Option<Spanned<usize>>,
    pub(super) resolver: Option<RawResolver>,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
    pub(super) discovery: Option<RawDiscovery>,
    pub(super) probe: Option<RawProbe>,
    pub(super) modules: Option<HashMap<Spanned<String>, RawModule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    #[serde(default)]
    pub(super) allow: Vec<Spanned<String>>,
    pub(super) token_file: Option<Spanned<PathBuf>>,
    pub(super) max_concurrent: Option<Spanned<usize>>,
    pub(super) rate_per_second: Option<Spanned<u32>>,
    pub(super) burst: Option<Spanned<u32>>,
    pub(super) max_timeout: Option<Spanned<String>>,
    pub(super) timeout_offset: Option<Spanned<String>>,
}

/// A module: everything a target has but its name and host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
    pub(super) port: Option<Spanned<u16>>,
    pub(super) checks: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) families: Option<Spanned<Vec<Family>>>,
    pub(super) addresses: Option<AddressSelection>,
    pub(super) http: Option<RawHttp>,
    pub(super) tls: Option<RawTls>,
    pub(super) expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) cloudformation: Option<Spanned<RawCloudFormation>>,
    pub(super) vpc_endpoints: Option<Spanned<RawVpcEndpoints>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloudFormation {
    pub(super) template: Spanned<PathBuf>,
    pub(super) region: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVpcEndpoints {
    pub(super) vpc_id: Option<Spanned<String>>,
    pub(super) region: Spanned<String>,
    pub(super) refresh: Option<Spanned<String>>,
    pub(super) dual_stack: Option<bool>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) service: Spanned<String>,
    pub(super) region: Spanned<String>,
    pub(super) dual_stack: Option<bool>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) operation: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrivateDns {
    #[serde(default)]
    pub(super) cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    #[serde(default)]
    pub(super) nameservers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Spanned<String>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) checks: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) families: Option<Spanned<Vec<Family>>>,
    pub(super) addresses: Option<AddressSelection>,
    pub(super) http: Option<RawHttp>,
    pub(super) tls: Option<RawTls>,
    pub(super) expect: Option<RawExpect>,
    pub(super) aws: Option<Spanned<RawAws>>,
    pub(super) private_dns: Option<RawPrivateDns>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) path: Option<String>,
    pub(super) scheme: Option<Spanned<String>>,
    pub(super) expect_status: Option<Vec<Spanned<StatusText>>>,
    pub(super) follow_redirects: Option<bool>,
}

/// `200` or `"2xx"`: read as text either way so one parser judges it.
#[derive(Debug)]
pub(super) struct StatusText(pub(super) String);

impl<'de> Deserialize<'de> for StatusText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status such as 200 or \"2xx\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) server_name: Option<String>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) insecure_skip_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub(super) ipv4: Option<Expect>,
    pub(super) ipv6: Option<Expect>,
}
