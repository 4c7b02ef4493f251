//! The Connect protocol on the gRPC port: a helpdesk app, a shell script with `curl` or
//! a browser calls `POST /<package>.<Service>/<Method>` with a JSON (or binary protobuf)
//! body over HTTP/1.1 or HTTP/2.
//!
//! A Connect call is translated at the edge into the gRPC call it stands for and passed
//! to the same stack (telemetry, admission, deadlines, keys, rate limits, audit, the
//! handlers), whose answer is translated back. Nothing behind this layer knows which
//! protocol the client spoke, so every rule holds for both. Bodies are rewritten as
//! they stream: an export in Connect streaming is never buffered.
//!
//! - Unary: `Content-Type: application/json` or `application/proto`; an error is a JSON
//!   object `{code, message, details}` with the HTTP status of its code.
//! - Streams (ImportEvaluations, ExportEvaluations): `application/connect+json` or
//!   `application/connect+proto`, enveloped messages and a final end-of-stream message.
//! - `Connect-Timeout-Ms` becomes `grpc-timeout`; compressed bodies are refused.

pub mod envelope;
pub mod errors;
pub mod procedures;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use http_body_util::BodyExt;
use tonic::Status;
use tower::Service;

use crate::layers::{AroundCall, BoxFuture, HttpRequest, HttpResponse};
use envelope::{COMPRESSED, END_OF_STREAM, Reframe, Reframed, Whole, enveloped, take_message};
use errors::{connect_code, end_of_stream_json, error_json, is_application_metadata};
use procedures::{Encoding, Procedure, Procedures, from_binary, to_binary};

const PROTOCOL_VERSION: &str = "connect-protocol-version";
const TIMEOUT: &str = "connect-timeout-ms";
const STREAM_ENCODING: &str = "connect-content-encoding";
/// The longest `grpc-timeout` value in milliseconds (8 digits).
const MAX_GRPC_TIMEOUT_MS: u64 = 99_999_999;

#[derive(Clone)]
pub struct ConnectLayer {
    procedures: Procedures,
    max_message_bytes: usize,
}

impl ConnectLayer {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            procedures: Procedures::served(),
            max_message_bytes,
        }
    }
}

/// Which Connect protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unary(Encoding),
    Stream(Encoding),
}

impl Protocol {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media_type = content_type.split(';').next()?.trim();
        Some(match media_type.to_ascii_lowercase().as_str() {
            "application/json" => Self::Unary(Encoding::Json),
            "application/proto" => Self::Unary(Encoding::Proto),
            "application/connect+json" => Self::Stream(Encoding::Json),
            "application/connect+proto" => Self::Stream(Encoding::Proto),
            _ => return None,
        })
    }

    fn encoding(self) -> Encoding {
        match self {
            Self::Unary(encoding) | Self::Stream(encoding) => encoding,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Unary(Encoding::Json) => "application/json",
            Self::Unary(Encoding::Proto) => "application/proto",
            Self::Stream(Encoding::Json) => "application/connect+json",
            Self::Stream(Encoding::Proto) => "application/connect+proto",
        }
    }
}

impl AroundCall for ConnectLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let Some(protocol) = Protocol::of(request.headers()) else {
            return Box::pin(inner.call(request));
        };
        let refused = |status: StatusCode, message: String| -> BoxFuture<HttpResponse, S::Error> {
            let response = unary_error(status, &Status::unknown(message), None, &self.procedures);
            Box::pin(async move { Ok(response) })
        };
        if request.method() != Method::POST {
            return refused(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Connect calls are POST requests, not {}", request.method()),
            );
        }
        let Some(procedure) = self.procedures.get(request.uri().path()).cloned() else {
            return refused(
                StatusCode::NOT_FOUND,
                format!("no procedure {}", request.uri().path()),
            );
        };
        if procedure.streams != matches!(protocol, Protocol::Stream(_)) {
            let wanted = if procedure.streams {
                "application/connect+json (or +proto), Connect streaming"
            } else {
                "application/json or application/proto"
            };
            return refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{} takes Content-Type {wanted}", request.uri().path()),
            );
        }
        let grpc_request = match self.to_grpc(protocol, &procedure, request) {
            Ok(grpc_request) => grpc_request,
            Err(status) => {
                let (_, http_status) = connect_code(status.code());
                let response = unary_error(http_status, &status, None, &self.procedures);
                return Box::pin(async move { Ok(response) });
            }
        };
        let procedures = self.procedures.clone();
        let answer = inner.call(grpc_request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(match protocol {
                Protocol::Unary(encoding) => {
                    unary_answer(encoding, &procedure, response, &procedures).await
                }
                Protocol::Stream(encoding) => {
                    stream_answer(encoding, procedure, response, procedures)
                }
            })
        })
    }
}

