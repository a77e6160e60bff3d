//! The `discovery:` section: CloudFormation templates (read and evaluated at load, so a broken
//! template is a config error) and `ec2:DescribeVpcEndpoints` settings.

use std::path::Path;
use std::time::Duration;

use super::problems::{
    Problems, check_endpoint_url, check_region, line_of, parse_duration, resolve_path,
};
use super::raw::RawDiscovery;

pub(super) fn build_discovery(
    p: &mut Problems,
    raw: &RawDiscovery,
    base_dir: Option<&Path>,
) -> crate::discovery::DiscoveryConfig {
    use crate::discovery::{CloudFormationDiscovery, DiscoveryConfig, VpcEndpointsDiscovery};
    let mut out = DiscoveryConfig::default();
    if let Some(cfn) = &raw.cloudformation {
        let c = &cfn.value;
        let template = resolve_path(base_dir, &c.template.value);
        let region = check_region(p, &c.region, "discovery.cloudformation.region".into());
        let parsed = crate::files::read_text(&template, crate::files::TEMPLATE_MAX)
            .map_err(|e| e.about(&template.display().to_string()))
            .and_then(|text| match &region {
                Some(r) => crate::discovery::cloudformation::discover_in_template(&text, r)
                    .map(|_| ())
                    .map_err(|e| match e {
                        crate::discovery::DiscoveryError::Template { message, .. } => message,
                        other => other.to_string(),
                    }),
                None => crate::discovery::cloudformation::parse_template(&text)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            });
        match (parsed, region) {
            (Ok(_), Some(region)) => {
                out.cloudformation = Some(CloudFormationDiscovery { template, region });
            }
            (Err(e), _) => p.add(line_of(&c.template), "discovery.cloudformation.template", e),
            (Ok(_), None) => {}
        }
    }
    if let Some(v) = &raw.vpc_endpoints {
        let r = &v.value;
        let before = p.0.len();
        let region = check_region(p, &r.region, "discovery.vpc_endpoints.region".into());
        let vpc_id = match &r.vpc_id {
            Some(id) => Some((id.value.trim().to_string(), line_of(id))),
            None => std::env::var("DUALPROBE_VPC_ID")
                .ok()
                .map(|s| (s.trim().to_string(), line_of(v)))
                .filter(|(s, _)| !s.is_empty()),
        };
        let vpc_id = match vpc_id {
            None => {
                p.add(
                    line_of(v),
                    "discovery.vpc_endpoints.vpc_id",
                    "is required (or set DUALPROBE_VPC_ID)",
                );
                None
            }
            Some((id, line)) => {
                let ok = id
                    .strip_prefix("vpc-")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
                if !ok {
                    p.add(
                        line,
                        "discovery.vpc_endpoints.vpc_id",
                        format!("`{id}` is not a VPC ID like vpc-0abc123"),
                    );
                }
                Some(id)
            }
        };
        let refresh = parse_duration(p, &r.refresh, "discovery.vpc_endpoints.refresh")
            .unwrap_or(Duration::from_secs(300));
        let dual_stack = r.dual_stack.unwrap_or(r.endpoint_url.is_none());
        check_endpoint_url(
            p,
            &r.endpoint_url,
            dual_stack,
            "discovery.vpc_endpoints.endpoint_url",
        );
        let ca_file = r.ca_file.as_ref().map(|c| resolve_path(base_dir, &c.value));
        if let (Some(path), Some(raw_ca)) = (&ca_file, &r.ca_file)
            && let Err(e) = crate::net::tls::client_config(Some(path), false)
        {
            p.add(line_of(raw_ca), "discovery.vpc_endpoints.ca_file", e);
        }
        if p.0.len() == before
            && let (Some(vpc_id), Some(region)) = (vpc_id, region)
        {
            out.vpc_endpoints = Some(VpcEndpointsDiscovery {
                vpc_id,
                region,
                refresh,
                dual_stack,
                endpoint_url: r.endpoint_url.as_ref().map(|u| u.value.trim().to_string()),
                ca_file,
            });
        }
    }
    out
}
