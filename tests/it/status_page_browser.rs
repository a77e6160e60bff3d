//! The status page (`GET /`) in a real headless browser (Debian `chromium`): the DOM chromium
//! renders has one row per configured target × family × check, green (`ok`) or red (`fail`) with
//! the failing reason, and the ad-hoc form; a screenshot renders; and the form's GET request
//! (built from the form chromium parsed) runs a probe whose answer chromium shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::AgentProc;
use crate::support::{A_ONLY_HOST, DUAL_HOST, DnsServer, HttpServer, standard_zone};
use dualprobe::model::family::Family;

/// A chromium child, killed on drop (a hung browser must not outlive the test).
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium_path() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium is not installed (Debian: apt-get install -y chromium)");
}

/// Runs headless chromium with `extra` arguments on `url`; returns stdout.
fn chromium(extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let child = Command::new(chromium_path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("stdout"))
        .stderr(err.reopen().expect("stderr"))
        .spawn()
        .expect("start chromium");
    let mut browser = Browser(child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = browser.0.try_wait().expect("wait chromium") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "chromium did not finish within 90 s:\n{}",
            std::fs::read_to_string(err.path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}):\n{}",
        std::fs::read_to_string(err.path()).unwrap_or_default()
    );
    stdout
}

fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom".to_string()], url)
}

/// The value of attribute `name` in the start tag `tag` (as chromium serialises it: `name="v"`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(&tag[i..i + j])
}

/// Every start tag `<name ...>` in `html`, as text.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if after.starts_with([' ', '>']) {
            let end = after.find('>').expect("tag end");
            out.push(&rest[i..i + open.len() + end + 1]);
        }
        rest = &rest[i + open.len()..];
    }
    out
}

