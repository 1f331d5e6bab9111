//! The bounds a flow document must keep before serde deserializes it: a size, a nesting depth
//! and a number of nodes, aliases expanded. libyaml (under `serde_yaml_ng`) spends quadratic
//! time on deep flow nesting (64k levels took 6.8 s, 120k 26 s) and `serde_yaml_ng` expands
//! every alias, so the depth and the expansion are measured first in one pass over the events of
//! a real YAML 1.2 parse (`saphyr-parser`: linear in the document, its scanner stops at 255
//! flow levels), which stops at the first event past a bound. Measuring the events of a parse,
//! not the text, leaves nothing to hide brackets in (a quote in a plain scalar, a comment).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScanError};

use super::flow_doc::FlowDocError;

/// Largest flow document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Deepest nesting of a flow document (a real one nests 4 or 5 levels), aliases expanded.
pub const MAX_DEPTH: usize = 32;
/// Most nodes (scalars, sequences, mappings) of a flow document, aliases expanded: one per byte
/// of the largest document (a real one holds a few thousand).
pub const MAX_NODES: u64 = MAX_DOCUMENT_BYTES as u64;

fn refuse(reason: String) -> FlowDocError {
    FlowDocError {
        field: "document".into(),
        reason,
    }
}

fn too_deep() -> FlowDocError {
    refuse(format!(
        "nested more than {MAX_DEPTH} levels deep (aliases expanded); at most {MAX_DEPTH}"
    ))
}

/// Refuses a document larger than [`MAX_DOCUMENT_BYTES`], nested deeper than [`MAX_DEPTH`],
/// with more than [`MAX_NODES`] nodes, or that is not YAML.
pub fn check(text: &str) -> Result<(), FlowDocError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(refuse(format!(
            "{} bytes, more than the {MAX_DOCUMENT_BYTES} a flow document may have",
            text.len()
        )));
    }
    let mut bounds = Bounds::default();
    for event in Parser::new_from_str(text) {
        let (event, _) = event.map_err(not_yaml)?;
        bounds.see(&event)?;
    }
    Ok(())
}

fn not_yaml(e: ScanError) -> FlowDocError {
    // The scanner's own bound of flow nesting (255 levels), reached before the first event of
    // a flow collection it must read whole (one that could be a mapping's key).
    if e.info() == "recursion limit exceeded" {
        return too_deep();
    }
    refuse(format!("not YAML: {e}"))
}

/// An open sequence or mapping: its anchor, and the nodes and height of what it holds so far.
struct Open {
    anchor: usize,
    nodes: u64,
    height: usize,
}

/// The running measure of a document's events.
#[derive(Default)]
struct Bounds {
    open: Vec<Open>,
    /// Nodes and height of each anchored node once complete, by the parser's anchor id.
    anchors: HashMap<usize, (u64, usize)>,
    nodes: u64,
}

