//! Targets from a CloudFormation template: every `AWS::EC2::VPCEndpoint` becomes the name a
//! task would reach through it. YAML (with the short-form tags `!Sub`, `!Ref`, `!GetAtt`, `!If`,
//! `!Join`, `!Select`, `!Equals`, ...) and JSON templates are read into one [`Node`] tree;
//! serde-saphyr hands a tagged node to serde's buffering deserializer as a one-key map
//! (`!Sub x` → `{Sub: x}`), which is the long form without the `Fn::` prefix, so both forms are
//! evaluated by the same code. Only what a service name needs is evaluated: `Ref` to parameters
//! (their `Default`) and pseudo parameters, `Sub`, `Join`, `Select`, `If` with `Conditions`.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{
    Discovered, DiscoveryError, EndpointKind, private_dns_name, split_service_name, target_name,
};
use crate::model::family::Family;

/// A template value: YAML or JSON, tags turned into one-key maps, mapping order kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// `null` / `~`.
    Null,
    /// true / false.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Mapping),
}

/// A mapping that keeps document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping(pub Vec<(String, Node)>);

impl Mapping {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Mapping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Mapping;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Mapping, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<KeyText, Node>()? {
                    out.push((k.0, v));
                }
                Ok(Mapping(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Mapping keys as text, whatever scalar they are.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<KeyText, E> {
                Ok(KeyText(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Node {
    fn as_map(&self) -> Option<&Mapping> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `(function, argument)` when this is an intrinsic function call (`{Fn::Sub: x}`,
    /// `{Ref: x}`, or a short-form tag, which arrives as `{Sub: x}`).
    fn intrinsic(&self) -> Option<(&str, &Node)> {
        let m = self.as_map()?;
        if m.0.len() != 1 {
            return None;
        }
        let (k, v) = &m.0[0];
        let name = k.strip_prefix("Fn::").unwrap_or(k);
        const KNOWN: &[&str] = &[
            "Ref",
            "Sub",
            "Join",
            "Select",
            "If",
            "GetAtt",
            "Equals",
            "Not",
            "And",
            "Or",
            "Condition",
            "FindInMap",
            "GetAZs",
            "Split",
            "ImportValue",
            "Base64",
            "Cidr",
        ];
        (KNOWN.contains(&name) && (k.starts_with("Fn::") || k == name)).then_some((name, v))
    }
}

/// A parsed template: what discovery reads from it.
#[derive(Debug, Clone)]
pub struct Template {
    /// `Parameters`, with their defaults.
    pub parameters: HashMap<String, Node>,
    /// `Conditions`.
    pub conditions: HashMap<String, Node>,
    /// `Resources`, in document order: (logical ID, type, the resource mapping).
    pub resources: Vec<(String, String, Mapping)>,
}

/// Why a template could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong (with the line when known).
    pub message: String,
}

/// Parses a YAML or JSON template.
pub fn parse_template(text: &str) -> Result<Template, TemplateError> {
    let root: Node = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| TemplateError {
            message: format!("not a JSON template: {e}"),
        })?
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            let msg = e.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
                formatter: &serde_saphyr::UserMessageFormatter,
            });
            TemplateError {
                message: match line {
                    Some(l) => format!("line {l}: {msg}"),
                    None => msg,
                },
            }
        })?
    };
    let Some(root) = root.as_map() else {
        return Err(TemplateError {
            message: "a template is a mapping with `Resources:`".into(),
        });
    };
    let section = |name: &str| -> HashMap<String, Node> {
        root.get(name)
            .and_then(Node::as_map)
            .map(|m| m.0.iter().cloned().collect())
            .unwrap_or_default()
    };
    let Some(resources) = root.get("Resources").and_then(Node::as_map) else {
        return Err(TemplateError {
            message: "no `Resources:` mapping".into(),
        });
    };
    let mut out = Vec::new();
    for (id, r) in &resources.0 {
        let Some(m) = r.as_map() else {
            return Err(TemplateError {
                message: format!("resource `{id}` is not a mapping"),
            });
        };
        let ty = m
            .get("Type")
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        out.push((id.clone(), ty, m.clone()));
    }
    Ok(Template {
        parameters: section("Parameters"),
        conditions: section("Conditions"),
        resources: out,
    })
}

