//! The table `dualprobe probe` prints for a person in an ECS Exec session: one row per check
//! and family (result, duration, what it saw or why it failed), then per family the verdict,
//! the IPv6 path and any expectation violated.

use crate::model::outcome::CycleReport;

/// The table for `name`'s reports, one block per family.
pub fn render(name: &str, reports: &[CycleReport]) -> String {
    let mut rows = vec![[
        "FAMILY".to_string(),
        "CHECK".into(),
        "RESULT".into(),
        "DURATION".into(),
        "DETAIL".into(),
    ]];
    for r in reports {
        for o in &r.checks {
            let detail = match &o.result {
                Ok(()) => {
                    let ob = &o.observations;
                    let mut d = Vec::new();
                    if !ob.addresses.is_empty() {
                        d.push(
                            ob.addresses
                                .iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join(" "),
                        );
                    }
                    for (what, value) in &ob.measured {
                        if let Some(describe) = what.describe {
                            d.push(describe(*value));
                        }
                    }
                    for v in &ob.per_target {
                        d.push(match v.family {
                            Some(f) => format!("{}[{f}]={}", v.what.key, v.value),
                            None => format!("{}={}", v.what.key, v.value),
                        });
                    }
                    d.join(", ")
                }
                Err(f) => f.detail.clone(),
            };
            rows.push([
                r.family.to_string(),
                o.check.name().to_string(),
                o.result_label().to_string(),
                format!("{:.1}ms", o.duration.as_secs_f64() * 1000.0),
                detail,
            ]);
        }
        let verdict = match r.expectation_met {
            Some(true) => "expectation met",
            Some(false) => "EXPECTATION NOT MET",
            None => "not judged",
        };
        let mut said = Vec::new();
        if let Some(p) = &r.ipv6_path {
            said.push(format!("via {}: {p}", p.via.as_str()));
        }
        if let Some(v) = &r.expectation_violation {
            said.push(format!("{}: {}", v.reason, v.detail));
        }
        rows.push([
            r.family.to_string(),
            "=".into(),
            verdict.into(),
            String::new(),
            said.join("; "),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{name}\n");
    for r in rows {
        let line = format!(
            "  {:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