/// The status table's rows: (target, family, check) → (class, whole row HTML).
fn rows(dom: &str) -> BTreeMap<(String, String, String), (String, String)> {
    let table = &dom[dom.find("<table id=\"status\"").expect("status table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    let mut out = BTreeMap::new();
    for (i, _) in table.match_indices("<tr class=") {
        let row = &table[i..i + table[i..].find("</tr>").expect("row end")];
        let tag = &row[..row.find('>').unwrap() + 1];
        let key = (
            attr(tag, "data-target").expect("data-target").to_string(),
            attr(tag, "data-family").expect("data-family").to_string(),
            attr(tag, "data-check").expect("data-check").to_string(),
        );
        let class = attr(tag, "class").unwrap().to_string();
        assert!(
            out.insert(key.clone(), (class, row.to_string())).is_none(),
            "row {key:?} twice"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium_and_its_form_runs_a_probe() {
    let dns = DnsServer::start(standard_zone());
    let http = HttpServer::plain();
    let hp = http.port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dualprobe.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"interval: 2s
timeout: 1s
resolver:
  nameservers: ["{ns}"]
probe:
  allow: ["*.test", "127.0.0.0/8", "::1/128"]
targets:
  - name: web
    host: {DUAL_HOST}
    port: {hp}
    checks: [dns, tcp, http]
    http: {{ path: /ok }}
  - name: broken
    host: {DUAL_HOST}
    port: {hp}
    checks: [dns, tcp, http]
    http: {{ path: /fail }}
  - name: aonly
    host: {A_ONLY_HOST}
    port: {hp}
    checks: [dns, tcp]
"#,
            ns = dns.addr(Family::Ipv4)
        ),
    )
    .unwrap();
    let agent = AgentProc::start(&cfg, "info");
    agent.wait_ready().await;
    let page = agent.url("/");

    let dom = tokio::task::spawn_blocking({
        let page = page.clone();
        move || dump_dom(&page)
    })
    .await
    .unwrap();
    let rows = rows(&dom);
    let mut want = Vec::new();
    for (target, checks) in [
        ("web", &["dns", "tcp", "http"][..]),
        ("broken", &["dns", "tcp", "http"]),
        ("aonly", &["dns", "tcp"]),
    ] {
        for fam in ["ipv4", "ipv6"] {
            for check in checks {
                want.push((target.to_string(), fam.to_string(), check.to_string()));
            }
        }
    }
    let got: Vec<_> = rows.keys().cloned().collect();
    want.sort();
    assert_eq!(got, want, "one row per target × family × check\n{dom}");
    let class =
        |t: &str, f: &str, c: &str| rows[&(t.to_string(), f.to_string(), c.to_string())].clone();
    for fam in ["ipv4", "ipv6"] {
        for check in ["dns", "tcp", "http"] {
            assert_eq!(class("web", fam, check).0, "ok", "web {fam} {check}");
        }
        assert_eq!(class("broken", fam, "tcp").0, "ok");
        let (c, row) = class("broken", fam, "http");
        assert_eq!(c, "fail", "{row}");
        assert!(
            row.contains("<td class=\"result\">http_status</td>"),
            "{row}"
        );
        assert!(row.contains("status 500 from http://dual.test:"), "{row}");
    }
    assert_eq!(class("aonly", "ipv4", "tcp").0, "ok");
    let (c, row) = class("aonly", "ipv6", "dns");
    assert_eq!(c, "fail");
    assert!(
        row.contains(">nodata<") && row.contains("no AAAA records (NODATA)"),
        "{row}"
    );
    let (c, row) = class("aonly", "ipv6", "tcp");
    assert_eq!(c, "fail");
    assert!(
        row.contains(">skipped<") && row.contains("an earlier check failed"),
        "{row}"
    );
    // A passing row shows when it last passed; a never-passing one says so.
    assert!(
        class("web", "ipv6", "http").1.contains("<time datetime="),
        "{dom}"
    );
    assert!(class("aonly", "ipv6", "dns").1.contains("never"), "{dom}");
    assert!(dom.contains("12 passing, 4 failing"), "{dom}");

    // The ad-hoc form as chromium parsed it.
    let form_start = dom.find("<form id=\"adhoc\"").expect("the ad-hoc form");
    let form = &dom[form_start..form_start + dom[form_start..].find("</form>").unwrap()];
    let form_tag = tags(form, "form")[0];
    assert_eq!(attr(form_tag, "action"), Some("/probe"), "{form}");
    assert_eq!(attr(form_tag, "method"), Some("get"), "{form}");
    let inputs = tags(form, "input");
    let target_input = inputs
        .iter()
        .find(|t| attr(t, "name") == Some("target"))
        .unwrap_or_else(|| panic!("no target field: {form}"));
    assert!(target_input.contains(" required"), "{target_input}");
    let checks: Vec<&str> = inputs
        .iter()
        .filter(|t| attr(t, "name") == Some("check"))
        .filter_map(|t| attr(t, "value"))
        .collect();
    for c in ["dns", "tcp", "tls", "http"] {
        assert!(checks.contains(&c), "no check box for {c}: {form}");
    }
    let selects = tags(form, "select");
    assert_eq!(attr(selects[0], "name"), Some("family"), "{form}");
    let options: Vec<&str> = tags(form, "option")
        .iter()
        .filter_map(|t| attr(t, "value"))
        .collect();
    assert_eq!(options, ["both", "ipv4", "ipv6"], "{form}");
    assert!(
        tags(form, "button")
            .iter()
            .any(|t| attr(t, "type") == Some("submit"))
    );

    // A screenshot of the page.
    let png = dir.path().join("status.png");
    tokio::task::spawn_blocking({
        let page = page.clone();
        let png = png.clone();
        move || {
            chromium(
                &[
                    format!("--screenshot={}", png.display()),
                    "--window-size=1200,800".to_string(),
                ],
                &page,
            )
        }
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 800));
    assert!(
        bytes.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        bytes.len()
    );

    // Submitting the form is a GET of its action with its fields: build that request from the
    // names chromium parsed, then let chromium load it.
    let action = attr(form_tag, "action").unwrap();
    let submit = |target: &str, check: &str, family: &str| {
        format!(
            "{}{action}?{}={target}&{}={check}&{}={family}",
            agent.base,
            attr(target_input, "name").unwrap(),
            "check",
            attr(selects[0], "name").unwrap()
        )
    };
    let adhoc = submit(&format!("127.0.0.1:{hp}"), "tcp", "ipv4");
    let configured = submit("broken", "tcp", "ipv6");
    let (adhoc_dom, configured_dom) =
        tokio::task::spawn_blocking(move || (dump_dom(&adhoc), dump_dom(&configured)))
            .await
            .unwrap();
    for line in [
        "probe_success 1",
        "probe_ip_protocol 4",
        "dualprobe_check_success{check=\"tcp\",family=\"ipv4\"} 1",
    ] {
        assert!(adhoc_dom.contains(line), "`{line}` not shown:\n{adhoc_dom}");
    }
    assert!(!adhoc_dom.contains("ipv6"), "{adhoc_dom}");
    // A configured target's name runs its own checks (http fails with 500).
    for line in [
        "probe_success 0",
        "probe_ip_protocol 6",
        "probe_http_status_code 500",
    ] {
        assert!(
            configured_dom.contains(line),
            "`{line}` not shown:\n{configured_dom}"
        );
    }
}
