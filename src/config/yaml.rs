//! Reading the YAML document into the raw shape, with deliberate limits (nodes, nesting) and
//! every type error at once: after one, the offending `key: value` is blanked out (lines and
//! columns kept) and the document is read again, so a bad value in one place never hides the
//! problems in others. Syntax errors and the limits stop the reading; they are reported alone.

use serde_saphyr::Error;

use super::problems::Problem;
use super::raw::RawConfig;
use super::yaml_tree::{Tree, TreeError};

/// The most YAML nodes (scalars, lists, mappings) a config may have, counting each alias's
/// expansion: the largest real configs are a few thousand nodes.
pub const MAX_NODES: usize = 100_000;

/// The most parser events aliases (`*name`, `<<: *name`) may bring in: enough for a
/// `<<: *defaults` in every one of a thousand targets, and an alias bomb is refused after this
/// much work (merges cost more than linear time in the parser, so this is well below
/// [`MAX_NODES`]).
pub const MAX_ALIAS_EVENTS: usize = 20_000;

/// The deepest nesting of lists and mappings: a config needs about 5 levels.
pub const MAX_DEPTH: usize = 64;

/// The most type errors reported for one document (each costs a re-read).
const MAX_TYPE_ERRORS: usize = 50;

/// A loader limit the document went over.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit {
    Nodes,
    Aliases,
    Depth,
}

impl Limit {
    fn message(self) -> String {
        match self {
            Limit::Nodes => format!(
                "the document has more than {MAX_NODES} YAML nodes, counting each alias's \
                 expansion (the limit)"
            ),
            Limit::Aliases => format!(
                "aliases bring in more than {MAX_ALIAS_EVENTS} YAML events (the limit, against \
                 alias bombs)"
            ),
            Limit::Depth => format!(
                "the document nests lists and mappings deeper than {MAX_DEPTH} levels (the limit)"
            ),
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            // Events are nodes plus their ends: the node limit is the one that trips.
            max_events: 2 * MAX_NODES + 16,
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
        },
    }
}

/// The raw config, or every problem that stopped reading it. Alongside the raw config, the
/// type errors found (their fields are absent from it).
pub(super) fn read(text: &str) -> Result<(RawConfig, Vec<Problem>), Vec<Problem>> {
    let first = match serde_saphyr::from_str_with_options::<RawConfig>(text, options()) {
        Ok(raw) => return Ok((raw, Vec::new())),
        Err(e) => e,
    };
    if let Some(limit) = limit_of(&first) {
        return Err(vec![problem(line_of(&first), "", limit.message())]);
    }
    let tree = match Tree::build(text) {
        Ok(t) => t,
        Err(TreeError::Limit(l)) => return Err(vec![problem(None, "", l.message())]),
        // The parser's own cap on nesting.
        Err(TreeError::Syntax { line, message, .. })
            if message.starts_with("recursion limit exceeded") =>
        {
            return Err(vec![problem(Some(line), "", Limit::Depth.message())]);
        }
        Err(TreeError::Syntax {
            line,
            column,
            message,
        }) => {
            return Err(vec![problem(
                Some(line),
                "",
                format!("YAML syntax error at column {column}: {message}"),
            )]);
        }
    };
    let mut chars: Vec<char> = text.chars().collect();
    let mut found: Vec<Problem> = Vec::new();
    let mut edits = Vec::new();
    let mut err = first;
    loop {
        if let Some(limit) = limit_of(&err) {
            found.push(problem(line_of(&err), "", limit.message()));
            return Err(found);
        }
        let (p, edit) = describe(&err, &tree);
        // A blanked anchor leaves its aliases dangling: that is ours, not the user's.
        if edits.is_empty() || !matches!(inner(&err), Error::UnknownAnchor { .. }) {
            found.push(p);
        }
        let Some(edit) = edit.filter(|e| !edits.contains(e)) else {
            return Err(found);
        };
        if found.len() >= MAX_TYPE_ERRORS {
            found.push(problem(
                None,
                "",
                format!("stopped after {MAX_TYPE_ERRORS} type errors"),
            ));
            return Err(found);
        }
        edit.apply(&mut chars);
        edits.push(edit);
        let again: String = chars.iter().collect();
        match serde_saphyr::from_str_with_options::<RawConfig>(&again, options()) {
            Ok(raw) => return Ok((raw, found)),
            Err(e) => err = e,
        }
    }
}