/// How deep one evaluation may nest, how many parameter and condition lookups one template's
/// evaluation may make, and how deep those may nest. Parameters' defaults and conditions can name
/// each other in cycles (`Default: !Ref P` inside `P`, a condition in its own `Fn::If`) and in
/// chains that double the work at each step: bounded, such a template is one that "cannot be
/// evaluated", not a stack overflow or a hang.
const MAX_EVAL_DEPTH: usize = 64;
const LOOKUP_BUDGET: u32 = 10_000;
const LOOKUP_DEPTH: u32 = 64;

/// What `Ref`/`Sub` can see.
struct Scope<'a> {
    template: &'a Template,
    region: &'a str,
    /// The nesting of the evaluation under way (see [`MAX_EVAL_DEPTH`]).
    depth: Cell<usize>,
    /// Parameter and condition lookups still allowed (see [`Scope::named`]).
    budget: Cell<u32>,
    /// Parameter and condition lookups in progress.
    lookup_depth: Cell<u32>,
}

impl Scope<'_> {
    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.to_string()),
            "AWS::Partition" => Some(
                if self.region.starts_with("cn-") {
                    "aws-cn"
                } else {
                    "aws"
                }
                .into(),
            ),
            "AWS::URLSuffix" => Some(
                if self.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                }
                .into(),
            ),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        if let Some(v) = self.pseudo(name) {
            return Some(v);
        }
        let p = self.template.parameters.get(name)?.as_map()?;
        self.named(|| self.string(p.get("Default")?))
    }

    /// Runs one parameter or condition lookup within the budget and depth (`None` past them).
    fn named<T>(&self, f: impl FnOnce() -> Option<T>) -> Option<T> {
        let (left, depth) = (self.budget.get(), self.lookup_depth.get());
        if left == 0 || depth >= LOOKUP_DEPTH {
            self.budget.set(0);
            return None;
        }
        self.budget.set(left - 1);
        self.lookup_depth.set(depth + 1);
        let out = f();
        self.lookup_depth.set(depth);
        out
    }

    /// Evaluates a node to a string, when it can be known before deployment (and nests at most
    /// [`MAX_EVAL_DEPTH`] deep).
    fn string(&self, node: &Node) -> Option<String> {
        let depth = self.depth.get();
        if depth >= MAX_EVAL_DEPTH {
            return None;
        }
        self.depth.set(depth + 1);
        let out = self.evaluate(node);
        self.depth.set(depth);
        out
    }

    fn evaluate(&self, node: &Node) -> Option<String> {
        match node {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Map(_) => {
                let (f, arg) = node.intrinsic()?;
                match f {
                    "Ref" => self.reference(arg.as_str()?),
                    "Sub" => self.sub(arg),
                    "Join" => {
                        let Node::Seq(a) = arg else { return None };
                        let delim = self.string(a.first()?)?;
                        let items = self.list(a.get(1)?)?;
                        Some(items.join(&delim))
                    }
                    "Select" => {
                        let Node::Seq(a) = arg else { return None };
                        let i: usize = self.string(a.first()?)?.parse().ok()?;
                        self.list(a.get(1)?)?.into_iter().nth(i)
                    }
                    "If" => {
                        let Node::Seq(a) = arg else { return None };
                        let cond = a.first()?.as_str()?;
                        let chosen = if self.condition(cond)? {
                            a.get(1)?
                        } else {
                            a.get(2)?
                        };
                        self.string(chosen)
                    }
                    _ => None,
                }
            }
            Node::Null | Node::Seq(_) => None,
        }
    }

    fn list(&self, node: &Node) -> Option<Vec<String>> {
        match node {
            Node::Seq(items) => items.iter().map(|i| self.string(i)).collect(),
            other => match other.intrinsic()? {
                ("Split", Node::Seq(a)) => {
                    let delim = self.string(a.first()?)?;
                    let s = self.string(a.get(1)?)?;
                    Some(s.split(delim.as_str()).map(str::to_string).collect())
                }
                _ => None,
            },
        }
    }

    fn sub(&self, arg: &Node) -> Option<String> {
        let (text, vars) = match arg {
            Node::Str(s) => (s.as_str(), None),
            Node::Seq(a) => (a.first()?.as_str()?, a.get(1).and_then(Node::as_map)),
            _ => return None,
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}')?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.and_then(|m| m.get(name)) {
                out.push_str(&self.string(v)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Evaluates a named condition with the parameters' defaults.
    fn condition(&self, name: &str) -> Option<bool> {
        self.named(|| self.truth(self.template.conditions.get(name)?, 0))
    }

    fn truth(&self, node: &Node, depth: usize) -> Option<bool> {
        if depth > 16 {
            return None;
        }
        let (f, arg) = node.intrinsic()?;
        let items = |a: &Node| match a {
            Node::Seq(v) => Some(v.clone()),
            _ => None,
        };
        match f {
            "Equals" => {
                let a = items(arg)?;
                Some(self.string(a.first()?)? == self.string(a.get(1)?)?)
            }
            "Not" => Some(!self.truth(items(arg)?.first()?, depth + 1)?),
            "And" => items(arg)?
                .iter()
                .try_fold(true, |acc, n| Some(acc & self.truth(n, depth + 1)?)),
            "Or" => items(arg)?
                .iter()
                .try_fold(false, |acc, n| Some(acc | self.truth(n, depth + 1)?)),
            "Condition" => {
                self.named(|| self.truth(self.template.conditions.get(arg.as_str()?)?, depth + 1))
            }
            _ => None,
        }
    }
}

/// An endpoint as declared in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateEndpoint {
    /// The logical ID.
    pub logical_id: String,
    /// The evaluated `ServiceName`.
    pub service_name: String,
    /// `VpcEndpointType` (CloudFormation's default is `Gateway`).
    pub kind: EndpointKind,
    /// `PrivateDnsEnabled` (default false).
    pub private_dns: bool,
    /// From `IpAddressType` (default ipv4).
    pub families: Vec<Family>,
    /// `IpAddressType` as written (`None`: AWS's default, ipv4).
    pub ip_address_type: Option<String>,
    /// `DnsOptions.DnsRecordIpType` as written (`None`: the endpoint's own type).
    pub dns_record_ip_type: Option<String>,
    /// The resource's `Condition`.
    pub condition: Option<String>,
    /// Whether that condition holds with the parameters' defaults (`None`: unknown).
    pub condition_default: Option<bool>,
}

