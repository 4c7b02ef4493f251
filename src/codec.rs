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
        if is_request(U::NAME) && buf.chunk().len() == buf.remaining() {
            let violations = bound(U::PACKAGE, U::NAME, buf.chunk());
            if !violations.is_empty() {
                return Err(Error::from(violations).into());
            }
        }
        U::decode(buf).map(Some).map_err(|err| {
            Status::invalid_argument(format!(
                "the request is not a valid {} message: {err}",
                U::full_name()
            ))
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

/// The repeated fields of the encoding `bytes` of the message `package.name` that hold
/// too many entries. Malformed bytes are left for the decoder to refuse.
pub fn bound(package: &str, name: &str, bytes: &[u8]) -> Violations {
    let mut violations = Violations::new();
    if let Some(message) = SCHEMA.message(package, name) {
        walk(&SCHEMA, message, bytes, &mut Vec::new(), &mut violations);
    }
    violations
}

#[derive(Debug, Clone)]
struct FieldShape {
    name: String,
    repeated: bool,
    wire: Wire,
    /// The message type of a message field (map entries included), as its index.
    message: Option<usize>,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Varint,
    Fixed32,
    Fixed64,
    Length,
}

/// The fields of a message by number (most numbers are small: a vector, not a map).
type MessageShape = Vec<Option<FieldShape>>;

#[derive(Debug, Default)]
struct Schema {
    messages: Vec<MessageShape>,
    /// Message indexes by package, then by name within it (nested: `Outer.Inner`).
    index: HashMap<String, HashMap<String, usize>>,
}

impl Schema {
    fn message(&self, package: &str, name: &str) -> Option<usize> {
        self.index.get(package)?.get(name).copied()
    }
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let set = FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set built with this binary decodes");
    // Every message gets its index first, so fields can name types declared later.
    let mut schema = Schema::default();
    let mut declared = Vec::new();
    for file in &set.file {
        for message in &file.message_type {
            declare(&mut schema, &mut declared, file.package(), "", message);
        }
    }
    let by_full_name: HashMap<String, usize> = declared
        .iter()
        .map(|(full_name, index, _)| (full_name.clone(), *index))
        .collect();
    schema.messages = declared
        .iter()
        .map(|(full_name, _, message)| shape(full_name, message, &by_full_name))
        .collect();
    schema
});

fn declare<'a>(
    schema: &mut Schema,
    declared: &mut Vec<(String, usize, &'a DescriptorProto)>,
    package: &str,
    outer: &str,
    message: &'a DescriptorProto,
) {
    let name = if outer.is_empty() {
        message.name().to_owned()
    } else {
        format!("{outer}.{}", message.name())
    };
    let index = declared.len();
    declared.push((format!("{package}.{name}"), index, message));
    schema
        .index
        .entry(package.to_owned())
        .or_default()
        .insert(name.clone(), index);
    for nested in &message.nested_type {
        declare(schema, declared, package, &name, nested);
    }
}

fn shape(
    full_name: &str,
    message: &DescriptorProto,
    by_full_name: &HashMap<String, usize>,
) -> MessageShape {
    let mut fields: MessageShape = Vec::new();
    for field in &message.field {
        let Ok(number) = usize::try_from(field.number()) else {
            continue;
        };
        let limit = LARGER_LIMITS
            .iter()
            .find(|(owner, field_name, _)| *owner == full_name && *field_name == field.name())
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
                .then(|| {
                    by_full_name
                        .get(field.type_name().trim_start_matches('.'))
                        .copied()
                })
                .flatten(),
            limit,
        };
        if fields.len() <= number {
            fields.resize(number + 1, None);
        }
        fields[number] = Some(shape);
    }
    fields
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

/// The path of a field: each step a field name and, for a repeated one, the index.
type Path<'s> = Vec<(&'s str, Option<usize>)>;

