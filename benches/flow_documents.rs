//! # Flow documents: the depth and size bounds of a parse
//!
//! **Measures** the CPU time `wire::flow_bounds::check` (the saphyr-parser event pass that bounds
//! depth and alias expansion) takes on 256 KiB documents of many shapes: the audit's bypass
//! (`agent_idn: [a', [[[…`, 26 s of CPU before), bracket and brace chains, dash and indentation
//! towers, an alias bomb, long scalars, and the shapes that cost the parser most (flow lists of
//! implicit mappings). Best of 5, per document.
//!
//! **Baseline**, same run: `serde_yaml_ng::from_str::<Value>` of the same document (what parsing
//! costs anyway), for documents the check lets through.
//!
//! **Target**: every 256 KiB document refused or passed by the check in well under 100 ms.
//!
//! Without `--bench` (as under `cargo test --benches`) the documents are 16 KiB, once.

use std::time::{Duration, Instant};

use switchboard::wire::flow_bounds;

/// Repeats `unit` after `head` up to `k` bytes.
fn pad(head: &str, unit: &str, k: usize) -> String {
    let mut s = head.to_owned();
    while s.len() + unit.len() <= k {
        s.push_str(unit);
    }
    s
}

fn shapes(k: usize) -> Vec<(&'static str, String)> {
    let mut bomb = String::from("a: &a [");
    while bomb.len() < k / 2 {
        bomb.push_str("x,");
    }
    bomb.push_str("x]\nb: [");
    while bomb.len() < k - 10 {
        bomb.push_str("*a,");
    }
    bomb.push_str("*a]\n");
    let tower = |unit: fn(usize) -> String| {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < k.saturating_sub(1000) {
            s.push_str(&unit(i));
            i += 1;
        }
        s
    };
    vec![
        (
            "quote then [ (the audit's)",
            format!("agent_idn: [a', {}", "[".repeat(k - 20)),
        ),
        ("[ chain", "[".repeat(k)),
        ("{ chain", "{".repeat(k)),
        ("{a: chain", "{a: ".repeat(k / 4)),
        ("- - - chain", format!("{}x\n", "- ".repeat(k / 2 - 2))),
        (
            "indentation tower",
            tower(|i| format!("{}k:\n", " ".repeat(i))),
        ),
        ("alias bomb", bomb),
        (
            "long plain scalar",
            format!("a: {}", "x ".repeat(k / 2 - 10)),
        ),
        (
            "flow documents' shape",
            pad(
                "runner: {kind: demo}\nevents:\n",
                "  - {idn: user_message, skill_idn: Echo, integration_idn: sandbox}\n",
                k,
            ),
        ),
        ("block mapping", pad("", "a: b\n", k)),
        ("flow list of items", pad("[", "a, ", k)),
        ("flow list of implicit mappings", pad("[", "a: b, ", k)),
        (
            "nested implicit mappings",
            pad("[", "[a: [b: [c: d]]], ", k),
        ),
    ]
}

fn best_of(n: usize, f: impl Fn()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (k, rounds) = if full {
        (256 * 1024, 5)
    } else {
        (16 * 1024, 1)
    };
    println!(
        "flow_documents: {} KiB documents, best of {rounds}",
        k / 1024
    );
    println!(
        "{:34} {:>10} {:>9} {:>16}",
        "shape", "check", "verdict", "serde_yaml_ng"
    );
    let mut worst = Duration::ZERO;
    for (name, text) in shapes(k) {
        let verdict = flow_bounds::check(&text);
        let took = best_of(rounds, || {
            let _ = std::hint::black_box(flow_bounds::check(std::hint::black_box(&text)));
        });
        worst = worst.max(took);
        let baseline = if verdict.is_ok() {
            let b = best_of(rounds.min(3), || {
                let _ =
                    std::hint::black_box(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text));
            });
            format!("{b:.1?}")
        } else {
            "-".to_owned()
        };
        println!(
            "{name:34} {took:>10.1?} {:>9} {baseline:>16}",
            if verdict.is_ok() { "passed" } else { "refused" }
        );
    }
    println!("flow_documents: worst check {worst:.1?} (target: well under 100 ms at 256 KiB)");
}
