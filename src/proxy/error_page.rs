//! `custom-http-errors` and `default-backend` (INGRESS-NGINX.md §C6): an answer of the pod
//! with a listed status, or a route whose Service cannot take the request, is replaced by
//! the answer of an error backend. The error backend gets `GET /` (`HEAD /` for a HEAD)
//! with the headers ingress-nginx sends it — `X-Code`, `X-Format`, `X-Original-URI`,
//! `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`, `X-Request-ID`,
//! `X-Forwarded-For`, `Host` — and the client gets its status and body.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, ACCEPT, HOST};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri};

use super::headers::{self, X_FORWARDED_FOR, X_REQUEST_ID};
use crate::admin::metrics::RouteLabels;

static X_CODE: HeaderName = HeaderName::from_static("x-code");
static X_FORMAT: HeaderName = HeaderName::from_static("x-format");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_NAMESPACE: HeaderName = HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: HeaderName = HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");
static X_SERVICE_PORT: HeaderName = HeaderName::from_static("x-service-port");

/// What the error backend is told about the client's request, taken before the request
/// is sent on (and rewritten).
#[derive(Debug)]
pub struct Context {
    head: bool,
    host: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    original_uri: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    client: IpAddr,
}

impl Context {
    /// `host`: the host as the client sent it.
    pub fn new(
        method: &Method,
        uri: &Uri,
        host: Option<HeaderValue>,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Self {
        Self {
            head: method == Method::HEAD,
            host,
            accept: headers.get(ACCEPT).cloned(),
            original_uri: uri
                .path_and_query()
                .and_then(|p| HeaderValue::from_str(p.as_str()).ok()),
            request_id: headers.get(&X_REQUEST_ID).cloned(),
            client,
        }
    }

    /// The client's address.
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// The request id the pod was sent (wicket makes one when the client sent none).
    pub fn set_request_id(&mut self, id: Option<HeaderValue>) {
        if id.is_some() {
            self.request_id = id;
        }
    }

    /// The request to the error backend for an answer with status `code` on the route
    /// `route` (whose Service port is `port`, when known).
    pub fn request(&self, code: u16, route: &RouteLabels, port: Option<u16>) -> Parts {
        let method = if self.head { Method::HEAD } else { Method::GET };
        let (mut parts, ()) = Request::builder()
            .method(method)
            .uri("/")
            .body(())
            .unwrap_or_default()
            .into_parts();
        let h = &mut parts.headers;
        h.insert(&X_CODE, HeaderValue::from(code));
        let text = |s: &str| HeaderValue::from_str(s).ok();
        let fields = [
            (&X_FORMAT, self.accept.clone()),
            (&X_ORIGINAL_URI, self.original_uri.clone()),
            (&X_NAMESPACE, text(route.namespace())),
            (&X_INGRESS_NAME, text(route.ingress())),
            (&X_SERVICE_NAME, text(route.service())),
            (&X_SERVICE_PORT, port.map(HeaderValue::from)),
            (&X_FORWARDED_FOR, Some(headers::ip_value(self.client))),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                h.insert(name, value);
            }
        }
        if let Some(id) = self.request_id.clone() {
            h.insert(&X_REQUEST_ID, id);
        }
        if let Some(host) = self.host.clone() {
            h.insert(HOST, host);
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Owner;
    use std::sync::Arc;

    #[test]
    fn the_error_backend_gets_what_ingress_nginx_sends() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("a.test"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let uri: Uri = "/app/x?y=1".parse().unwrap();
        let host = headers.get(HOST).cloned();
        let mut ctx = Context::new(
            &Method::POST,
            &uri,
            host,
            &headers,
            "10.1.2.3".parse().unwrap(),
        );
        ctx.set_request_id(Some(HeaderValue::from_static("abc")));
        let owner = Arc::new(Owner::new("ns".into(), "site".into(), "web".into()));
        let parts = ctx.request(404, &RouteLabels::new(Some(&owner)), Some(8080));
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/");
        let h = |n: &str| parts.headers.get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("x-code"), "404");
        assert_eq!(h("x-format"), "application/json");
        assert_eq!(h("x-original-uri"), "/app/x?y=1");
        assert_eq!(h("x-namespace"), "ns");
        assert_eq!(h("x-ingress-name"), "site");
        assert_eq!(h("x-service-name"), "web");
        assert_eq!(h("x-service-port"), "8080");
        assert_eq!(h("x-request-id"), "abc");
        assert_eq!(h("x-forwarded-for"), "10.1.2.3");
        assert_eq!(h("host"), "a.test");
        let head = Context::new(
            &Method::HEAD,
            &uri,
            None,
            &headers,
            "10.1.2.3".parse().unwrap(),
        );
        assert_eq!(
            head.request(503, &RouteLabels::new(None), None).method,
            Method::HEAD
        );
    }
}