fn render(path: &Path<'_>, field: &str) -> String {
    let mut rendered = String::new();
    for (name, index) in path {
        rendered.push_str(name);
        if let Some(index) = index {
            rendered.push_str(&format!("[{index}]"));
        }
        rendered.push('.');
    }
    rendered.push_str(field);
    rendered
}

fn walk<'s>(
    schema: &'s Schema,
    message: usize,
    bytes: &[u8],
    path: &mut Path<'s>,
    violations: &mut Violations,
) {
    let fields = &schema.messages[message];
    // Entries of the repeated fields met so far, by field number.
    let mut counts: Vec<(u32, usize)> = Vec::new();
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
        let Some(field) = fields.get(number as usize).and_then(Option::as_ref) else {
            continue;
        };
        let index = if field.repeated {
            let entries = match (payload, field.wire) {
                // A packed run of scalars: one length-delimited payload, many entries.
                (Some(packed), Wire::Varint) => packed.iter().filter(|b| *b & 0x80 == 0).count(),
                (Some(packed), Wire::Fixed32) => packed.len() / 4,
                (Some(packed), Wire::Fixed64) => packed.len() / 8,
                _ => 1,
            };
            let count = match counts.iter_mut().find(|(seen, _)| *seen == number) {
                Some((_, count)) => count,
                None => {
                    counts.push((number, 0));
                    &mut counts.last_mut().expect("just pushed").1
                }
            };
            *count += entries;
            if *count > field.limit {
                continue;
            }
            Some(*count - 1)
        } else {
            None
        };
        if let (Some(nested), Some(type_index)) = (payload, field.message)
            && path.len() < MAX_DEPTH
            && violations.as_slice().len() < MAX_VIOLATIONS
        {
            path.push((field.name.as_str(), index));
            walk(schema, type_index, nested, path, violations);
            path.pop();
        }
    }
    for (number, count) in counts {
        let Some(field) = fields.get(number as usize).and_then(Option::as_ref) else {
            continue;
        };
        if count > field.limit && violations.as_slice().len() < MAX_VIOLATIONS {
            violations.add(
                render(path, &field.name),
                format!("at most {} entries, got {count}", field.limit),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{analytics as an, evaluation as ev};

    fn bound_of<M: Name>(message: &M) -> Violations {
        bound(M::PACKAGE, M::NAME, &message.encode_to_vec())
    }

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
        assert!(bound_of(&request).is_empty());
    }

    #[test]
    fn too_many_entries_of_a_repeated_field_are_refused_before_decoding() {
        let request = ev::SubmitEvaluationRequest {
            ratings: vec![ev::Rating::default(); MAX_REPEATED + 1],
            ..Default::default()
        };
        let violations = bound_of(&request);
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
        let violations = bound_of(&request);
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
        let violations = bound_of(&request);
        assert_eq!(fields(&violations), ["group_by"]);
    }

    #[test]
    fn malformed_bytes_are_left_to_the_decoder() {
        for bytes in [&[0xff_u8][..], &[0x3a, 0x05, 0x01], &[0x0f]] {
            assert!(bound("iqs.evaluation.v1", "SubmitEvaluationRequest", bytes).is_empty());
        }
    }

    #[test]
    fn every_request_of_the_api_is_in_the_schema() {
        for (package, name) in [
            (
                ev::SubmitEvaluationRequest::PACKAGE,
                ev::SubmitEvaluationRequest::NAME,
            ),
            (
                ev::UpsertInteractionRequest::PACKAGE,
                ev::UpsertInteractionRequest::NAME,
            ),
            (
                an::QueryScoresRequest::PACKAGE,
                an::QueryScoresRequest::NAME,
            ),
            (
                crate::proto::rubric::CreateRubricRequest::PACKAGE,
                crate::proto::rubric::CreateRubricRequest::NAME,
            ),
        ] {
            assert!(SCHEMA.message(package, name).is_some(), "{package}.{name}");
        }
    }
}