/// Every `AWS::EC2::VPCEndpoint` of the template, with `${AWS::Region}` set to `region`.
pub fn endpoints(
    template: &Template,
    region: &str,
) -> Result<Vec<TemplateEndpoint>, DiscoveryError> {
    let scope = Scope {
        template,
        region,
        depth: Cell::new(0),
        budget: Cell::new(LOOKUP_BUDGET),
        lookup_depth: Cell::new(0),
    };
    let mut out = Vec::new();
    for (id, ty, res) in &template.resources {
        if ty != "AWS::EC2::VPCEndpoint" {
            continue;
        }
        let props = res
            .get("Properties")
            .and_then(Node::as_map)
            .cloned()
            .unwrap_or_default();
        let bad = |what: &str| DiscoveryError::Template {
            path: String::new(),
            message: format!("{id}: {what}"),
        };
        let service_name = props
            .get("ServiceName")
            .ok_or_else(|| bad("has no ServiceName"))
            .and_then(|n| {
                scope
                    .string(n)
                    .ok_or_else(|| bad("ServiceName cannot be evaluated before deployment"))
            })?;
        let kind = match props
            .get("VpcEndpointType")
            .and_then(|n| scope.string(n))
            .as_deref()
        {
            None | Some("Gateway") => EndpointKind::Gateway,
            Some("Interface") => EndpointKind::Interface,
            Some(other) => {
                // GatewayLoadBalancer, Resource, ServiceNetwork: no AWS service name to probe.
                tracing::debug!("{id}: endpoint type {other} skipped");
                continue;
            }
        };
        let private_dns = props
            .get("PrivateDnsEnabled")
            .and_then(|n| match n {
                Node::Bool(b) => Some(*b),
                other => scope.string(other).map(|s| s.eq_ignore_ascii_case("true")),
            })
            .unwrap_or(false);
        let ip_address_type = props.get("IpAddressType").and_then(|n| scope.string(n));
        let dns_record_ip_type = props
            .get("DnsOptions")
            .and_then(Node::as_map)
            .and_then(|o| o.get("DnsRecordIpType"))
            .and_then(|n| scope.string(n));
        let families = match kind {
            EndpointKind::Gateway => vec![Family::Ipv4],
            EndpointKind::Interface => match ip_address_type.as_deref() {
                Some("dualstack") => vec![Family::Ipv4, Family::Ipv6],
                Some("ipv6") => vec![Family::Ipv6],
                _ => vec![Family::Ipv4],
            },
        };
        let condition = res
            .get("Condition")
            .and_then(Node::as_str)
            .map(str::to_string);
        let condition_default = condition.as_deref().and_then(|c| scope.condition(c));
        out.push(TemplateEndpoint {
            logical_id: id.clone(),
            service_name,
            kind,
            private_dns,
            families,
            ip_address_type,
            dns_record_ip_type,
            condition,
            condition_default,
        });
    }
    Ok(out)
}

