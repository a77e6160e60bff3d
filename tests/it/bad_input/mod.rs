//! The bad-input table (issue 16): malformed config, `/probe` queries, CloudFormation templates
//! and files, each row held to the exact error text a user sees. One file per area; each runs its
//! whole table and fails once, listing every row whose text differs (the row's name, what was
//! expected and what came), so one run shows every drift.
//!
//! YAML type and syntax errors (a string where a number goes, unknown keys) are left out on
//! purpose: how serde's errors are worded is being changed elsewhere. The rows here are values of
//! the right type that are wrong, requests, templates and files.

mod config;
mod config_diagnosis;
mod config_sections;
mod files;
mod probe_query;
mod templates;

/// One row: a name for failures, the input, and the exact text expected.
pub struct Row {
    /// Shown when the row fails.
    pub name: &'static str,
    /// What goes in (YAML, a query, a template, a file's content...).
    pub input: String,
    /// The exact text that must come out.
    pub want: String,
}

/// A row from anything string-like.
pub fn row(name: &'static str, input: impl Into<String>, want: impl Into<String>) -> Row {
    Row {
        name,
        input: input.into(),
        want: want.into(),
    }
}

/// Runs `actual` on every row of `area` and panics once, naming each row whose text differs.
/// Row names must be unique, so a failure points at exactly one row.
pub fn check_table(area: &str, rows: &[Row], mut actual: impl FnMut(&Row) -> String) {
    let mut names = std::collections::HashSet::new();
    for r in rows {
        assert!(names.insert(r.name), "{area}: row name `{}` twice", r.name);
    }
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let got = actual(r);
            (got != r.want).then(|| {
                let input: String = r.input.chars().take(300).collect();
                format!(
                    "row `{}`\n  input: {:?}\n  want:  {:?}\n  got:   {:?}",
                    r.name, input, r.want, got
                )
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{area}: {} of {} rows differ:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}
