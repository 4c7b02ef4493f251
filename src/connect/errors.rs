//! gRPC statuses as Connect errors: the code's name, its HTTP status, and the status's
//! details (`grpc-status-details-bin`) as Connect `details`, each with its proto3 JSON
//! under `debug` so that a reader without the protobuf types still sees the field
//! violations.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use http::{HeaderMap, StatusCode};
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

use super::procedures::{Procedures, to_json};

/// The Connect name of a code and the HTTP status a unary error answers with.
pub fn connect_code(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("ok", StatusCode::OK),
        Code::Cancelled => ("canceled", client_closed_request()),
        Code::Unknown => ("unknown", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("not_found", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
        Code::PermissionDenied => ("permission_denied", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("failed_precondition", StatusCode::BAD_REQUEST),
        Code::Aborted => ("aborted", StatusCode::CONFLICT),
        Code::OutOfRange => ("out_of_range", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("unimplemented", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("data_loss", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
    }
}

fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).expect("499 is a valid status code")
}

/// The Connect error object of `status`.
pub fn error_json(status: &Status, procedures: &Procedures) -> Value {
    let (code, _) = connect_code(status.code());
    let mut error = Map::new();
    error.insert("code".into(), code.into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    let details = details_json(status.details(), procedures);
    if !details.is_empty() {
        error.insert("details".into(), details.into());
    }
    Value::Object(error)
}

fn details_json(encoded_status: &[u8], procedures: &Procedures) -> Vec<Value> {
    if encoded_status.is_empty() {
        return Vec::new();
    }
    let Ok(rich) = tonic_types::pb::Status::decode(encoded_status) else {
        return Vec::new();
    };
    rich.details
        .iter()
        .map(|any| {
            let type_name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
            let mut detail = json!({
                "type": type_name,
                "value": STANDARD_NO_PAD.encode(&any.value),
            });
            if let Some(debug) = procedures
                .message(type_name)
                .and_then(|message| to_json(&message, &any.value).ok())
            {
                detail["debug"] = debug;
            }
            detail
        })
        .collect()
}

/// Metadata (headers or trailers) a Connect client may see: gRPC's own and the
/// hop-by-hop ones stay behind.
pub fn is_application_metadata(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    !(name.starts_with("grpc-")
        || name == "content-type"
        || name == "content-length"
        || name == "te"
        || name == "trailer"
        || name == "transfer-encoding")
}

/// The body of a Connect stream's last message: the error, when the call failed, and
/// the trailers.
pub fn end_of_stream_json(
    status: Option<&Status>,
    trailers: Option<&HeaderMap>,
    procedures: &Procedures,
) -> Vec<u8> {
    let mut end = Map::new();
    if let Some(status) = status.filter(|status| status.code() != Code::Ok) {
        end.insert("error".into(), error_json(status, procedures));
    }
    let mut metadata = Map::new();
    for (name, value) in trailers
        .into_iter()
        .flatten()
        .filter(|(name, _)| is_application_metadata(name))
    {
        let Ok(value) = value.to_str() else { continue };
        metadata
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("metadata values are arrays")
            .push(value.into());
    }
    if !metadata.is_empty() {
        end.insert("metadata".into(), Value::Object(metadata));
    }
    serde_json::to_vec(&Value::Object(end)).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn every_code_has_the_connect_name_and_http_status_of_the_specification() {
        let expected = [
            (Code::Cancelled, "canceled", 499),
            (Code::Unknown, "unknown", 500),
            (Code::InvalidArgument, "invalid_argument", 400),
            (Code::DeadlineExceeded, "deadline_exceeded", 504),
            (Code::NotFound, "not_found", 404),
            (Code::AlreadyExists, "already_exists", 409),
            (Code::PermissionDenied, "permission_denied", 403),
            (Code::ResourceExhausted, "resource_exhausted", 429),
            (Code::FailedPrecondition, "failed_precondition", 400),
            (Code::Aborted, "aborted", 409),
            (Code::OutOfRange, "out_of_range", 400),
            (Code::Unimplemented, "unimplemented", 501),
            (Code::Internal, "internal", 500),
            (Code::Unavailable, "unavailable", 503),
            (Code::DataLoss, "data_loss", 500),
            (Code::Unauthenticated, "unauthenticated", 401),
        ];
        for (code, name, http) in expected {
            let (got_name, got_http) = connect_code(code);
            assert_eq!((got_name, got_http.as_u16()), (name, http), "{code:?}");
        }
    }

    #[test]
    fn a_bad_request_becomes_a_detail_with_its_violations_readable_as_json() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("ratings[0].value", "must be 1..5");
        details.add_bad_request_violation("agent_id", "is required");
        let status = Status::with_error_details(Code::InvalidArgument, "2 fields", details);
        let error = error_json(&status, &Procedures::served());
        assert_eq!(error["code"], "invalid_argument");
        assert_eq!(error["message"], "2 fields");
        let detail = &error["details"][0];
        assert_eq!(detail["type"], "google.rpc.BadRequest");
        let raw = STANDARD_NO_PAD
            .decode(detail["value"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            tonic_types::pb::BadRequest::decode(raw.as_slice())
                .unwrap()
                .field_violations
                .len(),
            2
        );
        let violations = detail["debug"]["fieldViolations"].as_array().unwrap();
        assert_eq!(violations[0]["field"], "ratings[0].value", "{detail}");
        assert_eq!(violations[1]["description"], "is required", "{detail}");
    }

    #[test]
    fn the_end_of_a_stream_carries_the_error_and_the_trailers_but_not_grpc_ones() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        trailers.insert("x-rows", "12".parse().unwrap());
        let procedures = Procedures::served();
        let status = Status::not_found("no such rubric");
        let end: Value = serde_json::from_slice(&end_of_stream_json(
            Some(&status),
            Some(&trailers),
            &procedures,
        ))
        .unwrap();
        assert_eq!(end["error"]["code"], "not_found");
        assert_eq!(end["metadata"], json!({"x-rows": ["12"]}));
        let ok: Value =
            serde_json::from_slice(&end_of_stream_json(None, None, &procedures)).unwrap();
        assert_eq!(ok, json!({}));
    }
}
