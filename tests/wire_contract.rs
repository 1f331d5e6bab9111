//! The wire contract in README.md is true: every example message there decodes into the
//! daemon's own types, and its MessagePack form is exactly what the daemon produces for the
//! same message (rmp-serde, named fields).

use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard::wire::envelope::{CommandEnvelope, EventEnvelope};
use switchboard::wire::invocation::{InvocationBatchWire, ResultBatchWire};

const README: &str = include_str!("../README.md");

/// The code block that follows `<!-- wire:NAME -->`.
fn block(name: &str) -> String {
    let marker = format!("<!-- wire:{name} -->");
    let at = README
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let rest = &README[at + marker.len()..];
    let start = rest.find("```").unwrap();
    let body = &rest[start + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).unwrap()
}

fn check<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(name: &str) {
    let json: T = serde_json::from_str(&block(&format!("{name}:json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let packed = rmp_serde::to_vec_named(&json).unwrap();
    if std::env::var("WIRE_PRINT").is_ok() {
        // Regenerates the README examples: `WIRE_PRINT=1 cargo test --test wire_contract -- --nocapture`.
        println!("{name}:\n{}", hex::encode(&packed));
        return;
    }
    let documented = hex_bytes(&block(&format!("{name}:msgpack")));
    assert_eq!(
        hex::encode(&documented),
        hex::encode(&packed),
        "{name}: the MessagePack example is not what the daemon writes"
    );
    let back: T = rmp_serde::from_slice(&documented).unwrap();
    assert_eq!(back, json, "{name}");
}

#[test]
fn every_example_in_the_readme_is_what_the_daemon_reads_and_writes() {
    check::<EventEnvelope>("event");
    check::<EventEnvelope>("result_event");
    check::<CommandEnvelope>("command");
    check::<InvocationBatchWire>("invocation_batch");
    check::<ResultBatchWire>("result_batch");
}
