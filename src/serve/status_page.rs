//! `GET /`: a small server-rendered status page (no JavaScript): every configured target ×
//! family × check with its last result, reason and last success, and a form that runs an ad-hoc
//! probe through `/probe`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Html;

use super::Served;
use crate::model::check_kind::CheckKind;
use crate::model::family::Family;

/// Escapes text for HTML bodies and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) if d.as_secs() < 120 => format!("{}s ago", d.as_secs()),
        Ok(d) if d.as_secs() < 7200 => format!("{}m ago", d.as_secs() / 60),
        Ok(d) => format!("{}h ago", d.as_secs() / 3600),
        Err(_) => "just now".into(),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One line per configured discovery source: ok with the count, found 0, failed with the
/// error, or pending; and when it last succeeded.
fn discovery_lines(agent: &crate::agent::Agent, config: &crate::config::Config) -> String {
    let all = agent.discovery.all();
    let mut out = String::new();
    for source in crate::discovery::health::configured_sources(&config.discovery) {
        let status = all.iter().find(|s| s.source == source);
        let (class, state) = match status {
            None => ("pending", "pending".to_string()),
            Some(s) => match (&s.error, s.endpoints) {
                (Some(e), _) => ("fail", format!("failed: {e}")),
                (None, Some(0)) => ("empty", "found 0 endpoints".to_string()),
                (None, n) => ("ok", format!("ok, {} endpoint(s)", n.unwrap_or(0))),
            },
        };
        let when = status
            .and_then(|s| s.last_success)
            .map(|t| format!("<time datetime=\"{}\">{}</time>", unix(t), ago(t)))
            .unwrap_or_else(|| "never".into());
        let subject = status.map(|s| format!(" ({})", esc(&s.subject)));
        let _ = writeln!(
            out,
            "<li class=\"{class}\" data-source=\"{src}\">discovery {src}{subject}: \
             <span class=\"result\">{state}</span> · last success {when}</li>",
            src = source.as_str(),
            subject = subject.unwrap_or_default(),
            state = esc(&state),
        );
    }
    if out.is_empty() {
        return out;
    }
    format!("<ul id=\"discovery\">\n{out}</ul>\n")
}

/// The page.
pub async fn page(State(served): State<Arc<Served>>) -> Html<String> {
    let agent = &served.agent;
    let g = agent.current();
    let mut rows = String::new();
    let mut passing = 0usize;
    let mut failing = 0usize;
    for t in &g.targets {
        for &f in &t.families {
            let latest = agent.results.latest_for(&t.name, f);
            for check in &t.checks {
                let outcome = latest
                    .as_ref()
                    .and_then(|r| r.checks.iter().find(|o| o.check == *check));
                let (class, result, detail) = match outcome {
                    None => ("pending", "pending".to_string(), String::new()),
                    Some(o) if o.passed() => {
                        passing += 1;
                        // `trace`'s last responding hop shows on a pass too.
                        let hops = o.observations.trace.as_ref().map(|t| t.summary());
                        ("ok", "ok".to_string(), hops.unwrap_or_default())
                    }
                    Some(o) => {
                        failing += 1;
                        let f = o.result.as_ref().err();
                        (
                            "fail",
                            o.result_label().to_string(),
                            f.map(|f| f.detail.clone()).unwrap_or_default(),
                        )
                    }
                };
                let last_success = agent
                    .results
                    .last_success(&t.name, f, check.name())
                    .map(|t| format!("<time datetime=\"{}\">{}</time>", unix(t), ago(t)))
                    .unwrap_or_else(|| "never".into());
                let mut expect = t.expect.for_family(f).as_str().to_string();
                if let Some(via) = t.expect.via_for(f) {
                    expect = format!("{expect} via {}", via.as_str());
                }
                if let Some(v) = latest
                    .as_ref()
                    .and_then(|r| r.expectation_violation.as_ref())
                {
                    expect = format!("{expect}: NOT MET ({}: {})", v.reason, v.detail);
                }
                // The IPv6 path: native, or through NAT64 to an IPv4 address.
                let path = latest
                    .as_ref()
                    .and_then(|r| r.ipv6_path)
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    rows,
                    "<tr class=\"{class}\" data-target=\"{tn}\" data-family=\"{f}\" data-check=\"{c}\">\
                     <td>{tn}</td><td>{f}</td><td>{c}</td><td class=\"result\">{result}</td>\
                     <td class=\"expect\">{expect}</td><td class=\"path\">{path}</td><td>{last_success}</td>\
                     <td class=\"detail\">{detail}</td></tr>",
                    tn = esc(&t.name),
                    c = check.name(),
                    result = esc(&result),
                    expect = esc(&expect),
                    path = esc(&path),
                    detail = esc(&detail),
                );
            }
        }
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"8\">No targets configured.</td></tr>\n");
    }
    let mut check_boxes = String::new();
    // Only the kinds an ad-hoc target can run (not `s3`/`ec2`, which need an `aws:` block).
    for kind in CheckKind::ALL.iter().filter(|k| runs_ad_hoc(**k)) {
        let c = kind.name();
        let checked = if matches!(kind, CheckKind::Dns | CheckKind::Tcp) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            check_boxes,
            "<label><input type=\"checkbox\" name=\"check\" value=\"{c}\"{checked}> {c}</label> "
        );
    }
    let families: String = std::iter::once("both")
        .chain(Family::ALL.iter().map(|f| f.as_str()))
        .map(|f| format!("<option value=\"{f}\">{f}</option>"))
        .collect();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dualprobe</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1a1a1a; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }}
tr.ok td.result {{ background: #d8f5d8; color: #0a5c0a; }}
tr.fail td.result {{ background: #fadada; color: #8a0f0f; font-weight: bold; }}
tr.pending td.result {{ background: #eee; }}
li.fail .result, li.empty .result {{ color: #8a0f0f; font-weight: bold; }}
td.detail {{ color: #555; font-size: 12px; }}
form {{ margin: 1rem 0; padding: .8rem; border: 1px solid #ccc; }}
</style></head>
<body>
<h1>dualprobe <small>{version}</small></h1>
<p id="summary">{passing} passing, {failing} failing · config: {origin} · <a href="/metrics">metrics</a></p>
{discovery}<table id="status"><thead><tr><th>target</th><th>family</th><th>check</th><th>result</th><th>expect</th><th>path</th><th>last success</th><th>detail</th></tr></thead>
<tbody>
{rows}</tbody></table>
<form id="adhoc" action="/probe" method="get">
<h2>Ad-hoc probe</h2>
<label>target <input name="target" placeholder="host:port or configured target" required></label>
<label>family <select name="family">{families}</select></label>
<fieldset><legend>checks</legend>{check_boxes}</fieldset>
<label><input type="checkbox" name="format" value="json"> JSON</label>
<label><input type="checkbox" name="debug" value="true"> debug log</label>
<button type="submit">Probe</button>
</form>
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        origin = esc(&g.config.origin),
        discovery = discovery_lines(agent, &g.config),
    ))
}

/// True when an ad-hoc target can run `kind`: the form offers only those.
fn runs_ad_hoc(kind: CheckKind) -> bool {
    crate::serve::adhoc::build(&crate::serve::adhoc::AdhocRequest {
        target: "example.test".into(),
        checks: vec![kind.name().into()],
        families: Vec::new(),
        timeout: std::time::Duration::from_secs(1),
    })
    .is_ok()
}
