//! The read-only dashboard page at `/`: a team lead's view of the figures (IQS trend
//! by team and month, the agent leaderboard, weakest criteria with root causes, IQS
//! against CSAT, calibration agreement). The page, its script and its style are
//! compiled into the binary; in the browser the script calls the API as Connect JSON
//! on the same origin with a key kept in the tab's session storage, so the page itself
//! holds no data and needs no key to be served.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use tower::Service;

use crate::layers::{AroundCall, BoxFuture, HttpRequest, HttpResponse};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const ICON: &str = include_str!("assets/icon.svg");

/// Only the page's own script, style and API calls: nothing injected runs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's files by path, with their media types.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/" | "/dashboard" | "/dashboard/" => (INDEX, "text/html; charset=utf-8"),
        "/dashboard/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        "/dashboard/icon.svg" | "/favicon.ico" => (ICON, "image/svg+xml"),
        _ => return None,
    })
}

/// Whether a path names an RPC (`/<package>.<Service>/<Method>`): the protocols' own
/// layers answer any request for one, GET included.
fn is_procedure(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(service), Some(method), None) if service.contains('.') && !method.is_empty()
    )
}

/// Answers GET and HEAD of anything but an RPC: the dashboard's files, or 404.
#[derive(Clone, Default)]
pub struct DashboardLayer;

impl AroundCall for DashboardLayer {
    fn around<S>(&self, mut inner: S, request: HttpRequest) -> BoxFuture<HttpResponse, S::Error>
    where
        S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let method = request.method().clone();
        if (method != Method::GET && method != Method::HEAD) || is_procedure(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let response = page(request.uri().path(), method == Method::HEAD);
        Box::pin(async move { Ok(response) })
    }
}

fn page(path: &str, head_only: bool) -> HttpResponse {
    let (status, body, content_type) = match asset(path) {
        Some((body, content_type)) => (StatusCode::OK, body, content_type),
        None => (
            StatusCode::NOT_FOUND,
            "not found: the dashboard is at /; the API answers POST /<package>.<Service>/<Method>\n",
            "text/plain; charset=utf-8",
        ),
    };
    let length = body.len();
    let body = if head_only {
        tonic::body::Body::empty()
    } else {
        tonic::body::Body::new(http_body_util::Full::new(Bytes::from_static(
            body.as_bytes(),
        )))
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_its_style_are_served_and_other_paths_are_not_found() {
        for (path, media) in [
            ("/", "text/html"),
            ("/dashboard/dashboard.js", "text/javascript"),
            ("/dashboard/dashboard.css", "text/css"),
            ("/dashboard/icon.svg", "image/svg+xml"),
        ] {
            let response = page(path, false);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.starts_with(media), "{path}: {content_type}");
            assert!(
                response
                    .headers()
                    .contains_key(header::CONTENT_SECURITY_POLICY)
            );
        }
        assert_eq!(page("/.env", false).status(), StatusCode::NOT_FOUND);
        assert!(is_procedure("/iqs.rubric.v1.RubricService/ListRubrics"));
        assert!(!is_procedure("/dashboard/dashboard.js"));
        assert!(!is_procedure("/"));
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX.contains(r#"src="/dashboard/dashboard.js""#));
        assert!(INDEX.contains(r#"href="/dashboard/dashboard.css""#));
        assert!(
            !INDEX.contains("<script>"),
            "no inline script: the policy forbids it"
        );
        // The only address in the script is the SVG namespace: it calls no other origin.
        assert_eq!(
            SCRIPT.matches("http").count(),
            SCRIPT.matches("http://www.w3.org/2000/svg").count()
        );
    }
}
