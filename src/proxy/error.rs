//! `ProxyError` and its one mapping to an HTTP response.
//!
//! Every way a request can fail ends here, and the `match` below is exhaustive: adding a
//! variant without deciding its status does not compile. Bodies are short and never echo
//! request data or internal names (those are in the logs and `/debug/routes`).

use std::sync::Arc;

use http::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, SERVER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use super::body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request itself is unacceptable (bad Host, dot-segments in the path, ...).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than wicket accepts.
    #[error("request target too long")]
    UriTooLong,
    /// A header field, or the whole head, is larger than wicket accepts.
    #[error("request head too large: {0}")]
    HeadTooLarge(&'static str),
    /// A transfer coding wicket cannot forward.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The request body is larger than `--max-request-body`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client stopped sending its request body.
    #[error("request body timed out")]
    BodyTimeout,
    /// The client's request body was malformed (bad chunk framing) or cut short.
    #[error("malformed request body")]
    MalformedBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `CONNECT`: wicket is a reverse proxy, not a forward proxy.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client's address is not allowed on this route (allow and deny lists).
    #[error("client address refused")]
    Forbidden,
    /// Basic auth: no or wrong credentials; the challenge is the route's
    /// `WWW-Authenticate` value.
    #[error("authentication required")]
    Unauthorized(Option<HeaderValue>),
    /// External auth: the auth service failed, answered something else than 2xx, 401 or
    /// 403, or did not answer in time (ingress-nginx answers 500 too).
    #[error("external auth failed: {0}")]
    AuthFailed(String),
    /// The client address has used up its budget of password checks.
    #[error("too many password attempts from this client")]
    TooManyAttempts,
    /// Password checks are queued beyond what wicket waits for.
    #[error("password checks overloaded")]
    AuthOverloaded,
    /// A limit annotation refused the request; the status is `--limit-status-code`.
    #[error("{1:?} limit reached")]
    Limited(StatusCode, crate::model::Refused),
    /// `auth-tls-*`: no valid client certificate (nginx's 400 pages).
    #[error("client certificate: {0}")]
    ClientCertificate(&'static str),
    /// No routing table has been published yet.
    #[error("no routing table yet")]
    NotReady,
    /// Nothing matched and there is no default backend.
    #[error("no route")]
    NoRoute,
    /// The route's backend cannot be used (missing Service or port, ...).
    #[error("backend unavailable: {0}")]
    BackendUnavailable(Arc<str>),
    /// A Gateway API rule's backend reference is invalid (missing Service, unknown kind,
    /// no ReferenceGrant), or the rule has no backend: 500, as the spec asks.
    #[error("invalid backend reference: {0}")]
    InvalidBackend(Arc<str>),
    /// Over TLS, the request's Host belongs to another Gateway API listener than the one
    /// the connection's server name (SNI) chose.
    #[error("misdirected request")]
    Misdirected,
    /// The backend has no usable endpoint.
    #[error("no usable endpoint for {0}")]
    NoEndpoints(Arc<str>),
    /// Could not connect to any endpoint tried.
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connecting, or waiting for the response head, took too long.
    #[error("upstream {endpoint} timed out")]
    Timeout { endpoint: String },
    /// The upstream answered something that cannot be relayed.
    #[error("upstream misbehaved: {0}")]
    BadUpstream(&'static str),
    /// The upstream connection failed after the request was sent, or answered garbage.
    #[error("upstream {endpoint} failed")]
    Upstream {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::MalformedBody(_)
            | ProxyError::ClientCertificate(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::AuthFailed(_) | ProxyError::InvalidBackend(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::Limited(status, _) => *status,
            ProxyError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::AuthOverloaded
            | ProxyError::NotReady
            | ProxyError::BackendUnavailable(_)
            | ProxyError::NoEndpoints(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadUpstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(why) => why,
            ProxyError::MalformedBody(_) => "400 bad request: malformed request body\n",
            ProxyError::ClientCertificate(why) => why,
            ProxyError::UriTooLong => "414 request target too long\n",
            ProxyError::HeadTooLarge(_) => "431 request header fields too large\n",
            ProxyError::NotImplemented(_) => "501 not implemented: unsupported transfer coding\n",
            ProxyError::BodyTooLarge => "413 request body too large\n",
            ProxyError::BodyTimeout => "408 request timeout: the request body stopped arriving\n",
            ProxyError::MethodNotAllowed => "405 method not allowed\n",
            ProxyError::Misdirected => {
                "421 misdirected request: this connection's TLS server name is for another listener\n"
            }
            ProxyError::NoRoute => "404 not found: no route for this host and path\n",
            ProxyError::Forbidden => "403 forbidden\n",
            ProxyError::Unauthorized(_) => "401 authorization required\n",
            ProxyError::AuthFailed(_) => {
                "500 internal server error: the authentication service failed\n"
            }
            ProxyError::Limited(status, _) if *status == StatusCode::TOO_MANY_REQUESTS => {
                "429 too many requests\n"
            }
            ProxyError::Limited(..) => "503 service unavailable: request limit reached\n",
            ProxyError::TooManyAttempts => "429 too many requests: too many password attempts\n",
            ProxyError::InvalidBackend(_) => {
                "500 internal server error: the route's backend reference is invalid\n"
            }
            ProxyError::AuthOverloaded => "503 service unavailable: try again shortly\n",
            ProxyError::NotReady => "503 service unavailable: routing table not loaded yet\n",
            ProxyError::BackendUnavailable(_) => "503 service unavailable: backend unavailable\n",
            ProxyError::NoEndpoints(_) => "503 service unavailable: no ready endpoint\n",
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadUpstream(_) => "502 bad gateway\n",
            ProxyError::Timeout { .. } => "504 gateway timeout\n",
        }
    }

    /// The error as a gRPC client understands it: HTTP 200, a trailers-only response with
    /// `grpc-status` and `grpc-message`, the status mapped as gRPC's HTTP-to-status table
    /// does (404 UNIMPLEMENTED, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 429 and 5xx
    /// UNAVAILABLE, 504 DEADLINE_EXCEEDED); a Gateway API invalid backend is UNAVAILABLE.
    pub fn into_grpc_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let code: u16 = match status.as_u16() {
            404 => 12,
            401 => 16,
            403 => 7,
            504 => 4,
            400 | 408 | 413 | 414 | 431 => 13,
            429 | 500..=503 => 14,
            _ => 2,
        };
        let message: String = self
            .body()
            .trim()
            .bytes()
            .map(|b| match b {
                // grpc-message is percent-encoded outside printable ASCII (and `%`).
                b' '..=b'~' if b != b'%' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let mut response = Response::new(ProxyBody::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(code));
        if let Ok(v) = HeaderValue::try_from(message) {
            headers.insert("grpc-message", v);
        }
        headers.insert(SERVER, HeaderValue::from_static("wicket"));
        response
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = match &self {
            ProxyError::BadRequest(why) => format!("400 bad request: {why}\n"),
            other => other.body().to_owned(),
        };
        let mut response = Response::new(ProxyBody::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(SERVER, HeaderValue::from_static("wicket"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        match &self {
            ProxyError::Unauthorized(Some(challenge)) => {
                headers.insert(WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::TooManyAttempts | ProxyError::AuthOverloaded => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if closes_connection(status) {
            // A client that sent garbage once does not get to keep the connection; and after
            // a refused or broken body, the connection is in no state to carry another request.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Client errors after which the connection is closed, as nginx does.
fn closes_connection(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            | StatusCode::NOT_IMPLEMENTED
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn each_error_has_its_status_and_a_short_text_body() {
        let cases = [
            (
                ProxyError::BadRequest("missing Host header"),
                400,
                "400 bad request: missing Host header\n",
            ),
            (
                ProxyError::MethodNotAllowed,
                405,
                "405 method not allowed\n",
            ),
            (
                ProxyError::NoRoute,
                404,
                "404 not found: no route for this host and path\n",
            ),
            (
                ProxyError::NotReady,
                503,
                "503 service unavailable: routing table not loaded yet\n",
            ),
            (
                ProxyError::NoEndpoints(Arc::from("a")),
                503,
                "503 service unavailable: no ready endpoint\n",
            ),
            (
                ProxyError::Timeout {
                    endpoint: "x".into(),
                },
                504,
                "504 gateway timeout\n",
            ),
        ];
        for (error, status, text) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[SERVER], "wicket");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, text);
        }
    }

    #[test]
    fn bad_requests_close_the_connection() {
        let response = ProxyError::BadRequest("x").into_response();
        assert_eq!(response.headers()[CONNECTION], "close");
        let response = ProxyError::NoRoute.into_response();
        assert!(response.headers().get(CONNECTION).is_none());
    }
}
