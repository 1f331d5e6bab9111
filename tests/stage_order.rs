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

/// The top-level module a file of `src/` belongs to; `None` for the crate root and the
/// binaries (`main.rs`, `bin/`: crates of their own, whose `crate::` is theirs; they reach the
/// library by `switchboard::`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main" && name != "bin").then(|| name.to_owned())
}

/// Each `crate::<module>` the file names, with its line: in `use` trees (a group wrapped over
/// lines too), in paths of code and types, and in the tokens of macro calls (which syn leaves
/// unparsed). Parsed with syn, so comments and strings are not code.
fn named_modules(text: &str) -> Vec<(usize, String)> {
    use syn::visit::Visit;

    #[derive(Default)]
    struct Names(Vec<(usize, String)>);

    impl Names {
        fn tree(&mut self, tree: &syn::UseTree, under_crate: bool) {
            match tree {
                syn::UseTree::Path(p) if !under_crate => self.tree(&p.tree, p.ident == "crate"),
                syn::UseTree::Path(p) => self.named(&p.ident),
                syn::UseTree::Name(n) if under_crate => self.named(&n.ident),
                syn::UseTree::Rename(r) if under_crate => self.named(&r.ident),
                syn::UseTree::Group(g) => {
                    for t in &g.items {
                        self.tree(t, under_crate);
                    }
                }
                _ => {}
            }
        }

        fn named(&mut self, ident: &proc_macro2::Ident) {
            self.0.push((ident.span().start().line, ident.to_string()));
        }

        /// `crate :: name` in a macro's tokens.
        fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
            let flat: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
            for (i, t) in flat.iter().enumerate() {
                match t {
                    proc_macro2::TokenTree::Group(g) => self.tokens(g.stream()),
                    proc_macro2::TokenTree::Ident(id) if id == "crate" => {
                        let colons = flat.get(i + 1..i + 3).is_some_and(|p| {
                            p.iter().all(|c| matches!(c, proc_macro2::TokenTree::Punct(p) if p.as_char() == ':'))
                        });
                        if let (true, Some(proc_macro2::TokenTree::Ident(name))) =
                            (colons, flat.get(i + 3))
                        {
                            self.named(name);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    impl<'a> Visit<'a> for Names {
        fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
            self.tree(&u.tree, false);
        }

        fn visit_path(&mut self, p: &'a syn::Path) {
            let mut segments = p.segments.iter();
            if let (Some(first), Some(second)) = (segments.next(), segments.next()) {
                if first.ident == "crate" {
                    self.named(&second.ident);
                }
            }
            syn::visit::visit_path(self, p);
        }

        fn visit_macro(&mut self, m: &'a syn::Macro) {
            self.tokens(m.tokens.clone());
            syn::visit::visit_macro(self, m);
        }
    }

    let file = syn::parse_file(text).expect("a source file parses");
    let mut names = Names::default();
    names.visit_file(&file);
    names.0.sort();
    names.0.dedup();
    names.0
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
        for (line, named) in named_modules(&text) {
            match rank.get(named.as_str()) {
                Some(&r) if r <= own => {}
                Some(_) => found.push(format!(
                    "{}:{line}: `{module}` imports `crate::{named}`, a stage after it",
                    file.display(),
                )),
                None => found.push(format!(
                    "{}:{line}: `{module}` names `crate::{named}`, which the stage order does \
                     not list (import the module, not a re-export of the crate root)",
                    file.display(),
                )),
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

/// `src/lib.rs` states the same order as ARCHITECTURE.md (its `text` block, line for line).
#[test]
fn the_crate_root_states_the_same_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let stated = doc
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("src/lib.rs's doc has a ```text block with the order");
    assert_eq!(
        declared_order(&format!("## Stage order\n```{stated}```")),
        declared_order(&architecture)
    );
}

#[test]
fn a_backward_import_is_caught_with_its_file_and_line() {
    let dir = std::env::temp_dir().join(format!("stage-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("routing")).unwrap();
    std::fs::write(
        dir.join("routing/dispatch.rs"),
        "//! crate::commands in a comment is fine\nuse crate::domain::Event;\nuse crate::{ingress, commands::refusal};\nuse crate::{\n    domain::Idn,\n    natives::Timer,\n};\nfn f() { let _ = \"crate::natives in a string\"; tracing::debug!(\"{}\", crate::commands::X); }\n",
    )
    .unwrap();
    std::fs::write(dir.join("domain.rs"), "use crate::routing::Dispatcher;\n").unwrap();
    // A binary of `bin/` is a crate of its own: its `crate::` names its modules, not stages.
    std::fs::create_dir_all(dir.join("bin/tool")).unwrap();
    std::fs::write(dir.join("bin/tool/poller.rs"), "use crate::wire::X;\n").unwrap();
    let order: Vec<String> = ["domain", "ingress", "routing", "commands"]
        .map(String::from)
        .to_vec();
    let found = violations(&dir, &order);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found[0].ends_with("domain.rs:1: `domain` imports `crate::routing`, a stage after it"));
    assert!(found[1]
        .ends_with("routing/dispatch.rs:3: `routing` imports `crate::commands`, a stage after it"));
    // A group rustfmt wraps over lines, and a path inside a macro call.
    assert!(found[2].ends_with(
        "routing/dispatch.rs:6: `routing` names `crate::natives`, which the stage order does not list (import the module, not a re-export of the crate root)"
    ));
    assert!(found[3]
        .ends_with("routing/dispatch.rs:8: `routing` imports `crate::commands`, a stage after it"));
}

/// The natives each file outside `src/natives/` names (`natives::<idn>`), with their lines:
/// a text scan of code lines (comments skipped), since a registration line is code.
fn natives_named(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("natives::") {
            rest = &rest[at + "natives::".len()..];
            let idn: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // The seam (`component`, `section`) is no native.
            if !idn.is_empty() && idn != "component" && idn != "section" {
                found.push((n + 1, idn));
            }
        }
    }
    found
}

/// A native lives in its folder: outside `src/natives/`, only the registration list in
/// `src/boot.rs` names one (one `natives::<idn>::component(...)` line each, with its config
/// section), and boot's read of the sandbox's `demo_runner` (the daemon's demo runner); the
/// config names none (it reads the sections the list declares).
#[test]
fn natives_are_named_only_by_the_registration_list() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut registered = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel.starts_with("natives") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, idn) in natives_named(&text) {
            let code = text.lines().nth(line - 1).unwrap();
            if rel == Path::new("boot.rs") && code.contains(&format!("natives::{idn}::component("))
            {
                registered += 1;
                continue;
            }
            if rel == Path::new("boot.rs") && code.contains("natives::sandbox::demo_runner(") {
                continue;
            }
            found.push(format!(
                "{}:{line}: names the native `{idn}`",
                rel.display()
            ));
        }
    }
    assert!(
        registered >= 4,
        "the registration list names system, sandbox, http and program_timer"
    );
    assert!(
        found.is_empty(),
        "natives named outside their folders:\n{}",
        found.join("\n")
    );
    // The scan sees a native named outside the list.
    let named = natives_named("use crate::natives::program_timer::book::Book; // natives::x");
    assert_eq!(named, [(1, "program_timer".to_owned())]);
}

/// The methods of `impl Engine` in `text` that only forward to the same method of its
/// ingress (`self.ingress.submit(..)`, awaited or not).
fn pass_throughs(text: &str) -> Vec<String> {
    let file = syn::parse_file(text).unwrap();
    let mut found = Vec::new();
    for item in &file.items {
        let syn::Item::Impl(imp) = item else { continue };
        let syn::Type::Path(ty) = &*imp.self_ty else {
            continue;
        };
        if imp.trait_.is_some() || !ty.path.is_ident("Engine") {
            continue;
        }
        for item in &imp.items {
            let syn::ImplItem::Fn(f) = item else { continue };
            let [syn::Stmt::Expr(expr, None)] = f.block.stmts.as_slice() else {
                continue;
            };
            let expr = match expr {
                syn::Expr::Await(a) => &*a.base,
                e => e,
            };
            let syn::Expr::MethodCall(call) = expr else {
                continue;
            };
            let syn::Expr::Field(field) = &*call.receiver else {
                continue;
            };
            let on_ingress = matches!(&field.member, syn::Member::Named(m) if m == "ingress");
            if on_ingress && call.method == f.sig.ident {
                found.push(f.sig.ident.to_string());
            }
        }
    }
    found
}

/// Pass-through layers are gone where they only forwarded: the engine does not re-expose its
/// ingress's data plane (callers use `Engine::ingress`).
#[test]
fn the_engine_does_not_forward_its_ingress_s_methods() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine.rs");
    let found = pass_throughs(&std::fs::read_to_string(engine).unwrap());
    assert!(found.is_empty(), "Engine only forwards: {found:?}");
    // The check sees one.
    let forwarding = "impl Engine { pub async fn submit_batch(&self, e: Vec<E>) -> R { self.ingress.submit_batch(e).await } }";
    assert_eq!(pass_throughs(forwarding), ["submit_batch"]);
}
