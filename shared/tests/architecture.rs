//! The layers' direction, checked: the domain and its ports import no adapter and no SDK, so
//! every rule in them runs without a network (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

/// What the domain and the ports must not name: the adapters, and the clients they wrap.
const FORBIDDEN: [&str; 6] = ["crate::adapters", "super::adapters", "aws_sdk_", "aws_config", "reqwest", "lambda_http"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` of every line naming something forbidden (comments included: a doc link to
/// an adapter is a dependency too).
fn violations(dirs: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    for dir in dirs {
        rust_files(&src.join(dir), &mut files);
    }
    assert!(files.len() > 5, "found only {files:?}");
    let mut found = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|f| line.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn domain_and_ports_import_no_adapter() {
    let found = violations(&["domain", "ports"]);
    assert!(found.is_empty(), "the domain and its ports must not depend on adapters:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_adapter_import() {
    // The scan itself: the adapters name their SDKs, so scanning them must find something.
    assert!(!violations(&["adapters"]).is_empty());
}
