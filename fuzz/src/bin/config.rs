//! The config document: YAML (saphyr: anchors and aliases, deep nesting, tags) into the serde
//! shape, then every validation. Any input must end in a config or an error naming a field, never
//! a panic or a hang (an alias bomb must hit saphyr's budget, not memory).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        // A relative file name resolves against a directory that does not exist: nothing the
        // fuzzer writes into a config opens a file of the repository.
        let base = std::path::Path::new("/nonexistent/dualprobe-fuzz");
        if let Ok(config) = dualprobe::config::Config::from_yaml(text, "fuzz.yaml", Some(base)) {
            for t in &config.targets {
                assert!(!t.families.is_empty(), "target {} has no family", t.name);
                assert!(!t.checks.is_empty(), "target {} has no check", t.name);
                assert!(
                    t.timeout < t.interval,
                    "target {}: timeout not below interval",
                    t.name
                );
            }
        }
    });
}
