//! Every decoder of bytes from outside, behind one entry point: the fuzz targets (`fuzz/`) and
//! the property tests (`tests/decoders.rs`) drive the same code the daemon runs on HTTP bodies,
//! NATS messages and runner answers. A decoder may refuse anything; it must never panic.

use super::envelope::{CommandEnvelope, Encoding, EventEnvelope, Limits};
use super::flow_doc::{FlowDoc, SubscriptionExport};
use super::invocation::{ResultBatchWire, ResultWire};
use crate::domain::Idn;

/// Which decoder to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// An inbound event (HTTP `POST /v1/events`, the events stream).
    Event(Encoding),
    /// A command (HTTP `POST /v1/commands`).
    Command(Encoding),
    /// A runner's answer (a webhook's inline answer, `POST /v1/invocations/{id}/result`).
    Result(Encoding),
    /// A batch of results (the results stream).
    ResultBatch(Encoding),
    /// A flow document or an export of subscriptions, YAML or JSON.
    FlowDocument,
}

impl Decoder {
    pub const ALL: [Decoder; 9] = [
        Decoder::Event(Encoding::Json),
        Decoder::Event(Encoding::MessagePack),
        Decoder::Command(Encoding::Json),
        Decoder::Command(Encoding::MessagePack),
        Decoder::Result(Encoding::Json),
        Decoder::Result(Encoding::MessagePack),
        Decoder::ResultBatch(Encoding::Json),
        Decoder::ResultBatch(Encoding::MessagePack),
        Decoder::FlowDocument,
    ];
}

/// [`decode`] with the decoder of `choices` that a fuzz input's first byte picks; the rest of
/// the input is the bytes. An empty input decodes nothing.
pub fn decode_one_of(choices: &[Decoder], data: &[u8]) {
    if let Some((first, rest)) = data.split_first() {
        let _ = decode(choices[*first as usize % choices.len()], rest);
    }
}

/// Decodes `bytes` as the daemon would and converts the result into domain values; `Ok` when
/// they were accepted, `Err` naming the field otherwise.
pub fn decode(decoder: Decoder, bytes: &[u8]) -> Result<(), String> {
    let limits = Limits::default();
    match decoder {
        Decoder::Event(enc) => enc
            .decode::<EventEnvelope>(bytes)
            .and_then(|e| e.into_domain(limits))
            .map(drop)
            .map_err(|e| e.field),
        Decoder::Command(enc) => enc
            .decode::<CommandEnvelope>(bytes)
            .and_then(|c| c.into_domain(limits))
            .map(drop)
            .map_err(|e| e.field),
        Decoder::Result(enc) => enc
            .decode::<ResultWire>(bytes)
            .and_then(|r| r.into_domain(limits))
            .map(drop)
            .map_err(|e| e.field),
        Decoder::ResultBatch(enc) => {
            let batch = enc.decode::<ResultBatchWire>(bytes).map_err(|e| e.field)?;
            batch.check().map_err(|e| e.field)?;
            for r in batch.results {
                r.into_domain(limits).map_err(|e| e.field)?;
            }
            Ok(())
        }
        Decoder::FlowDocument => {
            let text = std::str::from_utf8(bytes).map_err(|_| "body".to_owned())?;
            let account = Idn::known(crate::domain::DEFAULT_ACCOUNT);
            match FlowDoc::from_yaml(text) {
                Ok(doc) => doc
                    .to_domain(&account, "Agent", "Flow")
                    .map(drop)
                    .map_err(|e| e.field),
                Err(_) => SubscriptionExport::from_yaml(text)
                    .and_then(|x| x.to_flows(&account))
                    .map(drop)
                    .map_err(|e| e.field),
            }
        }
    }
}
