//! Every file under `config/` parses; every file under `config/invalid/`
//! fails with the errors its `# expect:` lines name (each must appear in the
//! error list, and all of them at once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use outpost::config::Config;

fn toml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn valid_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let files = toml_files(&dir);
    assert!(files.len() >= 2, "expected example and minimal configs");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        match Config::from_toml(&text) {
            Ok(c) => assert!(!c.sites.is_empty(), "{}: no sites", f.display()),
            Err(e) => panic!("{} should be valid:\n{e}", f.display()),
        }
    }
}

#[test]
fn invalid_configs_fail_with_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/invalid");
    let files = toml_files(&dir);
    assert!(files.len() >= 8);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            f.display()
        );
        let errs = match Config::from_toml(&text) {
            Ok(_) => panic!("{} should fail", f.display()),
            Err(e) => e,
        };
        let shown: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        for want in &expects {
            assert!(
                shown.iter().any(|s| s.contains(want)),
                "{}: no error contains {want:?}; got {shown:#?}",
                f.display()
            );
        }
        assert!(shown.len() >= expects.len(), "{}: {shown:?}", f.display());
    }
}

#[test]
fn embedded_default_needs_an_origin() {
    let c = Config::embedded(&Default::default()).expect("embedded default is valid");
    assert!(c.sites.is_empty());
    assert_eq!(c.listen.proxy.to_string(), "127.0.0.1:8080");
    assert_eq!(c.listen.admin.to_string(), "127.0.0.1:9080");
}
