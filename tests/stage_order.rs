//! The module tree follows the event's path, and so do the imports: a module of `src/` names
//! (with `crate::`) only modules declared before it in the stage order of ARCHITECTURE.md, so
//! a stage never imports from a stage after it. Fails naming the file, the line and the import.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The order, read from the fenced block after the `## Stage order` heading of ARCHITECTURE.md:
/// module names separated by `→`, in as many lines as it takes.
fn declared_order(architecture: &str) -> Vec<String> {
    let section = architecture
        .split("## Stage order")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Stage order` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the stage order is a fenced block");
    block
        .lines()
        .map(|l| l.split_once(':').map_or(l, |(_, rest)| rest))
        .flat_map(|l| l.split('→'))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to; `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// Each `crate::<module>` a line of code names (comments left out), including the modules of a
/// grouped `use crate::{a::x, b}`.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// Every import against `order`, as `file:line: <module> imports crate::<later>`.
fn violations(src: &Path, order: &[String]) -> Vec<String> {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        let Some(&own) = rank.get(module.as_str()) else {
            found.push(format!(
                "{}: module `{module}` is missing from the stage order",
                file.display()
            ));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            for named in named_modules(line) {
                match rank.get(named.as_str()) {
                    Some(&r) if r <= own => {}
                    Some(_) => found.push(format!(
                        "{}:{}: `{module}` imports `crate::{named}`, a stage after it",
                        file.display(),
                        n + 1
                    )),
                    None => found.push(format!(
                        "{}:{}: `{module}` names `crate::{named}`, which the stage order does \
                         not list (import the module, not a re-export of the crate root)",
                        file.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_stage_after_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let order = declared_order(&architecture);
    assert!(
        order.len() > 10,
        "the stage order lists the modules: {order:?}"
    );
    let found = violations(&root.join("src"), &order);
    assert!(
        found.is_empty(),
        "imports against the stage order:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_backward_import_is_caught_with_its_file_and_line() {
    let dir = std::env::temp_dir().join(format!("stage-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("routing")).unwrap();
    std::fs::write(
        dir.join("routing/dispatch.rs"),
        "//! crate::commands in a comment is fine\nuse crate::domain::Event;\nuse crate::{ingress, commands::refusal};\n",
    )
    .unwrap();
    std::fs::write(dir.join("domain.rs"), "use crate::routing::Dispatcher;\n").unwrap();
    let order: Vec<String> = ["domain", "ingress", "routing", "commands"]
        .map(String::from)
        .to_vec();
    let found = violations(&dir, &order);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("domain.rs:1: `domain` imports `crate::routing`, a stage after it"));
    assert!(found[1]
        .ends_with("routing/dispatch.rs:3: `routing` imports `crate::commands`, a stage after it"));
}