/// The names to probe for a template's endpoints: interface endpoints with private DNS → the
/// service's private DNS name (checked by `private_dns`); gateway endpoints → the regional
/// service name over IPv4. Interface endpoints without private DNS have no name a task uses and
/// are left out (logged).
pub fn discover_in_template(text: &str, region: &str) -> Result<Vec<Discovered>, DiscoveryError> {
    let template = parse_template(text).map_err(|e| DiscoveryError::Template {
        path: String::new(),
        message: e.message,
    })?;
    let mut out = Vec::new();
    for ep in endpoints(&template, region)? {
        let Some((ep_region, service)) = split_service_name(&ep.service_name) else {
            tracing::info!(
                "{}: {} is not an AWS service endpoint; skipped",
                ep.logical_id,
                ep.service_name
            );
            continue;
        };
        if ep.kind == EndpointKind::Interface && !ep.private_dns {
            tracing::info!("{}: private DNS is off; no name to probe", ep.logical_id);
            continue;
        }
        let Some(host) = private_dns_name(service, ep_region) else {
            tracing::info!(
                "{}: no known DNS name for {}",
                ep.logical_id,
                ep.service_name
            );
            continue;
        };
        // The template names the private DNS name only (the `vpce-…` names exist after
        // deployment): its families follow the endpoint's address and record types.
        let (families, expect) = match ep.kind {
            EndpointKind::Gateway => (ep.families.clone(), Default::default()),
            EndpointKind::Interface => super::name_expectations(
                ep.ip_address_type.as_deref(),
                ep.dns_record_ip_type.as_deref(),
                true,
            ),
        };
        out.push(Discovered {
            name: target_name(service, ep.kind),
            origin: ep.logical_id.clone(),
            service_name: ep.service_name.clone(),
            kind: ep.kind,
            host,
            families,
            expect,
            check_private: ep.kind == EndpointKind::Interface,
            condition: ep.condition.clone(),
            cidrs: Vec::new(),
        });
    }
    Ok(out)
}

/// Reads `path` and discovers its endpoints (for `discovery.cloudformation` and
/// `dualprobe targets --from-template`).
pub fn discover_template_file(
    path: &std::path::Path,
    region: &str,
) -> Result<Vec<Discovered>, DiscoveryError> {
    let shown = path.display().to_string();
    let text = crate::files::read_text(path, crate::files::TEMPLATE_MAX).map_err(|e| {
        DiscoveryError::Template {
            path: shown.clone(),
            message: match e {
                crate::files::FileError::Io(e) => format!("cannot read: {e}"),
                other => other.about("the template"),
            },
        }
    })?;
    discover_in_template(&text, region).map_err(|e| match e {
        DiscoveryError::Template { message, .. } => DiscoveryError::Template {
            path: shown,
            message,
        },
        other => other,
    })
}

#[cfg(test)]
#[path = "cloudformation_tests.rs"]
mod tests;
