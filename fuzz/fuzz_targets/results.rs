//! Runner answers: one result (a webhook's answer, `POST /v1/invocations/{id}/result`) or a
//! batch (the results stream), JSON and MessagePack (the first byte picks which).
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
        Decoder::Result(enc)
    } else {
        Decoder::ResultBatch(enc)
    };
    let _ = decode(decoder, rest);
});
