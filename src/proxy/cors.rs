//! Cross-origin resource sharing (`enable-cors`, `cors-*`), as ingress-nginx does it: a
//! preflight (`OPTIONS` from an allowed origin) is answered 204 by wicket before anything
//! else of the route runs, and every response of the route — whatever its status, wicket's
//! own errors included — carries the CORS headers, replacing the pod's.

use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, SERVER,
};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use crate::model::{Cors, CorsOrigins};

/// What `Access-Control-Allow-Origin` says for a request from `origin`: `*`, the origin
/// itself when it is allowed, or nothing (no CORS headers at all).
pub fn allowed(cors: &Cors, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    match &cors.origins {
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::List(patterns) => {
            let origin = origin?;
            let text = origin.to_str().ok()?;
            patterns
                .iter()
                .any(|p| p.matches(text))
                .then(|| origin.clone())
        }
    }
}

/// Sets the CORS headers, replacing any the pod sent.
pub fn apply(headers: &mut HeaderMap, cors: &Cors, allow_origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    if cors.credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    } else {
        headers.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, cors.methods.clone());
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, cors.headers.clone());
    match &cors.expose {
        Some(expose) => {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        None => {
            headers.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
        }
    }
    headers.insert(ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
}

/// The answer to a preflight: 204, empty, with the CORS headers.
pub fn preflight(cors: &Cors, allow_origin: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    apply(headers, cors, allow_origin);
    // ingress-nginx's exact value. (It also sends Content-Length: 0, which a 204 must not
    // carry: RFC 9110 §8.6; hyper leaves it out.)
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    headers.insert(SERVER, HeaderValue::from_static("wicket"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OriginPattern;

    fn cors(origins: CorsOrigins) -> Cors {
        Cors {
            origins,
            methods: HeaderValue::from_static("GET, POST"),
            headers: HeaderValue::from_static("Content-Type"),
            expose: None,
            credentials: true,
            max_age: HeaderValue::from_static("1728000"),
        }
    }

    #[test]
    fn any_origin_is_a_star_and_a_list_echoes_a_match_only() {
        let any = cors(CorsOrigins::Any);
        assert_eq!(allowed(&any, None).unwrap(), "*");
        let list = cors(CorsOrigins::List(vec![OriginPattern {
            scheme: "https://".into(),
            host: "app.example".into(),
            wildcard: false,
            port: String::new(),
        }]));
        let origin = HeaderValue::from_static("https://app.example");
        assert_eq!(
            allowed(&list, Some(&origin)).unwrap(),
            "https://app.example"
        );
        assert!(allowed(
            &list,
            Some(&HeaderValue::from_static("https://evil.example"))
        )
        .is_none());
        assert!(allowed(&list, None).is_none());
    }

    #[test]
    fn the_headers_replace_the_pods_and_a_preflight_is_204() {
        let c = cors(CorsOrigins::Any);
        let mut h = HeaderMap::new();
        h.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://pod.example"),
        );
        h.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("X-Pod"),
        );
        apply(&mut h, &c, HeaderValue::from_static("*"));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "1728000");
        assert!(!h.contains_key(ACCESS_CONTROL_EXPOSE_HEADERS));
        let r = preflight(&c, HeaderValue::from_static("*"));
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
    }
}
