//! Event and command envelopes, JSON and MessagePack (the first byte picks which).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::wire::untrusted::{decode, Decoder};
use switchboard::wire::Encoding;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let enc = if pick & 1 == 0 {
        Encoding::Json
    } else {
        Encoding::MessagePack
    };
    let decoder = if pick & 2 == 0 {
        Decoder::Event(enc)
    } else {
        Decoder::Command(enc)
    };
    let _ = decode(decoder, rest);
});
