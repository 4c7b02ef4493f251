//! Every procedure the server can route, from the descriptor set it serves reflection
//! with, and the two encodings a Connect client may send: proto3 canonical JSON
//! (transcoded with `prost-reflect`) and binary protobuf (passed through untouched).

use std::{collections::HashMap, sync::Arc};

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

/// How a Connect client encodes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Proto,
}

/// One RPC as Connect sees it.
#[derive(Debug, Clone)]
pub struct Procedure {
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    /// Client or server streaming: Connect's streaming protocol, not its unary one.
    pub streams: bool,
}

#[derive(Debug, Clone)]
pub struct Procedures {
    pool: DescriptorPool,
    by_path: Arc<HashMap<String, Procedure>>,
}

/// Answers are written with every field, defaults included: a reader of the JSON (a
/// shell script, a no-code tool) sees `"passed": false` rather than nothing.
const ANSWER_JSON: SerializeOptions = SerializeOptions::new().skip_default_fields(false);
/// Unknown fields are refused: a misspelt field name is a mistake to report, not to drop.
const REQUEST_JSON: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

impl Procedures {
    /// The procedures of `descriptor_sets` (encoded `FileDescriptorSet`s); the later sets
    /// add the types error details refer to (`google.rpc.BadRequest`).
    pub fn from_descriptor_sets(descriptor_sets: &[&[u8]]) -> Result<Self, String> {
        let mut pool = DescriptorPool::new();
        for set in descriptor_sets {
            pool.decode_file_descriptor_set(*set)
                .map_err(|err| format!("descriptor set: {err}"))?;
        }
        let by_path = pool
            .services()
            .flat_map(|service| {
                service
                    .methods()
                    .map(|method| {
                        (
                            format!("/{}/{}", service.full_name(), method.name()),
                            Procedure {
                                input: method.input(),
                                output: method.output(),
                                streams: method.is_client_streaming()
                                    || method.is_server_streaming(),
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Self {
            pool,
            by_path: Arc::new(by_path),
        })
    }

    /// Every IQS service, with the `google.rpc` error detail types.
    pub fn served() -> Self {
        Self::from_descriptor_sets(&[
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ])
        .expect("the descriptor sets compiled into the binary are valid")
    }

    pub fn get(&self, path: &str) -> Option<&Procedure> {
        self.by_path.get(path)
    }

    /// A message type by its full name (`google.rpc.BadRequest`).
    pub fn message(&self, full_name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(full_name)
    }
}

/// A message as the client sent it, in protobuf binary for the gRPC services.
pub fn to_binary(
    encoding: Encoding,
    message: &MessageDescriptor,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Proto => Ok(body.to_vec()),
        Encoding::Json => {
            // An empty body is the empty message, as with binary protobuf.
            let body = if body.iter().all(u8::is_ascii_whitespace) {
                b"{}".as_slice()
            } else {
                body
            };
            let mut json = serde_json::Deserializer::from_slice(body);
            let decoded =
                DynamicMessage::deserialize_with_options(message.clone(), &mut json, &REQUEST_JSON)
                    .and_then(|decoded| json.end().map(|()| decoded))
                    .map_err(|err| {
                        format!(
                            "the body is not a valid {} in JSON: {err}",
                            message.full_name()
                        )
                    })?;
            Ok(decoded.encode_to_vec())
        }
    }
}

/// A message from the gRPC services, in the client's encoding.
pub fn from_binary(
    encoding: Encoding,
    message: &MessageDescriptor,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Proto => Ok(body.to_vec()),
        Encoding::Json => to_json(message, body).and_then(|value| {
            serde_json::to_vec(&value).map_err(|err| format!("{}: {err}", message.full_name()))
        }),
    }
}

/// A protobuf message as proto3 JSON.
pub fn to_json(message: &MessageDescriptor, body: &[u8]) -> Result<serde_json::Value, String> {
    let decoded = DynamicMessage::decode(message.clone(), body)
        .map_err(|err| format!("{}: {err}", message.full_name()))?;
    decoded
        .serialize_with_options(serde_json::value::Serializer, &ANSWER_JSON)
        .map_err(|err| format!("{}: {err}", message.full_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::analytics::{GetAgentScoreRequest, ScoreSummary};

    fn procedures() -> Procedures {
        Procedures::served()
    }

    #[test]
    fn every_served_rpc_is_a_procedure_and_streams_are_marked() {
        let procedures = procedures();
        let score = procedures
            .get("/iqs.analytics.v1.AnalyticsService/GetAgentScore")
            .expect("GetAgentScore");
        assert!(!score.streams);
        assert_eq!(
            score.output.full_name(),
            "iqs.analytics.v1.ScoreSummary",
            "output type"
        );
        for streaming in [
            "/iqs.analytics.v1.AnalyticsService/ExportEvaluations",
            "/iqs.evaluation.v1.EvaluationService/ImportEvaluations",
        ] {
            assert!(procedures.get(streaming).expect(streaming).streams);
        }
        assert!(
            procedures
                .get("/iqs.analytics.v1.Nope/GetAgentScore")
                .is_none()
        );
        assert!(procedures.message("google.rpc.BadRequest").is_some());
    }

    #[test]
    fn json_requests_become_the_binary_message_and_answers_show_their_defaults() {
        let procedures = procedures();
        let score = procedures
            .get("/iqs.analytics.v1.AnalyticsService/GetAgentScore")
            .unwrap();
        let binary = to_binary(
            Encoding::Json,
            &score.input,
            br#"{"agentId": "jane+qa@acme.com", "kinds": ["EVALUATION_KIND_MANUAL"]}"#,
        )
        .unwrap();
        let request = GetAgentScoreRequest::decode(binary.as_slice()).unwrap();
        assert_eq!(request.agent_id, "jane+qa@acme.com");
        assert_eq!(request.kinds, vec![1]);
        assert_eq!(
            to_binary(Encoding::Json, &score.input, b"").unwrap(),
            Vec::<u8>::new()
        );

        let answer = ScoreSummary {
            evaluation_count: 3,
            ..ScoreSummary::default()
        };
        let json: serde_json::Value = serde_json::from_slice(
            &from_binary(Encoding::Json, &score.output, &answer.encode_to_vec()).unwrap(),
        )
        .unwrap();
        assert_eq!(json["evaluationCount"], "3", "{json}");
        assert_eq!(json["scoredCount"], "0", "defaults are written: {json}");
        assert_eq!(json["passRate"], 0.0, "{json}");
        assert!(
            json.get("iqs").is_none(),
            "an unset optional stays absent: {json}"
        );
    }

    #[test]
    fn a_misspelt_or_malformed_json_field_is_refused_with_its_type_named() {
        let procedures = procedures();
        let score = procedures
            .get("/iqs.analytics.v1.AnalyticsService/GetAgentScore")
            .unwrap();
        let err = to_binary(Encoding::Json, &score.input, br#"{"agentIdd": "a"}"#).unwrap_err();
        assert!(
            err.contains("GetAgentScoreRequest") && err.contains("agentIdd"),
            "{err}"
        );
        let err = to_binary(Encoding::Json, &score.input, br#"{"agentId": 5"#).unwrap_err();
        assert!(err.contains("GetAgentScoreRequest"), "{err}");
    }
}
