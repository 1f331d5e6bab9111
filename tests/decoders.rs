//! Property tests over every decoder of untrusted bytes (`wire::untrusted`), the same entry
//! point the cargo-fuzz targets in `fuzz/` drive: on stable, every CI run fuzzes something.
//! Any input is refused or accepted, never a panic; a valid envelope survives both encodings;
//! a flow document nested past the bound is refused.

use proptest::prelude::*;
use switchboard::wire::untrusted::{decode, Decoder};
use switchboard::wire::Encoding;

fn idn() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,20}"
}

prop_compose! {
    fn event()(integration in idn(), connector in idn(), event in idn(),
               who in "[ -~]{1,40}", args in prop::collection::vec(("[a-zA-Z][a-zA-Z0-9_]{0,10}", "[ -~]{0,60}"), 0..5))
               -> serde_json::Value {
        serde_json::json!({
            "v": 1, "integration_idn": integration, "connector_idn": connector, "event_idn": event,
            "actor": {"external_id": who},
            "arguments": args.into_iter().map(|(n, v)| serde_json::json!({"name": n, "value": v})).collect::<Vec<_>>(),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_refused_or_accepted_never_a_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        for d in Decoder::ALL {
            let _ = decode(d, &data);
        }
    }

    #[test]
    fn a_valid_event_decodes_in_both_encodings_and_a_mutation_never_panics(
        e in event(), at in any::<prop::sample::Index>(), byte in any::<u8>()
    ) {
        let json = serde_json::to_vec(&e).unwrap();
        prop_assert_eq!(decode(Decoder::Event(Encoding::Json), &json), Ok(()));
        let wire: switchboard::wire::EventEnvelope = serde_json::from_value(e).unwrap();
        let packed = Encoding::MessagePack.encode(&wire);
        prop_assert_eq!(decode(Decoder::Event(Encoding::MessagePack), &packed), Ok(()));
        for mut bytes in [json, packed] {
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = decode(Decoder::Event(Encoding::Json), &bytes);
            let _ = decode(Decoder::Event(Encoding::MessagePack), &bytes);
        }
    }

    #[test]
    fn flow_documents_of_any_shape_never_panic(
        depth in 0usize..200, open in prop::sample::select(vec!["[", "{\"a\": ", "- "]),
        tail in "[ -~\n]{0,200}"
    ) {
        let doc = format!("events: {}{}", open.repeat(depth), tail);
        let r = decode(Decoder::FlowDocument, doc.as_bytes());
        if depth > 40 {
            prop_assert_eq!(r, Err("document".to_owned()));
        }
    }
}