impl ConnectLayer {
    /// The gRPC request a Connect request stands for.
    fn to_grpc(
        &self,
        protocol: Protocol,
        procedure: &Procedure,
        request: HttpRequest,
    ) -> Result<HttpRequest, Status> {
        let (mut parts, body) = request.into_parts();
        if let Some(version) = parts.headers.get(PROTOCOL_VERSION)
            && version != "1"
        {
            return Err(Status::invalid_argument(format!(
                "Connect-Protocol-Version {version:?} is not supported; this server speaks 1"
            )));
        }
        let encoding_header = match protocol {
            Protocol::Unary(_) => header::CONTENT_ENCODING.as_str(),
            Protocol::Stream(_) => STREAM_ENCODING,
        };
        if let Some(compression) = parts.headers.get(encoding_header)
            && compression != "identity"
        {
            return Err(Status::unimplemented(format!(
                "{encoding_header} {compression:?} is not supported: send the body uncompressed"
            )));
        }
        let timeout = match parts.headers.get(TIMEOUT) {
            Some(value) => Some(grpc_timeout(value)?),
            None => None,
        };
        let headers = &mut parts.headers;
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ACCEPT_ENCODING,
            HeaderName::from_static(PROTOCOL_VERSION),
            HeaderName::from_static(TIMEOUT),
            HeaderName::from_static(STREAM_ENCODING),
            HeaderName::from_static("connect-accept-encoding"),
        ] {
            headers.remove(name);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        if let Some(timeout) = timeout {
            headers.insert("grpc-timeout", timeout);
        }
        // The gRPC services behind accept HTTP/2 requests only; the client's HTTP
        // version ends here.
        parts.version = Version::HTTP_2;
        let encoding = protocol.encoding();
        let input = procedure.input.clone();
        let body = match protocol {
            Protocol::Unary(_) => tonic::body::Body::new(Whole::new(
                body,
                self.max_message_bytes,
                move |message: &[u8]| {
                    to_binary(encoding, &input, message)
                        .map(|binary| enveloped(0, &binary))
                        .map_err(Status::invalid_argument)
                },
            )),
            Protocol::Stream(_) => tonic::body::Body::new(Reframed::new(
                body,
                RequestMessages {
                    encoding,
                    input,
                    count: 0,
                },
                self.max_message_bytes,
            )),
        };
        Ok(http::Request::from_parts(parts, body))
    }
}

/// `Connect-Timeout-Ms` as a `grpc-timeout` value.
fn grpc_timeout(value: &HeaderValue) -> Result<HeaderValue, Status> {
    let millis: u64 = value
        .to_str()
        .ok()
        .filter(|digits| (1..=10).contains(&digits.len()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "Connect-Timeout-Ms {value:?} is not a number of milliseconds (1 to 10 digits)"
            ))
        })?;
    let grpc = if millis <= MAX_GRPC_TIMEOUT_MS {
        format!("{millis}m")
    } else {
        format!("{}S", (millis / 1000).min(MAX_GRPC_TIMEOUT_MS))
    };
    Ok(HeaderValue::from_str(&grpc).expect("digits and a unit are a valid header"))
}

/// A streamed request's messages, each rewritten to binary protobuf.
struct RequestMessages {
    encoding: Encoding,
    input: prost_reflect::MessageDescriptor,
    count: usize,
}

impl Reframe for RequestMessages {
    fn message(&mut self, flags: u8, message: Bytes) -> Result<Option<Bytes>, Status> {
        self.count += 1;
        if flags & END_OF_STREAM != 0 {
            return Ok(None);
        }
        if flags & COMPRESSED != 0 {
            return Err(Status::unimplemented(
                "compressed messages are not supported: send them uncompressed",
            ));
        }
        if self.encoding == Encoding::Proto {
            return Ok(Some(enveloped(0, &message)));
        }
        let binary = to_binary(self.encoding, &self.input, &message).map_err(|err| {
            Status::invalid_argument(format!("message {} of the request: {err}", self.count))
        })?;
        Ok(Some(enveloped(0, &binary)))
    }

    fn finish(&mut self, _: Option<&HeaderMap>) -> Option<Bytes> {
        None
    }

    fn fail(&mut self, status: Status) -> Result<Bytes, Status> {
        Err(status)
    }
}

/// A streamed answer's messages in the client's encoding, then the end of the stream.
struct AnswerMessages {
    encoding: Encoding,
    output: prost_reflect::MessageDescriptor,
    procedures: Procedures,
}

impl Reframe for AnswerMessages {
    fn message(&mut self, flags: u8, message: Bytes) -> Result<Option<Bytes>, Status> {
        if flags & COMPRESSED != 0 {
            return Err(Status::internal("the service compressed an answer"));
        }
        let converted =
            from_binary(self.encoding, &self.output, &message).map_err(Status::internal)?;
        Ok(Some(enveloped(0, &converted)))
    }

    fn finish(&mut self, trailers: Option<&HeaderMap>) -> Option<Bytes> {
        let status = trailers
            .and_then(Status::from_header_map)
            .unwrap_or_else(|| Status::unknown("the stream ended without a status"));
        Some(enveloped(
            END_OF_STREAM,
            &end_of_stream_json(Some(&status), trailers, &self.procedures),
        ))
    }

    fn fail(&mut self, status: Status) -> Result<Bytes, Status> {
        Ok(enveloped(
            END_OF_STREAM,
            &end_of_stream_json(Some(&status), None, &self.procedures),
        ))
    }
}

