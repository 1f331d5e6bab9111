//! The bounds a flow document must keep before its YAML (or JSON) is parsed: a size and a
//! nesting depth. A YAML parser spends quadratic time on deep nesting (64k levels took 6.8 s), so
//! depth is measured by one linear scan first: bracket depth of flow collections (outside quoted
//! strings and comments), plus block depth from indentation and `- ` entries that open on the
//! same line. The scan over-counts rather than under-counts, so a document it passes parses in
//! time linear in its size.

use super::flow_doc::FlowDocError;

/// Largest flow document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Deepest nesting of a flow document (a real one nests 4 or 5 levels).
pub const MAX_DEPTH: usize = 32;

fn refuse(reason: String) -> FlowDocError {
    FlowDocError {
        field: "document".into(),
        reason,
    }
}

/// Refuses a document larger than [`MAX_DOCUMENT_BYTES`] or nested deeper than [`MAX_DEPTH`].
pub fn check(text: &str) -> Result<(), FlowDocError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(refuse(format!(
            "{} bytes, more than the {MAX_DOCUMENT_BYTES} a flow document may have",
            text.len()
        )));
    }
    let depth = depth(text);
    if depth > MAX_DEPTH {
        return Err(refuse(format!(
            "nested {depth} levels deep or more; at most {MAX_DEPTH}"
        )));
    }
    Ok(())
}

/// An upper bound of the document's nesting depth; stops counting past [`MAX_DEPTH`].
fn depth(text: &str) -> usize {
    let mut deepest = 0;
    // Indentations of the open block levels, and the bracket depth carried across lines.
    let mut blocks: Vec<usize> = Vec::new();
    let mut brackets = 0usize;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let rest = &line[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if brackets == 0 {
            while blocks.last().is_some_and(|&top| top >= indent) {
                blocks.pop();
            }
            blocks.push(indent);
        }
        // `- - - x` opens one sequence per dash on this line.
        let mut dashes = 0;
        let mut r = rest;
        while let Some(after) = r.strip_prefix("- ").or_else(|| r.strip_prefix("-\t")) {
            dashes += 1;
            r = after.trim_start();
        }
        let mut line_deepest = brackets;
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in r.chars() {
            match quote {
                Some(q) if c == q && !(q == '"' && prev == '\\') => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' => quote = Some(c),
                    '#' if prev == ' ' || prev == '\t' => break,
                    '[' | '{' => {
                        brackets += 1;
                        line_deepest = line_deepest.max(brackets);
                    }
                    ']' | '}' => brackets = brackets.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        deepest = deepest.max(blocks.len() + dashes + line_deepest);
        if deepest > MAX_DEPTH {
            break;
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_documents_pass_and_deep_ones_are_refused_whatever_their_style() {
        let flow = "runner: {kind: demo}\nevents:\n  - {idn: user_message, skill_idn: Echo, integration_idn: sandbox}\n  - idn: x\n    skill_idn: Y\n";
        assert!(check(flow).is_ok());
        assert!(depth(flow) <= 4, "{}", depth(flow));
        let deep = |n: usize| format!("{{\"pad\": {}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(check(&deep(MAX_DEPTH - 2)).is_ok());
        let e = check(&deep(65_536)).unwrap_err();
        assert_eq!(e.field, "document");
        let blocks: String = (0..40)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(check(&blocks).is_err(), "indentation nests too");
        let dashes = format!("{}x\n", "- ".repeat(40));
        assert!(check(&dashes).is_err(), "dashes on one line nest too");
        // Brackets inside quotes or comments are text.
        let quoted = format!("text: \"{}\" # {}\n", "[".repeat(100), "{".repeat(100));
        assert!(check(&quoted).is_ok());
        assert!(check(&"a".repeat(MAX_DOCUMENT_BYTES + 1)).is_err());
    }
}