impl Bounds {
    /// Counts one node of `nodes` nodes (aliases expanded) and `height` levels below it.
    fn node(&mut self, nodes: u64, height: usize) -> Result<(), FlowDocError> {
        if self.open.len() + height > MAX_DEPTH {
            return Err(too_deep());
        }
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(refuse(format!(
                "more than {MAX_NODES} nodes (aliases expanded); at most {MAX_NODES}"
            )));
        }
        if let Some(parent) = self.open.last_mut() {
            parent.nodes += nodes;
            parent.height = parent.height.max(height + 1);
        }
        Ok(())
    }

    fn see(&mut self, event: &Event<'_>) -> Result<(), FlowDocError> {
        match *event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.node(1, 1)?;
                self.open.push(Open {
                    anchor,
                    nodes: 1,
                    height: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(done) = self.open.pop() {
                    if done.anchor > 0 {
                        self.anchors.insert(done.anchor, (done.nodes, done.height));
                    }
                    // Its nodes were counted in the document as they came; carry them up.
                    if let Some(parent) = self.open.last_mut() {
                        parent.nodes += done.nodes - 1;
                        parent.height = parent.height.max(done.height + 1);
                    }
                }
            }
            Event::Scalar(_, _, anchor, _) => {
                self.node(1, 0)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, (1, 0));
                }
            }
            Event::Alias(anchor) => {
                // An alias of a collection still open (`&a [*a]`) would expand forever.
                let (nodes, height) = *self.anchors.get(&anchor).ok_or_else(|| {
                    refuse("an alias inside the node its anchor names".to_owned())
                })?;
                self.node(nodes, height)?;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason `text` is refused for, or `None` when it passes.
    fn refusal(text: &str) -> Option<String> {
        check(text).err().map(|e| {
            assert_eq!(e.field, "document", "{}", e.reason);
            e.reason
        })
    }

    /// Whether `text` is refused for its depth.
    fn too_deep(text: &str) -> bool {
        refusal(text).is_some_and(|r| r.starts_with("nested more than"))
    }

    /// `unit` repeated to fill a document of at most [`MAX_DOCUMENT_BYTES`] after `head`.
    fn fill(head: &str, unit: &str, tail: &str) -> String {
        let n = (MAX_DOCUMENT_BYTES - head.len() - tail.len()) / unit.len();
        format!("{head}{}{tail}", unit.repeat(n))
    }

    #[test]
    fn real_documents_pass_and_deep_ones_are_refused_whatever_their_style() {
        let flow = "runner: {kind: demo}\nevents:\n  - {idn: user_message, skill_idn: Echo, integration_idn: sandbox}\n  - idn: x\n    skill_idn: Y\n";
        assert_eq!(refusal(flow), None);
        let deep = |n: usize| format!("{{\"pad\": {}{}}}", "[".repeat(n), "]".repeat(n));
        assert_eq!(refusal(&deep(MAX_DEPTH - 1)), None);
        assert!(too_deep(&deep(MAX_DEPTH)));
        assert!(too_deep(&deep(65_536)));
        let blocks: String = (0..40)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(too_deep(&blocks), "indentation nests too");
        let dashes = format!("{}x\n", "- ".repeat(40));
        assert!(too_deep(&dashes), "dashes on one line nest too");
        // Brackets inside quotes or comments are text.
        let quoted = format!("text: \"{}\" # {}\n", "[".repeat(100), "{".repeat(100));
        assert_eq!(refusal(&quoted), None);
        assert!(refusal(&"a".repeat(MAX_DOCUMENT_BYTES + 1))
            .is_some_and(|r| r.contains("bytes, more than")));
        assert!(refusal("a: [b").is_some_and(|r| r.starts_with("not YAML")));
    }

    /// The shapes that hid their depth from a scan of the text, or that cost a parser more than
    /// linear time, each the size of the largest document.
    #[test]
    fn deep_documents_of_every_shape_are_refused_for_their_depth() {
        let half = MAX_DOCUMENT_BYTES / 2 - 16;
        let cases = [
            // A quote in a plain scalar hid the brackets after it from the text scan.
            fill("agent_idn: [a', ", "[", ""),
            fill("agent_idn: [a\", ", "[", ""),
            fill("# [\nx: ", "[", ""),
            fill("", "[", ""),
            fill("", "{", ""),
            fill("", "{a: ", ""),
            fill("", "[a, ", ""),
            fill("", "[a: ", ""),
            format!("x: {}{}", "[".repeat(half), "]".repeat(half)),
            fill("", "- ", "x\n"),
            fill("x: ", "{k: [", ""),
            (0..MAX_DEPTH + 1)
                .map(|i| format!("{}- \n", " ".repeat(i)))
                .collect(),
            (0..700).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
            // Each alias nests its anchor's levels where it stands.
            format!(
                "a: &a {}x{}\nb: {}*a{}\n",
                "[".repeat(20),
                "]".repeat(20),
                "[".repeat(20),
                "]".repeat(20)
            ),
        ];
        for (i, text) in cases.iter().enumerate() {
            assert!(text.len() <= MAX_DOCUMENT_BYTES, "case {i}");
            assert!(too_deep(text), "case {i}: {:?}", refusal(text));
        }
    }

    #[test]
    fn aliases_count_as_what_they_expand_to() {
        // A sequence of 16k nodes named 16k times: 2^28 nodes once expanded.
        let mut bomb = fill("a: &a [", "x,", "x]\n");
        bomb.truncate(MAX_DOCUMENT_BYTES / 2);
        bomb.push_str("x]\n");
        let bomb = fill(&format!("{bomb}b: ["), "*a,", "*a]\n");
        assert!(refusal(&bomb).is_some_and(|r| r.starts_with("more than")));
        // Nested: 10 levels of 10 aliases each.
        let mut nested = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for l in 1..10 {
            let p = l - 1;
            nested.push_str(&format!(
                "l{l}: &l{l} [{}*l{p}]\n",
                format!("*l{p}, ").repeat(9)
            ));
        }
        assert!(refusal(&nested).is_some_and(|r| r.starts_with("more than")));
        // A few aliases of small nodes pass; one inside its own anchor does not.
        assert_eq!(refusal("a: &a {k: v}\nb: [*a, *a]\nc: *a\n"), None);
        assert!(refusal("a: &a [x, *a]\n").is_some());
    }

    #[test]
    fn large_documents_of_many_shapes_keep_their_bounds() {
        let shapes = [
            fill("a: ", "x", ""),
            fill("a: ", "x ", ""),
            fill("a: \"", "\\n", "\""),
            fill("", "# [[[{{{ '\"\n", ""),
            fill("b: [", "&a x, ", "x]"),
            fill("[", "a, ", "a]"),
            fill("", "a: b\n", ""),
            fill("", "- a\n", ""),
            fill(
                "runner: {kind: demo}\nevents:\n",
                "  - {idn: user_message, skill_idn: Echo, integration_idn: sandbox}\n",
                "",
            ),
        ];
        for (i, text) in shapes.iter().enumerate() {
            assert!(text.len() <= MAX_DOCUMENT_BYTES, "shape {i}");
            assert_eq!(refusal(text), None, "shape {i}");
        }
    }
}