/// The headers a Connect client sees: the application's, without gRPC's own.
fn connect_headers(grpc: &HeaderMap, content_type: &'static str) -> HeaderMap {
    let mut headers: HeaderMap = grpc
        .iter()
        .filter(|(name, _)| is_application_metadata(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers
}

/// Trailers of a unary answer, as Connect sends them: headers prefixed `trailer-`.
fn add_trailers(headers: &mut HeaderMap, trailers: Option<&HeaderMap>) {
    for (name, value) in trailers
        .into_iter()
        .flatten()
        .filter(|(name, _)| is_application_metadata(name))
    {
        if let Ok(name) = HeaderName::from_bytes(format!("trailer-{name}").as_bytes()) {
            headers.append(name, value.clone());
        }
    }
}

fn unary_error(
    http_status: StatusCode,
    status: &Status,
    metadata: Option<HeaderMap>,
    procedures: &Procedures,
) -> HttpResponse {
    let body = serde_json::to_vec(&error_json(status, procedures)).expect("JSON serializes");
    let mut response = http::Response::new(tonic::body::Body::new(http_body_util::Full::new(
        Bytes::from(body),
    )));
    *response.status_mut() = http_status;
    let headers = response.headers_mut();
    if let Some(metadata) = metadata {
        headers.extend(metadata);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn status_error(status: &Status, metadata: HeaderMap, procedures: &Procedures) -> HttpResponse {
    let (_, http_status) = connect_code(status.code());
    unary_error(http_status, status, Some(metadata), procedures)
}

/// A unary gRPC answer as the Connect answer: the message, or the error.
async fn unary_answer(
    encoding: Encoding,
    procedure: &Procedure,
    response: HttpResponse,
    procedures: &Procedures,
) -> HttpResponse {
    let content_type = Protocol::Unary(encoding).content_type();
    let (parts, body) = response.into_parts();
    let mut headers = connect_headers(&parts.headers, content_type);
    // A status among the headers is a trailers-only answer: an error without a body.
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return status_error(&status, headers, procedures);
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return status_error(&status, headers, procedures),
    };
    let trailers = collected.trailers().cloned();
    let status = trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .unwrap_or_else(|| Status::unknown("the call ended without a status"));
    add_trailers(&mut headers, trailers.as_ref());
    if status.code() != tonic::Code::Ok {
        return status_error(&status, headers, procedures);
    }
    let mut frames = bytes::BytesMut::from(collected.to_bytes().as_ref());
    let message = match take_message(&mut frames, usize::MAX) {
        Ok(Some((_, message))) if frames.is_empty() => message,
        _ => {
            let status = Status::internal("the service answered a unary call without one message");
            return status_error(&status, headers, procedures);
        }
    };
    match from_binary(encoding, &procedure.output, &message) {
        Ok(body) => {
            let mut response = http::Response::new(tonic::body::Body::new(
                http_body_util::Full::new(Bytes::from(body)),
            ));
            *response.headers_mut() = headers;
            response
        }
        Err(err) => status_error(&Status::internal(err), headers, procedures),
    }
}

/// A streamed gRPC answer as a Connect stream: always HTTP 200, the outcome in the last
/// message.
fn stream_answer(
    encoding: Encoding,
    procedure: Procedure,
    response: HttpResponse,
    procedures: Procedures,
) -> HttpResponse {
    let content_type = Protocol::Stream(encoding).content_type();
    let (parts, body) = response.into_parts();
    let headers = connect_headers(&parts.headers, content_type);
    let body = match Status::from_header_map(&parts.headers) {
        Some(status) => tonic::body::Body::new(http_body_util::Full::new(enveloped(
            END_OF_STREAM,
            &end_of_stream_json(Some(&status), None, &procedures),
        ))),
        None => tonic::body::Body::new(Reframed::new(
            body,
            AnswerMessages {
                encoding,
                output: procedure.output,
                procedures,
            },
            usize::MAX,
        )),
    };
    let mut response = http::Response::new(body);
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_content_types_choose_the_protocol_and_others_pass_through() {
        let of = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            Protocol::of(&headers)
        };
        assert_eq!(
            of("application/json; charset=utf-8"),
            Some(Protocol::Unary(Encoding::Json))
        );
        assert_eq!(
            of("application/proto"),
            Some(Protocol::Unary(Encoding::Proto))
        );
        assert_eq!(
            of("application/connect+json"),
            Some(Protocol::Stream(Encoding::Json))
        );
        assert_eq!(of("application/grpc"), None);
        assert_eq!(of("application/grpc-web+proto"), None);
    }

    #[test]
    fn a_connect_timeout_becomes_a_grpc_timeout_and_a_bad_one_is_refused() {
        let timeout = |value: &str| grpc_timeout(&HeaderValue::from_str(value).unwrap());
        assert_eq!(timeout("250").unwrap(), "250m");
        assert_eq!(timeout("9999999999").unwrap(), "9999999S");
        for bad in ["", "-1", "1.5", "12345678901", "soon"] {
            let err = timeout(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }
}