fn problem(line: Option<u64>, field: &str, message: impl Into<String>) -> Problem {
    Problem {
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// The error itself, out of its snippet and alias wrappers.
fn inner(e: &Error) -> &Error {
    match e.without_snippet() {
        Error::AliasError { error, .. } => error.without_snippet(),
        other => other,
    }
}

fn line_of(e: &Error) -> Option<u64> {
    e.location().map(|l| l.line()).filter(|l| *l > 0)
}

fn limit_of(e: &Error) -> Option<Limit> {
    use serde_saphyr::budget::BudgetBreach;
    match inner(e) {
        Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => Some(Limit::Depth),
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => Some(Limit::Nodes),
            BudgetBreach::Aliases { .. }
            | BudgetBreach::Anchors { .. }
            | BudgetBreach::AliasAnchorRatio { .. }
            | BudgetBreach::MergeKeys { .. } => Some(Limit::Aliases),
            _ => None,
        },
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => Some(Limit::Aliases),
        Error::AliasReplayStackDepthExceeded { .. } => Some(Limit::Depth),
        // The scanner's own cap on flow nesting (`[[[[...`).
        other if other.to_string().starts_with("recursion limit exceeded") => Some(Limit::Depth),
        _ => None,
    }
}

/// The problem an error is, with its field path, and what to blank out to read past it.
fn describe(e: &Error, tree: &Tree) -> (Problem, Option<super::yaml_tree::Edit>) {
    let line = line_of(e);
    let at = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| l.span().offset() as usize);
    let Some(node) = at.and_then(|at| tree.node_at(at)) else {
        return (problem(line, "", plain(e)), None);
    };
    let found = || match tree.scalar(node) {
        Some(v) => format!("`{v}`"),
        None => match tree.nodes[node].kind {
            super::yaml_tree::Kind::Seq => "a list".to_string(),
            super::yaml_tree::Kind::Map => "a mapping".to_string(),
            _ => "an alias".to_string(),
        },
    };
    let path = tree.path(node);
    // Errors about a mapping's keys name the key under the mapping's path.
    let under_mapping = |key: &str| {
        let m = tree.mapping_at_or_above(node).unwrap_or(node);
        let base = tree.path(m);
        let field = if base.is_empty() {
            key.to_string()
        } else {
            format!("{base}.{key}")
        };
        (field, m)
    };
    let (field, message, target) = match inner(e) {
        Error::InvalidScalar { ty, .. } => {
            let what = if path.ends_with(".port") && *ty == "u16" {
                "a port (1-65535)".to_string()
            } else {
                describe_type(ty)
            };
            (path, format!("{} is not {what}", found()), node)
        }
        Error::InvalidBooleanStrict { .. } => {
            (path, format!("{} is not true or false", found()), node)
        }
        Error::Unexpected { expected, .. } => (
            path,
            format!("expected {}, found {}", describe_type(expected), found()),
            node,
        ),
        Error::NullIntoString { .. } => (path, "expected a string, found nothing".into(), node),
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            path,
            format!("expected {expected}, found {unexpected}"),
            node,
        ),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            path,
            format!("`{variant}` is not one of {}", expected.join(", ")),
            node,
        ),
        Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let (f, _) = under_mapping(field);
            let known = if expected.is_empty() {
                "none".to_string()
            } else {
                expected.join(", ")
            };
            (
                f,
                format!("unknown field `{field}`; known fields: {known}"),
                node,
            )
        }
        Error::SerdeMissingField { field, .. } => {
            let (f, m) = under_mapping(field);
            (f, "is required".into(), m)
        }
        Error::DuplicateMappingKey { key, .. } => {
            let k = key.clone().unwrap_or_else(|| "?".into());
            let (f, _) = under_mapping(&k);
            (f, "is given twice".into(), node)
        }
        _ => (path, plain(e), node),
    };
    (problem(line, &field, message), tree.neutralize(target))
}

/// A serde or YAML type name as a user reads it.
fn describe_type(ty: &str) -> String {
    let range = |max: &str| format!("a whole number from 0 to {max}");
    match ty {
        "u8" => range("255"),
        "u16" => range("65535"),
        "u32" => range("4294967295"),
        "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "bool" | "boolean" => "true or false".into(),
        "sequence start" => "a list".into(),
        "mapping start" => "a mapping (key: value)".into(),
        "string scalar" => "a single value".into(),
        other => format!("a valid {other}"),
    }
}

/// The error's own message, without the position (the report gives the line).
fn plain(e: &Error) -> String {
    let text = inner(e).to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
