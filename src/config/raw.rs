//! The YAML shape of the config, as serde reads it: unknown keys are errors, and the values whose
//! lines matter for error messages are `Spanned`.

use std::collections::HashMap;
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
    pub(super) starts_per_second: Option<Spanned<u32>>,
    pub(super) resolver: Option<RawResolver>,
    /// `None` only for an item the reader blanked out after a type error (or a user's `~`).
    #[serde(default)]
    pub(super) targets: Vec<Spanned<Option<RawTarget>>>,
    pub(super) discovery: Option<RawDiscovery>,
    pub(super) probe: Option<RawProbe>,
    pub(super) modules: Option<HashMap<Spanned<String>, RawModule>>,
    pub(super) metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) duration_buckets: Option<Spanned<Vec<Spanned<f64>>>>,
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
pub(super) struct RawResolver {
    #[serde(default)]
    pub(super) nameservers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) nat64_prefixes: Vec<Spanned<String>>,
    pub(super) nat64_discovery: Option<bool>,
    pub(super) nat64_refresh: Option<Spanned<String>>,
}

/// Targets and modules, with one field per check kind that owns a config section: generated
/// from the registry list, so a new kind's section needs no edit here.
macro_rules! raw_targets {
    ($($variant:ident $name:literal $module:ident [$($section:ident)?],)*) => {
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
            pub(super) tls: Option<RawTls>,
            pub(super) expect: Option<RawExpect>,
            pub(super) aws: Option<Spanned<RawAws>>,
            pub(super) allow_metadata_address: Option<bool>,
            $($(
                pub(super) $section:
                    Option<<crate::checks::$module::$variant as crate::checks::Configure>::Raw>,
            )?)*
        }

        /// A module: everything a target has but its name, host, schedule and `aws:`.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawModule {
            pub(super) port: Option<Spanned<u16>>,
            pub(super) checks: Option<Spanned<Vec<Spanned<String>>>>,
            pub(super) timeout: Option<Spanned<String>>,
            pub(super) families: Option<Spanned<Vec<Family>>>,
            pub(super) addresses: Option<AddressSelection>,
            pub(super) tls: Option<RawTls>,
            pub(super) expect: Option<RawExpect>,
            $($(
                pub(super) $section:
                    Option<<crate::checks::$module::$variant as crate::checks::Configure>::Raw>,
            )?)*
        }

        impl RawModule {
            /// The module as a target named `name`: a placeholder host (each request brings
            /// its own) and a long interval (modules have no schedule; any timeout is valid).
            pub(super) fn into_target(self, name: &Spanned<String>) -> RawTarget {
                let at = |v: &str| Spanned::new(v.to_string(), name.referenced, name.defined);
                RawTarget {
                    name: at(&name.value),
                    host: Some(at("module.invalid")),
                    port: self.port,
                    checks: self.checks,
                    interval: Some(at("24h")),
                    timeout: self.timeout,
                    families: self.families,
                    addresses: self.addresses,
                    tls: self.tls,
                    expect: self.expect,
                    aws: None,
                    allow_metadata_address: None,
                    $($($section: self.$section,)?)*
                }
            }
        }

        impl RawTarget {
            /// Each check kind's own section, validated by the kind.
            pub(super) fn check_settings(
                &self,
                field: &str,
                problem: &mut dyn FnMut(Option<u64>, String, String),
            ) -> crate::model::target::CheckSettings {
                #[allow(unused_mut)] // no kind may have a section
                let mut settings = crate::model::target::CheckSettings::default();
                $($(
                    if let Some(raw) = &self.$section {
                        let field = format!("{field}.{}", stringify!($section));
                        let built = <crate::checks::$module::$variant as crate::checks::Configure>
                            ::configure(raw, &field, problem);
                        if let Some(s) = built {
                            settings.set(crate::model::check_kind::CheckKind::$variant, s);
                        }
                    }
                )?)*
                settings
            }

            /// The port the first section that has a default port gives (see
            /// `checks::Configure::default_port`).
            pub(super) fn section_default_port(&self) -> Option<u16> {
                $($(
                    if let Some(p) = self.$section.as_ref().and_then(
                        <crate::checks::$module::$variant as crate::checks::Configure>::default_port,
                    ) {
                        return Some(p);
                    }
                )?)*
                None
            }
        }
    };
}
crate::model::check_kind::check_kinds!(raw_targets);

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
    pub(super) via: Option<Spanned<RawVia>>,
}

/// `expect.via`: the IPv6 path asserted. `ipv4` is read only to refuse it by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVia {
    pub(super) ipv4: Option<Spanned<String>>,
    pub(super) ipv6: Option<crate::model::nat64::ViaKind>,
}
