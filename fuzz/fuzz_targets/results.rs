//! Runner answers: one result (a webhook's answer, `POST /v1/invocations/{id}/result`) or a
//! batch (the results stream), JSON and MessagePack (the first byte picks which).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::wire::untrusted::{decode_one_of, Decoder};
use switchboard::wire::Encoding;

fuzz_target!(|data: &[u8]| {
    decode_one_of(
        &[
            Decoder::Result(Encoding::Json),
            Decoder::Result(Encoding::MessagePack),
            Decoder::ResultBatch(Encoding::Json),
            Decoder::ResultBatch(Encoding::MessagePack),
        ],
        data,
    );
});
