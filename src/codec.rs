//! The gRPC codec of every IQS service: prost, with two differences.
//!
//! - A request that is not valid protobuf is the caller's error (`INVALID_ARGUMENT`), not
//!   the server's (tonic answers `INTERNAL`).
//! - A request is bounded by its schema before it is decoded: no repeated field may hold
//!   more than `MAX_REPEATED` entries (`MAX_MESSAGES` for a transcript). A message of a
//!   few megabytes can otherwise hold a million empty entries, which decode into a
//!   hundred times their size in memory and would each earn a violation.
//!
//! Responses are not bounded: the server builds them itself.

use std::{collections::HashMap, marker::PhantomData, sync::LazyLock};

use prost::{Message, Name};
use prost_types::{DescriptorProto, FileDescriptorSet, field_descriptor_proto::Type};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::domain::{interaction::MAX_MESSAGES, validation::Violations};
use crate::error::Error;

/// Entries of any repeated field of a request, but for the exceptions below.
pub const MAX_REPEATED: usize = 1_000;

/// Repeated fields allowed more entries than `MAX_REPEATED`, by message and field name.
const LARGER_LIMITS: &[(&str, &str, usize)] =
    &[("iqs.evaluation.v1.Interaction", "messages", MAX_MESSAGES)];

/// Violations listed for one request; the walk stops looking once it has them.
const MAX_VIOLATIONS: usize = 100;

/// Messages nested deeper than this are not walked (prost refuses them anyway).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder {
            prost: self.prost.decoder(),
            _message: PhantomData,
        }
    }
}

#[derive(Debug)]
pub struct BoundedDecoder<U> {
    prost: ProstDecoder<U>,
    _message: PhantomData<U>,
}

impl<U> Decoder for BoundedDecoder<U>
where
    U: Message + Name + Default + Send + 'static,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        let name = U::full_name();
        if is_request(&name) && buf.chunk().len() == buf.remaining() {
            let violations = bound(&name, buf.chunk());
            if !violations.is_empty() {
                return Err(Error::from(violations.into_vec()).into());
            }
        }
        U::decode(buf).map(Some).map_err(|err| {
            Status::invalid_argument(format!("the request is not a valid {name} message: {err}"))
        })
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.prost.buffer_settings()
    }
}

/// The messages a client sends (their names end in `Request`, as the API's lint rules
/// demand), as opposed to the answers this process decodes as a client itself.
fn is_request(name: &str) -> bool {
    name.ends_with("Request")
}

/// The repeated fields of `message`'s encoding `bytes` that hold too many entries.
/// Malformed bytes are left for the decoder to refuse.
pub fn bound(message: &str, bytes: &[u8]) -> Violations {
    let mut violations = Violations::new();
    walk(&SCHEMA, message, bytes, "", 0, &mut violations);
    violations
}

#[derive(Debug, Clone)]
struct FieldShape {
    name: String,
    repeated: bool,
    wire: Wire,
    /// The message type of a message field (map entries included).
    message: Option<String>,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Varint,
    Fixed32,
    Fixed64,
    Length,
}

type Schema = HashMap<String, HashMap<u32, FieldShape>>;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let set = FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set built with this binary decodes");
    let mut schema = Schema::new();
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            add_message(&mut schema, package, message);
        }
    }
    schema
});

fn add_message(schema: &mut Schema, scope: &str, message: &DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        add_message(schema, &name, nested);
    }
    let fields = message
        .field
        .iter()
        .map(|field| {
            let limit = LARGER_LIMITS
                .iter()
                .find(|(owner, field_name, _)| *owner == name && *field_name == field.name())
                .map_or(MAX_REPEATED, |(_, _, limit)| *limit);
            let wire = match field.r#type() {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => Wire::Fixed64,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => Wire::Fixed32,
                Type::String | Type::Bytes | Type::Message | Type::Group => Wire::Length,
                _ => Wire::Varint,
            };
            let shape = FieldShape {
                name: field.name().to_owned(),
                repeated: field.label() == prost_types::field_descriptor_proto::Label::Repeated,
                wire,
                message: (field.r#type() == Type::Message)
                    .then(|| field.type_name().trim_start_matches('.').to_owned()),
                limit,
            };
            (field.number() as u32, shape)
        })
        .collect();
    schema.insert(name, fields);
}

