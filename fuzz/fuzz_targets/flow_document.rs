//! Flow documents and subscription exports, YAML or JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::wire::untrusted::{decode, Decoder};

fuzz_target!(|data: &[u8]| {
    let _ = decode(Decoder::FlowDocument, data);
});
