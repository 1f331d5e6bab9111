//! Event and command envelopes, JSON and MessagePack (the first byte picks which).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::wire::untrusted::{decode_one_of, Decoder};
use switchboard::wire::Encoding;

fuzz_target!(|data: &[u8]| {
    decode_one_of(
        &[
            Decoder::Event(Encoding::Json),
            Decoder::Event(Encoding::MessagePack),
            Decoder::Command(Encoding::Json),
            Decoder::Command(Encoding::MessagePack),
        ],
        data,
    );
});