/// Reads a varint, advancing `at`; `None` at malformed or truncated input.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn walk(
    schema: &Schema,
    message: &str,
    bytes: &[u8],
    path: &str,
    depth: usize,
    violations: &mut Violations,
) {
    let Some(fields) = schema.get(message) else {
        return;
    };
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(key) = varint(bytes, &mut at) else {
            return;
        };
        let number = (key >> 3) as u32;
        let payload = match key & 7 {
            0 => {
                if varint(bytes, &mut at).is_none() {
                    return;
                }
                None
            }
            1 => {
                at += 8;
                None
            }
            5 => {
                at += 4;
                None
            }
            2 => {
                let Some(length) = varint(bytes, &mut at) else {
                    return;
                };
                let Some(end) = usize::try_from(length)
                    .ok()
                    .and_then(|length| at.checked_add(length))
                    .filter(|end| *end <= bytes.len())
                else {
                    return;
                };
                let payload = &bytes[at..end];
                at = end;
                Some(payload)
            }
            _ => return,
        };
        let Some(field) = fields.get(&number) else {
            continue;
        };
        let count = counts.entry(number).or_default();
        let entries = match (payload, field.repeated, field.wire) {
            // A packed run of scalars: one length-delimited payload, many entries.
            (Some(packed), true, Wire::Varint) => packed.iter().filter(|b| *b & 0x80 == 0).count(),
            (Some(packed), true, Wire::Fixed32) => packed.len() / 4,
            (Some(packed), true, Wire::Fixed64) => packed.len() / 8,
            _ => 1,
        };
        *count += entries;
        if let (Some(nested), Some(type_name)) = (payload, field.message.as_deref())
            && depth < MAX_DEPTH
            && *count <= field.limit
            && violations.as_slice().len() < MAX_VIOLATIONS
        {
            let nested_path = if field.repeated {
                format!("{path}{}[{}].", field.name, *count - 1)
            } else {
                format!("{path}{}.", field.name)
            };
            walk(
                schema,
                type_name,
                nested,
                &nested_path,
                depth + 1,
                violations,
            );
        }
    }
    for (number, count) in counts {
        let field = &fields[&number];
        if field.repeated && count > field.limit && violations.as_slice().len() < MAX_VIOLATIONS {
            violations.add(
                format!("{path}{}", field.name),
                format!("at most {} entries, got {count}", field.limit),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{analytics as an, evaluation as ev};

    fn fields(violations: &Violations) -> Vec<&str> {
        violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect()
    }

    #[test]
    fn a_request_within_its_limits_passes() {
        let request = ev::SubmitEvaluationRequest {
            ratings: vec![ev::Rating::default(); MAX_REPEATED],
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        assert!(bound(&ev::SubmitEvaluationRequest::full_name(), &bytes).is_empty());
    }

    #[test]
    fn too_many_entries_of_a_repeated_field_are_refused_before_decoding() {
        let request = ev::SubmitEvaluationRequest {
            ratings: vec![ev::Rating::default(); MAX_REPEATED + 1],
            ..Default::default()
        };
        let violations = bound(
            &ev::SubmitEvaluationRequest::full_name(),
            &request.encode_to_vec(),
        );
        assert_eq!(fields(&violations), ["ratings"]);
        assert_eq!(
            violations.as_slice()[0].description,
            format!("at most {MAX_REPEATED} entries, got {}", MAX_REPEATED + 1)
        );
    }

    #[test]
    fn nested_repeated_fields_are_named_with_their_path() {
        let interaction = ev::Interaction {
            messages: vec![ev::Message::default(); MAX_MESSAGES + 1],
            ..Default::default()
        };
        let request = ev::SubmitEvaluationRequest {
            interaction_ref: Some(ev::submit_evaluation_request::InteractionRef::Interaction(
                interaction,
            )),
            ratings: vec![
                ev::Rating::default(),
                ev::Rating {
                    root_causes: vec![String::new(); MAX_REPEATED + 5],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let violations = bound(
            &ev::SubmitEvaluationRequest::full_name(),
            &request.encode_to_vec(),
        );
        let mut named = fields(&violations);
        named.sort();
        assert_eq!(named, ["interaction.messages", "ratings[1].root_causes"]);
    }

    #[test]
    fn packed_repeated_scalars_are_counted_entry_by_entry() {
        let request = an::QueryScoresRequest {
            group_by: vec![1; MAX_REPEATED + 1],
            ..Default::default()
        };
        let violations = bound(
            &an::QueryScoresRequest::full_name(),
            &request.encode_to_vec(),
        );
        assert_eq!(fields(&violations), ["group_by"]);
    }

    #[test]
    fn malformed_bytes_are_left_to_the_decoder() {
        for bytes in [&[0xff_u8][..], &[0x3a, 0x05, 0x01], &[0x0f]] {
            assert!(bound(&ev::SubmitEvaluationRequest::full_name(), bytes).is_empty());
        }
    }

    #[test]
    fn every_request_of_the_api_is_in_the_schema() {
        for name in [
            ev::SubmitEvaluationRequest::full_name(),
            ev::UpsertInteractionRequest::full_name(),
            an::QueryScoresRequest::full_name(),
            crate::proto::rubric::CreateRubricRequest::full_name(),
        ] {
            assert!(SCHEMA.contains_key(&name), "{name}");
        }
    }
}
