//! The Connect protocol and gRPC-Web on the gRPC port, called over real HTTP/1.1 and
//! h2c connections as a helpdesk app, a script or a browser would, with the answers
//! compared to the same calls over gRPC.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use iqs::proto::analytics as an;
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, TestApp, published_rubric, spawn_app, spawn_app_with, submission,
    wait_for_projection,
};

#[derive(Clone, Copy, Debug)]
enum Http {
    One,
    TwoPriorKnowledge,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

async fn call(
    app: &TestApp,
    http: Http,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut builder = Client::builder(TokioExecutor::new());
    if let Http::TwoPriorKnowledge = http {
        builder.http2_only(true);
    }
    let client = builder.build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body.into())).unwrap())
        .await
        .expect("the server answers over HTTP");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("a whole body").to_bytes(),
    }
}

/// A Connect unary call with a JSON body and the app's admin key.
async fn connect_json(app: &TestApp, http: Http, path: &str, body: Value) -> Answer {
    let authorization = format!("Bearer {}", app.admin_key);
    call(
        app,
        http,
        Method::POST,
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &authorization),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut framed = BytesMut::new();
    framed.put_u8(flags);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

fn envelopes(mut body: Bytes) -> Vec<(u8, Bytes)> {
    let mut out = Vec::new();
    while body.has_remaining() {
        let flags = body.get_u8();
        let len = body.get_u32() as usize;
        out.push((flags, body.split_to(len)));
    }
    out
}

#[tokio::test]
async fn a_json_call_over_http1_answers_what_grpc_answers_with_every_field_shown() {
    let app = spawn_app().await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let mut request = submission(&rubric.id, "#1042", 1, 3);
    if let Some(iqs::proto::evaluation::submit_evaluation_request::InteractionRef::Interaction(
        interaction,
    )) = request.interaction_ref.as_mut()
    {
        interaction.source = "Zendesk".into();
        interaction.agent_id = "jane+qa@acme.com".into();
    }
    let submitted = connect_json(
        &app,
        Http::One,
        "/iqs.evaluation.v1.EvaluationService/SubmitEvaluation",
        json!({
            "requestId": request.request_id,
            "interaction": {
                "source": "Zendesk", "externalId": "#1042", "channel": "chat",
                "agentId": "jane+qa@acme.com", "teamId": "tier1", "region": "eu-west", "csat": 4
            },
            "rubricId": rubric.id,
            "reviewerId": "qa-lead",
            "kind": "EVALUATION_KIND_MANUAL",
            "ratings": [
                {"criterionKey": "greeting", "value": 1},
                {"criterionKey": "empathy", "value": 3}
            ]
        }),
    )
    .await;
    assert_eq!(submitted.status, StatusCode::OK, "{:?}", submitted.body);
    assert_eq!(submitted.headers["content-type"], "application/json");
    let evaluation = submitted.json();
    assert_eq!(evaluation["agentId"], "jane+qa@acme.com", "{evaluation}");
    assert!(evaluation["id"].as_str().is_some_and(|id| !id.is_empty()));

    // The same request again over gRPC is the retry of that submission.
    let retried = app
        .evaluations()
        .submit_evaluation(request)
        .await
        .expect("the gRPC retry")
        .into_inner();
    assert_eq!(retried.id, evaluation["id"].as_str().unwrap());

    wait_for_projection(&app).await;
    let over_grpc = app
        .analytics()
        .get_agent_score(an::GetAgentScoreRequest {
            agent_id: "jane+qa@acme.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let over_connect = connect_json(
        &app,
        Http::One,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        json!({"agentId": "jane+qa@acme.com"}),
    )
    .await
    .json();
    assert_eq!(
        over_connect["iqs"],
        over_grpc.iqs.unwrap(),
        "{over_connect}"
    );
    assert_eq!(over_connect["evaluationCount"], "1");
    assert_eq!(
        over_connect["criticalFailCount"], "0",
        "defaults are written out: {over_connect}"
    );

    let audit = app.store.list_audit(Some(app.tenant), 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|entry| entry.rpc.ends_with("SubmitEvaluation") && entry.status_code == 0),
        "a Connect write is audited like a gRPC one"
    );
}

#[tokio::test]
async fn connect_errors_carry_the_code_the_http_status_and_readable_field_violations() {
    let app = spawn_app().await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;

    let refused = connect_json(
        &app,
        Http::One,
        "/iqs.evaluation.v1.EvaluationService/SubmitEvaluation",
        json!({
            "requestId": "r-1",
            "interaction": {"source": "Zendesk", "externalId": "#1", "agentId": "a"},
            "rubricId": rubric.id,
            "kind": "EVALUATION_KIND_MANUAL",
            "ratings": [{"criterionKey": "greeting", "value": 7}]
        }),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.headers["content-type"], "application/json");
    let error = refused.json();
    assert_eq!(error["code"], "invalid_argument", "{error}");
    let detail = &error["details"][0];
    assert_eq!(detail["type"], "google.rpc.BadRequest");
    let fields: Vec<&str> = detail["debug"]["fieldViolations"]
        .as_array()
        .expect("violations as JSON")
        .iter()
        .map(|violation| violation["field"].as_str().unwrap())
        .collect();
    for field in [
        "interaction.channel",
        "reviewer_id",
        "ratings[0].value",
        "ratings",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    assert_eq!(
        app.count("evaluation.evaluations").await,
        0,
        "nothing was written"
    );

    let misspelt = connect_json(
        &app,
        Http::One,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        json!({"agent": "a"}),
    )
    .await;
    assert_eq!(misspelt.status, StatusCode::BAD_REQUEST);
    let error = misspelt.json();
    assert_eq!(error["code"], "invalid_argument");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("GetAgentScoreRequest"),
        "{error}"
    );

    let without_key = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(without_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(without_key.json()["code"], "unauthenticated");

    let missing = connect_json(
        &app,
        Http::One,
        "/iqs.analytics.v1.AnalyticsService/Nope",
        json!({}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let got = call(
        &app,
        Http::One,
        Method::GET,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[("content-type", "application/json")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);

    let streaming_as_unary = connect_json(
        &app,
        Http::One,
        "/iqs.analytics.v1.AnalyticsService/ExportEvaluations",
        json!({}),
    )
    .await;
    assert_eq!(
        streaming_as_unary.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let authorization = format!("Bearer {}", app.admin_key);
    let gzipped = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("authorization", &authorization),
        ],
        "{}",
    )
    .await;
    assert_eq!(gzipped.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(gzipped.json()["code"], "unimplemented");

    let too_soon = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[
            ("content-type", "application/json"),
            ("connect-timeout-ms", "soon"),
            ("authorization", &authorization),
        ],
        "{}",
    )
    .await;
    assert_eq!(too_soon.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn binary_connect_over_h2c_and_streamed_import_and_export_in_connect_streaming() {
    let app = spawn_app().await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let authorization = format!("Bearer {}", app.admin_key);

    let score = call(
        &app,
        Http::TwoPriorKnowledge,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[
            ("content-type", "application/proto"),
            ("connect-protocol-version", "1"),
            ("authorization", &authorization),
        ],
        an::GetAgentScoreRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(score.status, StatusCode::OK);
    assert_eq!(score.headers["content-type"], "application/proto");
    assert_eq!(
        an::ScoreSummary::decode(score.body)
            .unwrap()
            .evaluation_count,
        0
    );

    // Three rows in one Connect stream, the second one invalid.
    let mut rows = Vec::new();
    for (i, greeting) in [1, 9, 0].into_iter().enumerate() {
        let request = submission(&rubric.id, &format!("T-{i}"), greeting, 2);
        let row = json!({
            "requestId": request.request_id,
            "interaction": {
                "source": "zendesk", "externalId": format!("T-{i}"), "channel": "chat", "agentId": "agent-1"
            },
            "rubricId": rubric.id,
            "reviewerId": "qa-lead",
            "kind": "EVALUATION_KIND_MANUAL",
            "ratings": [{"criterionKey": "greeting", "value": greeting}, {"criterionKey": "empathy", "value": 2}]
        });
        rows.push(envelope(0, &serde_json::to_vec(&row).unwrap()));
    }
    let imported = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.evaluation.v1.EvaluationService/ImportEvaluations",
        &[
            ("content-type", "application/connect+json"),
            ("authorization", &authorization),
        ],
        rows.concat(),
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK);
    assert_eq!(imported.headers["content-type"], "application/connect+json");
    let messages = envelopes(imported.body);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let summary: Value = serde_json::from_slice(&messages[0].1).unwrap();
    assert_eq!(summary["accepted"], "2", "{summary}");
    assert_eq!(summary["rejectedCount"], "1", "{summary}");
    assert_eq!(messages[1].0, 0b10, "the end of the stream");
    assert_eq!(
        serde_json::from_slice::<Value>(&messages[1].1).unwrap(),
        json!({})
    );

    wait_for_projection(&app).await;
    let export = envelope(0, br#"{"filter": {"agentIds": ["agent-1"]}}"#);
    let exported = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/ExportEvaluations",
        &[
            ("content-type", "application/connect+json"),
            ("authorization", &authorization),
        ],
        export,
    )
    .await;
    let messages = envelopes(exported.body);
    assert_eq!(messages.len(), 3, "two rows and the end: {messages:?}");
    for (flags, row) in &messages[..2] {
        assert_eq!(*flags, 0);
        let row: Value = serde_json::from_slice(row).unwrap();
        assert_eq!(row["agentId"], "agent-1", "{row}");
    }

    // A failing stream still answers 200: the error is in the last message.
    let bad_export = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/ExportEvaluations",
        &[
            ("content-type", "application/connect+json"),
            ("authorization", &authorization),
        ],
        envelope(0, br#"{"cursor": "not-a-cursor"}"#),
    )
    .await;
    assert_eq!(bad_export.status, StatusCode::OK);
    let messages = envelopes(bad_export.body);
    let end: Value = serde_json::from_slice(&messages.last().unwrap().1).unwrap();
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
}

#[tokio::test]
async fn grpc_web_is_served_and_cors_answers_only_the_configured_origins() {
    let app = spawn_app_with(AppOptions {
        tune: |config| config.cors_allowed_origins = vec!["https://helpdesk.example.com".into()],
        ..AppOptions::default()
    })
    .await;
    let authorization = format!("Bearer {}", app.admin_key);

    let web = call(
        &app,
        Http::One,
        Method::POST,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("origin", "https://helpdesk.example.com"),
            ("authorization", &authorization),
        ],
        envelope(
            0,
            &an::GetAgentScoreRequest {
                agent_id: "agent-1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(web.status, StatusCode::OK);
    assert_eq!(
        web.headers["access-control-allow-origin"],
        "https://helpdesk.example.com"
    );
    let frames = envelopes(web.body);
    assert_eq!(frames[0].0, 0);
    an::ScoreSummary::decode(frames[0].1.clone()).expect("a ScoreSummary");
    assert_eq!(frames[1].0, 0x80, "gRPC-Web trailers frame");
    assert!(String::from_utf8_lossy(&frames[1].1).contains("grpc-status:0"));

    let allowed = preflight(&app, "https://helpdesk.example.com").await;
    assert!(allowed.status.is_success(), "{}", allowed.status);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://helpdesk.example.com"
    );
    let allowed_headers = allowed.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    let other = preflight(&app, "https://evil.example.com").await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

async fn preflight(app: &TestApp, origin: &str) -> Answer {
    call(
        app,
        Http::One,
        Method::OPTIONS,
        "/iqs.analytics.v1.AnalyticsService/GetAgentScore",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,connect-protocol-version",
            ),
        ],
        "",
    )
    .await
}

/// Reads one HTTP/1.1 answer (headers and a Content-Length body) from `stream`.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("the connection stays readable");
        assert!(
            n > 0,
            "the server closed the connection: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_call_refused_before_its_body_is_read_still_answers_over_http1_and_keeps_the_connection()
{
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let body = br#"{"pageSize": 5}"#;
    let head = |authorization: &str| {
        format!(
            "POST /iqs.rubric.v1.RubricService/ListRubrics HTTP/1.1\r\nhost: iqs\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n{authorization}\r\n",
            body.len()
        )
    };
    // Headers first, the body a moment later, as Connect clients in Node.js and
    // browsers send them: the refusal must not cut the body short.
    stream.write_all(head("").as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stream.write_all(body).await.unwrap();
    let (status, answer) = read_answer(&mut stream).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("unauthenticated"), "{answer}");

    let authorization = format!("authorization: Bearer {}\r\n", app.admin_key);
    stream
        .write_all(head(&authorization).as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    let (status, answer) = read_answer(&mut stream).await;
    assert_eq!(
        status, 200,
        "the same connection serves the next call: {answer}"
    );
}
